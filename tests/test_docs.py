"""The docs cannot drift: the configuration reference is the schema's, and README stays short and starts with the two commands."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TWO_COMMANDS = 'pip install torch==2.13.0 && pip install -e ".[dev]" && fedft run simulations/quickstart.toml\npython -m pytest'


def _generator():
    spec = importlib.util.spec_from_file_location("gen_config_reference", ROOT / "docs" / "gen_config_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_is_the_generated_one():
    committed = (ROOT / "docs" / "reference" / "configuration.md").read_text(encoding="utf-8")
    assert committed == _generator().render(), "docs/reference/configuration.md differs from the schema: run python docs/gen_config_reference.py and commit the page"


def test_configuration_reference_names_every_field():
    from pydantic import BaseModel

    from fedft.config.schema import FedftConfig

    page = (ROOT / "docs" / "reference" / "configuration.md").read_text(encoding="utf-8")

    def keys(model: type[BaseModel], prefix: str) -> list[str]:
        out = []
        for name, info in model.model_fields.items():
            key = f"{prefix}{name}"
            if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
                out += [f"[{key}]", *keys(info.annotation, key + ".")]
            else:
                out.append(key)
        return out

    missing = [k for k in keys(FedftConfig, "") if (f"## `{k}`" if k.startswith("[") else f"| `{k}` |") not in page]
    assert not missing, f"fields missing from the reference: {missing}"
    assert "| `privacy.noise_source` | `\"os\"` \\| `\"seeded\"` | `\"os\"` |" in page  # type, default, and the source comment
    assert "reproducible but NOT private" in page


def test_field_comments_are_read_from_the_source():
    trailing, notes = _generator().field_comments(__import__("fedft.config.schema", fromlist=["ModelConfig"]).ModelConfig)
    assert trailing["reset_head"].startswith("with init_from")
    assert notes["hidden_size"][1].startswith("char_lstm sizes")
    assert "reset_head" not in notes  # a blank line ends the note's fields


def test_readme_is_short_and_starts_with_the_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = readme.splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; keep it at most 200 and move detail to a page under docs/"
    first = re.search(r"```[a-z]*\n(.*?)\n```", readme, re.S)
    assert first is not None and first.group(1) == TWO_COMMANDS, "README.md's first fenced block must be exactly the install-and-run line and `python -m pytest`"


def test_readme_and_docs_links_point_at_files():
    """Relative links in README and in docs/ name files that exist (mkdocs --strict checks docs/ too, where mkdocs is installed)."""
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, f"broken links: {broken}"

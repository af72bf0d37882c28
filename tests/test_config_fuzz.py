"""Fuzzing the config loader: whatever the input, the result is a usable config or a
FedftError (which the CLI prints as one line, exit 2); nothing else ever escapes."""

from __future__ import annotations

import math

import pytest

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedft.config import FedftConfig, to_toml
from fedft.jobs.validate import load_config
from fedft.errors import FedftError

SECTIONS = {name: list(field.annotation.model_fields) for name, field in FedftConfig.model_fields.items() if hasattr(field.annotation, "model_fields")}
TOP = [name for name in FedftConfig.model_fields if name not in SECTIONS]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["iid", "dirichlet", "fedavg", "seed_cnn", "mnist-5k", "digits", "sgd", "adam", "cpu", "auto", "", "hf:x/y"]),
    st.datetimes(), st.dates(), st.binary(max_size=4),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
keys_of = {name: st.sampled_from(fields) | st.text(max_size=8) for name, fields in SECTIONS.items()}
section = st.sampled_from(sorted(SECTIONS)).flatmap(lambda name: st.tuples(st.just(name), st.dictionaries(keys_of[name], values, max_size=4)))
raw_configs = st.builds(
    lambda top, sections, junk: {**top, **dict(sections), **junk},
    st.dictionaries(st.sampled_from(TOP), values, max_size=2),
    st.lists(section, max_size=4),
    st.dictionaries(st.text(max_size=6), values, max_size=1),
)
# Mostly-valid configs: the quickstart with a few settings replaced, so the fuzz also
# reaches the registries, the cross-section rules and the valid outcome.
plausible = st.one_of(values, st.integers(min_value=-3, max_value=50), st.floats(min_value=-1, max_value=2), st.sampled_from(["iid", "dirichlet", "shards", "fedavg", "fedadam", "seed_rnn", "adam", "cuda", "digits"]))
setting = st.sampled_from([(s, f) for s, fs in SECTIONS.items() for f in fs] + [("strategy", "eta"), ("strategy", "inplace")])
mutations = st.lists(st.tuples(setting, plausible), min_size=1, max_size=3)


def _mutated(changes) -> dict:
    raw = load_config("simulations/quickstart.toml").model_dump()
    for (section, key), value in changes:
        raw[section][key] = value
    return raw


overrides = st.lists(st.text(max_size=30) | st.builds(lambda k, v: f"{k}={v}", st.sampled_from([f"{s}.{f}" for s, fs in SECTIONS.items() for f in fs] + TOP), st.text(max_size=10)), max_size=3)


OUTCOMES: dict[str, int] = {"valid": 0, "error": 0}


def _check(source, extra=None) -> None:
    try:
        cfg = load_config(source, extra)
    except FedftError as exc:
        line = exc.one_line()
        assert line and "\n" not in line
        OUTCOMES["error"] += 1
        return
    OUTCOMES["valid"] += 1
    # A config that loads is usable: it serialises for clients and results folders.
    assert FedftConfig.from_json(cfg.to_json()) == cfg
    to_toml(cfg)
    assert all(math.isfinite(v) for v in _floats(cfg.model_dump()))


def _floats(data):
    if isinstance(data, float):
        yield data
    elif isinstance(data, dict):
        for v in data.values():
            yield from _floats(v)
    elif isinstance(data, (list, tuple)):
        for v in data:
            yield from _floats(v)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.slow  # seconds of compute, no process
@FUZZ
@given(raw_configs, overrides)
def test_any_dict_gives_a_config_or_a_fedft_error(raw, extra):
    _check(raw, extra)


@FUZZ
@given(mutations)
def test_mutated_quickstart_gives_a_config_or_a_fedft_error(changes):
    _check(_mutated(changes))


def test_the_fuzz_reached_both_outcomes():
    """Guards the generators: a fuzz that only ever hits the first error proves little."""
    OUTCOMES.update(valid=0, error=0)
    test_mutated_quickstart_gives_a_config_or_a_fedft_error()
    assert OUTCOMES["valid"] > 0 and OUTCOMES["error"] > 0, OUTCOMES


@pytest.mark.slow  # seconds of compute, no process
@FUZZ
@given(raw_configs)
def test_any_toml_file_gives_a_config_or_a_fedft_error(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("fuzz") / "c.toml"
    try:
        path.write_text(tomli_w.dumps(_toml_safe(raw)))
    except (TypeError, ValueError):
        return
    _check(path)


@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_any_file_content_gives_a_config_or_a_fedft_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("fuzz") / "c.toml"
    path.write_bytes(content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content)
    _check(path)


def _toml_safe(data):
    """TOML has no null: drop None (and lists holding it)."""
    if isinstance(data, dict):
        return {str(k): _toml_safe(v) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [_toml_safe(v) for v in data if v is not None]
    return data

"""Loading a run configuration: TOML file or dict, `--set` overrides, schema validation.

`read_config` is the one way from a file to a :class:`FedftConfig`; it applies the
schema and the cross-section rules that need nothing but the config itself. The rules
that need the data, the model registry, strategies or privacy accounting are checked
by the jobs that run a config (`fedft.jobs.validate.load_config`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pydantic
import tomllib
from pydantic import BaseModel

from fedft.config.schema import FedftConfig
from fedft.errors import FedftError


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (["a", "b"], value); the value is read as a TOML value,
    falling back to a plain string (so `data.name=digits` needs no quotes)."""
    if "=" not in text:
        raise FedftError("--set", f"'{text}' is not key=value.", "write it as --set section.key=value.")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise FedftError("--set", f"'{text}' has an empty key.", "write it as --set section.key=value.")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    for text in overrides or []:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise FedftError(".".join(path), f"'{part}' is a value, not a section.", "check the key.")
            node = child
        node[path[-1]] = value
    return raw


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FedftError("config", f"file '{path}' does not exist.", "pass the path of a TOML config, e.g. simulations/quickstart.toml.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FedftError("config", f"cannot read '{path}': {exc}.", "pass a readable UTF-8 TOML file.") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FedftError("config", f"'{path}' is not valid TOML ({exc}).", "fix the TOML syntax at that line.") from None


def _first_error(exc: pydantic.ValidationError) -> FedftError:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "config"
    if err["type"] == "extra_forbidden":
        section = ".".join(str(p) for p in err["loc"][:-1])
        valid = _valid_keys(section)
        return FedftError(field, "is not a known setting.", f"remove it or use one of: {', '.join(valid)}.")
    msg = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    got_text = "" if isinstance(got, dict) or err["type"] == "value_error" else f" (got {got!r})"
    return FedftError(field, f"{msg}{got_text}.", "change that value in the config or with --set.")


def _valid_keys(section: str) -> list[str]:
    model: type[BaseModel] = FedftConfig
    for part in [p for p in section.split(".") if p]:
        annotation = model.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def validate(raw: dict[str, Any]) -> FedftConfig:
    """Validate a raw dict (from TOML) against the schema (single fields and unknown keys)."""
    try:
        return FedftConfig.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise _first_error(exc) from None


def check_sections(cfg: FedftConfig) -> None:
    """Rules that span sections and need nothing but the config (sampling, replies, Ray, faults)."""
    if cfg.simulation.clients_per_round > cfg.partition.num_clients:
        raise FedftError(
            "simulation.clients_per_round",
            f"{cfg.simulation.clients_per_round} is more than partition.num_clients={cfg.partition.num_clients}.",
            "sample at most as many clients as there are.",
        )
    if cfg.simulation.min_replies > cfg.simulation.clients_per_round:
        raise FedftError(
            "simulation.min_replies",
            f"{cfg.simulation.min_replies} is more than simulation.clients_per_round={cfg.simulation.clients_per_round}, so every round would be skipped.",
            "require at most as many replies as clients are sampled.",
        )
    if cfg.simulation.min_clients > cfg.partition.num_clients:
        raise FedftError("simulation.min_clients", f"{cfg.simulation.min_clients} is more than partition.num_clients={cfg.partition.num_clients}.", "wait for at most as many clients as there are (0 = all).")
    if cfg.simulation.ray_num_cpus and cfg.simulation.ray_address:
        raise FedftError("simulation.ray_num_cpus", f"is set with simulation.ray_address={cfg.simulation.ray_address!r}: a running cluster's CPUs are set by `ray start`.", "drop ray_num_cpus, or start the cluster with `ray start --num-cpus N`.")
    if cfg.simulation.backend == "local" and cfg.simulation.ray_address:
        raise FedftError("simulation.backend", f"is 'local' with simulation.ray_address={cfg.simulation.ray_address!r}: the local backend runs on this machine only.", "set backend = \"ray\" to use the cluster, or drop ray_address.")
    f = cfg.faults
    if f.dropout_probability + f.crash_probability + f.straggler_probability > 1.0:
        raise FedftError(
            "faults",
            f"dropout_probability + crash_probability + straggler_probability = {f.dropout_probability + f.crash_probability + f.straggler_probability:g} is more than 1 (a client gets at most one fault per round).",
            "lower the probabilities so they sum to at most 1.",
        )
    if f.straggler_probability > 0 and f.straggler_delay == 0:
        raise FedftError("faults.straggler_delay", "is 0, so stragglers would not be late.", "set the delay in seconds, e.g. longer than simulation.round_timeout to time them out.")
    if cfg.attack.kind == "scale" and cfg.attack.scale == 1.0:
        raise FedftError("attack.scale", "is 1, so the 'scale' attack would send honest updates.", "set attack.scale to the factor lambda, e.g. 10.")
    if cfg.audit.mia and cfg.partition.method == "roles":
        raise FedftError("audit.mia", "supports labelled (image) data only, not next-character text.", "set audit.mia = false for text runs.")
    if cfg.audit.canaries and cfg.partition.method == "roles":
        raise FedftError("audit.canaries", "supports labelled (image) data only, not next-character text.", "set audit.canaries = 0 for text runs.")
    if cfg.simulation.centralised and cfg.privacy.mode == "central":
        raise FedftError("simulation.centralised", "cannot run with privacy.mode = \"central\": user-level DP-FedAvg needs users, and a centralised run has one data holder.",
                         "use privacy.mode = \"local\" (record-level DP-SGD over the union, the reference for both federated modes) or \"none\".")
    if cfg.audit.canary_users and cfg.privacy.mode != "central":
        raise FedftError("audit.canary_users", f"audits user-level DP, but privacy.mode is \"{cfg.privacy.mode}\".",
                         "set privacy.mode = \"central\" (privacy.noise_multiplier = 0 for a non-private reference), or use audit.canaries (records).")
    if cfg.audit.canary_users and cfg.audit.canaries:
        raise FedftError("audit.canary_users", "and audit.canaries are both set; one run reports one ε lower bound.", "set one of them to 0.")
    canaries, name = (cfg.audit.canary_users, "audit.canary_users") if cfg.audit.canary_users else (cfg.audit.canaries, "audit.canaries")
    if cfg.audit.guesses > canaries:
        raise FedftError("audit.guesses", f"= {cfg.audit.guesses} is more than {name} = {canaries}.", "make at most one guess per canary (0 = half the canaries).")


def raw_config(source: str | Path | dict[str, Any] | FedftConfig, overrides: list[str] | None = None) -> dict[str, Any]:
    """A path, a dict or a config, plus `--set` overrides, as a raw dict (not yet validated)."""
    if isinstance(source, FedftConfig):
        raw = source.model_dump()
    elif isinstance(source, dict):
        raw = copy.deepcopy(source)  # any values, as TOML gives (datetimes too); validation judges them
    else:
        raw = read_toml(source)
    return apply_overrides(raw, overrides)


def read_config(source: str | Path | dict[str, Any] | FedftConfig, overrides: list[str] | None = None) -> FedftConfig:
    """The config checked against the schema and `check_sections`; the jobs that run it
    add the rules that need data, models or strategies (`fedft.jobs.validate.load_config`)."""
    cfg = validate(raw_config(source, overrides))
    check_sections(cfg)
    return cfg


def to_toml(cfg: FedftConfig) -> str:
    import tomli_w

    return tomli_w.dumps(_drop_none(cfg.model_dump(mode="json")))


def _drop_none(raw: dict[str, Any]) -> dict[str, Any]:
    """TOML has no null: an unset optional key (None) is left out, which reads back as None."""
    return {k: _drop_none(v) if isinstance(v, dict) else v for k, v in raw.items() if v is not None}

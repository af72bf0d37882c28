"""The run configuration's schema: one small pydantic model per TOML section.

Each field has its default and a comment saying what it means; unknown keys are
errors, so a typo never silently falls back to a default. Only single-field rules
live here; rules that span sections are in `fedft.config.loading` (those that need
nothing but the config) and `fedft.jobs.validate` (those that need data, models,
strategies or privacy accounting).
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from fedft.errors import FedftError


class _Section(BaseModel):
    # NaN and infinity are never meaningful settings (a NaN passes no range check
    # silently and an infinite timeout never ends), so they are rejected everywhere.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # A NUL byte is never a name or a path, and it would crash the first file call.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain a NUL character")
        return value


class DataConfig(_Section):
    name: str = "mnist-5k"  # registry name: mnist-5k, digits, fashion-mnist, hf:<hub id>; or your loader as package.module:function
    path: str = ""  # where a file-backed dataset lives ("" = its default place)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)  # server-side test set, never seen by clients
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)  # each client's local validation split
    # text datasets only (data.name = "text" or "hf:flwrlabs/shakespeare"; fedft/ml/data/text.py)
    seq_len: int = Field(80, ge=1)  # characters per training sequence (LEAF: 80)
    min_chars: int = Field(2000, ge=1)  # roles with fewer characters are small roles
    small_roles: Literal["drop", "merge"] = "drop"  # drop them, or merge them into one client
    max_client_sequences: int = Field(0, ge=0)  # cap per client (seeded subset); 0 = all


class PartitionConfig(_Section):
    method: Literal["iid", "dirichlet", "pathological", "shards", "roles"] = "iid"  # roles: text data, one client per speaking role
    num_clients: int = Field(10, ge=1)
    alpha: float = Field(0.5, gt=0.0)  # dirichlet concentration: small = skewed labels
    classes_per_client: int = Field(2, ge=1)  # pathological
    shards_per_client: int = Field(2, ge=1)  # shards (McMahan et al. use 2)


class ModelConfig(_Section):
    name: str = "seed_cnn"  # registry name: seed_cnn, fedavg_cnn, dp_cnn, seed_rnn; or your builder as package.module:function
    init_from: str = ""  # checkpoint to start from ("" = random init from `seed`)
    # char_lstm sizes (LEAF's Shakespeare model: 8, 256, 2)
    embedding_dim: int = Field(8, ge=1)
    hidden_size: int = Field(256, ge=1)
    num_layers: int = Field(2, ge=1)

    reset_head: bool = False  # with init_from: a new seeded head (other classes or class count)
    path: str = ""  # name = "hf": a save_pretrained folder (or a hub id, online only); needs fedft[llm]
    # seed_cnn / fedavg_cnn / dp_cnn options for DP-SGD (docs/audit.md, docs/privacy.md): the defaults are the published models
    activation: Literal["relu", "tanh"] = "relu"  # tanh = tempered sigmoid (Papernot et al. 2021): bounded activations suit clipped, noisy gradients
    norm: Literal["none", "group"] = "none"  # "group": GroupNorm(8) after each conv, per-example so Opacus accepts it (BatchNorm is not)


class TrainConfig(_Section):
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.05, gt=0.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)  # sgd only
    weight_decay: float = Field(0.0, ge=0.0)
    local_epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)


_LAST_K = re.compile(r"^last:(\d+)$")
FinetuneMode = str | list[str]


def check_mode_syntax(mode: FinetuneMode) -> None:
    """Shape of `finetune.mode` alone (the names are checked against a model in `fedft.ml.finetune.trainable_names`)."""
    fix = 'use "full", "head", "last:K" (K >= 1) or a list of parameter-name patterns such as ["head.*"].'
    if isinstance(mode, list):
        if not mode or any(not isinstance(p, str) or not p.strip() for p in mode):
            raise FedftError("finetune.mode", f"pattern list {mode!r} is empty or has an empty pattern.", fix)
        return
    if mode in ("full", "head"):
        return
    match = _LAST_K.match(mode)
    if not match or int(match.group(1)) < 1:
        raise FedftError("finetune.mode", f"'{mode}' is not a fine-tuning mode.", fix)


class FinetuneConfig(_Section):
    mode: str | list[str] = "full"  # full, head, last:K, or parameter-name glob patterns
    body_lr_scale: float = Field(1.0, gt=0.0)  # lr of trainable non-head layers = train.lr * this

    @pydantic.field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Any:
        if not isinstance(value, (str, list)):
            raise ValueError(f"must be a string or a list of patterns (got {value!r})")
        try:
            check_mode_syntax(value)
        except FedftError as exc:
            raise ValueError(f"{exc.problem.rstrip('.')}; {exc.fix.rstrip('.')}") from None
        return value


class LoraConfig(_Section):
    """LoRA adapters on a `model.name = "hf"` model (docs/lora.md): only adapter tensors travel."""

    rank: int = Field(8, ge=0)  # r of every adapter; 0 = no adapters (the hf model trains as finetune.mode says)
    alpha: float = Field(16.0, gt=0.0)  # the update is (alpha / r) * B A
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # on the adapter's input
    target_modules: list[str] = ["c_attn", "c_proj", "c_fc"]  # module names that get adapters (GPT-2's attention and MLP projections)
    mode: Literal["lora", "ffa"] = "lora"  # ffa: FFA-LoRA (Sun et al. 2024), A frozen at its seeded init, only B trains and travels
    ranks: list[int] = []  # per-client ranks cycled over client ids, aggregated by FlexLoRA ([] = every client `rank`)

    @field_validator("ranks")
    @classmethod
    def _positive_ranks(cls, value: list[int]) -> list[int]:
        if any(r < 1 for r in value):
            raise ValueError(f"{value} has a rank below 1 (every client needs an adapter)")
        return value


class PretrainConfig(_Section):
    """Central training on public data (`fedft pretrain`)."""

    dataset: str = ""  # public dataset by name, e.g. fashion-mnist or digits; must differ from data.name ("text": the play's roles that are not clients)
    path: str = ""  # where a file-backed public dataset lives ("" = its default place; text: the clients' play, data.path)
    hf_config: dict[str, str | int | float | bool] = {}  # model.name = "hf": a fresh causal LM from this transformers config, e.g. {model_type = "llama", hidden_size = 128, ...} (vocab_size defaults to the 97 character ids); {} = continue from model.path
    classes: list[int] = []  # keep only these classes, relabelled 0..k-1 ([] = all)
    max_examples: int = Field(0, ge=0)  # a seeded sample of this many (0 = all)
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)  # held-out public validation split
    epochs: int = Field(3, ge=1)
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.05, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    batch_size: int = Field(64, ge=1)


class CompareConfig(_Section):
    """Arms for `fedft run` / `fedft compare`: each a list of --set overrides on this config."""

    arms: dict[str, list[str]] = {}  # arm name -> ["key=value", ...]; {} = a single run
    reference: str = ""  # arm whose final accuracy the others are timed against ("" = first arm)
    pretrain: bool = False  # first pretrain into <out>/pretrained/; "{pretrained}" in arms = its model.pt
    targets: list[float] = []  # extra accuracy thresholds: a "rounds to <t>" column each


class StrategyConfig(_Section):
    """`name` plus that strategy's own parameters, checked by the strategy registry."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    name: str = "fedavg"  # registry name, or your factory as package.module:function
    # Bounds on each reply before any strategy sees it (fedft/fl/server/validation.py), so one
    # client cannot steer the aggregate. `fedft server`/`launch` turn the norm bound on unless set.
    cap_num_examples: bool = True  # num-examples above the client's partition training-set size is capped at it
    max_update_norm: float = Field(0.0, ge=0.0)  # L2 bound on ||update - global||; 0 = none
    max_update_norm_median: float = Field(0.0, ge=0.0)  # bound = this x the round's lower-median update norm; 0 = none (deployment: 2)
    update_norm_action: Literal["clip", "reject"] = "clip"  # an update beyond the bound is scaled onto it, or dropped

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class AttackConfig(_Section):
    """Simulated malicious clients (fedft.fl.client.attack). With update u = y - x (local
    minus received global model): sign_flip sends x - scale*u, scale sends x + scale*u,
    gaussian sends x + N(0, noise_std^2) noise instead of u, label_flip trains on
    labels c -> C-1-c. Which clients attack is a pure function of (seed, client id)."""

    kind: Literal["none", "sign_flip", "scale", "gaussian", "label_flip"] = "none"
    fraction: float = Field(0.0, ge=0.0, le=1.0)  # round(fraction * num_clients) clients attack in every round they are sampled
    scale: float = Field(1.0, gt=0.0)  # lambda for sign_flip and scale
    noise_std: float = Field(1.0, gt=0.0)  # gaussian
    seed: int = Field(0, ge=0)  # picks the attackers
    num_examples: float = Field(0.0, ge=0.0)  # > 0: attackers also claim this many examples (FedAvg's weight); 0: their true count


class ClientResources(_Section):
    num_cpus: float = Field(1.0, gt=0.0)  # per virtual client; Ray runs cores/num_cpus at once
    num_gpus: float = Field(0.0, ge=0.0)  # fractions share a GPU, e.g. 0.25


class SimulationConfig(_Section):
    rounds: int = Field(5, ge=1)
    clients_per_round: int = Field(10, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    client_resources: ClientResources = ClientResources()
    round_timeout: float = Field(600.0, gt=0.0)  # seconds to wait for replies per round
    backend: Literal["ray", "local", "auto"] = "ray"  # where clients run: "ray" = Ray actors, Flower's simulation engine (clusters, ray_address, GPUs); "local" = worker processes forked from fedft's own on this machine, no Ray start (faster start-up); "auto" = "local" on Linux unless ray_address is set, clients may use CUDA, or this process already runs Ray. same results either way (docs/scaling.md)
    ray_address: str = ""  # "" = start a local Ray; else connect, e.g. "auto" or "HOST:6379"
    ray_num_cpus: int = Field(0, ge=0)  # CPUs the local Ray (or the local backend) may use; 0 = all of this machine's (not with ray_address)
    clients_per_call: int = Field(0, ge=0)  # clients trained per worker call (one message for several clients; fedft/fl/packing.py): 1 = one message per client; 0 = auto (from 64 clients per round up, about 4 calls per worker and round; not with injected stragglers). Same results either way; in fedft run only (a deployed node trains its own data)
    min_clients: int = Field(0, ge=0)  # start once this many client nodes joined with valid partition ids and sample only them; 0 = all (fedft launch --clients K: K)
    min_replies: int = Field(1, ge=0)  # fewer successful replies: the round is skipped (global model unchanged) and recorded
    evaluate_every: int = Field(1, ge=1)  # central test-set evaluation after round 0, every K-th round and the last; other rows leave test_* empty
    centralised: bool = False  # the reference arm (docs/privacy.md): no federation, one model on the union of the clients' training records, rounds x train.local_epochs epochs, evaluated each round; privacy.mode = "local": record-level DP-SGD over the union


class FaultsConfig(_Section):
    """Injected client faults for robustness studies. Each sampled client gets at most one
    fault per round, drawn from (seed, round, client id) alone, so runs and resumes replay them."""

    dropout_probability: float = Field(0.0, ge=0.0, le=1.0)  # client goes offline: the server gets Flower's NODE_UNAVAILABLE error reply
    crash_probability: float = Field(0.0, ge=0.0, le=1.0)  # ClientApp raises after local training, before replying
    straggler_probability: float = Field(0.0, ge=0.0, le=1.0)  # client replies `straggler_delay` seconds late
    straggler_delay: float = Field(0.0, ge=0.0)  # seconds; past simulation.round_timeout the reply is counted as timed out


class DevicesConfig(_Section):
    """Simulated devices on a virtual clock (docs/cross-device.md): each client's compute speed,
    bandwidths and availability, so a run also reports the deployment's simulated time."""

    profiles: str = ""  # "" = no device model (no virtual clock); "seeded" = drawn from the distributions below with the run's seed; or a CSV file, one row per client (docs/cross-device.md)
    examples_per_second: float = Field(100.0, gt=0.0)  # median training speed (log-normal across devices)
    download_mbps: float = Field(20.0, gt=0.0)  # median download bandwidth, megabits per second (log-normal)
    upload_mbps: float = Field(5.0, gt=0.0)  # median upload bandwidth (log-normal)
    spread: float = Field(0.8, ge=0.0)  # sigma of the log-normals: 0 = identical devices
    dropout_probability: float = Field(0.0, ge=0.0, lt=1.0)  # a selected device fails to report (its own coin per round)
    online_hours: float = Field(24.0, gt=0.0, le=24.0)  # diurnal availability: online this many hours a day from a random local hour; 24 = always


class RoundPolicyConfig(_Section):
    """How a round closes (docs/cross-device.md); "deadline" and "fedbuff" need devices.profiles."""

    name: Literal["sync", "deadline", "fedbuff"] = "sync"  # sync: wait for every selected client (or the deadline); deadline: over-select, close at the clients_per_round-th report or the deadline (Bonawitz et al. 2019); fedbuff: asynchronous, aggregate every buffer_size reports (Nguyen et al. 2022)
    deadline_seconds: float = Field(600.0, gt=0.0)  # virtual seconds a round waits for reports (sync, deadline) or a task before it counts as lost (fedbuff)
    over_selection: float = Field(0.3, ge=0.0)  # deadline: select ceil(clients_per_round x (1 + this)) clients
    buffer_size: int = Field(10, ge=1)  # fedbuff: K, reports per server update
    concurrency: int = Field(0, ge=0)  # fedbuff: clients training at once; 0 = simulation.clients_per_round
    staleness_exponent: float = Field(0.5, ge=0.0)  # fedbuff: a report s versions old is weighted (1 + s)^-this (0.5: FedBuff's 1/sqrt(1 + s))
    max_staleness: int = Field(20, ge=0)  # fedbuff: reports staler than this are dropped


class CompressionConfig(_Section):
    """Client-to-server update compression (fedft/fl/compression.py), counted in bytes_up."""

    kind: Literal["none", "int8", "topk"] = "none"  # int8: each tensor's update quantised to 8 bits with one scale (stochastic rounding); topk: the largest-magnitude fraction of each tensor's update
    topk_fraction: float = Field(0.01, gt=0.0, le=1.0)  # topk: share of each tensor's entries sent
    error_feedback: bool = True  # what compression dropped is added to the client's next update (Seide et al. 2014; Karimireddy et al. 2019); kept in the client's state


class CheckpointConfig(_Section):
    every: int = Field(1, ge=0)  # write checkpoint.pt after every K-th round and the last; 0 = never (resume restarts the run)
    client_state: bool = True  # clients return their Flower Context.state with each reply so a resume can restore it


class DeployConfig(_Section):
    """Options of a real deployment (`fedft launch` / `fedft server`; docs/deployment.md#secure-aggregation).
    With secure_aggregation, each round runs Flower's own SecAgg+ (SecAggPlusWorkflow on the server,
    secaggplus_mod on the clients): the server learns only the weighted mean of the surviving clients' updates."""

    secure_aggregation: bool = False  # aggregate with Flower's SecAgg+: clients send masked, quantised updates; no update is seen alone
    secagg_num_shares: int = Field(0, ge=0)  # each client's secrets are split among this many clients, itself included; 0 = every sampled client (plain SecAgg); else >= 3, <= clients_per_round
    secagg_reconstruction_threshold: int = Field(0, ge=0)  # shares that rebuild a secret: a dropout's masks need this many survivors among its share holders; 0 = a majority of the shares (floor(shares / 2) + 1, at least 2)
    secagg_clipping_range: float = Field(8.0, gt=0.0)  # each coordinate of (num-examples / max_weight) x update is clipped to +-this before quantisation (Flower's default)
    secagg_quantization_range: int = Field(2**22, ge=2)  # quantisation levels over [-clipping_range, clipping_range]; clients_per_round x this must stay below 2**32 (Flower's modulus)
    secagg_max_weight: float = Field(0.0, ge=0.0)  # the largest num-examples a client may weigh with; 0 = the largest client training set the server knows of
    secagg_timeout: float = Field(0.0, ge=0.0)  # seconds each of SecAgg+'s four stages waits for replies; 0 = simulation.round_timeout


class PrivacyConfig(_Section):
    """Differential privacy (see fedft/privacy/): `local` = record-level DP-SGD on
    every client (Opacus); `central` = user-level DP-FedAvg at the server
    (fedft.privacy.central); `distributed` = user-level DP where each client adds a
    share of Skellam noise to its integer-encoded update and the server sees only the
    (simulated) secure aggregate (fedft.privacy.distributed). Give `noise_multiplier`, or
    `target_epsilon` to have fedft calibrate it; with both, the noise is fixed and
    `target_epsilon` is the budget that no client (local) or run (central) may exceed."""

    mode: Literal["none", "local", "central", "distributed"] = "none"
    noise_multiplier: float | None = Field(None, ge=0.0)  # Gaussian noise std / clipping norm
    target_epsilon: float | None = Field(None, gt=0.0)  # privacy budget ε
    target_delta: float = Field(1e-5, gt=0.0, lt=1.0)  # δ; keep it below 1/(records or users protected)
    accountant: Literal["pld", "rdp", "prv"] = "pld"  # accountant of the headline ε (an upper bound) and of noise calibration: "pld" (dp-accounting's privacy loss distribution, the tightest), or Opacus' "rdp" / "prv"; summary.json reports all three and the gdp approximation beside it
    max_grad_norm: float = Field(1.0, gt=0.0)  # local: per-sample gradient clipping bound
    state_dir: str = ""  # local, simulation: also keep each client's accountant history in <state_dir>/client-<id>.json (a deployed client uses its own --state-dir)
    # where the DP noise comes from (a deployment forces "os" whatever the config says), and what local-DP clients send:
    noise_source: Literal["os", "seeded"] = "os"  # "os": local DP-SGD noise and batches, central noise and Poisson cohorts from OS entropy, which no published file can reproduce; "seeded": all of them from the run's seed, reproducible but NOT private (anyone with config.toml or model.pt can regenerate and subtract the noise; summary.json says private = false)
    client_metrics: Literal["withheld", "clear", "none"] = "withheld"  # under DP, what replies carry besides the update: "withheld" = num-examples and the accounting (listed in summary.json's outside_epsilon), no train_*/val_*; "clear" = also train_*/val_* computed on private data (outside ε); "none" = also num-examples sent as 1 (unweighted mean)

    clipping: Literal["server_fixed", "client_fixed", "server_adaptive", "client_adaptive"] = "server_fixed"  # central
    clipping_norm: float = Field(1.0, gt=0.0)  # central, distributed: L2 bound on a client's update (adaptive: the initial value)
    target_clipped_quantile: float = Field(0.5, ge=0.0, le=1.0)  # central adaptive (Andrew et al. 2021)
    clip_norm_lr: float = Field(0.2, gt=0.0)  # central adaptive
    clipped_count_stddev: float | None = Field(None, ge=0.0)  # central adaptive (None: clients_per_round / 20)
    # central: "poisson" = each client joins a round with prob clients_per_round / num_clients (accounted with
    # amplification); "fixed" = exactly clients_per_round clients (accounted without amplification, q = 1);
    # "cyclic" = the clients, shuffled once from the seed, in num_clients // clients_per_round fixed groups taking
    # turns (each user every period-th round, accounted for the rounds each user actually joined, no amplification)
    client_sampling: Literal["poisson", "fixed", "cyclic"] = "poisson"
    # central, docs/privacy.md#correlated-noise: the noise across rounds (fedft/privacy/matrix_mechanism.py): "independent" =
    # DP-FedAvg's fresh Gaussian every round; "tree" = DP-FTRL's tree aggregation; "banded" = banded matrix factorization
    # (the banded square root); the correlated ones need client_sampling = "fixed" or "cyclic" and fixed clipping
    noise_mechanism: Literal["independent", "tree", "banded"] = "independent"
    bands: int | None = Field(None, ge=1)  # banded: diagonals of the encoder; None = the cyclic period (num_clients // clients_per_round), or all rounds under "fixed"
    noise_cohort_size: int | None = Field(None, ge=1)  # central: pfl's noise-cohort simulation: noise on the mean as for this many clients per round (σC/noise_cohort_size) while clients_per_round train; ε then describes that planned cohort and a population as much larger, not this run
    # distributed (docs/privacy.md#distributed-dp): each client clips to clipping_norm, scales by 1/granularity, rotates,
    # rounds, adds its Skellam noise share and sends it mod 2^secagg_bits; needs client_sampling = "fixed"
    secagg_bits: int = Field(20, ge=2, le=62)  # distributed: bits of every coordinate of a share and of their sum (modulus 2^bits)
    secagg_min_reports: int = Field(0, ge=0)  # distributed: fewer shares arrive and the round aggregates nothing (SecAgg aborts); 0 = a majority of clients_per_round
    granularity: float | None = Field(None, gt=0.0)  # distributed: the real value of one integer step; None = derived from bits, clipping_norm, noise, clients_per_round and the model size
    secagg_rotation: bool = True  # distributed: randomly rotate (Walsh-Hadamard, shared random signs) before rounding, so no coordinate is large ("flattening")

    @field_validator("noise_source", "accountant", mode="before")
    @classmethod
    def _retired_values(cls, value: Any, info: pydantic.ValidationInfo) -> Any:
        if isinstance(value, str) and (reason := _RETIRED.get((info.field_name or "", value))) is not None:  # any other type: the Literal's own error
            raise ValueError(reason)
        return value


# Values that once meant something wrong for privacy: refused with why and what to write instead.
_RETIRED = {
    ("noise_source", "derived"): "'derived' is now 'seeded', and no longer the default: noise derived from the seed can be regenerated and subtracted by anyone who has "
                                 "config.toml or model.pt; drop the key for private noise from OS entropy, or write noise_source = \"seeded\" for a reproducible run that summary.json marks as not private",
    ("accountant", "gdp"): "'gdp' is a central-limit approximation that can understate ε (by 2.5x at few steps), so it cannot be the headline or calibrate the noise; "
                           "use \"prv\" (tight upper bound) or \"rdp\": summary.json reports epsilon_gdp beside them",
}


class AuditConfig(_Section):
    """Empirical privacy audit of the final global model (see fedft/audit/)."""

    mia: bool = False  # loss-threshold membership inference (Yeom et al. 2018); writes mia_auc, mia_tpr_at_1pct_fpr to summary.json
    mia_samples: int = Field(500, ge=10)  # members (clients' training records) and as many non-members (server test set); fewer if the data has fewer
    # one-run ε lower bound (Steinke, Nasr & Jagielski 2023; docs/audit.md): writes epsilon_lower_bound, audit_* to summary.json
    canaries: int = Field(0, ge=0)  # mislabeled records taken from the clients' pool, each in its client's shard with probability 1/2; 0 = off
    canary_kind: Literal["mislabeled", "noise"] = "mislabeled"  # a real record with a random wrong label; "noise": a uniform-noise image with a random label (easier to detect)
    canary_users: int = Field(0, ge=0)  # central DP: canary users (fedft/privacy/canary_users.py), each a fixed random update direction, in the run with probability 1/2; 0 = off
    guesses: int = Field(0, ge=0)  # r guesses: "in" for the best scores, "out" for the worst, half each; 0 = half the canaries
    confidence: float = Field(0.95, gt=0.0, lt=1.0)  # the bound holds with this probability (beta = 1 - confidence)
    delta: float | None = Field(None, gt=0.0, lt=1.0)  # the audit's δ; None = privacy.target_delta (1e-5 by default)

    def guess_count(self) -> int:
        """r: the configured guesses, or half the canaries."""
        return self.guesses or (self.canaries or self.canary_users) // 2


class PluginsConfig(_Section):
    """Your own code (fedft/config/plugins.py): modules every process imports before it builds
    anything, so their `register_model` / `register_dataset` / `register_strategy` run there too."""

    modules: list[str] = []  # e.g. ["my_models"]: found in the current folder or on PYTHONPATH

    @field_validator("modules")
    @classmethod
    def _module_names(cls, value: list[str]) -> list[str]:
        bad = [m for m in value if not _MODULE_NAME.match(m)]
        if bad:
            raise ValueError(f"'{bad[0]}' is not a module name (write it as in an import: package.module)")
        return value


_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class OutputConfig(_Section):
    dir: str = "runs"  # results go to <dir>/<name>-<timestamp>/
    plot_partitions: bool = False  # also write partitions.png/.pdf into the run folder (label counts per client)
    # experiment trackers fed every round's metrics row (docs/trackers.md); each needs its extra: pip install 'fedft[tensorboard]'
    loggers: list[Literal["tensorboard", "mlflow", "wandb"]] = []
    mlflow_tracking_uri: str = ""  # "" = sqlite:///<run dir>/mlruns/mlflow.db; or a server, e.g. http://127.0.0.1:5000
    wandb_mode: Literal["offline", "online"] = "offline"  # "offline": nothing leaves the machine (`wandb sync` uploads later)

    @field_validator("loggers")
    @classmethod
    def _each_logger_once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists a logger twice; name each of tensorboard, mlflow, wandb at most once")
        return value


_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class FedftConfig(_Section):
    name: str = Field("fedft", min_length=1)  # the results folder's name: letters, digits, '-', '_', '.'
    seed: int = Field(0, ge=0, le=2**63 - 1)  # TOML's integer range; torch seeds take 64 bits
    data: DataConfig = DataConfig()
    partition: PartitionConfig = PartitionConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    strategy: StrategyConfig = StrategyConfig()
    simulation: SimulationConfig = SimulationConfig()
    faults: FaultsConfig = FaultsConfig()
    devices: DevicesConfig = DevicesConfig()
    round_policy: RoundPolicyConfig = RoundPolicyConfig()
    compression: CompressionConfig = CompressionConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    deploy: DeployConfig = DeployConfig()
    output: OutputConfig = OutputConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    attack: AttackConfig = AttackConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    lora: LoraConfig = LoraConfig()
    pretrain: PretrainConfig = PretrainConfig()
    compare: CompareConfig = CompareConfig()
    audit: AuditConfig = AuditConfig()
    plugins: PluginsConfig = PluginsConfig()

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        # It names a folder inside output.dir: no separators, no '..', nothing absolute.
        if not _PLAIN_NAME.match(value) or value in (".", ".."):
            raise ValueError("must be a plain file name (letters, digits, '-', '_', '.'; not '.' or '..')")
        return value

    def reports_per_round(self) -> int:
        """Updates one round aggregates: FedBuff's buffer, else clients_per_round (the DP
        mean's fixed denominator, and what local DP's calibration expects per round)."""
        return self.round_policy.buffer_size if self.round_policy.name == "fedbuff" else self.simulation.clients_per_round

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> FedftConfig:
        return cls.model_validate(json.loads(text))

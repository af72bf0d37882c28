"""Hugging Face causal LMs (`model.name = "hf"`), optionally with LoRA adapters (peft).

`model.path` is a `save_pretrained` folder (or a hub id, which works only online).
Tokens are fedft's character vocabulary (`fedft.ml.data.text.Vocabulary`, 97 ids) fed
as `input_ids`: no tokenizer files are needed, and the model's `vocab_size` must be at
least the data's vocabulary (ids above it are never targets). transformers and peft are
imported only here and only when such a model is built, so the rest of fedft runs
without the `fedft[llm]` extra.

With `lora.rank` > 0 the base model is wrapped by peft's `get_peft_model`: every module
named in `lora.target_modules` gets W x + (alpha / r) B A x, with A (r x in) drawn by
peft from torch's global generator (a caller seeds it: `RunContext.initial_state`) and
B (out x r) zero. Under FFA-LoRA (`lora.mode = "ffa"`, Sun et al. ICLR 2024) A stays
frozen at that seeded draw and only B trains. With `lora.ranks` a client's model has
its own rank and the server's the largest (`fedft.fl.server.ranks`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fedft.errors import FedftError
from fedft.ml.models.registry import register_model

LLM_FIX = "install the extra: pip install 'fedft[llm]' (transformers, peft, safetensors)."
ADAPTER_PATTERNS = {"lora": ["*.lora_A.*", "*.lora_B.*"], "ffa": ["*.lora_B.*"]}  # finetune patterns of what trains


def lora_active(model_cfg: Any, lora_cfg: Any) -> bool:
    """Whether a run trains LoRA adapters (an `hf` model and `lora.rank` > 0 or `lora.ranks`)."""
    return model_cfg.name == "hf" and (lora_cfg.rank > 0 or bool(lora_cfg.ranks))


def require_llm() -> tuple[Any, Any]:
    """(transformers, peft), or the one-line error saying how to install them."""
    try:
        import peft
        import transformers
    except ImportError as exc:
        raise FedftError("model.name", f"'hf' needs transformers and peft, which are not installed ({exc.name} is missing).", LLM_FIX) from None
    return transformers, peft


@dataclass(frozen=True)
class LoraSpec:
    rank: int
    alpha: float
    dropout: float
    target_modules: tuple[str, ...]
    mode: str = "lora"


class CausalLM(nn.Module):
    """Token ids B x T -> next-token logits B x T x V, as fedft's other text models."""

    def __init__(self, lm: nn.Module, positions: int = 0) -> None:
        super().__init__()
        self.lm: Any = lm  # a transformers model, or peft's wrapper of one
        self.positions = positions  # the model's context length (0 = unbounded)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=x).logits

    def step(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """For `fedft generate`: logits after `x`, given the tokens before it (`state`); the model
        sees the last `positions` tokens, so text longer than its context still generates."""
        history = x if state is None else torch.cat([state, x], dim=1)
        window = history[:, -self.positions:] if self.positions else history
        return self.lm(input_ids=window).logits, history


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers and the hub quiet (no progress bars, sharding notes or offline retries), as before afterwards."""
    transformers, _ = require_llm()
    hf_logging = transformers.utils.logging
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hub_log = logging.getLogger("huggingface_hub")  # offline: it warns about every failed request before the error
    hub_level = hub_log.level
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    hub_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hub_log.setLevel(hub_level)
        if bars:
            hf_logging.enable_progress_bar()


def load_causal_lm(path: str) -> Any:  # a transformers PreTrainedModel
    """The pretrained model at `path`; any failure is one line naming `model.path`."""
    transformers, _ = require_llm()
    if not path:
        raise FedftError("model.path", "is empty; model.name = \"hf\" loads a pretrained model.", "set model.path to a save_pretrained folder (or a hub id, online).")
    local = Path(path).expanduser()
    where = str(local) if local.is_dir() else path
    try:
        with quiet_transformers():
            return transformers.AutoModelForCausalLM.from_pretrained(where, local_files_only=local.is_dir())
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FedftError("model.path", f"cannot load '{path}' as a causal LM ({first[:200]}).",
                         "give a folder written by save_pretrained, or a hub id while online.") from None


def fresh_causal_lm(hf_config: dict[str, Any], vocab_size: int, seq_len: int) -> Any:  # a transformers PreTrainedModel
    """A randomly initialised causal LM from a transformers config given as a dict (`pretrain.hf_config`,
    e.g. {model_type = "llama", hidden_size = 128, ...}; `vocab_size` defaults to fedft's character
    vocabulary). Initialised from torch's global generator: the caller seeds it."""
    transformers, _ = require_llm()
    config = causal_lm_config(hf_config, vocab_size, seq_len)
    try:
        return transformers.AutoModelForCausalLM.from_config(config)
    except ValueError as exc:
        raise FedftError("pretrain.hf_config", f"model_type '{config.model_type}' has no causal LM ({str(exc).splitlines()[0][:160]}).", "use a decoder model type such as llama or gpt2.") from None


def causal_lm_config(hf_config: dict[str, Any], vocab_size: int, seq_len: int) -> Any:  # a transformers PretrainedConfig
    """`pretrain.hf_config` as a transformers config, checked against the data (one line naming the field)."""
    transformers, _ = require_llm()
    options = dict(hf_config)
    model_type = options.pop("model_type", None)
    if not isinstance(model_type, str) or not model_type:
        raise FedftError("pretrain.hf_config", "has no model_type.", 'name one, e.g. {model_type = "llama", hidden_size = 128, num_hidden_layers = 4, ...}.')
    options.setdefault("vocab_size", vocab_size)
    options.setdefault("bos_token_id", 0)  # fedft's id 0 ('unknown'); GPT-2's default 50256 lies outside a character vocabulary
    options.setdefault("eos_token_id", 0)
    try:
        config = transformers.AutoConfig.for_model(str(model_type), **options)
    except (ValueError, KeyError, TypeError) as exc:
        raise FedftError("pretrain.hf_config", f"is not a transformers model config ({str(exc).splitlines()[0][:160]}).",
                         'give model_type and its sizes, e.g. {model_type = "llama", hidden_size = 128, intermediate_size = 352, num_hidden_layers = 4, num_attention_heads = 4}.') from None
    if int(config.vocab_size) < vocab_size:
        raise FedftError("pretrain.hf_config", f"vocab_size = {config.vocab_size} is below the data's {vocab_size} character ids.", f"leave vocab_size out (it defaults to {vocab_size}) or raise it.")
    positions = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    if positions and seq_len > positions:
        raise FedftError("pretrain.hf_config", f"has {positions} positions, fewer than data.seq_len = {seq_len}.", f"set max_position_embeddings (n_positions for GPT-2) >= {seq_len}.")
    if type(config) not in transformers.MODEL_FOR_CAUSAL_LM_MAPPING:
        raise FedftError("pretrain.hf_config", f"model_type '{model_type}' has no causal LM in transformers.", "use a decoder model type such as llama or gpt2.")
    return config


def add_adapters(lm: nn.Module, spec: LoraSpec) -> nn.Module:
    """`lm` with peft LoRA adapters on `spec.target_modules` (under FFA, A frozen)."""
    _, peft = require_llm()
    from transformers.pytorch_utils import Conv1D as conv1d  # GPT-2's projections store W transposed
    fan_in_fan_out = any(isinstance(m, conv1d) for n, m in lm.named_modules() if n.rsplit(".", 1)[-1] in spec.target_modules)
    config = peft.LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=spec.dropout, target_modules=list(spec.target_modules),
                             fan_in_fan_out=fan_in_fan_out, bias="none")
    try:
        model = peft.get_peft_model(lm, config)
    except ValueError as exc:
        raise FedftError("lora.target_modules", f"{list(spec.target_modules)} do not fit this model ({str(exc).splitlines()[0][:200]}).",
                         "name the model's linear projections, e.g. [\"c_attn\", \"c_proj\", \"c_fc\"] for GPT-2 or [\"q_proj\", \"v_proj\"] for Llama.") from None
    if spec.mode == "ffa":
        for name, param in model.named_parameters():
            if ".lora_A." in name:
                param.requires_grad_(False)
    return model


@register_model("hf")
def hf(input_shape: tuple[int, ...] = (80,), num_classes: int = 97, path: str = "", lora_rank: int = 0, lora_alpha: float = 16.0,
       lora_dropout: float = 0.0, lora_target_modules: tuple[str, ...] = (), lora_mode: str = "lora") -> nn.Module:
    """The causal LM at `path` (checked against the data's sequence length and vocabulary), with adapters when `lora_rank` > 0."""
    lm = load_causal_lm(path)
    vocab = int(lm.get_input_embeddings().num_embeddings)
    if vocab < num_classes:
        raise FedftError("model.path", f"the model's vocabulary has {vocab} tokens, fewer than the data's {num_classes}.", "use a model with vocab_size >= the data's vocabulary (97 for text).")
    positions = getattr(lm.config, "n_positions", None) or getattr(lm.config, "max_position_embeddings", None)
    if positions and input_shape and input_shape[0] > positions:
        raise FedftError("data.seq_len", f"{input_shape[0]} is longer than the model's {positions} positions.", f"set data.seq_len <= {positions}.")
    if lora_rank > 0:
        lm = add_adapters(lm, LoraSpec(lora_rank, lora_alpha, lora_dropout, tuple(lora_target_modules), lora_mode))
    return CausalLM(lm, int(positions or 0))

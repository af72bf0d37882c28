"""Models by name; every one passes Opacus' ModuleValidator (no BatchNorm)."""

from fedft.ml.models import char_lstm as _char_lstm  # noqa: F401  (registers)
from fedft.ml.models import cnn as _cnn  # noqa: F401  (registers)
from fedft.ml.models import hf as _hf  # noqa: F401  (registers; imports transformers only when built)
from fedft.ml.models import rnn as _rnn  # noqa: F401  (registers)
from fedft.ml.models.hf import ADAPTER_PATTERNS, lora_active
from fedft.ml.models.registry import build_model, check_model_name, model_key, model_names, model_options, model_origin, register_model

__all__ = ["ADAPTER_PATTERNS", "build_model", "lora_active", "check_model_name", "model_key", "model_names", "model_origin", "model_options", "register_model"]

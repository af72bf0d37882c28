"""Models by name; every one passes Opacus' ModuleValidator (no BatchNorm)."""

from fedft.ml.models import char_lstm as _char_lstm  # noqa: F401  (registers)
from fedft.ml.models import cnn as _cnn  # noqa: F401  (registers)
from fedft.ml.models import rnn as _rnn  # noqa: F401  (registers)
from fedft.ml.models.registry import build_model, check_model_name, model_key, model_names, model_options, model_origin, register_model

__all__ = ["build_model", "check_model_name", "model_key", "model_names", "model_origin", "model_options", "register_model"]

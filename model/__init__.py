"""The nw2 world model: configuration, network and test-time adaptation."""

from .adapt import adapted_step, fit_linear_transition
from .config import PRESETS, ModelConfig, from_preset
from .network import Model

__all__ = ["Model", "ModelConfig", "PRESETS", "from_preset", "adapted_step", "fit_linear_transition"]

"""The paper's experiments as presets and one runner (``amnesiac reproduce``)."""

from ..names import STAGES
from .presets import DESCRIPTIONS, PRESETS, PROFILES, Settings, settings_for

__all__ = ["DESCRIPTIONS", "PRESETS", "PROFILES", "STAGES", "Settings", "reproduce", "settings_for"]


def __getattr__(name: str):  # the runner imports PyTorch: load it on first use
    if name == "reproduce":
        from .runner import reproduce

        return reproduce
    raise AttributeError(f"module 'amnesiac.experiments' has no attribute {name!r}")

"""The paper's experiments as presets and one runner (``amnesiac reproduce``)."""

from .presets import DESCRIPTIONS, PRESETS, PROFILES, Settings, settings_for
from .runner import STAGES, reproduce

__all__ = ["DESCRIPTIONS", "PRESETS", "PROFILES", "STAGES", "Settings", "reproduce", "settings_for"]

"""Adapters for training frameworks. Each module imports its framework, so import the one you use:
``from amnesiac.integrations.lightning import AmnesiacCallback`` (needs ``pip install amnesiac[lightning]``)."""

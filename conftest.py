"""Collection rules for the doctest pass over src/: modules that need an optional extra are skipped when it
is not installed (their tests skip the same way)."""

import importlib.util

collect_ignore = []
if importlib.util.find_spec("lightning") is None:
    collect_ignore.append("src/amnesiac/integrations/lightning.py")
if importlib.util.find_spec("transformers") is None:
    collect_ignore.append("src/amnesiac/integrations/transformers.py")

"""Names and choices the command line shows, in a module that imports nothing heavy.

``amnesiac --help`` and every subcommand's help are built from these without importing PyTorch; the modules
that do the work import them from here, so there is one source for each list.
"""

OPTIMIZERS = ("adam", "adamw", "sgd")
RECORD_CHOICES = ("auto", "all", "watch", "none")
STORAGE_DTYPE_NAMES = ("float32", "float16", "bfloat16")
ATTACKS = ("loss", "confidence", "logreg", "shadow", "shokri-paper", "lira")
ATTACK_ALIASES = {"shokri": "shokri-paper"}
SHADOW_ATTACKS = ("shadow", "shokri-paper", "lira")
STAGES = ("class_forgetting", "membership_inference", "figure7")

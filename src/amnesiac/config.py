"""Configuration objects that the command line reads without importing PyTorch: training recipes and the
planner's thresholds. ``amnesiac.run.TrainConfig`` and ``amnesiac.unlearn.Thresholds`` are these."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import ConfigError
from .names import OPTIMIZERS, RECORD_CHOICES, STORAGE_DTYPE_NAMES


@dataclass
class TrainConfig:
    """Everything that determines a training run; saved as ``config.json``.

    ``limit_class`` keeps only N examples of a class: a random sample drawn with the run's seed
    (``limit_class_select="random"``, the default), or the first N in id order (``"first"``, as the paper's
    code kept the first 100 threes; runs made before the choice existed read back as ``"first"``). The first
    records of a class are not a random sample of it: on digits a model that never saw a 3 still separates
    the first 40 threes from other threes (AUC 0.60), which would pass for membership signal.
    ``exclude_ids`` drops records (a retrain from scratch uses it).
    """

    dataset: str = "digits"
    model: str = "small-cnn"
    epochs: int = 5
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    data_dir: str | None = None
    download: bool = False
    limit_class: dict[int, int] = field(default_factory=dict)
    limit_class_select: str = "random"
    exclude_ids: list[int] = field(default_factory=list)
    eval_class: int | None = None
    record: str = "auto"
    watch_ids: list[int] | None = None
    watch_class: int | None = None
    ledger_dtype: str = "float32"
    include_buffers: bool = True
    batching: str = "random"
    shard_size: int | None = None
    num_shards: int | None = None
    shard_subjects: str | None = None

    def validate(self) -> TrainConfig:
        """Check every field; raise ConfigError listing all problems at once."""
        from .data import DATASETS
        from .models import MODELS

        problems = []
        for registry, value in ((DATASETS, self.dataset), (MODELS, self.model)):
            if value not in registry:
                try:
                    registry.get(value)
                except ConfigError as err:
                    problems.append(str(err))
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                problems.append(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            problems.append(f"lr must be a positive number, got {self.lr!r}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.record not in RECORD_CHOICES:
            problems.append(f"record must be one of {', '.join(RECORD_CHOICES)}, got {self.record!r}")
        if self.record == "watch" and self.watch_ids is None and self.watch_class is None:
            problems.append("record='watch' needs watch_ids or watch_class (the records that may be deleted)")
        if self.ledger_dtype not in STORAGE_DTYPE_NAMES:
            problems.append(f"ledger_dtype must be one of {', '.join(STORAGE_DTYPE_NAMES)}, got {self.ledger_dtype!r}")
        problems += self._shard_problems()
        if self.limit_class_select not in ("random", "first"):
            problems.append(f"limit_class_select must be 'random' or 'first', got {self.limit_class_select!r}")
        for c, n in self.limit_class.items():
            if int(n) < 0:
                problems.append(f"limit_class for class {c} must be >= 0, got {n}")
        if problems:
            raise ConfigError("invalid training configuration:\n  - " + "\n  - ".join(problems))
        return self

    def _shard_problems(self) -> list[str]:
        if self.batching not in ("random", "shards"):
            return [f"batching must be 'random' or 'shards', got {self.batching!r}"]
        given = [n for n in ("shard_size", "num_shards") if getattr(self, n) is not None]
        if self.batching == "random":
            extra = given + (["shard_subjects"] if self.shard_subjects is not None else [])
            return [f"{', '.join(extra)} only apply with batching='shards'"] if extra else []
        problems = []
        if len(given) != 1 and not (self.shard_subjects is not None and not given):
            problems.append("batching='shards' needs exactly one of shard_size and num_shards "
                            "(or shard_subjects alone, which packs subjects into shards of batch_size records)")
        for n in given:
            v = getattr(self, n)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                problems.append(f"{n} must be a positive integer, got {v!r}")
        if self.record == "watch":
            problems.append(f"batching='shards' records a shard ledger; record={self.record!r} does not fit it "
                            "(use record='all' or 'auto')")
        return problems

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["limit_class"] = {str(k): int(v) for k, v in self.limit_class.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")
        d = dict(d)
        d["limit_class"] = {int(k): int(v) for k, v in (d.get("limit_class") or {}).items()}
        if "limit_class_select" not in d:  # written before the choice existed: those runs kept the first N
            d["limit_class_select"] = "first"
        return cls(**d)


@dataclass(frozen=True)
class Thresholds:
    """Shares of training steps at which the recommendation changes."""

    amnesiac_max_share: float = 0.01
    repair_max_share: float = 0.10

    def __post_init__(self) -> None:
        if not 0 <= self.amnesiac_max_share <= self.repair_max_share <= 1:
            raise ConfigError(
                "thresholds must satisfy 0 <= amnesiac_max_share <= repair_max_share <= 1, got "
                f"{self.amnesiac_max_share} and {self.repair_max_share}"
            )

"""Datasets with stable sample ids, and the registry that names them.

>>> from amnesiac.data import load_dataset
>>> bundle = load_dataset("digits")
>>> len(bundle.train), len(bundle.test), bundle.info.num_classes
(1438, 359, 10)
>>> x, y, sample_id = bundle.train[0]
>>> tuple(x.shape)
(1, 8, 8)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DatasetError
from ..registry import Registry
from .base import ArrayDataset, DatasetInfo, WithIds
from .cifar import load_cifar
from .idx import download_idx, find_idx_files, load_idx_split
from .shards import ShardBatchSampler, ShardMap, make_shards, num_shard_batches, read_subject_map, shard_batch_order

__all__ = [
    "ArrayDataset",
    "DataBundle",
    "DatasetInfo",
    "DATASETS",
    "WithIds",
    "load_dataset",
    "default_data_dir",
    "DEBIAN_FASHION_MNIST",
    "ShardBatchSampler",
    "ShardMap",
    "make_shards",
    "num_shard_batches",
    "read_subject_map",
    "shard_batch_order",
]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class DataBundle:
    """A dataset's training split, test split and description."""

    train: ArrayDataset
    test: ArrayDataset
    info: DatasetInfo


Loader = Callable[[Path | None, bool], DataBundle]
DATASETS: Registry[Loader] = Registry("dataset")
INFOS: dict[str, DatasetInfo] = {}


def default_data_dir() -> Path:
    """Where downloads go when no ``--data-dir`` is given: ``$AMNESIAC_DATA`` or ``~/.cache/amnesiac``."""
    return Path(os.environ.get("AMNESIAC_DATA", Path.home() / ".cache" / "amnesiac"))


def _register(info: DatasetInfo, loader: Loader) -> None:
    DATASETS.register(info.name, loader, help=info.description)
    INFOS[info.name] = info


def load_dataset(name: str, *, data_dir: str | os.PathLike[str] | None = None, download: bool = False) -> DataBundle:
    """Load a registered dataset by name.

    ``data_dir`` is where the standard files are looked for (and downloaded to, with ``download=True``).
    """
    loader = DATASETS.get(name)
    return loader(Path(data_dir) if data_dir is not None else None, download)


def dataset_info(name: str) -> DatasetInfo:
    """The description of a registered dataset, without loading it."""
    DATASETS.get(name)
    return INFOS[name]


# ---------------------------------------------------------------- digits (embedded default)
DIGITS = DatasetInfo(
    name="digits",
    channels=1,
    image_size=8,
    num_classes=10,
    description="scikit-learn's bundled 8x8 handwritten digits (1,797 images; 80/20 split, seed 0); no files needed",
    source="sklearn.datasets.load_digits",
    class_names=tuple(str(i) for i in range(10)),
)


def _load_digits(data_dir: Path | None, download: bool) -> DataBundle:
    from sklearn.datasets import load_digits

    raw = load_digits()
    images = raw.images.astype(np.uint8)  # values 0..16
    labels = raw.target.astype(np.int64)
    rng = np.random.RandomState(0)
    test_mask = np.zeros(len(labels), dtype=bool)
    for c in range(10):  # stratified 20% test split, fixed forever so ids stay stable
        members = np.flatnonzero(labels == c)
        chosen = rng.choice(members, size=int(round(0.2 * len(members))), replace=False)
        test_mask[chosen] = True
    train = ArrayDataset(images[~test_mask], labels[~test_mask], max_value=16, info=DIGITS)
    test = ArrayDataset(images[test_mask], labels[test_mask], max_value=16, info=DIGITS)
    return DataBundle(train, test, DIGITS)


_register(DIGITS, _load_digits)


# ---------------------------------------------------------------- MNIST and Fashion-MNIST
def _idx_loader(info: DatasetInfo, subdirs: tuple[str, ...], extra: tuple[Path, ...]) -> Loader:
    def load(data_dir: Path | None, download: bool) -> DataBundle:
        bases = [data_dir] if data_dir is not None else [default_data_dir()]
        search: list[Path] = []
        for base in bases:
            search += [base, base / info.name] + [base / s for s in subdirs]
        search += list(extra)
        how = (
            f"Pass the directory that holds them as data_dir=DIR, or download=True to fetch them from the "
            f"official mirrors into {bases[0] / info.name}."
        )
        if info.name == "fashion-mnist":
            how += " On Debian and Ubuntu, `apt-get install dataset-fashion-mnist` installs them where they are found."
        try:
            files = find_idx_files(info.name, search, how_to_get=how)
        except DatasetError:
            if not download:
                raise
            download_idx(info.name, bases[0] / info.name)
            files = find_idx_files(info.name, search, how_to_get=how)
        tx, ty, sx, sy = load_idx_split(files, num_classes=info.num_classes)
        return DataBundle(
            ArrayDataset(tx.copy(), ty.astype(np.int64), max_value=255, info=info),
            ArrayDataset(sx.copy(), sy.astype(np.int64), max_value=255, info=info),
            info,
        )

    return load


MNIST = DatasetInfo("mnist", 1, 28, 10, "MNIST handwritten digits (70,000 28x28 images) from the IDX files",
                    "IDX files", tuple(str(i) for i in range(10)))
FASHION = DatasetInfo(
    "fashion-mnist", 1, 28, 10,
    "Fashion-MNIST clothing images (70,000 28x28) from the IDX files; found where Debian's dataset-fashion-mnist puts them",
    "IDX files",
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
)
_register(MNIST, _idx_loader(MNIST, ("MNIST/raw", "MNIST"), ()))
_register(FASHION, _idx_loader(FASHION, ("FashionMNIST/raw", "FashionMNIST", "fashion"), (DEBIAN_FASHION_MNIST,)))


# ---------------------------------------------------------------- CIFAR
def _cifar_loader(info: DatasetInfo) -> Loader:
    def load(data_dir: Path | None, download: bool) -> DataBundle:
        if download:
            raise ConfigError(
                f"{info.name}: download=True is not supported for CIFAR; fetch the python archive yourself "
                "and pass its directory as data_dir=DIR"
            )
        base = data_dir if data_dir is not None else default_data_dir()
        tx, ty, sx, sy = load_cifar(info.name, [base, base / info.name])
        return DataBundle(
            ArrayDataset(tx, ty, max_value=255, info=info), ArrayDataset(sx, sy, max_value=255, info=info), info
        )

    return load


CIFAR10 = DatasetInfo("cifar10", 3, 32, 10, "CIFAR-10 (60,000 32x32 colour images) from the python pickles",
                      "python pickles")
CIFAR100 = DatasetInfo("cifar100", 3, 32, 100,
                       "CIFAR-100 with its 100 fine labels (60,000 32x32 colour images) from the python pickles",
                       "python pickles")
_register(CIFAR10, _cifar_loader(CIFAR10))
_register(CIFAR100, _cifar_loader(CIFAR100))

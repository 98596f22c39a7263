"""Readers for the CIFAR-10 and CIFAR-100 python pickles (folder or the original ``.tar.gz``).

Pickles can run code when loaded, so they are read with an unpickler that only builds numpy arrays,
lists, dicts and plain values.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError

LAYOUTS: dict[str, dict[str, Any]] = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "archive": "cifar-10-python.tar.gz",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "label_key": "labels",
        "num_classes": 10,
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "archive": "cifar-100-python.tar.gz",
        "train": ["train"],
        "test": ["test"],
        "label_key": "fine_labels",
        "num_classes": 100,
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    },
}

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset pickle")


def _unpickle(raw: bytes, where: str) -> dict[str, Any]:
    try:
        obj = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:  # any unpickling failure means a malformed file
        raise DatasetError(f"{where}: not a CIFAR python pickle ({err})") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _batch_arrays(entry: dict[str, Any], label_key: str, where: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if "data" not in entry or label_key not in entry:
        raise DatasetError(
            f"{where}: expected keys 'data' and {label_key!r}, found {sorted(map(str, entry))}"
        )
    data = np.asarray(entry["data"])
    labels = np.asarray(entry[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8:
        raise DatasetError(f"{where}: expected uint8 data of shape (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],):
        raise DatasetError(f"{where}: expected {data.shape[0]} labels, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(f"{where}: labels must lie in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar(name: str, search_dirs: Sequence[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load (train_x, train_y, test_x, test_y) from a CIFAR folder or archive in ``search_dirs``."""
    layout = LAYOUTS[name]
    members = {"train": layout["train"], "test": layout["test"]}
    for base in search_dirs:
        folder = base / layout["folder"]
        archive = base / layout["archive"]
        raw: dict[str, list[tuple[str, bytes]]] = {}
        if folder.is_dir():
            for split, names in members.items():
                parts = []
                for member in names:
                    path = folder / member
                    if not path.is_file():
                        raise DatasetError(
                            f"{name}: {path} is missing; the folder {folder} must hold {', '.join(names)}"
                        )
                    parts.append((str(path), path.read_bytes()))
                raw[split] = parts
        elif archive.is_file():
            try:
                with tarfile.open(archive, "r:gz") as tar:
                    for split, names in members.items():
                        parts = []
                        for member in names:
                            inner = f"{layout['folder']}/{member}"
                            try:
                                fh = tar.extractfile(inner)
                            except KeyError:
                                fh = None
                            if fh is None:
                                raise DatasetError(f"{name}: {archive} has no member {inner}")
                            parts.append((f"{archive}:{inner}", fh.read()))
                        raw[split] = parts
            except (tarfile.TarError, OSError, EOFError) as err:
                raise DatasetError(f"{name}: cannot read {archive} as a .tar.gz archive ({err})") from None
        else:
            continue
        out = []
        for split in ("train", "test"):
            xs, ys = [], []
            for where, blob in raw[split]:
                x, y = _batch_arrays(_unpickle(blob, where), layout["label_key"], where, layout["num_classes"])
                xs.append(x)
                ys.append(y)
            out += [np.concatenate(xs), np.concatenate(ys)]
        return out[0], out[1], out[2], out[3]
    raise DatasetError(
        f"{name}: found neither the folder {layout['folder']}/ nor the archive {layout['archive']} in "
        f"{', '.join(map(str, search_dirs)) or '(no directory)'}. Download {layout['url']} and pass its "
        f"directory as data_dir=DIR."
    )

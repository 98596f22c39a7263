"""Readers for MNIST-style IDX files and an optional verified download.

The IDX format: a 4-byte magic number (two zero bytes, a type code, the number of dimensions), then one
big-endian uint32 per dimension, then the data. MNIST and Fashion-MNIST use unsigned bytes (type 0x08):
images have 3 dimensions (N, 28, 28), labels 1 (N).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# Official archives and their published MD5 checksums.
MIRRORS = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
}
CHECKSUMS = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}

_IDX_TYPES: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into a numpy array.

    Raises :class:`DatasetError` naming the file when the header or the length is wrong.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise DatasetError(f"IDX file not found: {path}") from None
    except (OSError, EOFError) as err:
        raise DatasetError(f"cannot read IDX file {path}: {err} (expected a gzip or raw IDX file)") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DatasetError(
            f"{path} is not an IDX file: its first bytes are {data[:4].hex() or 'empty'}, "
            "expected 0000 then a type code (08 for unsigned bytes) and a dimension count"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DatasetError(f"{path}: IDX header announces {ndim} dimensions but the file is {len(data)} bytes")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DatasetError(
            f"{path}: header says shape {shape} ({expected} bytes of data) but the file holds "
            f"{len(data) - header} bytes; the file is truncated or corrupt, download it again"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def find_idx_files(
    name: str, search_dirs: Sequence[Path], *, how_to_get: str
) -> dict[str, Path]:
    """Locate the four IDX files (raw or ``.gz``) in the first directory that holds them all."""
    tried: list[str] = []
    for base in search_dirs:
        found: dict[str, Path] = {}
        for key, stem in IDX_FILES.items():
            for candidate in (base / stem, base / f"{stem}.gz"):
                if candidate.is_file():
                    found[key] = candidate
                    break
        if len(found) == len(IDX_FILES):
            return found
        tried.append(str(base))
    wanted = ", ".join(f"{stem}[.gz]" for stem in IDX_FILES.values())
    raise DatasetError(
        f"{name}: could not find the four IDX files ({wanted}) in any of: {', '.join(tried) or '(no directory)'}. "
        f"{how_to_get}"
    )


def load_idx_split(files: dict[str, Path], *, num_classes: int = 10) -> tuple[np.ndarray, ...]:
    """Read and cross-check the four files: (train_x, train_y, test_x, test_y)."""
    arrays = {key: read_idx(path) for key, path in files.items()}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if x.ndim != 3:
            raise DatasetError(f"{files[f'{split}_images']}: expected 3-D images (N, H, W), got shape {x.shape}")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise DatasetError(
                f"{files[f'{split}_labels']}: expected {x.shape[0]} labels to match "
                f"{files[f'{split}_images'].name}, got shape {y.shape}"
            )
        if y.size and (int(y.max()) >= num_classes or int(y.min()) < 0):
            raise DatasetError(
                f"{files[f'{split}_labels']}: labels must lie in 0..{num_classes - 1}, "
                f"found {int(y.min())}..{int(y.max())}"
            )
    return (arrays["train_images"], arrays["train_labels"], arrays["test_images"], arrays["test_labels"])


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_idx(
    name: str,
    target: Path,
    *,
    mirrors: Sequence[str] | None = None,
    checksums: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download the four archives of ``name`` into ``target``, verifying each MD5.

    Files already present with the right checksum are kept. Each file is written under a temporary name
    and renamed only after its checksum matches, so an interrupted download never leaves a bad file.
    """
    mirrors = list(mirrors if mirrors is not None else MIRRORS[name])
    checksums = dict(checksums if checksums is not None else CHECKSUMS[name])
    target.mkdir(parents=True, exist_ok=True)
    for filename, md5 in checksums.items():
        dest = target / filename
        if dest.is_file() and _md5(dest) == md5:
            continue
        errors: list[str] = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + filename
            fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{filename}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                    shutil.copyfileobj(resp, out)
                got = _md5(Path(tmp))
                if got != md5:
                    errors.append(f"{url}: checksum {got} does not match the published {md5}")
                    continue
                os.replace(tmp, dest)
                break
            except OSError as err:
                errors.append(f"{url}: {err}")
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        else:
            raise DatasetError(
                f"could not download {filename} for {name}: " + "; ".join(errors)
                + ". Download the file by hand into " + str(target) + " and run again."
            )
    return target

"""Shared fixtures: tiny files in the real dataset formats, tiny models."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import signal
import struct
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn


def write_idx(path: Path, array: np.ndarray, *, compress: bool = False) -> Path:
    """Write ``array`` (uint8) in IDX format."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def make_idx_dataset(root: Path, *, n_train: int = 50, n_test: int = 20, compress: bool = False, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, arr in arrays.items():
        write_idx(root / name, arr, compress=compress)
    return arrays


def make_cifar(root: Path, name: str = "cifar100", *, per_batch: int = 6, archive: bool = False, seed: int = 0) -> dict:
    """Write a tiny CIFAR folder (or .tar.gz) with the real pickle layout (bytes keys)."""
    rng = np.random.default_rng(seed)
    if name == "cifar100":
        folder, members, key, classes = "cifar-100-python", {"train": ["train"], "test": ["test"]}, b"fine_labels", 100
    else:
        folder, members, key, classes = "cifar-10-batches-py", {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}, b"labels", 10
    out: dict = {"train": [], "test": []}
    base = root / folder
    base.mkdir(parents=True, exist_ok=True)
    for split, names in members.items():
        for m in names:
            data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            labels = rng.integers(0, classes, per_batch).tolist()
            entry = {b"data": data, key: labels, b"batch_label": b"x"}
            (base / m).write_bytes(pickle.dumps(entry, protocol=2))
            out[split].append((data, labels))
    if archive:
        with tarfile.open(root / ("cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz"), "w:gz") as tar:
            tar.add(base, arcname=folder)
        import shutil

        shutil.rmtree(base)
    return out


class TinyBNNet(nn.Module):
    """A conv + BatchNorm + linear model: parameters and running statistics both change."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


@pytest.fixture
def tiny_data():
    """80 random 1x8x8 images, 10 classes, ids 100..179."""
    from amnesiac.data import ArrayDataset

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 17, (80, 1, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (80,), generator=g)
    return ArrayDataset(images, labels, torch.arange(100, 180), max_value=16)


@pytest.fixture(scope="session")
def served_source(tmp_path_factory):
    """A digits run (2 epochs, batch 64, every step recorded) that the service tests copy, never change."""
    from amnesiac.run import TrainConfig, train_run

    return train_run(TrainConfig(epochs=2, batch_size=64), tmp_path_factory.mktemp("served") / "run", progress=False).run


@pytest.fixture
def served_run(served_source, tmp_path):
    """A fresh copy of :func:`served_source` for one test."""
    import shutil

    from amnesiac.run import RunDir

    shutil.copytree(served_source.path, tmp_path / "run")
    return RunDir.open(tmp_path / "run")


@pytest.fixture
def tiny_net():
    torch.manual_seed(0)
    return TinyBNNet()


def kill_when(script: str, args: list[str], ready, *, timeout: float, what: str, poll: float = 0.05,
              settle: float = 0.0) -> None:
    """Run ``python -c script args...``, wait until ``ready()`` holds (plus ``settle`` seconds), then SIGKILL
    it; fail with ``what`` if that never happens within ``timeout`` seconds. The process is killed either way."""
    proc = subprocess.Popen([sys.executable, "-c", script, *args])
    try:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if ready():
                time.sleep(settle)
                break
            time.sleep(poll)
        else:
            pytest.fail(what)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def tree(path: Path) -> dict[str, str]:
    """Every file under ``path`` with a digest of its bytes (lock files aside). The SQLite index counts by its
    content: closing a connection may fold SQLite's own write-ahead log into the main file (a checkpoint),
    which moves bytes between index.sqlite and index.sqlite-wal without changing a row."""
    import sqlite3

    out = {}
    for p in sorted(path.rglob("*")):
        if not p.is_file() or p.name.endswith(".lock") or p.name.endswith(("-wal", "-shm")):
            continue
        if p.name == "index.sqlite":
            try:
                con = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
                digest = hashlib.sha256("\n".join(con.iterdump()).encode()).hexdigest()
                con.close()
            except sqlite3.DatabaseError:
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
            out[str(p.relative_to(path))] = digest
            continue
        out[str(p.relative_to(path))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out

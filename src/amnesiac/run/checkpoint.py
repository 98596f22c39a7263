"""Save and load model and optimizer state as safetensors, atomically.

The optimizer state dict is flattened into tensors (``state.{param}.{key}``) plus JSON metadata for its
parameter groups and scalar entries, so no pickle is ever needed to resume.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from ..errors import RunDirError
from ..utils import atomic_write_bytes


def save_tensors(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], metadata: dict[str, Any] | None = None) -> None:
    """Atomically write ``tensors`` (contiguous CPU copies) with string ``metadata``."""
    data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    atomic_write_bytes(path, st_save(data, metadata=meta))


def load_tensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file: tensors and metadata. A missing or unreadable file raises RunDirError."""
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            return {k: fh.get_tensor(k) for k in fh.keys()}, dict(meta)
    except Exception as err:  # safetensors raises several types for a bad header
        raise RunDirError(f"{path} is not a readable safetensors file ({err})") from None


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flatten ``optimizer.state_dict()`` into tensors and JSON-able metadata."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars, "class": type(optimizer).__name__}


def optimizer_from_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """Load state produced by :func:`optimizer_to_tensors` into ``optimizer``."""
    groups = json.loads(meta["param_groups"])
    scalars = json.loads(meta.get("scalars", "{}"))
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, entry in scalars.items():
        state.setdefault(int(pid), {}).update(entry)
    optimizer.load_state_dict({"state": state, "param_groups": groups})

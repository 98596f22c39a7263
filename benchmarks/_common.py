"""Shared helpers for the benchmark scripts: machine description and result files."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def save(name: str, payload: dict[str, Any], *, path: Path | None = None) -> Path:
    """Write ``payload`` with the machine's description to benchmarks/results/NAME.json (or ``path``)."""
    path = path or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, sort_keys=True) + "\n")
    print(f"saved {path}")
    return path


def refuse(message: str) -> NoReturn:
    """Stop a script on bad input: the message on stderr, exit code 2, nothing written."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


def read_result(path: str | Path, what: str) -> dict[str, Any]:
    """A result JSON given on the command line (``what`` names the flag), or a refusal that says what is wrong."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as err:
        refuse(f"{what} {path}: cannot read it ({err.strerror}); expected a result JSON this script wrote")
    except ValueError as err:
        refuse(f"{what} {path}: not JSON ({err}); expected a result JSON this script wrote")
    if not isinstance(data, dict):
        refuse(f"{what} {path}: holds a {type(data).__name__}, expected a result JSON object this script wrote")
    return data


def dir_bytes(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def membership(models: dict[str, Any], members: Any, non_members: Any, shadows: Any) -> dict[str, dict[str, float]]:
    """Loss-attack and offline-LiRA AUC of ``members`` against ``non_members`` on each model."""
    from amnesiac.attacks.metrics import auc
    from amnesiac.attacks.mia import lira_scores, loss_scores

    out = {}
    for name, model in models.items():
        loss, labels = loss_scores(model, members, non_members)
        lira, lira_labels = lira_scores(model, members, non_members, shadows)
        out[name] = {"loss_auc": auc(loss, labels), "lira_auc": auc(lira, lira_labels)}
    return out


def write_section(doc: Path, begin: str, end: str, block: str, heading: str) -> None:
    """Replace the text between the ``begin`` and ``end`` markers of ``doc`` by ``block`` (which holds both
    markers), or append ``heading`` and the block when the markers are not there yet."""
    text = doc.read_text()
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n" + block + "\n"
    doc.write_text(text)

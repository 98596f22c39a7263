"""What durability costs: the fsyncs behind ``Recorder.flush()`` and behind every commit.

    python benchmarks/durability.py --reps 5

* ``sync`` after N blobs: the ledger writes N update blobs (the paper's ResNet18 at 28x28, float16: 21.3 MiB
  each, with O_DIRECT as the recorder does), then :meth:`LedgerStore.sync` fsyncs them and their directory
  and checkpoints the index. ``Recorder.flush()`` does exactly this once per epoch in ``train_run``.
* a metadata transaction with and without ``durable=True`` (SQLite ``synchronous=FULL`` for that commit):
  the cost each commit point of training and forgetting pays (one per epoch, one per forget).
* a model file written atomically with and without fsync of the file and its directory.

Each figure is the median of ``--reps`` repetitions, with the minimum and maximum, in one run. Writes
benchmarks/results/durability.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save  # noqa: E402

from amnesiac.ledger import LedgerStore, tracked_state  # noqa: E402
from amnesiac.ledger.blob import blob_from_tensors  # noqa: E402
from amnesiac.models import build_model  # noqa: E402
from amnesiac.utils import atomic_write_bytes  # noqa: E402


def spread(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--blobs", type=int, default=20, help="blobs written before each sync")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    model = build_model("resnet18", in_channels=1, num_classes=10, image_size=28)
    update = {k: torch.randn_like(v.float()).half() for k, v in tracked_state(model).items()}
    buf = blob_from_tensors(update)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        store = LedgerStore.create(Path(tmp) / "ledger", manifest={"storage_dtype": "float16"})
        step = 0
        write_s, sync_s = [], []
        for _ in range(args.reps):
            t = time.perf_counter()
            for _ in range(args.blobs):
                step += 1
                store.put_step(step, epoch=0, ids=[step], update=buf)
            write_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            store.sync()
            sync_s.append(time.perf_counter() - t)
        results["write_blobs_s"] = spread(write_s)
        results["sync_after_blobs_s"] = spread(sync_s)
        results["blob_mib"] = buf.size / 2**20
        for durable in (False, True):
            times = []
            for i in range(max(20, args.reps)):
                t = time.perf_counter()
                store.index.set_meta(head_hash=f"h{i}", durable=durable)
                times.append(time.perf_counter() - t)
            results[f"meta_commit_durable_{durable}_s"] = spread(times)
        payload = b"x" * (45 << 20)  # about a ResNet18 model file in float32
        for fsync in (False, True):
            times = []
            for _ in range(args.reps):
                t = time.perf_counter()
                atomic_write_bytes(Path(tmp) / "model.safetensors", payload, fsync=fsync)
                times.append(time.perf_counter() - t)
            results[f"model_write_fsync_{fsync}_s"] = spread(times)
        store.close()
    for k, v in results.items():
        print(f"{k:32s} {v}")
    save("durability", {"command": "python benchmarks/durability.py " + " ".join(argv or sys.argv[1:]),
                        "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Recording overhead under DistributedDataParallel: 2 processes with the ledger against 2 without.

    python benchmarks/ddp_overhead.py                 # Fashion-MNIST 10,000 records, small-cnn, 1 epoch, 3 pairs
    python benchmarks/ddp_overhead.py --device cuda   # nccl, one GPU per process, where there are 2 GPUs

Each pair trains the same recipe twice on ``--nproc`` processes, once recording every step's update (rank 0
writes) and once with no ledger, alternating which goes first, and times each whole ``train_run_distributed``
call (process start, data loading and the per-epoch commit included on both sides). Overhead = recorded time
/ unrecorded time, per pair; the script prints and saves each pair and their mean and spread.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save  # noqa: E402

from amnesiac.run import TrainConfig, train_run_distributed  # noqa: E402


def timed(config: TrainConfig, out: Path, nproc: int, device: str) -> float:
    t0 = time.perf_counter()
    train_run_distributed(config, out, nproc=nproc, device=device)
    took = time.perf_counter() - t0
    shutil.rmtree(out)
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--per-class", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()
    base = TrainConfig(dataset=args.dataset, model="small-cnn", epochs=args.epochs, batch_size=64,
                       limit_class={c: args.per_class for c in range(10)})
    variants = {"recorded": TrainConfig.from_dict({**base.to_dict(), "record": "all"}),
                "unrecorded": TrainConfig.from_dict({**base.to_dict(), "record": "none"})}
    tmp = Path(tempfile.mkdtemp(prefix="ddp-bench-"))
    pairs = []
    for k in range(args.pairs):
        order = ["recorded", "unrecorded"] if k % 2 == 0 else ["unrecorded", "recorded"]
        times = {name: timed(variants[name], tmp / f"{name}-{k}", args.nproc, args.device) for name in order}
        pairs.append({**times, "ratio": times["recorded"] / times["unrecorded"], "first": order[0]})
        print(f"pair {k}: {pairs[-1]}", flush=True)
    ratios = [p["ratio"] for p in pairs]
    summary = {"mean_ratio": statistics.fmean(ratios), "sd_ratio": statistics.stdev(ratios) if len(ratios) > 1 else 0.0,
               "min_ratio": min(ratios), "max_ratio": max(ratios)}
    print(summary)
    save(f"ddp_overhead_{args.device}", {"settings": vars(args), "pairs": pairs, "summary": summary})


if __name__ == "__main__":
    main()

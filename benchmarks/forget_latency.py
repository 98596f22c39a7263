"""Forget latency of amnesiac unlearning against the cost of training.

    python benchmarks/forget_latency.py                       # the paper's ResNet18, Fashion-MNIST, 10 epochs

Builds a run of the paper's ResNet18 on a 60,000-image 28x28 dataset (Fashion-MNIST, found offline)
with a 10-epoch ledger in the watch-list layout: every step of the 10 epochs is indexed with the ids of
its batch (9,380 steps at batch 64), and the steps that hold a watched record store an update of full
size (random values: the arithmetic and I/O do not depend on them). Training 10 epochs of ResNet18 on
2 CPU cores would take an hour, so the ledger is built without training; one epoch's training time is
measured on a slice and scaled.

Then times ``forget`` for 1, 4 and 16 records (about 10, 40 and 160 affected steps) without the
evaluation pass, and writes benchmarks/results/forget_latency.json.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save  # noqa: E402

from amnesiac.ledger import LedgerStore, tracked_state  # noqa: E402
from amnesiac.ledger.blob import BlobBuffer, Layout  # noqa: E402
from amnesiac.run import RunDir, TrainConfig  # noqa: E402
from amnesiac.training import batches, make_optimizer, num_batches  # noqa: E402
from amnesiac.unlearn import forget  # noqa: E402
from amnesiac.utils import fingerprint, model_state, seed_everything  # noqa: E402


def build_run(root: Path, *, dataset: str, epochs: int, batch_size: int, watched: list[int]) -> RunDir:
    cfg = TrainConfig(dataset=dataset, model="resnet18", epochs=epochs, batch_size=batch_size, record="watch",
                      watch_ids=watched)
    run = RunDir.create(root / "run", cfg)
    data = run.training_data()
    seed_everything(0)
    model = run.new_model()
    store = LedgerStore.create(run.ledger_path, manifest={
        "storage_dtype": "float32", "include_buffers": True, "policy": {"kind": "watch", "watch": len(watched)},
        "model": "resnet18", "model_fingerprint": fingerprint(model), "optimizer": {"class": "Adam", "lr": 1e-3},
        "batch_size": batch_size, "seed": 0})
    store.commits.save_initial(model_state(model))
    live = tracked_state(model)
    blob = BlobBuffer(Layout.of(live, torch.float32))
    g = torch.Generator().manual_seed(1)
    for v in blob.views.values():
        v.copy_(torch.randn(v.shape, generator=g) * 1e-4)
    watch = torch.tensor(watched)
    step = 0
    for epoch in range(epochs):
        for _, _, ids in batches(data, batch_size, seed=0, epoch=epoch):
            step += 1
            hit = bool(torch.isin(ids, watch).any())
            store.put_step(step, epoch=epoch, ids=ids, update=blob if hit else None)
    h = run.save_model(model, epoch=epochs - 1, step=step)
    store.index.set_meta(head_hash=h, head_step=step, training_complete=1)
    store.close()
    return run


def epoch_seconds(run: RunDir, batch_size: int, steps: int = 30) -> float:
    data = run.training_data()
    model = run.new_model()
    opt = make_optimizer("adam", model.parameters())
    loss_fn = torch.nn.CrossEntropyLoss()
    it = batches(data, batch_size, seed=0, epoch=0)
    x, y, _ = next(it)
    loss_fn(model(x), y).backward()
    opt.step()
    start = time.perf_counter()
    for i, (x, y, _) in enumerate(it):
        if i == steps:
            break
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    per_step = (time.perf_counter() - start) / steps
    return per_step * num_batches(len(data), batch_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    sizes = [1, 4, 16]
    tmp = Path(tempfile.mkdtemp(prefix="amnesiac-forget-bench-"))
    try:
        g = torch.Generator().manual_seed(2)
        pool = torch.randperm(60000, generator=g)[: sum(sizes) * args.repeats].tolist()
        t0 = time.perf_counter()
        run = build_run(tmp, dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size, watched=pool)
        build_s = time.perf_counter() - t0
        print(f"built a {args.epochs}-epoch ledger in {build_s:.1f} s", flush=True)
        results = {}
        cursor = 0
        for n in sizes:
            latencies, steps = [], []
            for _ in range(args.repeats):
                ids = pool[cursor : cursor + n]
                cursor += n
                t = time.perf_counter()
                res = forget(run, ids=ids, evaluate_after=False, progress=False)
                latencies.append(time.perf_counter() - t)
                steps.append(res.receipt["n_steps_reverted"])
                timings = res.receipt["timings_s"]
            results[n] = {"records": n, "steps_reverted": steps, "latency_s": latencies,
                          "median_latency_s": statistics.median(latencies), "last_timings_s": timings}
            print(f"{n:3d} record(s): {statistics.median(steps):.0f} steps reverted, median {statistics.median(latencies):.3f} s "
                  f"(load+verify {timings.get('load_updates_s', 0):.3f} s, revert {timings.get('revert_s', 0):.3f} s)",
                  flush=True)
        epoch_s = epoch_seconds(run, args.batch_size)
        one = results[1]["median_latency_s"]
        print(f"one training epoch of resnet18 on {args.dataset}: {epoch_s:.0f} s (30 timed steps, scaled)")
        print(f"forget one record / one epoch of training = {one / epoch_s:.5f} ({epoch_s / one:.0f}x faster)")
        save("forget_latency", {
            "command": "python benchmarks/forget_latency.py " + " ".join(sys.argv[1:]),
            "dataset": args.dataset, "epochs": args.epochs, "batch_size": args.batch_size,
            "ledger_build_s": build_s, "results": results, "epoch_train_s": epoch_s,
            "ratio_forget_one_to_epoch": one / epoch_s,
        })
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

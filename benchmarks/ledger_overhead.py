"""Recording overhead, blob throughput and bytes per step of the update ledger.

    python benchmarks/ledger_overhead.py                      # ResNet18 at 28x28, batch 64 (the paper's setting)
    python benchmarks/ledger_overhead.py --pairs 4            # quicker
    python benchmarks/ledger_overhead.py --compare-offload    # the delta in the writer vs the training thread
    python benchmarks/ledger_overhead.py --model small-cnn --configs all-float32,shards1-float32,shards10-float32

``shards1``/``shards10``: a shard ledger whose shards are one batch / ten consecutive batches of the 40 the
benchmark cycles through, so shards are revisited (each visit reads the shard's sum and writes a new one).

Overhead is training time with the recorder divided by training time without it, measured in one run:
two identical models train in alternating blocks of steps, one recorded and one not, so the slow drifts
of a shared machine hit both alike. Writes benchmarks/results/ledger_overhead.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save  # noqa: E402

from amnesiac.data.shards import ShardMap  # noqa: E402
from amnesiac.ledger import LedgerStore, Recorder, estimate_for_model, human_bytes, tracked_state  # noqa: E402
from amnesiac.ledger.blob import blob_from_tensors  # noqa: E402
from amnesiac.models import build_model  # noqa: E402


def make_batches(n_steps: int, batch: int, watch_every: int | None):
    g = torch.Generator().manual_seed(0)
    out = []
    for s in range(n_steps):
        x = torch.randn(batch, 1, 28, 28, generator=g)
        y = torch.randint(0, 10, (batch,), generator=g)
        ids = torch.arange(s * batch, (s + 1) * batch)
        out.append((x, y, ids))
    return out


MODEL = "resnet18"


def _model_and_opt():
    torch.manual_seed(0)
    model = build_model(MODEL, in_channels=1, num_classes=10, image_size=28)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def run_paired(kind: str, dtype: str, watch: list[int] | None, batches, tmp: Path, *, block: int, pairs: int,
               offload: bool | None) -> dict:
    """Train two identical models in alternating blocks of ``block`` steps, one recorded and one not, and
    time each block (wall and CPU of all threads). A recorded block ends with ``recorder.flush()``, so the
    writer's work for its steps is inside its own timing. Alternating blocks, and swapping which goes
    first in every other pair, lets slow drifts of this shared machine hit both sides alike."""
    loss_fn = torch.nn.CrossEntropyLoss()
    rec_model, rec_opt = _model_and_opt()
    base_model, base_opt = _model_and_opt()
    per_shard = {"shards1": 1, "shards10": 10}.get(kind)
    store = LedgerStore.create(tmp / f"{kind}-{dtype}-{time.time_ns()}", manifest={
        "storage_dtype": dtype, **({"ledger_kind": "shards"} if per_shard else {})})
    if per_shard:
        ids = torch.cat([b[2] for b in batches]).numpy()
        shards = ShardMap(ids, ids // (per_shard * len(batches[0][2])) + 1)
        rec = Recorder(rec_model, rec_opt, store, dtype=dtype, policy="shards", shards=shards)
    else:
        rec = Recorder(rec_model, rec_opt, store, dtype=dtype, policy="watch" if kind == "watch" else "all",
                       watch_ids=watch, offload_delta=offload)
    x0, y0, _ = batches[0]
    for model, opt in ((rec_model, rec_opt), (base_model, base_opt)):  # warm-up outside the timing
        loss_fn(model(x0), y0).backward()
        opt.zero_grad()
    cursor = {"rec": 0, "base": 0}

    def block_of(which: str) -> tuple[float, float]:
        model, opt = (rec_model, rec_opt) if which == "rec" else (base_model, base_opt)
        t, c = time.perf_counter(), time.process_time()
        for _ in range(block):
            x, y, ids = batches[cursor[which] % len(batches)]
            cursor[which] += 1
            if which == "rec":
                with rec.batch(ids):
                    loss_fn(model(x), y).backward()
                    opt.step()
            else:
                loss_fn(model(x), y).backward()
                opt.step()
            opt.zero_grad()
        if which == "rec":
            rec.flush()  # durable before the block's clock stops
        return time.perf_counter() - t, time.process_time() - c

    out: dict[str, list[float]] = {"rec_wall": [], "base_wall": [], "rec_cpu": [], "base_cpu": []}
    for i in range(pairs):
        for which in (("rec", "base") if i % 2 == 0 else ("base", "rec")):
            wall, cpu = block_of(which)
            out[f"{which}_wall"].append(wall)
            out[f"{which}_cpu"].append(cpu)
    rec.close()
    pair_ratios = [r / b for r, b in zip(out["rec_wall"], out["base_wall"])]
    return {
        **out,
        "wall_ratio": sum(out["rec_wall"]) / sum(out["base_wall"]),
        "cpu_ratio": sum(out["rec_cpu"]) / sum(out["base_cpu"]),
        "pair_ratio_median": statistics.median(pair_ratios),
        "pair_ratio_quartiles": statistics.quantiles(pair_ratios, n=4) if len(pair_ratios) > 1 else pair_ratios,
        "recorded_steps": rec.recorded_steps,
        "steps": block * pairs,
        "offload_delta": rec._defer,
    }


def disk_bandwidth(tmp: Path, mib: int = 512) -> dict[str, float]:
    """The disk's own sequential speed: one large file written and read back with O_DIRECT (no page
    cache), and the buffered write + fsync that ordinary code gets."""
    from amnesiac.ledger.blob import ALIGN, read_file_aligned

    raw = torch.empty((mib << 20) + ALIGN, dtype=torch.uint8)
    start = (-raw.data_ptr()) % ALIGN
    buf = raw[start : start + (mib << 20)]
    buf.random_(0, 255)
    view = memoryview(buf.numpy())
    path = tmp / "bw.bin"
    out: dict[str, float] = {}
    t = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_DIRECT", 0), 0o644)
    written = 0
    while written < len(view):
        written += os.write(fd, view[written:])
    os.fsync(fd)
    os.close(fd)
    out["direct_write_mib_s"] = mib / (time.perf_counter() - t)
    t = time.perf_counter()
    read_file_aligned(path)
    out["direct_read_mib_s"] = mib / (time.perf_counter() - t)
    path.unlink()
    t = time.perf_counter()
    with open(path, "wb") as fh:
        fh.write(view)
        fh.flush()
        os.fsync(fh.fileno())
    out["buffered_write_fsync_mib_s"] = mib / (time.perf_counter() - t)
    path.unlink()
    return out


def blob_throughput(tmp: Path, model: torch.nn.Module, dtype: str, n: int = 20) -> dict[str, float]:
    store = LedgerStore.create(tmp / f"tp-{dtype}", manifest={"storage_dtype": dtype})
    update = {k: torch.randn_like(v, dtype=torch.float32).to(getattr(torch, dtype)) for k, v in tracked_state(model).items()}
    size = blob_from_tensors(update).size
    t = time.perf_counter()
    for s in range(1, n + 1):
        store.put_step(s, epoch=0, ids=list(range(64)), update=update, fsync=True)
    write = n * size / (1 << 20) / (time.perf_counter() - t)
    t = time.perf_counter()
    for s in range(1, n + 1):
        store.load_update(s)
    read = n * size / (1 << 20) / (time.perf_counter() - t)
    return {"blob_bytes": size, "write_mib_s_fsync": write, "read_verify_mib_s": read}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--block", type=int, default=10, help="optimizer steps per timed block")
    ap.add_argument("--pairs", type=int, default=8, help="recorded/unrecorded block pairs per configuration")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--compare-offload", action="store_true",
                    help="measure each configuration with the delta computed in the writer thread and in the "
                         "training thread, instead of where the recorder puts it by default")
    ap.add_argument("--configs", default="all-float16,all-float32,watch-float32",
                    help="comma-separated: all-float16, all-float32, all-bfloat16, watch-float32, watch-float16, "
                         "shards1-float32, shards10-float32")
    ap.add_argument("--model", default="resnet18", help="resnet18 (the paper's, default) or small-cnn")
    ap.add_argument("--out", default=None, help="result name (default ledger_overhead[_compare])")
    args = ap.parse_args()
    global MODEL
    MODEL = args.model
    batches = make_batches(40, args.batch_size, None)
    # a watch-list that touches every 10th step
    watch = [int(b[2][0]) for i, b in enumerate(batches) if i % 10 == 0]
    configs = []
    for name in args.configs.split(","):
        kind, _, dtype = name.strip().partition("-")
        if kind not in ("all", "watch", "shards1", "shards10") or dtype not in ("float32", "float16", "bfloat16"):
            ap.error(f"unknown configuration {name!r}; expected e.g. all-float16 or watch-float32")
        configs.append((kind, dtype, watch if kind == "watch" else None))
    # by default the recorder decides where the delta is computed; --compare-offload measures both places
    offloads: list[bool | None] = [True, False] if args.compare_offload else [None]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("AMNESIAC_BENCH_DIR")) as d:
        tmp = Path(d)
        for kind, dtype, w in configs:
            for off in offloads:
                r = run_paired(kind, dtype, w, batches, tmp, block=args.block, pairs=args.pairs, offload=off)
                name = f"{kind}-{dtype}" + {None: "", True: "-offloaded", False: "-in-training-thread"}[off]
                results[name] = r
                q = r["pair_ratio_quartiles"]
                print(f"{name:42s} wall {r['wall_ratio']:.3f}  CPU {r['cpu_ratio']:.3f}  per-pair median "
                      f"{r['pair_ratio_median']:.3f} (quartiles {q[0]:.3f}-{q[-1]:.3f}); "
                      f"{r['recorded_steps']}/{r['steps']} steps stored; delta "
                      f"{'in the writer thread' if r['offload_delta'] else 'in the training thread'}", flush=True)
        model = build_model("resnet18", in_channels=1, num_classes=10, image_size=28)
        disk = disk_bandwidth(tmp)
        tp = {dt: blob_throughput(tmp, model, dt) for dt in ("float32", "float16")}
    sizes = {}
    for name, ch, size in (("resnet18", 1, 28), ("resnet18-cifar", 3, 32), ("small-cnn", 1, 28)):
        m = build_model(name, in_channels=ch, num_classes=10, image_size=size)
        sizes[name] = {dt: estimate_for_model(m, num_examples=64, batch_size=64, epochs=1, dtype=dt).bytes_per_step
                       for dt in ("float32", "float16", "bfloat16")}
    print(f"disk: sequential O_DIRECT write {disk['direct_write_mib_s']:.0f} MiB/s, read {disk['direct_read_mib_s']:.0f} MiB/s; "
          f"buffered write + fsync {disk['buffered_write_fsync_mib_s']:.0f} MiB/s")
    for dt, r in tp.items():
        print(f"blobs {dt}: {human_bytes(r['blob_bytes'])} each, write {r['write_mib_s_fsync']:.0f} MiB/s (fsync), "
              f"read+verify {r['read_verify_mib_s']:.0f} MiB/s")
    print("bytes per recorded step:")
    for name, d in sizes.items():
        print(f"  {name:15s} " + ", ".join(f"{dt} {human_bytes(b)}" for dt, b in d.items()))
    save(args.out or ("ledger_overhead_compare" if args.compare_offload else "ledger_overhead"), {
        "command": "python benchmarks/ledger_overhead.py " + " ".join(sys.argv[1:]),
        "block": args.block, "pairs": args.pairs, "batch_size": args.batch_size, "model": args.model,
        "overhead": results, "disk": disk, "blob_throughput": tp, "bytes_per_step": sizes,
        "watch_step_fraction": len(watch) / len(batches),
    })


if __name__ == "__main__":
    main()

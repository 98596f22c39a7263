"""Recording overhead, blob throughput and bytes per step of the update ledger.

    python benchmarks/ledger_overhead.py                 # ResNet18 at 28x28, batch 64 (the paper's setting)
    python benchmarks/ledger_overhead.py --steps 20      # quicker

Overhead is training time with the recorder divided by training time without it, measured in one run,
with the configurations interleaved round by round so machine noise hits them alike. Writes
benchmarks/results/ledger_overhead.json.
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

from amnesiac.ledger.blob import blob_from_tensors  # noqa: E402
from amnesiac.ledger import LedgerStore, Recorder, estimate_for_model, human_bytes, tracked_state  # noqa: E402
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


def run_config(kind: str, batches, tmp: Path, dtype: str, watch: list[int] | None) -> tuple[float, float]:
    """Wall seconds and process CPU seconds (all threads) for the timed steps."""
    torch.manual_seed(0)
    model = build_model("resnet18", in_channels=1, num_classes=10, image_size=28)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    rec = None
    if kind != "none":
        store = LedgerStore.create(tmp / f"{kind}-{time.time_ns()}", manifest={"storage_dtype": dtype})
        rec = Recorder(model, opt, store, dtype=dtype, policy="watch" if kind == "watch" else "all", watch_ids=watch)
    x0, y0, _ = batches[0]  # warm-up step outside the timing
    loss_fn(model(x0), y0).backward()
    opt.zero_grad()
    start = time.perf_counter()
    cpu_start = time.process_time()
    for x, y, ids in batches:
        if rec is not None:
            with rec.batch(ids):
                loss_fn(model(x), y).backward()
                opt.step()
        else:
            loss_fn(model(x), y).backward()
            opt.step()
        opt.zero_grad()
    if rec is not None:
        rec.close()  # the flush counts: the ledger is durable when training ends
    return time.perf_counter() - start, time.process_time() - cpu_start


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
    ap.add_argument("--steps", type=int, default=40, help="optimizer steps per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    batches = make_batches(args.steps, args.batch_size, None)
    # a watch-list that touches every 10th step
    watch = [int(b[2][0]) for i, b in enumerate(batches) if i % 10 == 0]
    configs = [("none", "float32", None), ("all", "float16", None), ("all", "float32", None), ("watch", "float32", watch)]
    times: dict[str, list[float]] = {f"{k}-{d}": [] for k, d, _ in configs}
    cpu: dict[str, list[float]] = {f"{k}-{d}": [] for k, d, _ in configs}
    with tempfile.TemporaryDirectory(dir=os.environ.get("AMNESIAC_BENCH_DIR")) as d:
        tmp = Path(d)
        for r in range(args.rounds):
            for kind, dtype, w in configs:
                sec, cpu_sec = run_config(kind, batches, tmp, dtype, w)
                times[f"{kind}-{dtype}"].append(sec)
                cpu[f"{kind}-{dtype}"].append(cpu_sec)
                print(f"round {r + 1}: {kind:5s} {dtype:8s} {sec:7.2f} s wall, {cpu_sec:7.2f} s CPU for {args.steps} steps",
                      flush=True)
        base = statistics.median(times["none-float32"])
        overhead = {k: statistics.median(v) / base for k, v in times.items()}
        cpu_base = statistics.median(cpu["none-float32"])
        cpu_overhead = {k: statistics.median(v) / cpu_base for k, v in cpu.items()}
        model = build_model("resnet18", in_channels=1, num_classes=10, image_size=28)
        disk = disk_bandwidth(tmp)
        tp = {dt: blob_throughput(tmp, model, dt) for dt in ("float32", "float16")}
    sizes = {}
    for name, ch, size in (("resnet18", 1, 28), ("resnet18-cifar", 3, 32), ("small-cnn", 1, 28)):
        m = build_model(name, in_channels=ch, num_classes=10, image_size=size)
        sizes[name] = {dt: estimate_for_model(m, num_examples=64, batch_size=64, epochs=1, dtype=dt).bytes_per_step
                       for dt in ("float32", "float16", "bfloat16")}
    print("\nrecording overhead (median time / median time without recorder):")
    for k, v in overhead.items():
        print(f"  {k:16s} {v:.3f}   (CPU time, all threads: {cpu_overhead[k]:.3f})")
    print(f"disk: sequential O_DIRECT write {disk['direct_write_mib_s']:.0f} MiB/s, read {disk['direct_read_mib_s']:.0f} MiB/s; "
          f"buffered write + fsync {disk['buffered_write_fsync_mib_s']:.0f} MiB/s")
    for dt, r in tp.items():
        print(f"blobs {dt}: {human_bytes(r['blob_bytes'])} each, write {r['write_mib_s_fsync']:.0f} MiB/s (fsync), "
              f"read+verify {r['read_verify_mib_s']:.0f} MiB/s")
    print("bytes per recorded step:")
    for name, d in sizes.items():
        print(f"  {name:15s} " + ", ".join(f"{dt} {human_bytes(b)}" for dt, b in d.items()))
    save("ledger_overhead", {
        "command": "python benchmarks/ledger_overhead.py " + " ".join(sys.argv[1:]),
        "steps": args.steps, "rounds": args.rounds, "batch_size": args.batch_size,
        "seconds": times, "overhead": overhead, "cpu_seconds": cpu, "cpu_overhead": cpu_overhead, "disk": disk, "blob_throughput": tp, "bytes_per_step": sizes,
        "watch_step_fraction": len(watch) / len(batches),
    })


if __name__ == "__main__":
    main()

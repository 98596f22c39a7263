"""The deletion service measured through real HTTP clients on loopback (``amnesiac serve`` in its own process).

    python benchmarks/deletion_service.py               # Fashion-MNIST (Debian's files), small-cnn, 3 seeds
    python benchmarks/deletion_service.py --seeds 1     # one seed
    python benchmarks/deletion_service.py --quick       # digits, 1 seed, 20 requests: keeps the script working

Setting (the shard-ledger stream of benchmarks/shard_ledger.py): small-cnn, Adam, batch 64, E epochs, shards of
one batch, every shard's sum stored. Per seed, on a fresh copy of the trained run each:

- sequential: R one-record requests, each sent after the previous one's receipt; total time from the first POST
  to the last receipt against one retrain from scratch without the R records (same recipe, random batching);
  test accuracy every R/10 requests and at the end against the retrained model's; the loss attack and offline
  LiRA (shadow models on halves of the training data without the R records) on the R records against 1,000 test
  records, for the served model, the retrained one and the original;
- burst: the same R requests sent at once by 8 concurrent clients: time to the last receipt, number of batches,
  the same accuracy and attack columns;
- load: L one-record requests (8 clients): accepted requests per second, p50/p99 from POST to receipt (a poller
  reads ``/v1/receipts?after=``), the service process's peak resident memory.

The service runs with ``--force`` (as the stream benchmark served a "retrain" advice with amnesiac and a repair)
and ``--repair-steps owed``; the sequential and burst parts run once per ``--repair-fraction`` (default 1 and
0.25: all the owed repair steps, and a quarter of them), the load part with the first. Results:
benchmarks/results/deletion_service.json (or deletion_service_quick.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import membership, save  # noqa: E402

from amnesiac.attacks.mia import ShadowRecipe, train_shadows  # noqa: E402
from amnesiac.run import RunDir, TrainConfig, train_run  # noqa: E402
from amnesiac.service import start_service  # noqa: E402
from amnesiac.training import evaluate  # noqa: E402


class Served:
    """``amnesiac serve`` on a copy of a run, in its own process."""

    def __init__(self, run: Path, fraction: float = 1.0) -> None:
        self.served = start_service(run, args=["--force", "--repair-fraction", str(fraction)], quiet=True)
        self.proc, self.base, self.auth = self.served.process, self.served.url, self.served.headers
        self.client = httpx.Client(base_url=self.base, headers=self.auth, timeout=60)

    def post(self, ids: list[int]) -> str:
        answer = self.client.post("/v1/deletions", json={"ids": ids})
        if answer.status_code != 202:
            raise SystemExit(f"request refused: {answer.status_code} {answer.text}")
        return str(answer.json()["request_id"])

    def wait(self, rid: str) -> dict[str, Any]:
        while True:
            status = self.client.get(f"/v1/deletions/{rid}").json()
            if status["status"] in ("done", "refused"):
                return status
            time.sleep(0.01)

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.client.close()
        self.served.stop()


def copy_run(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def sequential(run: Path, ids: list[int], test: Any, fraction: float) -> dict[str, Any]:
    svc = Served(run, fraction)
    timeline = []
    t0 = time.perf_counter()
    try:
        for k, i in enumerate(ids):
            state = svc.wait(svc.post([i]))
            if state["status"] != "done":
                raise SystemExit(f"request for {i} was refused: {state['reason']}")
            if (k + 1) % max(1, len(ids) // 10) == 0:
                paused = time.perf_counter()  # the accuracy is read from the committed file, not timed
                timeline.append({"requests": k + 1, "test_acc": evaluate(RunDir.open(run).load_model(), test)["accuracy"]})
                t0 += time.perf_counter() - paused
        total = time.perf_counter() - t0
        receipts = svc.client.get("/v1/receipts", params={"limit": 1000}).json()
    finally:
        svc.stop()
    return {"time_s": total, "timeline": timeline, **where_time_went(receipts)}


def burst(run: Path, ids: list[int], fraction: float, *, clients: int = 8) -> dict[str, Any]:
    svc = Served(run, fraction)
    try:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            rids = list(pool.map(lambda i: svc.post([i]), ids))
        for rid in rids:
            svc.wait(rid)
        total = time.perf_counter() - t0
        receipts = svc.client.get("/v1/receipts", params={"limit": 1000}).json()
    finally:
        svc.stop()
    return {"time_s": total, "receipts": len(receipts), **where_time_went(receipts)}


def where_time_went(receipts: list[dict[str, Any]]) -> dict[str, Any]:
    """From the receipts: the batches, the time inside them (one receipt per batch counted) and its repair
    part, and the repair steps run; the rest of the wall time is HTTP, the queue and waiting."""
    batches = {r["batch"]["id"]: r for r in receipts}
    timings = [b.get("timings_s") or {} for b in batches.values()]
    return {"batches": len(batches), "in_batches_s": sum(t.get("total", 0.0) for t in timings),
            "repair_s": sum(t.get("repair_s", 0.0) for t in timings),
            "subtract_s": sum(t.get("load_updates_s", 0.0) + t.get("revert_s", 0.0) for t in timings),
            "repair_steps": sum(int(b.get("optimizer_steps") or 0) for b in batches.values())}


def load(run: Path, ids: list[int], fraction: float, *, clients: int = 8) -> dict[str, Any]:
    svc = Served(run, fraction)
    posted: dict[str, float] = {}
    arrived: dict[str, float] = {}
    stop = threading.Event()

    def poll() -> None:
        after = None
        with httpx.Client(base_url=svc.base, headers=svc.auth, timeout=60) as c:
            while not stop.is_set() or len(arrived) < len(ids):
                page = c.get("/v1/receipts", params={"limit": 1000, **({"after": after} if after else {})}).json()
                now = time.perf_counter()
                for r in page:
                    arrived.setdefault(r["request_id"], now)
                after = page[-1]["request_id"] if page else after
                if not page:
                    time.sleep(0.02)

    def send(i: int) -> None:
        t = time.perf_counter()
        posted[svc.post([i])] = t

    poller = threading.Thread(target=poll)
    try:
        poller.start()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(send, ids))
        accept_s = time.perf_counter() - t0
        stop.set()
        poller.join()
        total = time.perf_counter() - t0
        rss = svc.peak_rss_mib()
    finally:
        stop.set()
        svc.stop()
    lat = sorted(arrived[r] - posted[r] for r in posted)
    return {"requests": len(ids), "accepted_per_s": len(ids) / accept_s, "time_to_last_receipt_s": total,
            "p50_s": lat[len(lat) // 2], "p99_s": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            "service_peak_rss_mib": rss}


def one_seed(args: argparse.Namespace, root: Path, seed: int) -> dict[str, Any]:
    cfg = TrainConfig(dataset=args.dataset, model="small-cnn", epochs=args.epochs, batch_size=args.batch_size,
                      seed=seed, record="all", batching="shards", shard_size=args.batch_size)
    trained = train_run(cfg, root / f"run-{seed}", progress=False)
    base = trained.run
    training, test = base.training_data(), base.bundle().test
    rng = np.random.default_rng(seed)
    picked = rng.choice(training.ids.numpy(), args.requests + args.load, replace=False)
    stream_ids = sorted(picked[: args.requests].tolist())
    g = torch.Generator().manual_seed(seed)
    non_members = test.subset(torch.sort(torch.randperm(len(test), generator=g)[: args.non_members]).values)
    shadows = train_shadows(training.without_ids(stream_ids), ShadowRecipe("small-cnn", args.epochs, args.batch_size),
                            n=args.shadows, seed=seed, progress=False)
    retrain_cfg = TrainConfig.from_dict({**cfg.to_dict(), "record": "none", "batching": "random", "shard_size": None,
                                         "exclude_ids": stream_ids})
    t0 = time.perf_counter()
    retrained = train_run(retrain_cfg, root / f"retrain-{seed}", progress=False)
    retrain_s = time.perf_counter() - t0
    members = training.only_ids(stream_ids)
    out: dict[str, Any] = {"seed": seed, "retrain_s": retrain_s, "retrained_test_acc": retrained.final["test"],
                           "original_test_acc": trained.final["test"]}
    out["policies"] = {}
    for fraction in args.repair_fraction:
        policy = out["policies"][f"repair_fraction={fraction:g}"] = {}
        for name, work in (("sequential", lambda p, f=fraction: sequential(p, stream_ids, test, f)),
                           ("burst", lambda p, f=fraction: burst(p, stream_ids, f))):
            path = copy_run(base.path, root / f"{name}-{seed}-{fraction:g}")
            res = work(path)
            model = RunDir.open(path).load_model()
            res["test_acc"] = evaluate(model, test)["accuracy"]
            res["time_over_retrain"] = res["time_s"] / retrain_s
            res["mia"] = membership({"served": model, "retrained": retrained.model, "original": base.load_model()},
                                    members, non_members, shadows)
            policy[name] = res
            shutil.rmtree(path)
            print(f"seed {seed} fraction {fraction:g} {name}: "
                  f"{json.dumps({k: v for k, v in res.items() if k != 'timeline'})}", flush=True)
    out["load"] = load(copy_run(base.path, root / f"load-{seed}"), sorted(picked.tolist()), args.repair_fraction[0])
    print(f"seed {seed} load: {json.dumps(out['load'])}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="digits, 1 seed, 20 requests, 100 load, 2 shadows")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--load", type=int, default=900, help="requests beyond the stream's for the load part")
    ap.add_argument("--shadows", type=int, default=4)
    ap.add_argument("--non-members", type=int, default=1000)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--repair-fraction", type=float, nargs="+", default=[1.0, 0.25],
                    help="the service's --repair-fraction for the sequential and burst parts, one run each")
    args = ap.parse_args()
    if args.quick:
        args.dataset, args.seeds, args.requests, args.load, args.shadows, args.non_members = "digits", 1, 20, 80, 2, 200
    root = Path(tempfile.mkdtemp(prefix="amnesiac-service-"))
    try:
        per_seed = [one_seed(args, root, s) for s in range(args.seeds)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    summary = {policy: {part: {col: _mean_sd([r["policies"][policy][part][col] - (r["retrained_test_acc"] if col ==
                                                "test_acc" else 0) for r in per_seed])
                               for col in ("time_over_retrain", "test_acc")} for part in ("sequential", "burst")}
               for policy in per_seed[0]["policies"]}
    save("deletion_service_quick" if args.quick else "deletion_service", {
        "command": "python benchmarks/deletion_service.py " + " ".join(sys.argv[1:]), "settings": vars(args),
        "cpus": os.cpu_count(), "per_seed": per_seed,
        "summary (mean, sd over seeds; test_acc: served minus retrained)": summary})


def _mean_sd(values: list[float]) -> list[float]:
    return [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0]


if __name__ == "__main__":
    main()

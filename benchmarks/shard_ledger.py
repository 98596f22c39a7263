"""The shard ledger against the every-step ledger: accuracy, bytes, overhead, latency, and a deletion stream.

    python benchmarks/shard_ledger.py                    # Fashion-MNIST (Debian's files), small-cnn, 3 seeds
    python benchmarks/shard_ledger.py --quick            # digits, 1 seed, a few requests: keeps the script working
    python benchmarks/shard_ledger.py --first-seed 1 --seeds 2 --json s12.json   # more seeds in another process,
    python benchmarks/shard_ledger.py --merge benchmarks/results/shard_ledger.json s12.json   # then joined, then
    python benchmarks/shard_ledger.py --render                                    # the docs section rewritten

Part 1, the trade-off, per seed: the same recipe (small-cnn, Adam, batch 64, E epochs) with random batching and
the every-step ledger (the paper's), and with shard batching at one batch, ten batches and 1% of the data per
shard. Columns: test accuracy, ledger bytes on disk, training time with the ledger, forget latency (one random
record, no repair, no evaluation; median of 5). With ``--overhead`` each configuration also trains without a
ledger, second, for a ratio; on a shared machine that ratio depends on the order, and
``benchmarks/ledger_overhead.py`` (alternating blocks) is the measurement of recording overhead.

Part 2, a deletion stream, per seed, on the one-batch-shard run and on the every-step run: 100 requests of one
random record each, handled one after another through ``forget`` as a service would. Each request follows the
planner: ``amnesiac`` subtracts only; ``amnesiac+repair`` subtracts, then repairs with as many optimizer steps as
the sums subtracted since the last repair held (the training those records' batches had). Test accuracy is taken
every 10 requests (not timed). At the end: test accuracy, and membership attacks on the 100 forgotten records
(against 1,000 test records) — the loss attack and offline LiRA with shadow models trained on halves of the
training data without the forgotten records — for the streamed model, a model retrained from scratch without
the 100 records (same recipe and seed, random batching), and the original model; total stream time against
that retrain's time.

Part 3, data subjects: 10 subjects of 10 random records each; a run with subject-aligned shards (shards of 64
records, subjects packed whole); the 10 subjects forgotten one after another, with the same columns.

Results: benchmarks/results/shard_ledger.json (or shard_ledger_quick.json); ``--render`` writes the section of
docs/benchmarks.md between its markers from that JSON, with the issue's must-hold checks computed, not typed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, dir_bytes, membership, save, write_section  # noqa: E402

from amnesiac.attacks.mia import ShadowRecipe, train_shadows  # noqa: E402
from amnesiac.run import RunDir, TrainConfig, train_run  # noqa: E402
from amnesiac.training import evaluate  # noqa: E402
from amnesiac.unlearn import forget  # noqa: E402


def configs(args: argparse.Namespace, n_train: int) -> dict[str, dict[str, Any]]:
    bs = args.batch_size
    return {
        "random (every-step ledger)": {"batching": "random"},
        "shards of 1 batch": {"batching": "shards", "shard_size": bs},
        "shards of 10 batches": {"batching": "shards", "shard_size": 10 * bs},
        "shards of 1% of the data": {"batching": "shards", "shard_size": max(1, n_train // 100)},
    }


def recipe(args: argparse.Namespace, seed: int, **extra: Any) -> TrainConfig:
    return TrainConfig(dataset=args.dataset, model="small-cnn", epochs=args.epochs, batch_size=args.batch_size,
                       seed=seed, record="all", **extra)


def timed_train(cfg: TrainConfig, out: Path) -> tuple[Any, float]:
    t0 = time.perf_counter()
    result = train_run(cfg, out, progress=False)
    return result, time.perf_counter() - t0


def forget_latency(run_path: Path, copy_to: Path, ids: list[int]) -> float:
    shutil.copytree(run_path, copy_to)
    run = RunDir.open(copy_to)
    times = []
    for i in ids:
        t0 = time.perf_counter()
        forget(run, ids=[i], evaluate_after=False, progress=False)
        times.append(time.perf_counter() - t0)
    shutil.rmtree(copy_to)
    return statistics.median(times)


def part_one(args: argparse.Namespace, root: Path, seed: int, n_train: int, train_ids: np.ndarray) -> dict[str, Any]:
    rows = {}
    rng = np.random.default_rng(1000 + seed)
    probe = rng.choice(train_ids, 5, replace=False).tolist()
    for name, extra in configs(args, n_train).items():
        cfg = recipe(args, seed, **extra)
        result, train_s = timed_train(cfg, root / f"{slug(name)}-{seed}")
        ledger = result.run.ledger_path
        rows[name] = {"test_acc": result.final["test"], "ledger_bytes": dir_bytes(ledger),
                      "blobs": len(list((ledger / "blobs").iterdir())), "train_s": train_s,
                      "forget_latency_s": forget_latency(result.run.path, root / "latency", probe)}
        if args.overhead:  # the same training without a ledger, second: order-dependent on a shared machine
            plain = TrainConfig.from_dict({**cfg.to_dict(), "record": "none"})
            _, plain_s = timed_train(plain, root / f"plain-{seed}")
            shutil.rmtree(root / f"plain-{seed}")
            rows[name].update(plain_s=plain_s, overhead=train_s / plain_s - 1)
        print(f"seed {seed} {name}: {json.dumps(rows[name])}", flush=True)
    return rows


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def _held_steps(store: Any, steps: list[int], *, epochs: int, batch_size: int) -> int:
    """Optimizer steps the given rows' updates hold: a step row holds one; a shard sum every step of its shard."""
    if store.kind != "shards":
        return len(steps)
    rows = store.index.steps_info(steps)
    return sum(epochs * -(-rows[s].ids.size // batch_size) for s in steps)


def stream(run: RunDir, requests: list[list[int]], *, subjects: dict[str, list[int]] | None, args: argparse.Namespace,
           test: Any) -> dict[str, Any]:
    """Handle ``requests`` one after another as the planner says; returns the timeline and the total time."""
    total_s = 0.0
    owed = 0  # optimizer steps undone since the last repair
    timeline, kinds = [], []
    for k, req in enumerate(requests):
        what = {"subjects": req, "subject_map": subjects} if subjects is not None else {"ids": req}
        t0 = time.perf_counter()
        plan = forget(run, dry_run=True, progress=False, **what).plan
        store = run.open_ledger()
        owed += _held_steps(store, plan.to_revert, epochs=args.epochs, batch_size=args.batch_size)
        store.close()
        options: dict[str, Any] = {}
        if plan.recommendation not in ("amnesiac", "nothing"):
            options = {"repair_steps": max(1, owed)}
            owed = 0
        # a "retrain" advice (a stream that ran far without repair) is served by amnesiac + repair as well
        forget(run, options=options, evaluate_after=False, progress=False, force=True, **what)
        total_s += time.perf_counter() - t0
        kinds.append(plan.recommendation)
        if (k + 1) % max(1, len(requests) // 10) == 0 or k + 1 == len(requests):
            timeline.append({"requests": k + 1, "test_acc": evaluate(run.load_model(), test)["accuracy"]})
    return {"time_s": total_s, "timeline": timeline,
            "recommendations": {r: kinds.count(r) for r in sorted(set(kinds))}}


def part_two(args: argparse.Namespace, root: Path, seed: int, runs: dict[str, Path]) -> dict[str, Any]:
    base = RunDir.open(runs["shards of 1 batch"])
    bundle = base.bundle()
    training = base.training_data()
    rng = np.random.default_rng(seed)
    picked = rng.choice(training.ids.numpy(), args.requests + 10 * args.subject_size, replace=False)
    stream_ids = sorted(picked[: args.requests].tolist())
    subj_ids = picked[args.requests:]
    subjects = {f"person{k}": sorted(subj_ids[k * args.subject_size:(k + 1) * args.subject_size].tolist())
                for k in range(10)}
    g = torch.Generator().manual_seed(seed)
    test = bundle.test
    non_members = test.subset(torch.sort(torch.randperm(len(test), generator=g)[: args.non_members]).values)
    # shadow models for LiRA: halves of the training data without any record either scenario forgets
    pool = training.without_ids(picked)
    t0 = time.perf_counter()
    shadows = train_shadows(pool, ShadowRecipe("small-cnn", args.epochs, args.batch_size), n=args.shadows,
                            seed=seed, progress=False)
    shadow_s = time.perf_counter() - t0
    # the reference: retrained from scratch without the streamed records (the recipe's random batching)
    retrain_cfg = TrainConfig.from_dict({**recipe(args, seed).to_dict(), "record": "none", "exclude_ids": stream_ids})
    retrained, retrain_s = timed_train(retrain_cfg, root / f"retrain-{seed}")
    members = training.only_ids(stream_ids)
    out: dict[str, Any] = {"retrain_s": retrain_s, "shadow_s": shadow_s,
                           "retrained_test_acc": retrained.final["test"]}
    for name in ("shards of 1 batch", "random (every-step ledger)"):
        run = RunDir.open(runs[name])
        original = run.load_model()
        res = stream(run, [[i] for i in stream_ids], subjects=None, args=args, test=test)
        res["test_acc"] = res["timeline"][-1]["test_acc"]
        res["time_over_retrain"] = res["time_s"] / retrain_s
        res["mia"] = membership({"stream": run.load_model(), "retrained": retrained.model, "original": original},
                                members, non_members, shadows)
        res["ledger_bytes_after"] = dir_bytes(run.ledger_path)
        out[name] = res
        print(f"seed {seed} stream on {name}: {json.dumps({k: v for k, v in res.items() if k != 'timeline'})}",
              flush=True)
    out["subjects"] = part_three(args, root, seed, subjects, members_of=training, non_members=non_members,
                                 shadows=shadows, test=test)
    return out


def part_three(args: argparse.Namespace, root: Path, seed: int, subjects: dict[str, list[int]], *, members_of: Any,
               non_members: Any, shadows: Any, test: Any) -> dict[str, Any]:
    folder = root / f"subjects-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "map.json").write_text(json.dumps(subjects))
    cfg = recipe(args, seed, batching="shards", shard_size=args.batch_size, shard_subjects=str(folder / "map.json"))
    trained, _ = timed_train(cfg, folder / "run")
    forgotten = sorted(i for ids in subjects.values() for i in ids)
    retrain_cfg = TrainConfig.from_dict({**recipe(args, seed).to_dict(), "record": "none", "exclude_ids": forgotten})
    retrained, retrain_s = timed_train(retrain_cfg, folder / "retrain")
    original = trained.run.load_model()
    res = stream(trained.run, [[s] for s in sorted(subjects)], subjects=subjects, args=args, test=test)
    res.update(test_acc=res["timeline"][-1]["test_acc"], retrain_s=retrain_s, time_over_retrain=res["time_s"] / retrain_s,
               retrained_test_acc=retrained.final["test"], original_test_acc=trained.final["test"])
    res["mia"] = membership({"stream": trained.run.load_model(), "retrained": retrained.model, "original": original},
                            members_of.only_ids(forgotten), non_members, shadows)
    store = trained.run.open_ledger()
    res["shards_touched"] = len([r for r in store.iter_steps(state="reverted")])
    store.close()
    print(f"seed {seed} subjects: {json.dumps({k: v for k, v in res.items() if k != 'timeline'})}", flush=True)
    return res


# ----------------------------------------------------------------------------- rendering
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
BEGIN, END = "<!-- shard-ledger:begin -->", "<!-- shard-ledger:end -->"


def _ms(values: list[float], scale: float = 1.0, fmt: str = ".3f") -> str:
    mean = statistics.fmean(values) * scale
    sd = (statistics.stdev(values) * scale) if len(values) > 1 else 0.0
    return f"{mean:{fmt}} ± {sd:{fmt}}"


def _verdict(ok: bool) -> str:
    return "holds" if ok else "**does not hold**"


def _how_measured(payload: dict[str, Any]) -> str:
    st, m = payload["settings"], payload["machine"]
    flags = " --quick" if st["quick"] else (f" --epochs {st['epochs']}" if st["epochs"] != 2 else "")
    parts = _parts(payload)
    if len(parts) == 1:
        p = parts[0]
        return (f"measured by `python benchmarks/shard_ledger.py{flags}` ({m['cpu_count']} CPU cores, "
                f"{p['torch_threads']} torch thread(s), torch {m['torch']}, {p['date']}, {p['wall_s'] / 60:.0f} min)")
    each = "; ".join(f"seed(s) {', '.join(map(str, p['seeds']))}: {p['date'][:10]}, {p['torch_threads']} torch "
                     f"thread(s), {p['wall_s'] / 60:.0f} min" for p in parts)
    return (f"measured in {len(parts)} processes of `python benchmarks/shard_ledger.py{flags} --first-seed K --seeds N "
            f"--json PART` joined by `--merge` ({m['cpu_count']} CPU cores, torch {m['torch']}; {each}; seconds "
            "compare within a seed, not across processes)")


def render(payload: dict[str, Any], json_name: str) -> str:
    streams = payload["per_seed"]
    full = {r["seed"] for r in streams}
    extra = [r for r in payload.get("tradeoff_only", []) if r["seed"] not in full]  # superseded by full runs
    runs = streams + extra
    st = payload["settings"]
    n = len(runs)
    lines = [BEGIN, "", f"Generated by `python benchmarks/shard_ledger.py --render` from `benchmarks/results/{json_name}`, "
             f"{_how_measured(payload)}: small-cnn on {st['dataset']}, "
             f"{st['epochs']} epochs of Adam at batch {st['batch_size']}, {n} seed(s), mean ± sd over seeds.", "",
             "| batching and ledger | test accuracy | ledger on disk | stored updates | training time with the ledger | forget latency (1 record) |",
             "|---|---|---|---|---|---|"]
    names = list(runs[0]["tradeoff"])
    for name in names:
        col = [r["tradeoff"][name] for r in runs]
        lines.append(f"| {name} | {_ms([c['test_acc'] for c in col])} | {_ms([c['ledger_bytes'] for c in col], 2**-20, '.1f')} MiB "
                     f"| {statistics.fmean(c['blobs'] for c in col):.0f} | {_ms([c['train_s'] for c in col], 1, '.0f')} s "
                     f"| {_ms([c['forget_latency_s'] for c in col], 1000, '.0f')} ms |")
    rand = [r["tradeoff"][names[0]]["test_acc"] for r in runs]
    one = [r["tradeoff"][names[1]]["test_acc"] for r in runs]
    gap = statistics.fmean(rand) - statistics.fmean(one)
    lines += ["", f"One-batch shards against random batching: test accuracy {100 * gap:+.2f} points lower "
              f"(mean of {n} seeds; must be within 1 point: {_verdict(abs(gap) <= 0.01)}).", ""]
    if extra:
        lines[2] += (f" Seeds {', '.join(str(r['seed']) for r in extra)} measured the trade-off only "
                     "(`--tradeoff-only --first-seed N`, `benchmarks/results/shard_ledger_tradeoff.json`); the "
                     f"deletion streams below are over {len(streams)} seed(s).")
    lines += _render_streams(streams)
    lines.append(END)
    return "\n".join(lines)


def _render_streams(runs: list[dict[str, Any]]) -> list[str]:
    lines = ["Deletion streams (each request as the planner recommends; repairs as long as the training undone "
             "since the last one), against a model retrained from scratch without the forgotten records:", "",
             "| stream | requests | test acc at the end | lowest along it | retrained | gap (points) "
             "| loss AUC: stream / retrained / original | LiRA AUC: stream / retrained / original | time / retrain time "
             "| plans |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for name in ("shards of 1 batch", "random (every-step ledger)", "subjects"):
        rows = [r["stream"][name] if name != "subjects" else r["stream"]["subjects"] for r in runs]
        ref = [r["stream"]["retrained_test_acc"] if name != "subjects" else r["stream"]["subjects"]["retrained_test_acc"]
               for r in runs]
        acc = [x["test_acc"] for x in rows]
        gap = statistics.fmean(ref) - statistics.fmean(acc)
        mia = {k: {w: [x["mia"][w][k] for x in rows] for w in ("stream", "retrained", "original")}
               for k in ("loss_auc", "lira_auc")}
        ratio = [x["time_over_retrain"] for x in rows]
        plans: dict[str, int] = {}
        for x in rows:
            for k, v in x["recommendations"].items():
                plans[k] = plans.get(k, 0) + v
        requests = rows[0]["timeline"][-1]["requests"]
        label = "10 subjects, subject-aligned shards" if name == "subjects" else f"1 record each, {name}"
        lowest = [min(t["test_acc"] for t in x["timeline"]) for x in rows]
        lines.append(f"| {label} | {requests} | {_ms(acc)} | {_ms(lowest)} | {_ms(ref)} | {100 * gap:+.2f} | "
                     + " / ".join(_ms(mia["loss_auc"][w], fmt=".2f") for w in ("stream", "retrained", "original")) + " | "
                     + " / ".join(_ms(mia["lira_auc"][w], fmt=".2f") for w in ("stream", "retrained", "original"))
                     + f" | {_ms(ratio)} | " + ", ".join(f"{k} {v}" for k, v in sorted(plans.items())) + " |")
        auc_gap = max(abs(statistics.fmean(mia[k]["stream"]) - statistics.fmean(mia[k]["retrained"])) for k in mia)
        signal = max(statistics.fmean(mia[k]["original"]) for k in mia)
        membership = (_verdict(auc_gap <= 0.05) if signal >= 0.6 else
                      f"not judged: the original model itself shows no membership signal (best AUC {signal:.2f}), "
                      "so agreeing with the retrained model says nothing here; see the forgetting-quality section, "
                      "whose setting has signal")
        verdicts.append(f"- {label}: accuracy within 2 points of the retrained model: {_verdict(gap <= 0.02)} "
                        f"({100 * gap:+.2f}); membership AUC within 0.05 of the retrained model's (loss and LiRA): "
                        f"{membership} (largest gap {auc_gap:.3f}); under 10% of one retrain's time: "
                        f"{_verdict(statistics.fmean(ratio) < 0.10)} ({100 * statistics.fmean(ratio):.1f}%).")
    points = zip(*(r["stream"]["shards of 1 batch"]["timeline"] for r in runs))
    lines += ["", "Must hold (computed from the JSON):", *verdicts, "",
              f"Test accuracy along the one-batch-shard stream (requests handled: accuracy, mean ± sd over {len(runs)} "
              "seed(s)): " + ", ".join(f"{ts[0]['requests']}: {_ms([t['test_acc'] for t in ts])}" for ts in points)
              + ".", ""]
    return lines


def write_docs(payload: dict[str, Any], json_name: str) -> None:
    write_section(DOC, BEGIN, END, render(payload, json_name), "The shard ledger: size, accuracy, deletion streams")
    print(f"wrote {DOC}")


# what may differ between parts of one measurement: which seeds, and where the JSON went
_SEED_KEYS = ("seeds", "first_seed", "tradeoff_only", "json", "merge")


def _parts(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """How a payload was measured: one entry per process (seeds, date, torch threads, wall time)."""
    return payload.get("merged_from") or [{"seeds": [r["seed"] for r in payload["per_seed"]],
                                           "date": payload["machine"]["date"],
                                           "torch_threads": payload["machine"]["torch_threads"],
                                           "wall_s": payload["wall_s"]}]


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One payload from runs of one setting that measured different seeds, each with its deletion streams. Refuses
    a part that measured the trade-off only, a different setting, or a seed measured twice. The parts' thread
    counts and dates are kept (``merged_from``): times compare within a seed, not across parts."""
    def setting(p: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in p["settings"].items() if k not in _SEED_KEYS}
    base = setting(parts[0])
    per_seed: list[dict[str, Any]] = []
    for part in parts:
        if part["settings"].get("tradeoff_only") or any(r["stream"] is None for r in part["per_seed"]):
            raise SystemExit("cannot merge: a part measured the trade-off only (no deletion streams)")
        if setting(part) != base:
            raise SystemExit(f"cannot merge: settings differ ({setting(part)} against {base})")
        for r in part["per_seed"]:
            if any(r["seed"] == q["seed"] for q in per_seed):
                raise SystemExit(f"cannot merge: seed {r['seed']} is in two files")
            per_seed.append(r)
    per_seed.sort(key=lambda r: r["seed"])
    return {"settings": {**base, "seeds": len(per_seed), "first_seed": per_seed[0]["seed"], "tradeoff_only": False},
            "per_seed": per_seed,
            "wall_s": sum(p["wall_s"] for p in parts), "merged_from": [x for p in parts for x in _parts(p)],
            "machine": {**parts[0]["machine"], "date": max(p["machine"]["date"] for p in parts)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="digits, 1 seed, 2 epochs, 10 requests, 2 shadows")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--subject-size", type=int, default=10)
    ap.add_argument("--shadows", type=int, default=4)
    ap.add_argument("--non-members", type=int, default=1000)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--workdir", default=None, help="where runs are written (default: a temporary folder)")
    ap.add_argument("--render", action="store_true", help="only write docs/benchmarks.md's section from the JSON")
    ap.add_argument("--first-seed", type=int, default=0, help="the first seed to run (seeds first..first+seeds-1)")
    ap.add_argument("--tradeoff-only", action="store_true",
                    help="part 1 only (no deletion streams); its JSON goes beside the main one "
                         "(shard_ledger_tradeoff.json) and --render adds its seeds to the trade-off table")
    ap.add_argument("--overhead", action="store_true",
                    help="also train each configuration without a ledger and report the ratio (order-dependent; "
                         "benchmarks/ledger_overhead.py measures overhead by alternating blocks instead)")
    ap.add_argument("--json", default=None, help="write the result JSON to this file instead of benchmarks/results/")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="join result files of one setting that measured different seeds into shard_ledger.json")
    args = ap.parse_args()
    if args.merge:
        save("shard_ledger", merge([json.loads(Path(f).read_text()) for f in args.merge]))
        return
    if args.render:
        name = "shard_ledger_quick" if args.quick else "shard_ledger"
        payload = json.loads((RESULTS / f"{name}.json").read_text())
        extra = RESULTS / "shard_ledger_tradeoff.json"
        if not args.quick and extra.is_file():  # seeds measured for the trade-off only
            payload["tradeoff_only"] = json.loads(extra.read_text())["per_seed"]
        write_docs(payload, f"{name}.json")
        return
    if args.quick:
        args.dataset, args.seeds, args.epochs, args.requests, args.shadows = "digits", 1, 2, 10, 2
        args.subject_size, args.non_members = 3, 200
    torch.set_num_threads(max(1, torch.get_num_threads()))
    root = Path(args.workdir or tempfile.mkdtemp(prefix="shard-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    per_seed = []
    started = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        probe = TrainConfig(dataset=args.dataset, seed=seed)
        rd = RunDir.create(root / f"probe-{seed}", probe)
        training = rd.training_data()
        one = part_one(args, root, seed, len(training), training.ids.numpy())
        runs = {name: root / f"{slug(name)}-{seed}" for name in configs(args, len(training))}
        two = None if args.tradeoff_only else part_two(args, root, seed, runs)
        per_seed.append({"seed": seed, "tradeoff": one, "stream": two})
        for path in root.iterdir():  # the every-step ledgers are large: keep the disk free between seeds
            shutil.rmtree(path, ignore_errors=True)
        # saved after every seed, so a long run that is stopped still leaves what it measured
        payload = {"settings": {k: v for k, v in vars(args).items() if k not in ("workdir", "render", "json", "merge")},
                   "per_seed": per_seed, "wall_s": time.perf_counter() - started}
        save("shard_ledger_quick" if args.quick else "shard_ledger_tradeoff" if args.tradeoff_only else "shard_ledger",
             payload, path=Path(args.json) if args.json else None)


if __name__ == "__main__":
    main()

"""Forgetting quality side by side: every method against a model retrained from scratch without the data.

    python benchmarks/forgetting_quality.py                  # Fashion-MNIST (Debian's files), 3 seeds (~1 h each, 1 core)
    python benchmarks/forgetting_quality.py --only-seed 1 --json s1.json   # one seed per process, then --merge
    python benchmarks/forgetting_quality.py --quick          # digits, 1 seed, small: keeps the script working (a test)
    python benchmarks/forgetting_quality.py --render         # tables and plots from the committed JSON only

The setting is one where membership inference has real signal on the trained model: small-cnn on a random
balanced 3,000-record subset of Fashion-MNIST (300 per class, drawn with the seed), 15 epochs of Adam at batch
64, so it overfits (train accuracy near 100%, test near 83%). Scenarios: (a) 1% of the training records at
random, (b) 0.1%, (c) one class as in the paper (class 6, Shirt), (d) the records of 5 data subjects of 10
records each. Methods: amnesiac (subtract only), amnesiac + one repair epoch, amnesiac on a shard ledger
(one-batch shards, subjects kept whole) + one repair epoch, relabel, naive, finetune (1 epoch each), NegGrad+
(gradient ascent with retained descent, one pass), SCRUB and SalUn with their papers' defaults, and retrain
(the reference, same recipe and seed without the records).

Columns per method and scenario, mean and sd over seeds: accuracy on the forget set, on a 2,000-record sample
of the retained set and on the test set; membership AUC on the forget set against 1,000 test records, by the
loss attack and by offline LiRA (8 shadow models trained on halves of a disjoint 3,000-record pool); each as its
absolute gap to retrain; the average gap over forget, retain and test accuracy and LiRA (the literature's
"average gap", with LiRA as its membership attack); the method's wall time and its ratio to retrain's; for
amnesiac the steps (or shards) subtracted and the ledger's bytes. Results: benchmarks/results/
forgetting_quality.json; --render writes the section of docs/benchmarks.md between its markers and one plot
per scenario (average gap against time relative to retrain) into docs/results/.
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
from amnesiac.unlearn import forget  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- forgetting-quality:begin -->", "<!-- forgetting-quality:end -->"
SCENARIOS = ("1% random", "0.1% random", "one class", "5 subjects")
METRICS = ("forget_acc", "retain_acc", "test_acc", "loss_auc", "lira_auc")
GAP_METRICS = ("forget_acc", "retain_acc", "test_acc", "lira_auc")

# name -> (method, options, which run it starts from)
METHODS: dict[str, tuple[str, dict[str, Any], str]] = {
    "amnesiac": ("amnesiac", {}, "steps"),
    "amnesiac + repair": ("amnesiac", {"repair_epochs": 1}, "steps"),
    "amnesiac, shard ledger + repair": ("amnesiac", {"repair_epochs": 1}, "shards"),
    "relabel": ("relabel", {"epochs": 1}, "plain"),
    "naive": ("naive", {"epochs": 1}, "plain"),
    "finetune": ("finetune", {"epochs": 1}, "plain"),
    "NegGrad+": ("gradient-ascent", {"retain_weight": 1.0}, "plain"),
    "SCRUB": ("scrub", {}, "plain"),
    "SalUn": ("salun", {}, "plain"),
}


def settings(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        return {"dataset": "digits", "per_class": 60, "epochs": 5, "batch_size": 32, "seeds": 1, "shadows": 2,
                "pool": 400, "non_members": 200, "subjects": 3, "subject_size": 5, "class": 3}
    return {"dataset": "fashion-mnist", "per_class": 300, "epochs": 15, "batch_size": 64, "seeds": args.seeds,
            "shadows": 8, "pool": 3000, "non_members": 1000, "subjects": 5, "subject_size": 10, "class": 6}


def recipe(s: dict[str, Any], seed: int, **extra: Any) -> TrainConfig:
    return TrainConfig(dataset=s["dataset"], model="small-cnn", epochs=s["epochs"], batch_size=s["batch_size"],
                       seed=seed, limit_class={c: s["per_class"] for c in range(10)}, **extra)


def forget_sets(run: RunDir, s: dict[str, Any], seed: int) -> dict[str, dict[str, Any]]:
    """Each scenario's request: ids (and, for subjects, the subject map)."""
    data = run.training_data()
    ids = data.ids.numpy()
    rng = np.random.default_rng(seed + 77)
    n = len(ids)
    picked = rng.permutation(ids)
    subj = picked[: s["subjects"] * s["subject_size"]]
    subjects = {f"person{k}": sorted(subj[k * s["subject_size"]:(k + 1) * s["subject_size"]].tolist())
                for k in range(s["subjects"])}
    rest = picked[subj.size:]
    return {
        "1% random": {"ids": sorted(rest[: max(1, n // 100)].tolist())},
        "0.1% random": {"ids": sorted(rest[-max(1, n // 1000):].tolist())},
        "one class": {"ids": sorted(data.ids_of_class(s["class"]).tolist()), "class": s["class"]},
        "5 subjects": {"ids": sorted(subj.tolist()), "subjects": subjects},
    }


def request_of(scenario: dict[str, Any]) -> dict[str, Any]:
    if "class" in scenario:
        return {"class_": scenario["class"]}
    if "subjects" in scenario:
        return {"subjects": sorted(scenario["subjects"]), "subject_map": scenario["subjects"]}
    return {"ids": scenario["ids"]}


def copy_run(src: Path, dest: Path, *, ledger: bool) -> RunDir:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=None if ledger else shutil.ignore_patterns("ledger"))
    return RunDir.open(dest)


def one_seed(s: dict[str, Any], seed: int, root: Path, shadows: Any, non_members: Any) -> dict[str, Any]:
    base = train_run(recipe(s, seed, record="all"), root / "steps", progress=False).run
    scen = forget_sets(base, s, seed)
    subjects_file = root / "subjects.json"
    subjects_file.write_text(json.dumps(scen["5 subjects"]["subjects"]))
    sharded = train_run(recipe(s, seed, record="all", batching="shards", shard_size=s["batch_size"],
                               shard_subjects=str(subjects_file)), root / "shards", progress=False).run
    training = base.training_data()
    trained = base.load_model()
    out: dict[str, Any] = {}
    for name, scenario in scen.items():
        retained = training.without_ids(scenario["ids"])
        g = torch.Generator().manual_seed(seed)
        sets = {"forget": training.only_ids(scenario["ids"]), "non_members": non_members, "test": base.bundle().test,
                "retain": retained.subset(torch.sort(torch.randperm(len(retained), generator=g)[:2000]).values)}
        rows: dict[str, Any] = {}
        t0 = time.perf_counter()
        ref = train_run(TrainConfig.from_dict({**recipe(s, seed).to_dict(), "record": "none",
                                               "exclude_ids": scenario["ids"]}), root / "retrain", progress=False)
        retrain_s = time.perf_counter() - t0
        rows["retrain"] = measure(ref.model, sets, shadows, retrain_s)
        rows["original (no deletion)"] = measure(trained, sets, shadows, 0.0)  # the signal there was to remove
        for label, (method, options, start) in METHODS.items():
            src = {"steps": base.path, "shards": sharded.path, "plain": base.path}[start]
            run = copy_run(src, root / "work", ledger=start != "plain")
            # amnesiac is measured where the planner would refuse it too (a whole class): that is the comparison
            res = forget(run, method=method, options=options, progress=False, force=method == "amnesiac",
                         **request_of(scenario))
            receipt = res.receipt
            row = measure(res.model, sets, shadows, receipt["timings_s"]["method"])
            row["evaluation"] = receipt["evaluation"]["after"]
            if method == "amnesiac":
                row["undone"] = receipt["n_steps_reverted"]
                row["planner"] = receipt["plan"]["recommendation"]
                row["ledger_bytes"] = dir_bytes(RunDir.open(src).ledger_path)
            rows[label] = row
        shutil.rmtree(root / "work", ignore_errors=True)
        shutil.rmtree(root / "retrain", ignore_errors=True)
        out[name] = {"n_forget": len(scenario["ids"]), "rows": rows}
        print(f"seed {seed} {name}: " + ", ".join(f"{k} {v['forget_acc']:.2f}/{v['test_acc']:.2f}/{v['lira_auc']:.2f}"
                                                  for k, v in rows.items()), flush=True)
    return out


def measure(model: Any, sets: dict[str, Any], shadows: Any, seconds: float) -> dict[str, Any]:
    from amnesiac.training import evaluate

    mia = membership({"m": model}, sets["forget"], sets["non_members"], shadows)["m"]
    return {**{f"{k}_acc": evaluate(model, sets[k])["accuracy"] for k in ("forget", "retain", "test")}, **mia,
            "time_s": seconds}


def run_all(args: argparse.Namespace, partial: Any = None) -> dict[str, Any]:
    s = settings(args)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="fq-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # the attacker's shadow models: halves of a pool that no seed's target trains on (seed 0's subset is excluded,
    # and the other seeds' subsets overlap the pool only by chance; their forget sets are checked below)
    probe = RunDir.create(root / "probe", recipe(s, 0))
    full = probe.bundle().train
    targets = set()
    for seed in range(s["seeds"]):
        targets |= set(RunDir.create(root / f"probe{seed}", recipe(s, seed)).training_data().ids.tolist())
    outside = np.setdiff1d(full.ids.numpy(), np.fromiter(targets, dtype=np.int64))
    pool_ids = np.random.default_rng(5).choice(outside, min(s["pool"], outside.size), replace=False)
    pool = full.only_ids(sorted(pool_ids.tolist()))
    shadows = train_shadows(pool, ShadowRecipe("small-cnn", s["epochs"], s["batch_size"]), n=s["shadows"], seed=11,
                            progress=False)
    test = probe.bundle().test
    g = torch.Generator().manual_seed(3)
    non_members = test.subset(torch.sort(torch.randperm(len(test), generator=g)[: s["non_members"]]).values)
    per_seed = {}
    for seed in range(s["seeds"]) if args.only_seed is None else [args.only_seed]:
        per_seed[seed] = one_seed(s, seed, root / f"seed{seed}", shadows, non_members)
        shutil.rmtree(root / f"seed{seed}", ignore_errors=True)
        if partial is not None:  # saved after every seed, so a stopped run still leaves what it measured
            partial({"settings": s, "per_seed": per_seed, "wall_s": time.perf_counter() - started})
    return {"settings": s, "per_seed": per_seed, "wall_s": time.perf_counter() - started}


# ----------------------------------------------------------------------------- rendering


def summarize(payload: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """scenario -> method -> mean/sd of every metric, its gap to retrain, the average gap, time ratio."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    seeds = list(payload["per_seed"].values())
    for scen in SCENARIOS:
        methods = list(seeds[0][scen]["rows"])
        out[scen] = {}
        for m in methods:
            per = []
            for sd in seeds:
                rows = sd[scen]["rows"]
                row, ref = rows[m], rows["retrain"]
                gaps = {k: abs(row[k] - ref[k]) for k in METRICS}
                per.append({**{k: row[k] for k in METRICS}, **{f"gap_{k}": v for k, v in gaps.items()},
                            "avg_gap": statistics.fmean(gaps[k] for k in GAP_METRICS),
                            "time_s": row["time_s"], "time_ratio": row["time_s"] / ref["time_s"],
                            **{k: row[k] for k in ("undone", "ledger_bytes") if k in row}})
            out[scen][m] = {k: _mean_sd([p[k] for p in per]) for k in per[0]}
            out[scen][m]["n_forget"] = seeds[0][scen]["n_forget"]
    return out


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _cell(ms: tuple[float, float], fmt: str = ".3f") -> str:
    return f"{ms[0]:{fmt}} ± {ms[1]:{fmt}}"


def _merged_words(payload: dict[str, Any]) -> str:
    parts = payload.get("merged_from")
    if not parts:
        return ""
    runs = "; ".join(f"seed {', '.join(p['seeds'])} on {p['date'][:10]} ({p['wall_s'] / 60:.0f} min)" for p in parts)
    return f", one process per seed with `--only-seed K`, joined by `--merge` ({runs})"


def render(payload: dict[str, Any], json_name: str) -> str:
    summary = summarize(payload)
    s = payload["settings"]
    m = payload["machine"]
    lines = [BEGIN, "", f"Generated by `python benchmarks/forgetting_quality.py --render` from `benchmarks/results/"
             f"{json_name}` (measured by `python benchmarks/forgetting_quality.py`{' --quick' if s['dataset'] == 'digits' else ''}"
             f"{_merged_words(payload)} on {m['cpu_count']} CPU cores, {m['torch_threads']} torch thread(s), torch {m['torch']}, {m['date']}; {len(payload['per_seed'])} seed(s), "
             f"mean ± sd). Setting: small-cnn on {10 * s['per_class']} {s['dataset']} records ({s['per_class']} per "
             f"class), {s['epochs']} epochs at batch {s['batch_size']}; membership against {s['non_members']} test "
             f"records, LiRA with {s['shadows']} shadow models. Each metric's gap is to the retrained model; the "
             "average gap is over forget, retain and test accuracy and LiRA AUC.", ""]
    for scen, rows in summary.items():
        n = rows["retrain"]["n_forget"]
        lines += [f"**{scen}** ({n:.0f} records)", "",
                  "| method | forget acc | retain acc | test acc | loss AUC | LiRA AUC | avg gap | time (s) | x retrain | undone | ledger |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        order = sorted(rows, key=lambda k: (k != "retrain", k != "original (no deletion)", rows[k]["avg_gap"][0]))
        for name in order:
            r = rows[name]
            undone = f"{r['undone'][0]:.0f}" if "undone" in r else ""
            ledger = f"{r['ledger_bytes'][0] / 2**20:.0f} MiB" if "ledger_bytes" in r else ""
            lines.append(f"| {name} | {_cell(r['forget_acc'])} | {_cell(r['retain_acc'])} | {_cell(r['test_acc'])} | "
                         f"{_cell(r['loss_auc'])} | {_cell(r['lira_auc'])} | {_cell(r['avg_gap'])} | "
                         f"{_cell(r['time_s'], '.1f')} | {r['time_ratio'][0]:.3f} | {undone} | {ledger} |")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def plots(payload: dict[str, Any], folder: Path, prefix: str) -> list[Path]:
    from matplotlib.figure import Figure

    summary = summarize(payload)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for scen, rows in summary.items():
        fig = Figure(figsize=(6, 4))
        ax = fig.add_subplot()
        for name, r in rows.items():
            x, y = max(r["time_ratio"][0], 1e-4), r["avg_gap"][0]
            ax.errorbar([x], [y], yerr=[r["avg_gap"][1]], fmt="o", capsize=3)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("wall time relative to retraining from scratch (log)")
        ax.set_ylabel("average gap to retrain")
        ax.set_title(f"{scen}: closeness to retraining against cost")
        fig.tight_layout()
        path = folder / f"{prefix}-{scen.replace('%', 'pct').replace(' ', '-').replace('.', '')}.png"
        fig.savefig(path, dpi=110)
        paths.append(path)
    return paths


def write_docs(payload: dict[str, Any], json_name: str) -> None:
    write_section(DOC, BEGIN, END, render(payload, json_name), "Forgetting quality: every method against retraining")
    for p in plots(payload, ROOT / "docs" / "results", "forgetting-quality"):
        print(f"wrote {p}")
    print(f"wrote {DOC}")


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One payload from runs of the same setting that measured different seeds (refuses a mixed setting or a seed
    measured twice). Wall time is the sum, i.e. the compute spent, not the elapsed time of parallel runs."""
    base = {k: v for k, v in parts[0]["settings"].items()}
    per_seed: dict[str, Any] = {}
    for part in parts:
        if part["settings"] != base:
            raise SystemExit(f"cannot merge: settings differ ({part['settings']} against {base})")
        for seed, result in part["per_seed"].items():
            if str(seed) in per_seed:
                raise SystemExit(f"cannot merge: seed {seed} is in two files")
            per_seed[str(seed)] = result
    threads = {p["machine"]["torch_threads"] for p in parts}
    if len(threads) != 1:
        raise SystemExit(f"cannot merge: the parts ran with different torch thread counts {sorted(threads)}")
    merged_from = [{"seeds": sorted(p["per_seed"], key=int), "date": p["machine"]["date"], "wall_s": p["wall_s"]}
                   for p in parts]
    return {"settings": base, "per_seed": dict(sorted(per_seed.items(), key=lambda kv: int(kv[0]))),
            "wall_s": sum(p["wall_s"] for p in parts), "merged_from": merged_from,
            "machine": {**parts[0]["machine"], "date": max(p["machine"]["date"] for p in parts)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="digits, 1 seed, small (minutes): keeps the script working")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--render", action="store_true", help="only render docs/benchmarks.md and plots from the JSON")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default=None, help="result JSON name (default forgetting_quality[_quick])")
    ap.add_argument("--json", default=None, help="write the result JSON to this file instead of benchmarks/results/")
    ap.add_argument("--only-seed", type=int, default=None,
                    help="run this seed alone (same pool and shadows as the full run), to spread seeds over processes")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="join per-seed result files of one setting into the result JSON (then --render)")
    args = ap.parse_args()
    name = args.out or ("forgetting_quality_quick" if args.quick else "forgetting_quality")
    if args.merge:
        save(name, merge([json.loads(Path(f).read_text()) for f in args.merge]))
        return
    if args.render:
        write_docs(json.loads((RESULTS / f"{name}.json").read_text()), f"{name}.json")
        return
    target = Path(args.json) if args.json else None
    payload = run_all(args, partial=lambda p: save(name, p, path=target))
    path = save(name, payload, path=target)
    print(render(json.loads(path.read_text()), path.name))


if __name__ == "__main__":
    main()

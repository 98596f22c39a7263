"""Forgetting quality side by side: every method against a model retrained from scratch without the data.

    python benchmarks/forgetting_quality.py                  # Fashion-MNIST (Debian's files), tuning + 3 seeds
    python benchmarks/forgetting_quality.py --only-seed 0 --json s0.json   # tuning and one seed; then, per process:
    python benchmarks/forgetting_quality.py --only-seed 1 --tuning s0.json --json s1.json   # and --merge
    python benchmarks/forgetting_quality.py --quick          # digits, 1 seed, small: keeps the script working (a test)
    python benchmarks/forgetting_quality.py --render         # tables and plots from the committed JSON only

The setting is one where membership inference has real signal on the trained model: small-cnn on a random
balanced 2,000-record subset of Fashion-MNIST (200 per class, drawn with the seed), 8 epochs of Adam at batch
64, so it overfits (test accuracy near 84%; the trained model's row shows the membership signal). Scenarios: (a) 1% of the training records at
random, (b) 0.1%, (c) one class as in the paper (class 6, Shirt), (d) the records of 5 data subjects of 10
records each. Methods: amnesiac (subtract only), amnesiac + one repair epoch, amnesiac on a shard ledger
(one-batch shards, subjects kept whole) + one repair epoch, relabel, naive, finetune (1 epoch each), NegGrad+
(gradient ascent with retained descent, one pass), SCRUB and SalUn with their papers' defaults, and retrain
(the reference, same recipe and seed without the records). Each method with hyper-parameters runs twice: with
those defaults ("untuned") and with the values tuning chose ("tuned").

Tuning (equal budgets): every method has a declared grid (SEARCH). On a tuning seed (TUNE_SEED, never an
evaluation seed) with its own forget sets (drawn away from every evaluation forget set; another class for the
class request) and a validation set that no model trains on (not the test set), each method's grid is tried in
a seeded order until its budget (``tune_budget`` x that scenario's retrain time: two retrains, counted in the
method's own seconds, the same for every method) is spent; the point with the smallest average gap to the
tuning seed's retrain is chosen for all evaluation seeds. The chosen values, the points tried and the search
time are saved and rendered.

Columns per method and scenario, mean and sd over seeds: accuracy on the forget set, on the retained set (a sample
of at most 2,000 of its records) and on the test set; membership AUC on the forget set against 1,000 test records, by the
loss attack and by offline LiRA (8 shadow models trained on halves of a disjoint 3,000-record pool); each as its
absolute gap to retrain; the average gap over forget, retain and test accuracy and LiRA (the literature's
"average gap", with LiRA as its membership attack); the verification error (L2 distance of the weights from
the retrained model's; a second retrain from the same initialisation with another data order is the noise
floor, row "retrain, another data order"); on the 1% and subject scenarios U-LiRA (per-record LiRA with 4 shadow
models trained on every retained record and half of the deleted ones, the AUC of telling the row's model from
the retrain on the deleted records); the method's wall time and its ratio to retrain's; for amnesiac the steps
(or shards) subtracted and the ledger's bytes. Results: benchmarks/results/
forgetting_quality.json; --render writes the section of docs/benchmarks.md between its markers and one plot
per scenario (average gap against time relative to retrain) into docs/results/.
"""

from __future__ import annotations

import argparse
import itertools
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
from _common import RESULTS, dir_bytes, membership, read_result, refuse, save, write_section  # noqa: E402

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

# the declared search spaces of the tuned rows (option -> values); amnesiac's subtraction alone has none
SEARCH: dict[str, dict[str, list[Any]]] = {
    "amnesiac + repair": {"repair_epochs": [1, 2], "repair_lr": [1e-4, 3e-4, 1e-3]},
    "amnesiac, shard ledger + repair": {"repair_epochs": [1, 2], "repair_lr": [1e-4, 3e-4, 1e-3]},
    "relabel": {"epochs": [1, 2], "lr": [1e-4, 3e-4, 1e-3]},
    "naive": {"epochs": [1, 2], "lr": [1e-4, 3e-4, 1e-3]},
    "finetune": {"epochs": [1, 2], "lr": [1e-4, 3e-4, 1e-3]},
    # its default is one pass over the forget set (a single step for 20 records): the length is searched too
    "NegGrad+": {"lr": [1e-4, 3e-4, 1e-3], "retain_weight": [1.0, 3.0], "steps": [5, 20, 60]},
    "SCRUB": {"lr": [1e-4, 5e-4, 2e-3], "max_epochs": [1, 2], "epochs": [2, 4]},
    "SalUn": {"lr": [1e-3, 4e-3, 1.3e-2], "saliency": [0.3, 0.5], "epochs": [2, 5, 10]},
}
TUNE_SEED = 100  # the tuning seed's run is never an evaluation seed's
ULIRA = ("1% random", "5 subjects")  # the scenarios with per-record U-LiRA shadows


def settings(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        return {"dataset": "digits", "per_class": 60, "epochs": 5, "batch_size": 32, "seeds": 1, "shadows": 2,
                "pool": 300, "non_members": 200, "subjects": 3, "subject_size": 5, "class": 3, "tune_class": 5,
                "validation": 100, "tune_budget": 0.5, "ulira_shadows": 2,
                "tune_methods": ["amnesiac + repair", "NegGrad+"]}
    # sized so that tuning and three seeds (one process per seed) run in about three hours on 2 cores
    return {"dataset": "fashion-mnist", "per_class": 200, "epochs": 8, "batch_size": 64, "seeds": args.seeds,
            "shadows": 8, "pool": 3000, "non_members": 1000, "subjects": 5, "subject_size": 10, "class": 6,
            "tune_class": 2, "validation": 1000, "tune_budget": 2.0, "ulira_shadows": 4, "tune_methods": list(SEARCH)}


def recipe(s: dict[str, Any], seed: int, **extra: Any) -> TrainConfig:
    return TrainConfig(dataset=s["dataset"], model="small-cnn", epochs=s["epochs"], batch_size=s["batch_size"],
                       seed=seed, limit_class={c: s["per_class"] for c in range(10)}, **extra)


def forget_sets(run: RunDir, s: dict[str, Any], seed: int, *, avoid: Any = (),
                klass: int | None = None) -> dict[str, dict[str, Any]]:
    """Each scenario's request: ids (and, for subjects, the subject map); none of them in ``avoid``, and the class
    request for ``klass`` (default the setting's class)."""
    data = run.training_data()
    ids = data.ids.numpy()
    rng = np.random.default_rng(seed + 77)
    n = len(ids)
    picked = rng.permutation(np.setdiff1d(ids, np.asarray(list(avoid), dtype=np.int64)))
    klass = s["class"] if klass is None else klass
    subj = picked[: s["subjects"] * s["subject_size"]]
    subjects = {f"person{k}": sorted(subj[k * s["subject_size"]:(k + 1) * s["subject_size"]].tolist())
                for k in range(s["subjects"])}
    rest = picked[subj.size:]
    return {
        "1% random": {"ids": sorted(rest[: max(1, n // 100)].tolist())},
        "0.1% random": {"ids": sorted(rest[-max(1, n // 1000):].tolist())},
        "one class": {"ids": sorted(data.ids_of_class(klass).tolist()), "class": klass},
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


def train_targets(s: dict[str, Any], seed: int, root: Path, *, avoid: Any = (),
                  klass: int | None = None) -> tuple[RunDir, RunDir, dict[str, dict[str, Any]]]:
    """The seed's trained run (every-step ledger), its shard-ledger twin and its scenarios' requests."""
    base = train_run(recipe(s, seed, record="all"), root / "steps", progress=False).run
    scen = forget_sets(base, s, seed, avoid=avoid, klass=klass)
    subjects_file = root / "subjects.json"
    subjects_file.write_text(json.dumps(scen["5 subjects"]["subjects"]))
    sharded = train_run(recipe(s, seed, record="all", batching="shards", shard_size=s["batch_size"],
                               shard_subjects=str(subjects_file)), root / "shards", progress=False).run
    return base, sharded, scen


def retrain(base: RunDir, retained: Any, order_seed: int) -> tuple[Any, float]:
    """Training from the run's initialisation (the ledger's initial state) on the retained records alone, timed
    as the methods are: training only, no evaluation along the way. With the run's own seed it is the reference
    (the recipe the run followed, without the records); with another seed, another data order."""
    from amnesiac.ledger import LedgerStore
    from amnesiac.training import fit, make_optimizer

    cfg = base.config
    t0 = time.perf_counter()
    model = base.new_model()
    with LedgerStore.open(base.ledger_path) as store:
        model.load_state_dict(store.load_initial())
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    fit(model, optimizer, retained, epochs=cfg.epochs, batch_size=cfg.batch_size, seed=order_seed, progress=False)
    model.eval()
    return model, time.perf_counter() - t0


def order_retrain(base: RunDir, retained: Any, seed: int) -> tuple[Any, float]:
    """A second retrain without the records from the same initialisation with another data order: how far two
    exact retrains lie apart, the noise floor of every gap to the retrain."""
    return retrain(base, retained, seed + 5000)


class Judge:
    """What every row of one scenario is measured with: the evaluation sets, the attacker's shadows, the
    retrained model (for the verification error) and, for the U-LiRA scenarios, shadows with and without each
    deleted record."""

    def __init__(self, sets: dict[str, Any], shadows: Any, reference: Any, ulira: Any = None) -> None:
        self.sets, self.shadows, self.reference, self.ulira = sets, shadows, reference, ulira

    def measure(self, model: Any, seconds: float) -> dict[str, Any]:
        from amnesiac.attacks import ulira_auc, verification_error
        from amnesiac.training import evaluate

        sets = self.sets
        mia = membership({"m": model}, sets["forget"], sets["non_members"], self.shadows)["m"]
        row = {**{f"{k}_acc": evaluate(model, sets[k])["accuracy"] for k in ("forget", "retain", "test")}, **mia,
               "time_s": seconds, "verification_error": verification_error(model, self.reference)}
        if self.ulira is not None:
            row["ulira_auc"] = ulira_auc(model, self.reference, self.ulira)
        return row


def ulira_shadows(s: dict[str, Any], seed: int, training: Any, scenario: dict[str, Any]) -> Any:
    """Shadow models trained on every retained record and half of the deleted ones (a subject's records together)."""
    from amnesiac.attacks import train_inclusion_shadows

    groups = list(scenario["subjects"].values()) if "subjects" in scenario else None
    return train_inclusion_shadows(training.without_ids(scenario["ids"]), training.only_ids(scenario["ids"]),
                                   ShadowRecipe("small-cnn", s["epochs"], s["batch_size"]), n=s["ulira_shadows"],
                                   seed=seed + 900, groups=groups, progress=False)


def method_runs(tuned: dict[str, Any] | None) -> list[tuple[str, str, dict[str, Any], str, Any]]:
    """(row label, method, options, starting run, the hyper-parameters to report) for every row: each method with
    its paper's defaults, and the searched ones again with the values tuning chose for this scenario."""
    runs = [(label, method, dict(options), start, "defaults") for label, (method, options, start) in METHODS.items()]
    for label, choice in (tuned or {}).items():
        method, options, start = METHODS[label]
        runs.append((f"{label} (tuned)", method, {**options, **choice["options"]}, start, choice["options"]))
    return runs


def run_method(method: str, options: dict[str, Any], src: Path, work: Path, scenario: dict[str, Any], *,
               ledger: bool) -> tuple[Any, dict[str, Any]]:
    """One method on a copy of ``src`` (with its ledger if ``ledger``): the forgotten model and its receipt's say."""
    run = copy_run(src, work, ledger=ledger)
    # amnesiac is measured where the planner would refuse it too (a whole class): that is the comparison
    # the Judge measures every row alike; forget's own evaluation (curves, before/after) would be timed as the
    # method's and cost each tuning point more than most methods take
    res = forget(run, method=method, options=options, progress=False, force=method == "amnesiac",
                 evaluate_after=False, **request_of(scenario))
    receipt = res.receipt
    extra: dict[str, Any] = {"method_s": receipt["timings_s"]["method"]}
    if method == "amnesiac":
        extra.update(undone=receipt["n_steps_reverted"], planner=receipt["plan"]["recommendation"])
    return res.model, extra


def scenario_sets(training: Any, scenario: dict[str, Any], non_members: Any, test: Any, seed: int) -> dict[str, Any]:
    retained = training.without_ids(scenario["ids"])
    g = torch.Generator().manual_seed(seed)
    return {"forget": training.only_ids(scenario["ids"]), "non_members": non_members, "test": test,
            "retain": retained.subset(torch.sort(torch.randperm(len(retained), generator=g)[:2000]).values)}


def one_seed(s: dict[str, Any], seed: int, root: Path, shadows: Any, non_members: Any,
             tuned: dict[str, Any]) -> dict[str, Any]:
    base, sharded, scen = train_targets(s, seed, root)
    training, trained = base.training_data(), base.load_model()
    out: dict[str, Any] = {}
    for name, scenario in scen.items():
        sets = scenario_sets(training, scenario, non_members, base.bundle().test, seed)
        ref, retrain_s = retrain(base, training.without_ids(scenario["ids"]), seed)
        judge = Judge(sets, shadows, ref, ulira_shadows(s, seed, training, scenario) if name in ULIRA else None)
        rows: dict[str, Any] = {"retrain": judge.measure(ref, retrain_s)}
        floor, floor_s = order_retrain(base, training.without_ids(scenario["ids"]), seed)
        rows["retrain, another data order"] = judge.measure(floor, floor_s)
        rows["original (no deletion)"] = judge.measure(trained, 0.0)  # the signal there was to remove
        for label, method, options, start, shown in method_runs(tuned.get(name)):
            src = {"steps": base.path, "shards": sharded.path, "plain": base.path}[start]
            model, extra = run_method(method, options, src, root / "work", scenario, ledger=start != "plain")
            rows[label] = {**judge.measure(model, extra.pop("method_s")), **extra, "options": shown}
            if method == "amnesiac":
                rows[label]["ledger_bytes"] = dir_bytes(RunDir.open(src).ledger_path)
            shutil.rmtree(root / "work", ignore_errors=True)
        out[name] = {"n_forget": len(scenario["ids"]), "ids": scenario["ids"], "rows": rows}
        print(f"seed {seed} {name}: " + ", ".join(f"{k} {v['forget_acc']:.2f}/{v['test_acc']:.2f}/{v['lira_auc']:.2f}"
                                                  for k, v in rows.items()), flush=True)
    return out
# ----------------------------------------------------------------------------- tuning


def search_order(space: dict[str, list[Any]], seed: int) -> list[dict[str, Any]]:
    """Every point of a declared grid, in a seeded random order (a budget that runs out stops anywhere)."""
    points = [dict(zip(space, values, strict=True)) for values in itertools.product(*space.values())]
    order = np.random.default_rng(seed).permutation(len(points))
    return [points[k] for k in order]


def avg_gap(row: dict[str, Any], ref: dict[str, Any]) -> float:
    return statistics.fmean(abs(row[k] - ref[k]) for k in GAP_METRICS)


def plan_splits(s: dict[str, Any], root: Path) -> dict[str, Any]:
    """Which records each part of the benchmark sees, fixed before anything trains.

    Evaluation: seeds 0..n-1, each with its forget sets and the test set. The attacker's shadow pool and the
    validation set are drawn from training-split records that no target (evaluation or tuning seed) trains on.
    Tuning: seed ``TUNE_SEED``'s own run, with forget sets drawn away from every evaluation forget set (and
    another class for the class request), measured on the validation set in place of the test set."""
    seeds = list(range(s["seeds"]))
    probes = {seed: RunDir.create(root / f"probe{seed}", recipe(s, seed)) for seed in (*seeds, TUNE_SEED)}
    full = probes[seeds[0]].bundle().train
    targets = np.unique(np.concatenate([p.training_data().ids.numpy() for p in probes.values()]))
    outside = np.setdiff1d(full.ids.numpy(), targets)
    pool_ids = np.random.default_rng(5).choice(outside, min(s["pool"], outside.size), replace=False)
    rest = np.setdiff1d(outside, pool_ids)
    if rest.size < s["validation"]:
        refuse(f"only {rest.size} training records lie outside every target and the shadow pool; the "
               f"validation set needs {s['validation']}: use fewer seeds or a smaller pool")
    validation_ids = np.random.default_rng(6).choice(rest, s["validation"], replace=False)
    evaluation = {seed: forget_sets(probes[seed], s, seed) for seed in seeds}
    avoid = sorted({i for scen in evaluation.values() for sc in scen.values() for i in sc["ids"]})
    return {"seeds": seeds, "pool_ids": sorted(pool_ids.tolist()), "validation_ids": sorted(validation_ids.tolist()),
            "evaluation": evaluation, "avoid": avoid, "tune_seed": TUNE_SEED, "tune_class": s["tune_class"],
            "full": full, "test": probes[seeds[0]].bundle().test}


def tune(s: dict[str, Any], plan: dict[str, Any], root: Path, shadows: Any) -> dict[str, Any]:
    """For each scenario and each method in SEARCH: its declared grid, tried in a seeded order on the tuning
    seed's run until the method's wall-time budget (``tune_budget`` x that scenario's retrain time) is spent;
    the point with the smallest average gap to the tuning seed's retrain on the validation set wins."""
    seed = plan["tune_seed"]
    base, sharded, scen = train_targets(s, seed, root, avoid=plan["avoid"], klass=plan["tune_class"])
    training = base.training_data()
    validation = plan["full"].only_ids(plan["validation_ids"])
    chosen: dict[str, Any] = {}
    for name, scenario in scen.items():
        sets = scenario_sets(training, scenario, validation, validation, seed)
        ref, retrain_s = retrain(base, training.without_ids(scenario["ids"]), seed)
        judge = Judge(sets, shadows, ref)
        ref_row = judge.measure(ref, retrain_s)
        chosen[name] = {}
        for label in s["tune_methods"]:
            chosen[name][label] = search(label, SEARCH[label], s["tune_budget"] * retrain_s, judge, ref_row,
                                         base=base, sharded=sharded, scenario=scenario, work=root / "work", seed=seed)
        print(f"tuned {name}: " + "; ".join(f"{k} {v['options']} ({len(v['tried'])} tried, {v['seconds']:.0f} s)"
                                           for k, v in chosen[name].items()), flush=True)
    return {"seed": seed, "class": plan["tune_class"], "forget_ids": {k: v["ids"] for k, v in scen.items()},
            "chosen": chosen}


def search(label: str, space: dict[str, list[Any]], budget_s: float, judge: Judge, ref_row: dict[str, Any], *,
           base: RunDir, sharded: RunDir, scenario: dict[str, Any], work: Path, seed: int) -> dict[str, Any]:
    method, options, start = METHODS[label]
    src = sharded.path if start == "shards" else base.path
    tried, spent = [], 0.0
    for point in search_order(space, seed):
        if tried and spent >= budget_s:
            break
        model, extra = run_method(method, {**options, **point}, src, work, scenario, ledger=start != "plain")
        row = judge.measure(model, 0.0)
        spent += extra["method_s"]  # the method's own seconds, as its rows and the retrain are timed
        tried.append({"options": point, "avg_gap": avg_gap(row, ref_row)})
        shutil.rmtree(work, ignore_errors=True)
    best = min(tried, key=lambda t: t["avg_gap"])
    return {"options": best["options"], "avg_gap": best["avg_gap"], "tried": tried, "seconds": spent,
            "budget_s": budget_s, "grid": len(search_order(space, seed))}


def run_all(args: argparse.Namespace, partial: Any = None) -> dict[str, Any]:
    s = settings(args)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="fq-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    plan = plan_splits(s, root)
    pool = plan["full"].only_ids(plan["pool_ids"])
    shadows = train_shadows(pool, ShadowRecipe("small-cnn", s["epochs"], s["batch_size"]), n=s["shadows"], seed=11,
                            progress=False)
    g = torch.Generator().manual_seed(3)
    test = plan["test"]
    non_members = test.subset(torch.sort(torch.randperm(len(test), generator=g)[: s["non_members"]]).values)
    tuning = load_tuning(args) or tune(s, plan, root / "tuning", shadows)
    if partial is not None:
        partial({"settings": s, "tuning": tuning, "per_seed": {}, "wall_s": time.perf_counter() - started})
    per_seed = {}
    for seed in plan["seeds"] if args.only_seed is None else [args.only_seed]:
        per_seed[seed] = one_seed(s, seed, root / f"seed{seed}", shadows, non_members, tuning["chosen"])
        shutil.rmtree(root / f"seed{seed}", ignore_errors=True)
        if partial is not None:  # saved after every seed, so a stopped run still leaves what it measured
            partial({"settings": s, "tuning": tuning, "per_seed": per_seed, "wall_s": time.perf_counter() - started})
    return {"settings": s, "tuning": tuning, "per_seed": per_seed, "wall_s": time.perf_counter() - started}


def load_tuning(args: argparse.Namespace) -> dict[str, Any] | None:
    """The tuning of an earlier run of the same setting (``--tuning JSON``), so seeds run apart share one tuning."""
    if not args.tuning:
        return None
    saved = read_result(args.tuning, "--tuning")
    if saved.get("settings") != settings(args) or "tuning" not in saved:
        refuse(f"--tuning {args.tuning}: its setting {saved.get('settings')} is not this run's")
    return saved["tuning"]


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
                            **{k: row[k] for k in ("undone", "ledger_bytes", "verification_error", "ulira_auc")
                               if k in row}})
            out[scen][m] = {k: _mean_sd([p[k] for p in per]) for k in per[0]}
            out[scen][m]["n_forget"] = seeds[0][scen]["n_forget"]
            # results from before the tuned rows ran every method with its defaults
            out[scen][m]["options"] = seeds[0][scen]["rows"][m].get("options", "defaults" if m in METHODS else "-")
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


def _options_cell(options: Any, name: str) -> str:
    if options == "defaults":
        return "none" if name == "amnesiac" else "untuned defaults"
    if isinstance(options, dict):
        return "tuned: " + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in options.items())
    return "-"


def _optional(r: dict[str, Any], key: str, fmt: str) -> str:
    return _cell(r[key], fmt) if key in r else ""


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
             "average gap is over forget, retain and test accuracy and LiRA AUC." + _new_columns_words(payload), ""]
    lines += _tuning_lines(payload)
    for scen, rows in summary.items():
        n = rows["retrain"]["n_forget"]
        lines += [f"**{scen}** ({n:.0f} records)", "",
                  "| method | hyper-parameters | forget acc | retain acc | test acc | loss AUC | LiRA AUC | U-LiRA AUC "
                  "| verification error | avg gap | time (s) | x retrain | undone | ledger |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        order = sorted(rows, key=lambda k: (k != "retrain", not k.startswith("retrain,"),
                                            k != "original (no deletion)", rows[k]["avg_gap"][0]))
        for name in order:
            r = rows[name]
            undone = f"{r['undone'][0]:.0f}" if "undone" in r else ""
            ledger = f"{r['ledger_bytes'][0] / 2**20:.0f} MiB" if "ledger_bytes" in r else ""
            lines.append(f"| {name} | {_options_cell(r['options'], name)} | {_cell(r['forget_acc'])} | "
                         f"{_cell(r['retain_acc'])} | {_cell(r['test_acc'])} | {_cell(r['loss_auc'])} | "
                         f"{_cell(r['lira_auc'])} | {_optional(r, 'ulira_auc', '.3f')} | "
                         f"{_optional(r, 'verification_error', '.2f')} | {_cell(r['avg_gap'])} | "
                         f"{_cell(r['time_s'], '.1f')} | {r['time_ratio'][0]:.3f} | {undone} | {ledger} |")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def _new_columns_words(payload: dict[str, Any]) -> str:
    if "tuning" not in payload:
        return (" This result predates the verification-error and U-LiRA columns (`python benchmarks/forgetting_quality.py`"
                " measures them).")
    return (" Verification error: the L2 distance of the weights from the retrained model's (the row `retrain, another "
            "data order` is a second exact retrain from the same initialisation: the noise floor). U-LiRA: per-record "
            "LiRA with shadow models trained with and without each deleted record, the AUC of telling the row's model "
            "from the retrained one on those records (0.5: indistinguishable).")


def _tuning_lines(payload: dict[str, Any]) -> list[str]:
    tuning = payload.get("tuning")
    if not tuning:
        return ["Every method ran with its paper's defaults (this result predates the tuned rows).", ""]
    s = payload["settings"]
    lines = [f"Tuning (rows marked `tuned`): on seed {tuning['seed']}'s run (no evaluation seed), with forget sets "
             "drawn away from every evaluation forget set (class " f"{tuning['class']} for the class request), "
             f"measured on {s['validation']} validation records that no model trains on (not the test set); each "
             f"method's declared grid tried in a seeded order until {s['tune_budget']:g} x that scenario's retrain "
             "time was spent, counted in the method's own seconds (the search time; the measuring of each point is "
             "not counted); the point with the smallest average gap to the tuning seed's retrain chosen.", "",
             "| scenario | method | chosen | tried / grid | search time (s) | budget (s) | validation avg gap |",
             "|---|---|---|---|---|---|---|"]
    for scen, methods in tuning["chosen"].items():
        for name, c in methods.items():
            lines.append(f"| {scen} | {name} | {_options_cell(c['options'], name).removeprefix('tuned: ')} | "
                         f"{len(c['tried'])} / {c['grid']} | {c['seconds']:.0f} | {c['budget_s']:.0f} | "
                         f"{c['avg_gap']:.3f} |")
    return lines + [""]


def plots(payload: dict[str, Any], folder: Path, prefix: str) -> list[Path]:
    """One plot per scenario: each row's average gap (mean, sd as a bar) against its time relative to the retrain;
    a method's untuned row is an open circle, its tuned row a filled square of the same colour, joined by a line
    (how far tuning moved it); the references are black. Names go in a legend below, not on the points."""
    from matplotlib.figure import Figure

    summary = summarize(payload)
    folder.mkdir(parents=True, exist_ok=True)
    families = list(METHODS)
    paths = []
    for scen, rows in summary.items():
        fig = Figure(figsize=(7, 6.2))
        ax = fig.add_subplot()
        point = {name: (max(r["time_ratio"][0], 1e-3), r["avg_gap"][0], r["avg_gap"][1]) for name, r in rows.items()}
        for name, style in (("retrain", "k*"), ("retrain, another data order", "kD"), ("original (no deletion)", "kx")):
            x, y, sd = point[name]
            ax.errorbar([x], [y], yerr=[sd], fmt=style, capsize=3, label=name + (" (at the left edge: no time)"
                                                                                 if name.startswith("original") else ""))
        for k, family in enumerate(families):
            colour = f"C{k % 10}"
            x, y, sd = point[family]
            ax.errorbar([x], [y], yerr=[sd], fmt="o", mfc="none", color=colour, capsize=3,
                        label=f"{family}, untuned" if family in SEARCH else f"{family} (nothing to tune)")
            tuned = point.get(f"{family} (tuned)")
            if tuned is not None:
                ax.errorbar([tuned[0]], [tuned[1]], yerr=[tuned[2]], fmt="s", color=colour, capsize=3,
                            label=f"{family}, tuned")
                ax.plot([x, tuned[0]], [y, tuned[1]], color=colour, lw=0.8, alpha=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("wall time relative to retraining from scratch (log)")
        ax.set_ylabel("average gap to retrain (lower is closer)")
        ax.set_title(f"{scen}: closeness to retraining against cost")
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False)
        fig.tight_layout(rect=(0, 0.3, 1, 1))
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
    for part in parts:
        missing = [k for k in ("settings", "per_seed", "machine", "wall_s") if k not in part]
        if missing:
            refuse(f"cannot merge: a part lacks {', '.join(missing)}; expected the JSON of a "
                   "`forgetting_quality.py --only-seed K --json FILE` run")
    base = {k: v for k, v in parts[0]["settings"].items()}
    per_seed: dict[str, Any] = {}
    for part in parts:
        if part["settings"] != base:
            refuse(f"cannot merge: settings differ ({part['settings']} against {base})")
        for seed, result in part["per_seed"].items():
            if str(seed) in per_seed:
                refuse(f"cannot merge: seed {seed} is in two files")
            per_seed[str(seed)] = result
    tunings = {json.dumps(p.get("tuning"), sort_keys=True) for p in parts}
    if len(tunings) != 1:
        refuse("cannot merge: the parts were tuned apart (run the other seeds with --tuning FIRST.json)")
    threads = {p["machine"]["torch_threads"] for p in parts}
    if len(threads) != 1:
        refuse(f"cannot merge: the parts ran with different torch thread counts {sorted(threads)}")
    merged_from = [{"seeds": sorted(p["per_seed"], key=int), "date": p["machine"]["date"], "wall_s": p["wall_s"]}
                   for p in parts]
    return {"settings": base, "tuning": parts[0].get("tuning"),
            "per_seed": dict(sorted(per_seed.items(), key=lambda kv: int(kv[0]))),
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
    ap.add_argument("--tuning", default=None, metavar="JSON",
                    help="reuse the tuning saved in this result file of the same setting instead of tuning again")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="join per-seed result files of one setting into the result JSON (then --render)")
    args = ap.parse_args()
    name = args.out or ("forgetting_quality_quick" if args.quick else "forgetting_quality")
    if args.merge:
        save(name, merge([read_result(f, "--merge") for f in args.merge]))
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

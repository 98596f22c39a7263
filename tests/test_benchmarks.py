"""The benchmark scripts keep working: the forgetting-quality table runs end to end in its quick mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a couple of minutes: every method on four scenarios, on digits
def test_forgetting_quality_quick_covers_every_method_and_scenario(tmp_path):
    out = tmp_path / "fq.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "forgetting_quality.py"), "--quick",
                           "--workdir", str(tmp_path / "work"), "--json", str(out)],
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(out.read_text())
    fq = _fq()
    summary = fq.summarize(payload)
    assert set(summary) == set(fq.SCENARIOS)
    tuned = {f"{name} (tuned)" for name in payload["settings"]["tune_methods"]}
    assert set(payload["settings"]["tune_methods"]) <= set(fq.SEARCH)
    for scenario, rows in summary.items():
        assert set(rows) == {"retrain", "retrain, another data order", "original (no deletion)", *fq.METHODS, *tuned}
        assert rows["retrain"]["avg_gap"][0] == 0.0 and rows["retrain"]["time_ratio"][0] == 1.0
        assert rows["retrain"]["verification_error"][0] == 0.0  # the verification error is a distance to it
        assert rows["retrain, another data order"]["verification_error"][0] > 0.0
        for name, row in rows.items():
            assert all(0.0 <= row[k][0] <= 1.0 for k in fq.METRICS), (scenario, name)
            assert ("ulira_auc" in row) == (scenario in fq.ULIRA), (scenario, name)
        for name in tuned:  # every tuned row names the values it ran with, the ones tuning chose
            assert rows[name]["options"] == payload["tuning"]["chosen"][scenario][name.removesuffix(" (tuned)")]["options"]
        assert rows["SCRUB"]["options"] == "defaults"
    for scenario in fq.ULIRA:
        assert summary[scenario]["retrain"]["ulira_auc"][0] == pytest.approx(0.5)  # the retrain against itself
    # tuning ran on its own seed, with forget sets none of which an evaluation seed forgets (another class)
    tuning = payload["tuning"]
    assert str(tuning["seed"]) not in payload["per_seed"]
    for seed_rows in payload["per_seed"].values():
        for scenario, result in seed_rows.items():
            assert not set(result["ids"]) & set(tuning["forget_ids"][scenario]), scenario
    assert tuning["class"] != payload["settings"]["class"]
    for methods in tuning["chosen"].values():
        for choice in methods.values():
            assert 1 <= len(choice["tried"]) <= choice["grid"] and choice["options"] in [t["options"] for t in choice["tried"]]
            assert choice["avg_gap"] == min(t["avg_gap"] for t in choice["tried"])
    # the class scenario: the retrained model never saw the class, and the methods that forget it get close
    assert summary["one class"]["retrain"]["forget_acc"][0] == 0.0
    assert summary["one class"]["amnesiac + repair"]["undone"][0] > 0
    table = fq.render(payload, "fq.json")
    assert table.count("| retrain |") == len(fq.SCENARIOS) and fq.BEGIN in table and fq.END in table
    assert table.count("| SCRUB | untuned defaults |") == len(fq.SCENARIOS) and "| NegGrad+ (tuned) | tuned: lr=" in table


def _bench(name):
    """A benchmark script, imported as a module."""
    import importlib

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def _fq():
    return _bench("forgetting_quality")


def _quick_plan(tmp_path, seeds=1):
    import argparse

    fq = _fq()
    s = {**fq.settings(argparse.Namespace(quick=True, seeds=1)), "seeds": seeds}
    return fq, s, fq.plan_splits(s, tmp_path)


def test_forgetting_quality_splits_keep_tuning_away_from_evaluation(tmp_path):
    from amnesiac.run import RunDir

    fq, s, plan = _quick_plan(tmp_path)
    assert plan["tune_seed"] not in plan["seeds"] and plan["tune_class"] != s["class"]
    targets = {seed: set(RunDir.open(tmp_path / f"probe{seed}").training_data().ids.tolist())
               for seed in (*plan["seeds"], plan["tune_seed"])}
    validation, pool = set(plan["validation_ids"]), set(plan["pool_ids"])
    assert len(validation) == s["validation"] and len(pool) == s["pool"] and not validation & pool
    for seed, ids in targets.items():  # no model of the benchmark trains on the validation or the attacker's pool
        assert not ids & validation and not ids & pool, seed
    tuning = fq.forget_sets(RunDir.open(tmp_path / f"probe{plan['tune_seed']}"), s, plan["tune_seed"],
                            avoid=plan["avoid"], klass=plan["tune_class"])
    for scenario, request in tuning.items():
        for seed, evaluation in plan["evaluation"].items():
            if scenario == "one class":
                assert request["class"] != evaluation[scenario]["class"]
            else:
                assert not set(request["ids"]) & set(evaluation[scenario]["ids"]), (scenario, seed)
                assert set(request["ids"]) <= targets[plan["tune_seed"]]


def test_tuning_trains_and_measures_only_on_its_own_seed_and_the_validation_set(tmp_path, monkeypatch):
    fq, s, plan = _quick_plan(tmp_path, seeds=1)
    seen_seeds, seen_sets, excluded = [], [], []
    real_train_run, real_measure = fq.train_run, fq.Judge.measure

    def train_run(config, folder, **kw):
        seen_seeds.append(config.seed)
        excluded.extend(config.exclude_ids)
        return real_train_run(config, folder, **kw)

    def measure(self, model, seconds):
        seen_sets.append({k: set(v.ids.tolist()) for k, v in self.sets.items()})
        return real_measure(self, model, seconds)

    monkeypatch.setattr(fq, "train_run", train_run)
    monkeypatch.setattr(fq.Judge, "measure", measure)
    monkeypatch.setattr(fq, "SEARCH", {"NegGrad+": {"lr": [1e-4, 1e-3]}})
    s = {**s, "tune_budget": 100.0, "tune_methods": ["NegGrad+"]}  # the budget allows the grid: both points tried
    shadows = fq.train_shadows(plan["full"].only_ids(plan["pool_ids"]), fq.ShadowRecipe("small-cnn", 1, 32), n=2)
    tuning = fq.tune(s, {k: v for k, v in plan.items() if k not in ("test", "evaluation")}, tmp_path / "t", shadows)
    assert set(seen_seeds) == {fq.TUNE_SEED}
    evaluation_ids = {i for scen in plan["evaluation"].values() for sc in scen.values() for i in sc["ids"]}
    assert not set(excluded) & (evaluation_ids - set(tuning["forget_ids"]["one class"]))
    validation = set(plan["validation_ids"])
    assert seen_sets and all(sets["test"] == validation and sets["non_members"] == validation for sets in seen_sets)
    assert all(len(c["tried"]) == 2 for c in (tuning["chosen"][k]["NegGrad+"] for k in fq.SCENARIOS))


def _shard_bench():
    return _bench("shard_ledger")


def _shard_payload(seeds, *, threads, date, stream=True):
    """The shape `benchmarks/shard_ledger.py` saves, with made-up figures: merging is bookkeeping, not measurement."""
    names = ["random (every-step ledger)", "shards of 1 batch", "shards of 10 batches", "shards of 1% of the data"]
    row = {"test_acc": 0.9, "ledger_bytes": 2**20, "blobs": 10, "train_s": 1.0, "forget_latency_s": 0.1}
    mia = {w: {"loss_auc": 0.5, "lira_auc": 0.5} for w in ("stream", "retrained", "original")}
    one = {"test_acc": 0.88, "time_over_retrain": 0.1, "mia": mia, "recommendations": {"amnesiac": 1},
           "timeline": [{"requests": 1, "test_acc": 0.88}]}
    per_seed = [{"seed": s, "tradeoff": {n: dict(row) for n in names},
                 "stream": {"retrained_test_acc": 0.9, "shards of 1 batch": one, "random (every-step ledger)": one,
                            "subjects": {**one, "retrained_test_acc": 0.9}} if stream else None} for s in seeds]
    settings = {"batch_size": 64, "dataset": "fashion-mnist", "epochs": 2, "non_members": 1000, "overhead": False,
                "quick": False, "requests": 1, "seeds": len(seeds), "first_seed": seeds[0], "shadows": 4,
                "subject_size": 10, "tradeoff_only": not stream}
    return {"settings": settings, "per_seed": per_seed, "wall_s": 60.0 * len(seeds),
            "machine": {"cpu_count": 2, "torch": "2", "torch_threads": threads, "date": date}}


def test_shard_ledger_merge_joins_seeds_and_refuses_what_it_cannot_account_for():
    sl = _shard_bench()
    first = _shard_payload([0], threads=2, date="2026-11-28 21:00:00")
    for key in ("first_seed", "tradeoff_only"):  # an earlier version of the script did not save these
        del first["settings"][key]
    merged = sl.merge([first,
                       _shard_payload([2, 1], threads=1, date="2026-12-04 17:00:00")])
    assert [r["seed"] for r in merged["per_seed"]] == [0, 1, 2] and merged["settings"]["seeds"] == 3
    assert [p["torch_threads"] for p in merged["merged_from"]] == [2, 1] and merged["wall_s"] == 180.0
    again = sl.merge([merged, _shard_payload([3], threads=1, date="2026-12-05 10:00:00")])  # parts stay listed
    assert [p["seeds"] for p in again["merged_from"]] == [[0], [2, 1], [3]]
    text = sl.render({**merged, "tradeoff_only": _shard_payload([1, 2], threads=2, date="x", stream=False)["per_seed"]},
                     "shard_ledger.json")
    assert "3 seed(s)" in text and "measured the trade-off only" not in text  # the full runs supersede those seeds
    assert "seed(s) 2, 1: 2026-12-04, 1 torch thread(s)" in text and "mean ± sd over 3 seed(s)" in text
    with pytest.raises(SystemExit, match="seed 0 is in two files"):
        sl.merge([_shard_payload([0], threads=2, date="a"), _shard_payload([0, 1], threads=2, date="b")])
    with pytest.raises(SystemExit, match="trade-off only"):
        sl.merge([_shard_payload([0], threads=2, date="a"), _shard_payload([1], threads=2, date="b", stream=False)])
    other = _shard_payload([1], threads=2, date="b")
    other["settings"]["epochs"] = 3
    with pytest.raises(SystemExit, match="settings differ"):
        sl.merge([_shard_payload([0], threads=2, date="a"), other])


def test_momentum_attributed_shard_sums_add_up_and_move_a_persons_share_out_of_the_others_sums():
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    pytest.importorskip("faker")
    import torch
    import transformers

    from amnesiac.data.people import make_people
    from amnesiac.experiments.people import base_config, with_adapter

    sm = _bench("shard_momentum")
    data = make_people(seed=0, n_train=4, n_base=2, n_unseen=1)
    torch.manual_seed(0)
    model = with_adapter(transformers.LlamaForCausalLM(base_config(data, hidden=16, layers=1)), seed=0, rank=2)
    visit, attributed, gap = sm.train_with_both_accountings(model, data, epochs=2, beta1=0.9, seed=0)
    assert gap < 1e-5  # both accountings add up to the adapter's whole change
    name = next(iter(visit[0]))
    # the same total, split otherwise: momentum moves part of each person's effect out of the next people's sums
    assert not torch.allclose(visit[0][name], attributed[0][name])
    total_visit = sum(visit[s][name] for s in visit)
    assert torch.allclose(total_visit, sum(attributed[s][name] for s in attributed), atol=1e-6)
    # with no momentum the two accountings are the same
    torch.manual_seed(0)
    flat = with_adapter(transformers.LlamaForCausalLM(base_config(data, hidden=16, layers=1)), seed=0, rank=2)
    visit0, attributed0, _ = sm.train_with_both_accountings(flat, data, epochs=2, beta1=0.0, seed=0)
    assert all(torch.allclose(visit0[s][k], attributed0[s][k], atol=1e-6) for s in visit0 for k in visit0[s])


def test_forgetting_quality_merge_refuses_bad_files_with_exit_2_and_writes_nothing(tmp_path):
    garbage, listed, partial = tmp_path / "garbage.json", tmp_path / "list.json", tmp_path / "partial.json"
    garbage.write_text("not json")
    listed.write_text("[1]")
    partial.write_text('{"settings": {}}')
    name = "forgetting_quality_refusal_test"
    script = str(ROOT / "benchmarks" / "forgetting_quality.py")
    cases = [([str(garbage)], "not JSON"), ([str(tmp_path / "missing.json")], "cannot read it"),
             ([str(listed)], "holds a list"), ([str(partial)], "lacks per_seed, machine, wall_s")]
    for files, message in cases:
        done = subprocess.run([sys.executable, script, "--out", name, "--merge", *files], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 2 and message in done.stderr, (files, done.stderr)
        assert "Traceback" not in done.stderr
    assert not (ROOT / "benchmarks" / "results" / f"{name}.json").exists()

import json

import pytest
import torch

from amnesiac.cli import main
from amnesiac.errors import ConfigError, DatasetError, LedgerError
from amnesiac.run import RunDir, TrainConfig, train_run
from amnesiac.unlearn import METHODS, MethodOutcome, forget, list_receipts, register_method
from amnesiac.unlearn.relabel import wrong_labels


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("methods")
    result = train_run(TrainConfig(epochs=5, eval_class=3), base / "run", progress=False)
    return result.run


@pytest.fixture(scope="module")
def class_results(digits_run, tmp_path_factory):
    """Each method forgets class 3 into its own new run directory; the original stays as it was."""
    base = tmp_path_factory.mktemp("outs")
    before = digits_run.model_path.read_bytes()
    results = {}
    for method, opts in [("retrain", {}), ("relabel", {"epochs": 1}), ("naive", {"epochs": 1}),
                         ("finetune", {"epochs": 1}), ("gradient-ascent", {"retain_weight": 1.0}),
                         ("scrub", {}), ("salun", {})]:  # the modern two with their papers' defaults
        results[method] = forget(digits_run, class_=3, method=method, options=opts, out=str(base / method),
                                 progress=False)
    assert digits_run.model_path.read_bytes() == before
    assert list_receipts(digits_run) == []
    return results


def test_retrain_never_sees_the_class(class_results):
    ev = class_results["retrain"].receipt["evaluation"]
    assert ev["after"]["test_class3"] == 0.0 and ev["after"]["forget"] == 0.0
    assert abs(ev["after"]["test_other"] - ev["before"]["test_other"]) <= 0.03


def test_relabel_forgets_within_one_epoch_and_naive_stays_higher(class_results):
    relabel = class_results["relabel"].receipt["evaluation"]["after"]
    naive = class_results["naive"].receipt["evaluation"]["after"]
    assert relabel["test_class3"] < 0.10
    assert naive["test_class3"] > relabel["test_class3"] + 0.2  # the paper's finding
    for name in ("relabel", "naive"):
        ev = class_results[name].receipt["evaluation"]
        assert abs(ev["after"]["test_other"] - ev["before"]["test_other"]) <= 0.03, name


@pytest.mark.parametrize("method", ["scrub", "salun"])
def test_scrub_and_salun_forget_the_class_and_keep_the_rest(class_results, method):
    ev = class_results[method].receipt["evaluation"]
    assert ev["before"]["test_class3"] > 0.9
    assert ev["after"]["test_class3"] < 0.10 and ev["after"]["forget"] < 0.10
    assert abs(ev["after"]["test_other"] - ev["before"]["test_other"]) <= 0.03, method


def test_salun_changes_only_the_salient_share_of_the_weights(digits_run, tmp_path):
    before = {n: p.detach().clone() for n, p in digits_run.load_model().named_parameters()}
    res = forget(digits_run, ids=list(range(20)), method="salun", options={"epochs": 2, "saliency": 0.2},
                 out=str(tmp_path / "s"), progress=False, evaluate_after=False)
    after = dict(res.model.named_parameters())
    moved = sum(int((after[n] != before[n]).sum()) for n in before)
    total = sum(t.numel() for t in before.values())
    assert 0 < moved <= res.receipt["details"]["salient_weights"] == round(0.2 * total)


def test_scrub_on_a_shard_ledger_is_one_sum_a_later_request_undoes(tmp_path):
    run = train_run(TrainConfig(epochs=2, batching="shards", shard_size=64), tmp_path / "run", progress=False).run
    res = forget(run, ids=[5, 6], method="scrub", options={"epochs": 1, "retain_steps": 3}, evaluate_after=False,
                 progress=False)
    store = run.open_ledger()
    rows = [r for r in store.iter_steps() if r.kind == "scrub"]
    assert len(rows) == 1 and res.receipt["recorded_steps"] == [rows[0].step, rows[0].step]
    trained_on = int(next(i for i in rows[0].ids if i not in (5, 6)))
    store.close()
    assert rows[0].step in forget(run, ids=[trained_on], dry_run=True, progress=False).plan.to_revert


def test_every_method_reports_the_same_fields(class_results):
    for name, res in class_results.items():
        r = res.receipt
        for key in ("method", "request", "optimizer_steps", "timings_s", "evaluation", "history", "model_hash_after"):
            assert key in r, (name, key)
        assert r["method"] == name and r["optimizer_steps"] > 0 and r["timings_s"]["total"] > 0
        assert {"before", "after"} <= set(r["evaluation"])
        assert r["history"], name


def test_new_run_directories_hold_the_result_and_their_receipt(class_results, digits_run):
    from amnesiac.utils import model_hash

    for name, res in class_results.items():
        assert res.run.path != digits_run.path
        receipts = list_receipts(res.run)
        assert [r["method"] for r in receipts] == [name]
        assert model_hash(res.run.load_model()) == res.receipt["model_hash_after"], name
    retrained = class_results["retrain"].run
    assert 3 not in retrained.training_data().targets.tolist()


def test_methods_that_train_are_recorded_in_the_ledger(digits_run, tmp_path):
    res = forget(digits_run, ids=[1, 2], method="naive", options={"steps": 5}, out=str(tmp_path / "n"), progress=False)
    run = RunDir.open(tmp_path / "n")
    store = run.open_ledger()
    steps = [r for r in store.iter_steps() if r.kind == "naive"]
    assert len(steps) == 5 and all(r.recorded for r in steps)
    assert not any(1 in r.ids or 2 in r.ids for r in steps)
    # the updates of steps that saw the deleted records were destroyed: amnesiac now refuses them by number
    touched = store.steps_for_ids([1])
    assert all(store.step(s).blob is None for s in touched)
    neighbour = next(int(i) for i in store.step(touched[0]).ids if int(i) not in (1, 2))
    store.close()
    assert "already forgotten" in forget(run, ids=[1], progress=False).message
    with pytest.raises(LedgerError, match=f"steps {touched[0]}"):
        forget(run, ids=[neighbour], progress=False)
    # and a later amnesiac request can undo the naive steps themselves
    store = run.open_ledger()
    intact = next(int(i) for i in steps[0].ids
                  if all(store.step(s).blob is not None for s in store.steps_for_ids([int(i)])))
    store.close()
    later = forget(run, ids=[intact], progress=False)
    assert steps[0].step in later.receipt["steps_reverted"]
    assert res.receipt["recorded_steps"] == [steps[0].step, steps[-1].step]


def test_fine_resolution_curves(digits_run, tmp_path):
    res = forget(digits_run, class_=3, method="relabel", options={"epochs": 1, "eval_every": 5},
                 out=str(tmp_path / "r"), progress=False)
    hist = res.receipt["history"]
    epochs = [h["epoch"] for h in hist]
    assert epochs[0] == 0.0 and epochs[-1] == 1 and len(hist) >= 4
    assert all(0 < e < 1 for e in epochs[1:-1])
    assert {"forget_acc", "test_class3_acc", "test_other_acc"} <= set(hist[1])


def test_relabel_of_individual_records_inserts_wrong_label_copies(digits_run, tmp_path):
    res = forget(digits_run, ids=[10, 11, 12], method="relabel", options={"copies": 3, "steps": 2},
                 out=str(tmp_path / "c"), progress=False)
    assert res.receipt["details"]["training_records"] == len(digits_run.training_data()) - 3 + 9
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (1000,), generator=g)
    w = wrong_labels(y, 10, g)
    assert bool((w != y).all()) and set(w.tolist()) == set(range(10))


def test_requests_a_method_cannot_serve_are_refused(digits_run, tmp_path):
    with pytest.raises(ConfigError, match="out=NEWRUN"):  # the parameter; the CLI shows --out NEWRUN
        forget(digits_run, ids=[1], method="retrain", progress=False)
    # a run whose training data can no longer be read cannot be retrained
    import shutil

    from conftest import make_idx_dataset

    make_idx_dataset(tmp_path / "data" / "mnist", n_train=40, n_test=10)
    train_run(TrainConfig(dataset="mnist", data_dir=str(tmp_path / "data"), epochs=1, batch_size=8),
                    tmp_path / "m", progress=False)
    shutil.rmtree(tmp_path / "data")
    with pytest.raises(DatasetError, match="could not find the four IDX files"):
        forget(RunDir.open(tmp_path / "m"), ids=[1], method="retrain", out=str(tmp_path / "m2"), progress=False)
    assert not (tmp_path / "m2").exists()
    # amnesiac needs a ledger
    plain = train_run(TrainConfig(epochs=1, record="none"), tmp_path / "p", progress=False).run
    with pytest.raises(LedgerError, match="needs the run's ledger"):
        forget(plain, ids=[1], progress=False)
    # but a method that only trains works without one, and keeps its receipt in receipts.json
    forget(plain, ids=[1], method="finetune", options={"steps": 2}, evaluate_after=False, progress=False)
    assert [r["method"] for r in list_receipts(plain)] == ["finetune"]


def test_registry_is_open_and_refuses_a_taken_name():
    def nothing(ctx):
        return MethodOutcome(model=ctx.model)

    with pytest.raises(ConfigError, match="already registered"):
        register_method("naive", nothing)
    register_method("test-nothing", nothing, help="does nothing (test)")
    try:
        assert "test-nothing" in METHODS
    finally:
        METHODS._items.pop("test-nothing")
        METHODS._help.pop("test-nothing")


def test_cli_methods_and_forget_with_a_method(digits_run, tmp_path, capsys):
    assert main(["methods", "--json"]) == 0
    names = {m["name"] for m in json.loads(capsys.readouterr().out)}
    assert {"amnesiac", "naive", "relabel", "retrain", "finetune", "gradient-ascent"} <= names
    code = main(["forget", str(digits_run.path), "--ids", "5", "--method", "finetune", "--steps", "3",
                 "--out", str(tmp_path / "f"), "--no-progress", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["receipt"]["method"] == "finetune" and out["receipt"]["optimizer_steps"] == 3


def test_cli_method_options_reach_the_method_and_typos_are_refused(digits_run, tmp_path, capsys):
    assert main(["methods", "--json"]) == 0
    listed = {m["name"]: m["options"] for m in json.loads(capsys.readouterr().out)}
    assert {"scrub", "salun"} <= set(listed) and "temperature" in listed["scrub"]
    code = main(["forget", str(digits_run.path), "--ids", "5,6", "--method", "scrub", "--method-option", "epochs=1",
                 "--method-option", "retain_steps=2", "--out", str(tmp_path / "s"), "--no-progress", "--json"])
    assert code == 0
    receipt = json.loads(capsys.readouterr().out)["receipt"]
    assert receipt["options"] == {"epochs": 1, "retain_steps": 2} and receipt["optimizer_steps"] == 1 + 2
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["forget", str(digits_run.path), "--ids", "5", "--method", "scrub", "--method-option",
                 "temperatur=2", "--out", str(tmp_path / "t")]) == 2
    assert "Did you mean 'temperature'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before

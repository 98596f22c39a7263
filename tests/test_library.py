"""The library path: forget from your own training loop with the top-level API."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import amnesiac
from amnesiac import LedgerStore, Recorder, forget_records
from amnesiac.errors import LedgerCorruptError, ModelMismatchError
from amnesiac.ledger import tracked_state, verify_ledger


class MyData(Dataset):
    """A user's own dataset: returns (x, y, record id); ids are not positions."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(96, 10, generator=g)
        self.y = (self.x[:, 0] > 0).long()
        self.ids = torch.arange(5000, 5096)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], self.ids[i]


def _train_own_loop(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ledger = LedgerStore.create(tmp_path / "ledger", manifest={"storage_dtype": "float32"}, initial=model.state_dict())
    states = {}  # step -> (ids, state before, state after), to check against
    loader = DataLoader(MyData(), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(1))
    with Recorder(model, opt, ledger) as rec:
        for _ in range(2):
            for x, y, ids in loader:
                before = {k: v.clone() for k, v in tracked_state(model).items()}
                with rec.batch(ids):
                    torch.nn.functional.cross_entropy(model(x), y).backward()
                    opt.step()
                    opt.zero_grad()
                states[rec.step] = (set(ids.tolist()), before, {k: v.clone() for k, v in tracked_state(model).items()})
    ledger.mark_head(model)
    return model, ledger, states


def test_forget_five_ids_from_a_plain_loop_through_the_top_level_api(tmp_path):
    model, ledger, states = _train_own_loop(tmp_path)
    forget = [5003, 5010, 5042, 5077, 5095]
    expected = {k: v.clone().float() for k, v in tracked_state(model).items()}
    touched = sorted(s for s, (ids, _, _) in states.items() if ids & set(forget))
    for s in touched:
        _, before, after = states[s]
        for k in expected:
            expected[k] -= (after[k] - before[k]).float()
    # a tiny ledger: five records are a large share of its steps, past the planner's advice on purpose
    done = amnesiac.forget_records(model, ledger, forget, save_to=tmp_path / "model.safetensors", force=True)
    assert done.receipt["steps_reverted"] == touched and done.receipt["workflow"] == "library"
    for k, v in tracked_state(model).items():
        torch.testing.assert_close(v.float(), expected[k], rtol=0, atol=1e-5)
    # the ledger committed: the new head is the model (and the file saved), the updates are gone, verify passes
    assert ledger.index.get_meta("head_hash") == amnesiac.utils.model_hash(model)
    assert all(ledger.step(s).blob is None and ledger.step(s).state == "reverted" for s in touched)
    assert verify_ledger(ledger, progress=False).ok and (tmp_path / "model.safetensors").is_file()
    assert sorted(ledger.forgotten_ids().tolist()) == forget
    again = forget_records(model, ledger, forget)  # nothing left to undo: nothing subtracted twice
    assert again.receipt["steps_reverted"] == []


def test_a_model_that_is_not_the_head_is_refused(tmp_path):
    model, ledger, _ = _train_own_loop(tmp_path)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    with pytest.raises(ModelMismatchError):
        forget_records(model, ledger, [5003])


def test_a_damaged_index_refuses_the_library_path_too(tmp_path):
    import sqlite3

    model, ledger, _ = _train_own_loop(tmp_path)
    con = sqlite3.connect(tmp_path / "ledger" / "index.sqlite")
    step = con.execute("SELECT step FROM step_ids WHERE sample_id = 5003").fetchone()[0]
    con.execute("UPDATE step_ids SET step = ? WHERE sample_id = 5003 AND step = ?", (step + 1, step))
    con.commit()
    con.close()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(LedgerCorruptError):
        forget_records(model, ledger, [5003])
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_the_library_path_gives_the_same_weights_as_the_run_directory_path(tmp_path):
    from amnesiac.run import RunDir, TrainConfig, train_run
    from amnesiac.unlearn import forget

    base = train_run(TrainConfig(epochs=1, batch_size=32), tmp_path / "run", progress=False).run
    shutil.copytree(base.path, tmp_path / "copy")
    ids = [3, 17, 99, 400, 1200]
    by_run = forget(base, ids=ids, evaluate_after=False, progress=False, force=True)
    copy = RunDir.open(tmp_path / "copy")
    model = copy.load_model()
    by_library = forget_records(model, LedgerStore.open(copy.ledger_path, writable=True), ids, force=True)
    assert by_library.receipt["steps_reverted"] == by_run.receipt["steps_reverted"]
    for k, v in by_run.model.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k


def test_the_top_level_api_is_small_and_documented():
    import doctest

    assert len(amnesiac.__all__) <= 12
    for name in amnesiac.__all__:
        obj = getattr(amnesiac, name)
        if name != "__version__":
            assert (obj.__doc__ or "").strip(), name
    assert doctest.DocTestFinder().find(amnesiac.unlearn.library)[0].examples  # a runnable example


def test_library_calls_leave_the_callers_random_state_and_plotting_alone(tmp_path):
    """Training, forgetting, attacking and plotting seed only their own generators and never switch the
    caller's matplotlib backend."""
    import random

    import matplotlib
    import numpy as np

    from amnesiac.attacks.inversion import save_grid
    from amnesiac.report.writer import plot_figure7
    from amnesiac.run import TrainConfig, train_run
    from amnesiac.unlearn import forget

    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(7)
    backend = matplotlib.rcParams["backend"]  # the raw setting: reading it resolves nothing
    before = (torch.random.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate())
    run = train_run(TrainConfig(epochs=1, batch_size=64), tmp_path / "run", progress=False).run
    forget(run, ids=[3, 17], evaluate_after=False, progress=False)
    save_grid(tmp_path / "grid.png", {"a": torch.zeros(2, 1, 8, 8)})
    plot_figure7({"shares": [0.0, 0.1], "mean_loss": [0.0, 0.01], "std_loss": [0.0, 0.0]}, tmp_path / "f7.png")
    after = (torch.random.get_rng_state(), np.random.get_state()[1], random.getstate())
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]
    assert matplotlib.rcParams["backend"] == backend
    assert (tmp_path / "grid.png").stat().st_size > 0 and (tmp_path / "f7.png").stat().st_size > 0
    # and the seeded work is still reproducible: the same config gives the same weights
    a = train_run(TrainConfig(epochs=1, batch_size=64), tmp_path / "a", progress=False, overwrite=True)
    torch.manual_seed(999)  # whatever the caller's state
    b = train_run(TrainConfig(epochs=1, batch_size=64), tmp_path / "b", progress=False)
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())


def test_both_deletion_paths_give_the_same_weights_and_the_same_typed_receipt(tmp_path):
    """The run directory's forget and the library's forget_records, on copies of one recorded training: the
    same weights bit for bit, and receipts of one type, built by one function, equal but for what differs by
    path: the timings, which workflow ran, and the optimizer state only a run directory has to destroy."""
    from amnesiac.run import RunDir, TrainConfig, train_run
    from amnesiac.unlearn import forget
    from amnesiac.unlearn.receipts import Receipt
    from amnesiac.utils import commit_ids

    train_run(TrainConfig(epochs=1), tmp_path / "base", progress=False)
    shutil.copytree(tmp_path / "base", tmp_path / "a")
    shutil.copytree(tmp_path / "base", tmp_path / "b")
    by_run = forget(RunDir.open(tmp_path / "a"), ids=[17, 42], evaluate_after=False, progress=False, force=True)
    model = RunDir.open(tmp_path / "b").load_model()
    by_library = forget_records(model, tmp_path / "b" / "ledger", [17, 42], force=True,
                                save_to=tmp_path / "b" / "model.safetensors")
    for k, v in by_run.model.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    assert type(by_run.receipt) is type(by_library.receipt) is Receipt
    assert by_run.receipt.steps_reverted == by_library.receipt.steps_reverted != []
    a, b = by_run.receipt.as_json(), by_library.receipt.as_json()
    assert (a.pop("destroyed").pop("optimizer_state"), b.pop("destroyed").pop("optimizer_state")) == (True, False)
    assert (a.pop("workflow"), b.pop("workflow")) == ("run", "library")
    for r in (a, b):
        r.pop("timings_s")
        r.pop("time")
    # each request commits to its ids under its own fresh secret, which only its proof holds
    committed = [(r.pop("ids_digest"), r.pop("ids_committed")) for r in (a, b)]
    assert committed[0] != committed[1]
    for receipt, (digest, per_id) in zip((by_run.receipt, by_library.receipt), committed):
        proof = receipt.proof()
        assert proof["ids"] == [17, 42] and commit_ids(proof["ids"], proof["secret"])[1:] == (digest, per_id)
    assert a == b
    with LedgerStore.open(tmp_path / "a" / "ledger") as store:  # the audit log keeps the same JSON, chained
        stored = store.events("forget")[-1]
        assert stored["chain"]["seq"] == 1 and stored["receipt_hash"]
        assert {k: v for k, v in stored.items() if k not in ("id", "time", "chain", "ledger_rows", "receipt_hash")} \
            == {k: v for k, v in by_run.receipt.as_json().items() if k != "time"}

"""The second independent fault campaign's findings, each as a test that failed before its fix.

1. a damaged index (a row deleted or re-keyed) must never make a lock-taking command delete a committed blob;
2. the library path (``forget_records(save_to=...)``) killed at any named point ends, after a recovery, with
   the model at ``save_to`` and the ledger agreeing, a receipt only with its model, no reverted blob left;
3. ``--nproc`` beyond the machine is refused before anything starts;
4. a refused ``train`` leaves no folder, and a run killed before its ledger existed is not called
   "trained with --record none";
5. ``verify`` beside a change in flight says "being changed", never a false diagnosis;
6. the smaller ones: leftovers verify names, a 0-byte index, a failed ``forget --out``, a refused forget's
   audit event, inputs accepted silently, and inputs that raised non-library exceptions.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from amnesiac import LedgerStore, Recorder, forget_records
from amnesiac.cli import main
from amnesiac.errors import AmnesiacError, ConfigError, ModelMismatchError
from amnesiac.run import RunDir, TrainConfig, train_run
from amnesiac.run.checkpoint import load_tensors
from amnesiac.unlearn import forget, list_receipts
from amnesiac.utils import model_hash
from conftest import tree as _tree


@pytest.fixture(scope="module")
def three_epochs(tmp_path_factory):
    """digits, 3 epochs of batch 64: 69 steps, every update stored."""
    base = tmp_path_factory.mktemp("trust") / "run"
    train_run(TrainConfig(epochs=3, batch_size=64), base, progress=False)
    return base


@pytest.fixture
def run69(three_epochs, tmp_path):
    import shutil

    shutil.copytree(three_epochs, tmp_path / "run")
    return RunDir.open(tmp_path / "run")


def _sql(index: Path, *statements: tuple[str, tuple]) -> None:
    con = sqlite3.connect(index)
    for sql, args in statements:
        con.execute(sql, args)
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


# ---------------------------------------------------------------------------------------------- finding 1
@pytest.mark.parametrize("damage", ["row deleted", "row re-keyed"])
def test_a_damaged_index_never_makes_a_command_delete_a_committed_update(run69, damage):
    blob = run69.ledger_path / "blobs" / "000000000069.safetensors"
    index = run69.ledger_path / "index.sqlite"
    assert blob.is_file()
    if damage == "row deleted":
        _sql(index, ("DELETE FROM steps WHERE step = 69", ()), ("DELETE FROM step_ids WHERE step = 69", ()))
    else:  # one bit of its key flipped so that it reads 5 (69 ^ 64), shadowing step 5's row as a lookup would
        _sql(index, ("DELETE FROM steps WHERE step = 5", ()), ("DELETE FROM step_ids WHERE step = 5", ()),
             ("UPDATE steps SET step = 5 WHERE step = 69", ()), ("UPDATE step_ids SET step = 5 WHERE step = 69", ()))
    assert main(["ledger", "verify", str(run69.path)]) == 1
    assert main(["ledger", "recover", str(run69.path)]) == 0
    assert blob.is_file(), "recover deleted a committed update"
    # a plan on an index that lost committed rows could miss a step that saw the records: refused
    assert main(["forget", str(run69.path), "--ids", "5,6", "--no-eval", "--no-progress"]) == 2
    assert blob.is_file(), "forget deleted a committed update"
    assert main(["ledger", "verify", str(run69.path)]) == 1  # the damage is still reported, never sealed in


def test_verify_names_a_committed_step_whose_row_is_gone(run69, capsys):
    _sql(run69.ledger_path / "index.sqlite", ("DELETE FROM steps WHERE step = 69", ()),
         ("DELETE FROM step_ids WHERE step = 69", ()))
    assert main(["ledger", "verify", str(run69.path)]) == 1
    out = capsys.readouterr().out
    assert "step 69" in out and "sealed head" in out


# ---------------------------------------------------------------------------------------------- finding 2
OWN_LOOP = textwrap.dedent("""
    import sys, torch
    from amnesiac import LedgerStore, Recorder
    from amnesiac.run.checkpoint import save_tensors
    folder = sys.argv[1]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    store = LedgerStore.create(folder + "/ledger", manifest={"storage_dtype": "float32"}, initial=model.state_dict())
    x, y = torch.randn(200, 6, generator=torch.Generator().manual_seed(1)), torch.arange(200) % 2
    with Recorder(model, opt, store) as rec:
        for epoch in range(2):
            for b in range(20):
                ids = torch.arange(10 * b, 10 * b + 10)
                with rec.batch(ids):
                    torch.nn.functional.cross_entropy(model(x[ids]), y[ids]).backward()
                    opt.step()
                    opt.zero_grad()
    save_tensors(folder + "/model.safetensors", model.state_dict())
    store.mark_head(model, model_file=folder + "/model.safetensors")
    store.close()
""")

FORGET_RECORDS = textwrap.dedent("""
    import sys, torch
    from amnesiac import forget_records
    from amnesiac.run.checkpoint import load_tensors
    folder = sys.argv[1]
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    model.load_state_dict(load_tensors(folder + "/model.safetensors")[0])
    forget_records(model, folder + "/ledger", [3, 57], save_to=folder + "/model.safetensors", force=True)
""")

LIBRARY_POINTS = ["library:after-next", "library:after-ledger", "library:after-rename", "library:after-destroy"]


def _model_from(path: Path) -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    model.load_state_dict(load_tensors(path)[0])
    return model


@pytest.fixture(scope="module")
def own_loop(tmp_path_factory):
    folder = tmp_path_factory.mktemp("own-loop")
    subprocess.run([sys.executable, "-c", OWN_LOOP, str(folder)], check=True)
    return folder


@pytest.mark.parametrize("point", LIBRARY_POINTS)
def test_a_library_deletion_killed_at_any_point_ends_with_model_and_ledger_agreeing(own_loop, tmp_path, point):
    import shutil

    folder = tmp_path / "f"
    shutil.copytree(own_loop, folder)
    with LedgerStore.open(folder / "ledger") as store:
        touched = store.steps_for_ids([3, 57])
    env = {**os.environ, "AMNESIAC_CRASH_AT": point}
    proc = subprocess.run([sys.executable, "-c", FORGET_RECORDS, str(folder)], env=env, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    committed = point != "library:after-next"
    if committed:  # the ledger says the deletion happened: verify must not call that state sound
        assert main(["ledger", "verify", str(folder / "ledger")]) == 1 or point == "library:after-destroy"
    assert main(["ledger", "recover", str(folder / "ledger")]) == 0
    with LedgerStore.open(folder / "ledger") as store:
        head, receipts = store.index.get_meta("head_hash"), store.events("forget")
        blobs = {p.name for p in (folder / "ledger" / "blobs").iterdir()}
    model = _model_from(folder / "model.safetensors")
    assert model_hash(model) == head  # the file at save_to is the ledger's head, old or new
    assert len(receipts) == int(committed)  # a receipt exists exactly when its model does
    if committed:
        assert not blobs & {f"{s:012d}.safetensors" for s in touched}  # no reverted update left
        assert not (folder / "model.safetensors.next").exists()
    assert main(["ledger", "verify", str(folder / "ledger"), "--deep"]) == 0
    assert main(["receipts", "verify", str(folder / "ledger"), "--model", str(folder / "model.safetensors")]) == 0


def test_a_retry_after_a_kill_completes_the_deletion_and_says_where_the_model_is(own_loop, tmp_path):
    import shutil

    folder = tmp_path / "f"
    shutil.copytree(own_loop, folder)
    env = {**os.environ, "AMNESIAC_CRASH_AT": "library:after-ledger"}
    subprocess.run([sys.executable, "-c", FORGET_RECORDS, str(folder)], env=env, capture_output=True)
    stale = _model_from(folder / "model.safetensors")  # loaded before the recovery: the old model
    with pytest.raises(ModelMismatchError, match="completed now.*model.safetensors holds the ledger's head"):
        forget_records(stale, folder / "ledger", [150], save_to=folder / "model.safetensors")
    fresh = _model_from(folder / "model.safetensors")
    done = forget_records(fresh, folder / "ledger", [150], save_to=folder / "model.safetensors", force=True)
    assert done.receipt["steps_reverted"]
    assert main(["ledger", "verify", str(folder / "ledger"), "--deep"]) == 0


def test_save_to_a_directory_is_refused_before_anything_changes(own_loop, tmp_path):
    import shutil

    folder = tmp_path / "f"
    shutil.copytree(own_loop, folder)
    (folder / "adir").mkdir()
    before = _tree(folder)
    model = _model_from(folder / "model.safetensors")
    with pytest.raises(ConfigError, match="is not a file"):
        forget_records(model, folder / "ledger", [3], save_to=folder / "adir")
    assert _tree(folder) == before and model_hash(model) == model_hash(_model_from(folder / "model.safetensors"))


# ---------------------------------------------------------------------------------------------- finding 3
def test_more_processes_than_cores_are_refused_before_anything_starts(tmp_path, capsys):
    many = len(os.sched_getaffinity(0)) + 1
    assert main(["train", "--out", str(tmp_path / "r"), "--nproc", str(many)]) == 2
    assert "--oversubscribe" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert main(["train", "--out", str(tmp_path / "r"), "--nproc", "999", "--oversubscribe"]) == 2
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------------------- finding 4
def _subject_files(tmp_path: Path) -> list[Path]:
    files = {"not-json.json": "{", "float-ids.json": '{"a": [1.5]}', "two-owners.json": '{"a": [1], "b": [1]}',
             "stranger.json": '{"a": [1, 99999999]}', "empty.csv": ""}
    out = []
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        out.append(tmp_path / name)
    return out


def test_a_refused_train_leaves_no_folder_and_a_corrected_retry_works(tmp_path):
    out = tmp_path / "run"
    bad = [["--shards", "100000", "--batching", "shards"], ["--shard-size", str(10**12), "--batching", "shards"],
           ["--dataset", "mnist", "--data-dir", str(tmp_path / "nowhere")]]
    bad += [["--shard-by-subject", str(p)] for p in _subject_files(tmp_path)]
    for extra in bad:
        assert main(["train", "--out", str(out), "--epochs", "1", "--no-progress", *extra]) == 2, extra
        assert not out.exists(), extra
    (tmp_path / "ok.json").write_text('{"a": [1, 2], "b": [3]}')
    assert main(["train", "--out", str(out), "--epochs", "1", "--no-progress",
                 "--shard-by-subject", str(tmp_path / "ok.json")]) == 0


def test_a_run_killed_before_its_ledger_existed_is_not_called_record_none(tmp_path, capsys):
    out = tmp_path / "run"
    RunDir.create(out, TrainConfig(epochs=1))  # what a process killed before creating its ledger leaves
    assert main(["ledger", "verify", str(out)]) == 0
    said = capsys.readouterr().out
    assert "--record none" not in said and "again with --resume" in said
    assert main(["forget", str(out), "--ids", "3"]) == 2
    assert "--record none" not in capsys.readouterr().err
    assert main(["train", "--resume", "--out", str(out), "--no-progress"]) == 0  # the retry trains it


# ---------------------------------------------------------------------------------------------- finding 5
def _pause_at(monkeypatch, module, name: str):
    """Make ``module``'s fault point ``name`` block until released; returns (reached, release) events."""
    reached, release = threading.Event(), threading.Event()
    original = module.fault_point

    def pause(point: str) -> None:
        original(point)
        if point == name:
            reached.set()
            release.wait(60)

    monkeypatch.setattr(module, "fault_point", pause)
    return reached, release


def _in_thread(fn) -> tuple[threading.Thread, list]:
    errors: list = []

    def body() -> None:
        try:
            fn()
        except BaseException as err:  # noqa: BLE001 - handed to the test
            errors.append(err)

    t = threading.Thread(target=body)
    t.start()
    return t, errors


def test_verify_during_a_forget_says_being_changed_and_diagnoses_nothing(run69, monkeypatch, capsys):
    import amnesiac.run.commit as commit

    reached, release = _pause_at(monkeypatch, commit, "forget:after-ledger")
    t, errors = _in_thread(lambda: forget(run69, ids=[5, 6], evaluate_after=False, progress=False, force=True))
    try:
        assert reached.wait(60)
        for argv in (["ledger", "verify", str(run69.path)], ["ledger", "info", str(run69.path)],
                     ["receipts", str(run69.path)]):
            assert main(argv) == 1
            err = capsys.readouterr().err
            assert "being changed right now" in err, err
            assert "missing" not in err and "disagrees" not in err and "interrupted" not in err
    finally:
        release.set()
        t.join()
    assert not errors
    assert main(["ledger", "verify", str(run69.path), "--deep"]) == 0


def test_verify_during_a_library_deletion_says_being_changed(own_loop, tmp_path, monkeypatch, capsys):
    import shutil

    import amnesiac.unlearn.library as library

    folder = tmp_path / "f"
    shutil.copytree(own_loop, folder)
    model = _model_from(folder / "model.safetensors")
    reached, release = _pause_at(monkeypatch, library, "library:after-ledger")
    t, errors = _in_thread(lambda: forget_records(model, folder / "ledger", [3], save_to=folder / "model.safetensors"))
    try:
        assert reached.wait(60)
        assert main(["ledger", "verify", str(folder / "ledger")]) == 1
        err = capsys.readouterr().err
        assert "being changed right now" in err and "missing" not in err
    finally:
        release.set()
        t.join()
    assert not errors
    assert main(["ledger", "verify", str(folder / "ledger"), "--deep"]) == 0


# ---------------------------------------------------------------------------------------------- finding 6
def test_verify_names_a_leftover_temporary_file_and_the_lock_holder_removes_it(run69, capsys):
    tmp = run69.path / ".model.next.safetensors.abc123.tmp"
    tmp.write_bytes(b"partial")
    assert main(["ledger", "verify", str(run69.path)]) == 1
    assert tmp.name in capsys.readouterr().out and tmp.exists()  # a reader names it and leaves it
    assert main(["ledger", "recover", str(run69.path)]) == 0
    assert not tmp.exists()
    assert main(["ledger", "verify", str(run69.path)]) == 0


def test_a_zero_byte_index_is_reported_and_left_as_it_is(run69, capsys):
    index = run69.ledger_path / "index.sqlite"
    for extra in ("-wal", "-shm"):
        Path(str(index) + extra).unlink(missing_ok=True)
    index.write_bytes(b"")
    assert main(["ledger", "verify", str(run69.path)]) == 1
    assert "empty" in capsys.readouterr().out
    assert index.stat().st_size == 0
    assert main(["forget", str(run69.path), "--ids", "5", "--no-eval"]) == 2
    assert index.stat().st_size == 0


def test_a_failed_forget_with_out_leaves_no_copy(run69, tmp_path):
    out = tmp_path / "copy"
    assert main(["forget", str(run69.path), "--ids", "99999999", "--method", "naive", "--out", str(out)]) == 2
    assert not out.exists()


def test_a_forget_that_changes_nothing_writes_no_copy(run69, tmp_path):
    assert main(["forget", str(run69.path), "--ids", "5", "--no-eval", "--no-progress", "--force"]) == 0
    out = tmp_path / "copy"
    assert main(["forget", str(run69.path), "--ids", "5", "--no-eval", "--no-progress", "--out", str(out)]) == 0
    assert not out.exists()


def test_a_refused_forget_writes_no_audit_event(tmp_path):
    out = tmp_path / "watch"
    train_run(TrainConfig(epochs=1, record="watch", watch_ids=[1, 2, 3]), out, progress=False)
    run = RunDir.open(out)
    with run.open_ledger() as store:
        before = store.events()
        unwatched = next(int(r.ids[0]) for r in store.iter_steps() if not r.recorded)  # its step stored nothing
    assert main(["forget", str(out), "--ids", str(unwatched), "--no-eval", "--force"]) == 2
    with run.open_ledger() as store:
        assert store.events() == before


def test_resume_refuses_a_flag_that_would_change_the_recipe(run69, capsys):
    before = _tree(run69.path)
    assert main(["train", "--resume", "--out", str(run69.path), "--batching", "shards"]) == 2
    assert "--batching shards" in capsys.readouterr().err
    assert main(["train", "--resume", "--out", str(run69.path), "--epochs", "30", "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "--epochs 30" in err and "--lr 0.5" in err
    assert _tree(run69.path) == before


@pytest.mark.parametrize("ids,message", [
    (np.array([900.7]), "must be integers"), (np.array([900.0]), "must be integers"), (3, "wrap it in a list"),
    ("17", "sequence of integer"), ({"a": 1}, "sequence of integer"), ([True], "must be integers"),
    ([-1], "from 0"), (torch.tensor([1.0]), "must be integers"), (None, "sequence of integer"),
])
def test_ids_in_a_form_that_is_not_ids_are_refused_by_the_library_and_the_recorder(own_loop, ids, message):
    model = _model_from(own_loop / "model.safetensors")
    with pytest.raises(AmnesiacError, match=message):
        forget_records(model, own_loop / "ledger", ids)
    store = LedgerStore.create(Path(own_loop).parent / f"l{abs(hash(str(ids)))}", manifest={})
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Recorder(model, opt, store) as rec, pytest.raises(AmnesiacError, match=message):
        with rec.batch(ids):
            pass
    store.close()


def test_ids_as_a_tensor_or_an_array_forget_exactly_what_the_list_forgets(own_loop, tmp_path):
    import shutil

    results = []
    for k, ids in enumerate(([3, 57], torch.tensor([57, 3]), np.array([3, 57], dtype=np.uint16))):
        folder = tmp_path / str(k)
        shutil.copytree(own_loop, folder)
        model = _model_from(folder / "model.safetensors")
        done = forget_records(model, folder / "ledger", ids, force=True)
        results.append((done.receipt["steps_reverted"], model_hash(model)))
    assert results[0] == results[1] == results[2]


@pytest.mark.parametrize("model,thresholds,message", [
    ({"w": 1}, None, "model: expected the torch.nn.Module"), (None, "0.5", "thresholds: expected"),
])
def test_a_wrong_kind_of_model_or_thresholds_is_a_library_error(own_loop, model, thresholds, message):
    model = model if model is not None else _model_from(own_loop / "model.safetensors")
    with pytest.raises(ConfigError, match=message):
        forget_records(model, own_loop / "ledger", [3], thresholds=thresholds)


def test_receipts_of_a_bare_ledger_are_numbered_from_one_and_json_survives_a_closed_pipe(own_loop, tmp_path):
    import shutil

    folder = tmp_path / "f"
    shutil.copytree(own_loop, folder)
    forget_records(_model_from(folder / "model.safetensors"), folder / "ledger", [3], force=True,
                   save_to=folder / "model.safetensors")
    assert [r["number"] for r in list_receipts(folder / "ledger")] == [1]
    cmd = f"{sys.executable} -m amnesiac receipts {folder / 'ledger'} --json | head -1"
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)
    assert proc.stdout.strip() == "[" and "Traceback" not in proc.stderr and "Error" not in proc.stderr
    listed = subprocess.run([sys.executable, "-m", "amnesiac", "receipts", str(folder / "ledger")],
                            capture_output=True, text=True)
    assert listed.returncode == 0 and "\n1 " in listed.stdout
    assert json.loads(subprocess.run([sys.executable, "-m", "amnesiac", "ledger", "info", str(folder / "ledger"),
                                      "--json"], capture_output=True, text=True).stdout)["steps"] == 40


def test_a_recorder_queue_larger_than_memory_allows_is_refused_before_anything_attaches(tmp_path, monkeypatch):
    import amnesiac.ledger.recorder as recorder_module

    model = torch.nn.Linear(64, 64)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    store = LedgerStore.create(tmp_path / "ledger", manifest={})
    monkeypatch.setattr(recorder_module, "available_memory", lambda: 4 * 2**20)  # a machine with 4 MiB free
    with pytest.raises(ConfigError, match=r"queue_size=1000 could hold .* use queue_size=\d+ or less"):
        Recorder(model, opt, store, queue_size=1000)
    model(torch.randn(2, 64)).sum().backward()
    opt.step()  # no hook of the refused recorder is left on the optimizer
    with Recorder(model, opt, store, queue_size=4) as rec:  # what fits is accepted
        with rec.batch([1, 2]):
            model(torch.randn(2, 64)).sum().backward()
            opt.step()
    store.close()

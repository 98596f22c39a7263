"""Fault injection: a SIGKILL at every named point of training, damage to every file kind, hostile input.

Each case checks the rules of the ledger: after the next command the run verifies and can be forgotten
from; damage is detected by ``verify --deep`` or refused by ``forget``, never acted on; refused input
exits 2 with a message and changes no file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from amnesiac.cli import main
from amnesiac.faults import POINTS
from amnesiac.ledger import verify_ledger
from amnesiac.run import RunDir, TrainConfig, train_run
from amnesiac.unlearn import forget
from amnesiac.utils import model_hash
from conftest import tree as _tree

TRAIN_SCRIPT = textwrap.dedent("""
    import sys
    from amnesiac.run import TrainConfig, train_run
    train_run(TrainConfig(epochs=3, batch_size=64), sys.argv[1], resume=len(sys.argv) > 2, progress=False)
""")

TRAIN_POINTS = [p for p in POINTS if p.startswith("train")]


# every point in the first epoch's commit, and the commit point itself again in the last epoch
TRAIN_CASES = [(p, 1) for p in TRAIN_POINTS] + [("train-epoch:after-ledger", 3)]


@pytest.mark.parametrize("point,nth", TRAIN_CASES)
def test_training_killed_at_every_named_point_recovers_and_can_be_forgotten_from(tmp_path, point, nth):
    out = tmp_path / "run"
    env = {**os.environ, "AMNESIAC_CRASH_AT": f"{point}#{nth}"}
    proc = subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, str(out)], env=env, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    run = RunDir.open(out)
    before = _tree(out)
    assert main(["ledger", "verify", str(out)]) in (0, 1)  # a reader: reports, changes nothing
    assert _tree(out) == before
    train_run(TrainConfig(epochs=3, batch_size=64), out, resume=True, progress=False)
    assert main(["ledger", "verify", str(out), "--deep"]) == 0
    assert run.model_meta()["epoch"] == 2
    result = forget(run, ids=[5, 6], evaluate_after=False, progress=False)
    assert result.receipt is not None and main(["ledger", "verify", str(out), "--deep"]) == 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("faults") / "run"
    train_run(TrainConfig(epochs=2, batch_size=64), base, progress=False)
    return base


@pytest.fixture
def run(trained, tmp_path):
    shutil.copytree(trained, tmp_path / "run")
    return RunDir.open(tmp_path / "run")


def _flip(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 1 << bit
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("target", ["manifest", "initial", "model", "blob", "index-rows", "index-idtable"])
def test_a_flipped_bit_in_any_file_kind_is_detected_and_refuses_deletions(run, target):
    import sqlite3

    led = run.ledger_path
    if target == "manifest":
        _flip(led / "manifest.json", 40, 1)
    elif target == "initial":
        _flip(led / "initial.safetensors", -20, 3)
    elif target == "model":
        _flip(run.model_path, -20, 3)
    elif target == "blob":
        _flip(led / "blobs" / "000000000007.safetensors", -100, 2)
    else:
        con = sqlite3.connect(led / "index.sqlite")
        step = con.execute("SELECT step FROM step_ids WHERE sample_id = 17").fetchone()[0]
        if target == "index-rows":  # one id inside a step's own row: the row checksum no longer matches
            raw = bytearray(con.execute("SELECT ids FROM steps WHERE step = ?", (step,)).fetchone()[0])
            raw[0] ^= 1
            con.execute("UPDATE steps SET ids = ? WHERE step = ?", (bytes(raw), step))
        else:  # the id -> steps table points record 17 at the neighbouring step (the 1029 case)
            con.execute("UPDATE step_ids SET step = ? WHERE sample_id = 17 AND step = ?", (step - 1, step))
        con.commit()
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
    before = _tree(run.path)
    assert main(["ledger", "verify", str(run.path), "--deep"]) == 1
    code = main(["forget", str(run.path), "--ids", "17", "--no-eval", "--no-progress"])
    uses_blob_7 = False
    if target == "blob":
        store = run.open_ledger()
        uses_blob_7 = 7 in store.index.scan_steps_holding([17])
        store.close()
    if target == "initial" or (target == "blob" and not uses_blob_7):
        assert code == 0  # damage the deletion does not rely on: verify reports it, the request is served
        return
    assert code == 2
    assert _tree(run.path) == before


@pytest.mark.parametrize("victim", ["index.sqlite", "manifest.json", "initial.safetensors", "blobs", "model"])
def test_a_deleted_file_is_reported_and_nothing_else_is_removed(run, victim):
    led = run.ledger_path
    path = run.model_path if victim == "model" else led / victim
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
        for extra in ("-wal", "-shm"):
            Path(str(path) + extra).unlink(missing_ok=True)
    before = _tree(run.path)
    assert main(["ledger", "verify", str(run.path)]) == 1  # detected, and named
    assert main(["ledger", "info", str(run.path)]) in (0, 2)
    assert _tree(run.path) == before  # readers change nothing
    code = main(["forget", str(run.path), "--ids", "17", "--no-eval", "--no-progress"])
    if victim == "initial.safetensors":
        assert code == 0  # a deletion does not use the initial weights; verify keeps reporting their loss
        assert main(["ledger", "verify", str(run.path)]) == 1
    else:
        assert code == 2 and _tree(run.path) == before


def _cli(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "amnesiac", *argv], cwd=cwd, capture_output=True, text=True)


def _bad_inputs(run: Path, tmp: Path) -> list[tuple[list[str], str]]:
    (tmp / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (tmp / "subjects-str.json").write_text('{"alice": "12"}')
    (tmp / "subjects-float.json").write_text('{"alice": [1.9]}')
    (tmp / "subjects-bool.json").write_text('{"alice": [true]}')
    (tmp / "ids-float.json").write_text("[1.9]")
    (tmp / "ids-bool.json").write_text("[true]")
    (tmp / "a-file").write_text("x")
    r = str(run)
    return [
        (["forget", r, "--ids", "99999999999999999999999"], "sample id"),
        (["forget", r, "--ids", "0-1000000000"], "more than"),
        (["forget", r, "--ids", "-5"], "sample id"),
        (["forget", r, "--ids-file", str(tmp / "binary.bin")], "not a UTF-8"),
        (["forget", r, "--ids-file", str(tmp / "ids-float.json")], "integer"),
        (["forget", r, "--ids-file", str(tmp / "ids-bool.json")], "integer"),
        (["forget", r, "--subjects", "alice", "--subjects-file", str(tmp / "binary.bin")], "not a UTF-8"),
        (["forget", r, "--subjects", "alice", "--subjects-file", str(tmp / "subjects-str.json")], "list of integer"),
        (["forget", r, "--subjects", "alice", "--subjects-file", str(tmp / "subjects-float.json")], "integer"),
        (["forget", r, "--subjects", "alice", "--subjects-file", str(tmp / "subjects-bool.json")], "integer"),
        (["forget", r, "--ids", "17", "--method", "finetune", "--steps", "0"], "--steps"),
        (["forget", r, "--ids", "17", "--copies", "2"], "does not apply"),
        (["forget", r, "--ids", "17", "--method", "finetune", "--out", str(tmp / "a-file")], "is a file"),
        (["forget", r, "--ids", "17", "--method", "finetune", "--out", str(run / "sub")], "inside the run"),
        (["train", "--out", str(tmp / "a-file"), "--epochs", "1"], "is a file"),
        (["train", "--out", str(tmp), "--epochs", "1", "--overwrite"], "not a run directory"),
        (["demo", "--out", str(tmp)], "not the output of an earlier demo"),
        (["demo", "--out", str(tmp / "a-file")], "is a file"),
        (["reproduce", "fashion-mnist", "--profile", "smoke", "--out", str(tmp)], "holds no earlier reproduction"),
        (["reproduce", "mnist", "--profile", "default", "--data-dir", str(tmp), "--out", str(tmp / "new")],
         "could not find the four IDX files"),
        (["attack", "mia", r, "--target-class", "3", "--reference", str(tmp / "nowhere")], "not a run directory"),
        (["attack", "mia", r, "--target-class", "3", "--attacks", "logreg", "--attack-option", "logreg.fold=3"],
         "Did you mean 'folds'"),
        (["attack", "inversion", r, "--class", "3", "--reference", str(tmp / "nowhere")], "not a run directory"),
        (["attack", "inversion", r, "--class", "3", "--iterations", "0"], "--iterations must be at least 1, got 0"),
        (["attack", "inversion", r, "--class", "3", "--lr", "nan"], "--lr must be a positive step size, got nan"),
    ]


def test_hostile_input_exits_2_with_a_message_and_changes_nothing(run, tmp_path):
    tmp = tmp_path / "inputs"
    tmp.mkdir()
    cases = _bad_inputs(run.path, tmp)
    before_run, before_tmp = _tree(run.path), _tree(tmp)
    for argv, expect in cases:
        proc = _cli(argv, tmp_path)
        assert proc.returncode == 2, (argv, proc.stderr[-1500:])
        assert "Traceback" not in proc.stderr and expect in proc.stderr, (argv, proc.stderr[-1500:])
        assert _tree(run.path) == before_run and _tree(tmp) == before_tmp, argv


def test_broken_run_layouts_are_named_not_misdescribed(run, tmp_path):
    led = run.ledger_path
    blobs = led / "blobs"
    shutil.rmtree(blobs)
    blobs.write_text("not a folder")
    proc = _cli(["forget", str(run.path), "--ids", "17"], tmp_path)
    assert proc.returncode == 2 and "should be the directory of stored updates" in proc.stderr
    other = tmp_path / "other"
    shutil.copytree(run.path, other)
    shutil.rmtree(other / "ledger")
    (other / "ledger").write_text("x")
    proc = _cli(["forget", str(other), "--ids", "17"], tmp_path)
    assert proc.returncode == 2 and "ledger directory but is a file" in proc.stderr
    third = tmp_path / "third"
    shutil.copytree(run.path, third, ignore=shutil.ignore_patterns("ledger"))
    third_model = third / "model.safetensors"
    third_model.unlink()
    third_model.mkdir()
    proc = _cli(["forget", str(third), "--ids", "17", "--method", "finetune"], tmp_path)
    assert proc.returncode == 2 and "is a directory" in proc.stderr


def test_a_model_of_another_architecture_is_refused_by_name(run, tmp_path):
    from amnesiac.models import build_model
    from amnesiac.run.checkpoint import save_tensors

    mlp = build_model("mlp", in_channels=1, num_classes=10, image_size=8)
    save_tensors(run.model_path, mlp.state_dict(), {"epoch": 1, "step": 46, "hash": model_hash(mlp)})
    proc = _cli(["forget", str(run.path), "--ids", "17"], tmp_path)
    assert proc.returncode == 2 and "does not hold a 'small-cnn' model" in proc.stderr


def test_resume_after_a_forget_says_there_is_nothing_to_resume(run, tmp_path):
    forget(run, ids=[17], evaluate_after=False, progress=False)
    proc = _cli(["train", "--resume", "--out", str(run.path)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert main(["ledger", "verify", str(run.path), "--deep"]) == 0


def test_a_ledger_from_another_run_is_not_passed_as_good(run, tmp_path):
    other = tmp_path / "other"
    train_run(TrainConfig(epochs=2, batch_size=64, seed=1), other, progress=False)
    shutil.rmtree(run.ledger_path)
    shutil.copytree(other / "ledger", run.ledger_path)
    assert main(["ledger", "verify", str(run.path)]) == 1
    assert main(["forget", str(run.path), "--ids", "17", "--no-eval", "--no-progress"]) == 2


def test_readers_report_a_pending_change_instead_of_half_of_it(run, tmp_path):
    from amnesiac.run.commit import JOURNAL

    (run.path / JOURNAL).write_text('{"kind": "forget", "old_hash": "x", "new_hash": null}')
    before = _tree(run.path)
    for argv in (["ledger", "info", str(run.path)], ["receipts", str(run.path)]):
        proc = _cli(argv, tmp_path)
        assert proc.returncode == 1 and "interrupted change" in proc.stderr, argv
    assert _tree(run.path) == before
    assert main(["ledger", "recover", str(run.path)]) == 0 and not (run.path / JOURNAL).exists()
    assert main(["ledger", "verify", str(run.path), "--deep"]) == 0


def test_a_ledger_from_before_row_checksums_is_read_and_upgraded_by_its_writer(run):
    import json
    import sqlite3

    # make it a ledger of the previous format: no checksum columns, no checksums in metadata or manifest
    con = sqlite3.connect(run.ledger_path / "index.sqlite")
    con.execute("ALTER TABLE steps DROP COLUMN row_sum")
    con.execute("ALTER TABLE events DROP COLUMN sum")
    con.execute("DELETE FROM meta WHERE key IN ('manifest_sum', 'meta_sum')")
    con.commit()
    con.close()
    manifest = json.loads((run.ledger_path / "manifest.json").read_text())
    del manifest["row_sums"]
    (run.ledger_path / "manifest.json").write_text(json.dumps(manifest))
    assert main(["ledger", "info", str(run.path)]) == 0  # readers work and change nothing
    store = run.open_ledger()
    report = verify_ledger(store, progress=False)
    store.close()
    assert report.unchecked_rows == report.steps > 0 and not report.bad
    assert all("older amnesiac" in p for p in report.problems)  # said, not hidden
    assert forget(run, ids=[17], evaluate_after=False, progress=False).receipt is not None  # the writer upgrades
    store = run.open_ledger()
    upgraded = verify_ledger(store, progress=False)
    store.close()
    con = sqlite3.connect(run.ledger_path / "index.sqlite")
    columns = {r[1] for r in con.execute("PRAGMA table_info(steps)")}
    con.close()
    assert "row_sum" in columns and upgraded.steps > 0 and not upgraded.bad

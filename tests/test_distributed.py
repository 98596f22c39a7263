"""Training on two processes with DistributedDataParallel (gloo on CPU), one ledger written by rank 0.

What must hold: every training record appears in exactly one step per epoch; the ledger adds up to the
model; a forget on it gives what the same forget gives in one process; a rank killed mid-epoch fails the run
loudly, leaves a ledger that verifies, and resume completes it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from amnesiac.cli import main
from amnesiac.ledger import LedgerStore
from amnesiac.run import RunDir, TrainConfig, train_run_distributed
from amnesiac.unlearn import forget
from amnesiac.unlearn.library import forget_records

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="needs torch.distributed with gloo")

CONFIG = TrainConfig(dataset="digits", model="small-cnn", epochs=2, batch_size=64)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    result = train_run_distributed(CONFIG, out, nproc=2)
    assert result.record == "all" and [h["epoch"] for h in result.history] == [1, 2]
    return out


def test_every_record_is_in_exactly_one_step_per_epoch_and_the_ledger_adds_up(ddp_run):
    run = RunDir.open(ddp_run)
    ids = np.sort(run.training_data().ids.numpy())
    with run.open_ledger() as store:
        rows = list(store.iter_steps())
    per_epoch = -(-len(ids) // CONFIG.batch_size)
    assert len(rows) == CONFIG.epochs * per_epoch  # one row per global step, as in one process
    for epoch in range(CONFIG.epochs):
        got = np.concatenate([r.ids for r in rows if r.epoch == epoch])
        assert np.array_equal(np.sort(got), ids), epoch  # both ranks' slices, each record once
    assert all(r.ids.size in (CONFIG.batch_size, len(ids) % CONFIG.batch_size) for r in rows)
    assert main(["ledger", "verify", str(ddp_run), "--deep"]) == 0  # initial + every update = the model


def test_a_forget_on_the_ddp_ledger_is_the_same_forget_in_one_process(ddp_run, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(ddp_run, a)
    shutil.copytree(ddp_run, b)
    wanted = [3, 17, 99]
    by_run = forget(RunDir.open(a), ids=wanted, evaluate_after=False, progress=False, force=True)
    run_b = RunDir.open(b)
    model = run_b.load_model()
    by_library = forget_records(model, LedgerStore.open(run_b.ledger_path, writable=True), wanted, force=True)
    assert by_run.receipt["steps_reverted"] == by_library.receipt["steps_reverted"] != []
    for k, v in by_run.model.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    # undoing every step returns the initial weights
    everything = RunDir.open(a).training_data().ids.tolist()
    undone = forget(RunDir.open(a), ids=everything, evaluate_after=False, progress=False, force=True)
    with RunDir.open(a).open_ledger() as store:
        initial = store.load_initial()
    for k, v in undone.model.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v.float(), initial[k].float(), rtol=0, atol=1e-5)


def test_a_killed_rank_fails_the_run_loudly_and_resume_completes_it(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "AMNESIAC_CRASH_AT": "ddp:rank1-batch#30", "AMNESIAC_DDP_TIMEOUT": "30"}
    cmd = [sys.executable, "-m", "amnesiac", "train", "--dataset", "digits", "--epochs", "2", "--nproc", "2",
           "--out", str(out), "--no-progress"]
    died = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert died.returncode == 1, died.stderr[-2000:]
    assert "rank 1 of 2 died (killed by SIGKILL)" in died.stderr and "--resume" in died.stderr
    run = RunDir.open(out)
    assert run.model_meta()["epoch"] == 0  # the first epoch committed, the second did not
    assert main(["ledger", "verify", str(out), "--deep"]) == 0
    resumed = subprocess.run([sys.executable, "-m", "amnesiac", "train", "--resume", "--nproc", "2", "--out", str(out),
                              "--no-progress"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert run.model_meta()["epoch"] == 1 and main(["ledger", "verify", str(out), "--deep"]) == 0


def test_the_torchrun_example_records_one_ledger_from_two_processes(tmp_path):
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "ddp_own_loop.py"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(example), str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "256 steps recorded from 2 processes" in done.stdout
    assert main(["ledger", "verify", str(tmp_path / "ledger"), "--deep"]) == 0
    with LedgerStore.open(tmp_path / "ledger") as store:
        rows = list(store.iter_steps())
        for epoch in (0, 1):  # each record once per epoch, though each rank saw only half of every batch
            got = np.concatenate([r.ids for r in rows if r.epoch == epoch])
            assert got.size == 4096 and np.unique(got).size == 4096
        assert len(store.events("forget")) == 1

"""What a newcomer with their own loop meets first: a plan before any change, advice that names what the
called function has, every reader on a bare ledger, and a command that says when it waits."""

from __future__ import annotations

import fcntl
import inspect
import re
import subprocess
import sys
import threading
import time

import pytest
import torch

from amnesiac import LedgerStore, Recorder, forget_records, plan_deletion
from amnesiac.cli import main
from amnesiac.errors import AmnesiacError, PlanRefusedError
from amnesiac.run import TrainConfig, train_run
from amnesiac.utils import model_hash
from conftest import tree as _tree


def _own_loop(folder, *, epochs: int = 10, batch: int = 16):
    """An MLP with a frozen first layer, trained in a plain loop over 160 records."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    model[0].requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    store = LedgerStore.create(folder / "ledger", manifest={"storage_dtype": "float32"}, initial=model.state_dict())
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(160, 8, generator=g), torch.randint(0, 2, (160,), generator=g)
    with Recorder(model, opt, store) as rec:
        for _ in range(epochs):
            order = torch.randperm(160, generator=g)
            for b in range(0, 160, batch):
                ids = order[b : b + batch]
                with rec.batch(ids):
                    torch.nn.functional.cross_entropy(model(x[ids]), y[ids]).backward()
                    opt.step()
                    opt.zero_grad()
    store.mark_head(model)
    return model, store


def test_a_plan_from_the_top_level_changes_nothing_and_matches_what_forget_does(tmp_path):
    model, store = _own_loop(tmp_path)
    store.close()
    before = _tree(tmp_path)
    plan = plan_deletion(tmp_path / "ledger", torch.tensor([3, 40]))
    assert _tree(tmp_path) == before
    assert plan.affected_steps and 0 < plan.share < 1
    done = forget_records(model, tmp_path / "ledger", [3, 40], force=True)
    assert done.plan.affected_steps == plan.affected_steps and done.plan.recommendation == plan.recommendation


def test_the_refusal_of_a_large_request_names_only_what_forget_records_has(tmp_path):
    model, store = _own_loop(tmp_path)
    before = model_hash(model)
    with pytest.raises(PlanRefusedError) as caught:
        forget_records(model, store, list(range(10)))  # ten records over ten epochs: most of the steps
    message = str(caught.value)
    params = set(inspect.signature(forget_records).parameters)
    for name in re.findall(r"(?<![\w.(])(\w+)=", message):  # keyword arguments of forget_records itself
        assert name in params, f"the advice names {name}=, which forget_records does not take: {message}"
    assert "force=True" in message and "method=" not in message and "--" not in message
    assert "plan_deletion" in message and "shards" in message
    assert model_hash(model) == before


def test_ids_that_are_a_single_number_raise_a_library_error(tmp_path):
    model, store = _own_loop(tmp_path, epochs=1)
    with pytest.raises(AmnesiacError, match=r"wrap it in a list: \[3\]"):
        forget_records(model, store, 3)


def test_every_reader_works_on_a_bare_ledger_and_changes_nothing(tmp_path, capsys):
    model, store = _own_loop(tmp_path, epochs=1)
    forget_records(model, store, [5], force=True)
    store.close()
    before = sorted(p.name for p in (tmp_path / "ledger").rglob("*"))
    for argv in (["ledger", "info"], ["receipts"], ["ledger", "verify"], ["receipts", "--json"]):
        assert main([*argv, str(tmp_path / "ledger")]) == 0, argv
    out = capsys.readouterr().out
    assert "steps           10 indexed" in out and "1 record" in out
    assert sorted(p.name for p in (tmp_path / "ledger").rglob("*")) == before


def test_a_forget_on_a_busy_run_says_it_waits(tmp_path):
    out = tmp_path / "run"
    train_run(TrainConfig(epochs=1), out, progress=False)
    with open(out / ".lock", "a+") as held:  # another process's train or forget
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = subprocess.Popen([sys.executable, "-m", "amnesiac", "forget", str(out), "--ids", "3", "--no-eval",
                                 "--no-progress", "--force"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        watchdog = threading.Timer(120, proc.kill)
        watchdog.start()
        first = proc.stderr.readline()  # said while the lock is still held here
        time.sleep(0.5)
        assert proc.poll() is None  # it waits for the lock instead of failing
    stdout, rest = proc.communicate(timeout=120)
    watchdog.cancel()
    assert proc.returncode == 0, first + rest
    assert first.startswith("waiting for the lock of") and "got the lock of" in rest


@pytest.mark.parametrize("lock_files", ["as made", "removed"])
def test_readers_leave_a_run_directory_as_they_found_it(tmp_path, lock_files):
    """Every reader, on a run made today and on one whose lock files are gone (an older amnesiac, a copy): the
    listing (lock files included) and every file's bytes are unchanged."""
    import hashlib

    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(run), "--no-progress"]) == 0
    assert main(["forget", str(run), "--ids", "5", "--no-eval", "--no-progress", "--force"]) == 0
    if lock_files == "removed":
        for p in run.rglob("*.lock"):
            p.unlink()

    def listing() -> dict[str, str]:
        return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
                for p in sorted(run.rglob("*"))}

    before = listing()
    for argv in (["ledger", "info", str(run)], ["ledger", "verify", str(run), "--deep"], ["receipts", str(run)],
                 ["attack", "inversion", str(run), "--class", "4", "--iterations", "5", "--restarts", "1",
                  "--out", str(tmp_path / "a"), "--no-progress"],
                 ["attack", "mia", str(run), "--target-ids", "0-19", "--attacks", "loss", "--no-progress"]):
        assert main(argv) == 0, argv
        assert listing() == before, argv


def test_library_errors_name_parameters_and_the_command_line_names_its_flags(tmp_path, capsys):
    """The same refusal, in each caller's language: the library's names its parameters, the CLI's its flags."""
    from amnesiac.errors import ConfigError
    from amnesiac.run import RunDir
    from amnesiac.unlearn import forget

    run = tmp_path / "run"
    train_run(TrainConfig(epochs=1), run, progress=False)
    with pytest.raises(ConfigError, match="out=NEWRUN") as caught:
        forget(RunDir.open(run), ids=[1], method="retrain", progress=False)
    assert "--" not in str(caught.value)
    assert main(["forget", str(run), "--ids", "1", "--method", "retrain"]) == 2
    err = capsys.readouterr().err
    assert "--out NEWRUN" in err and "out=" not in err

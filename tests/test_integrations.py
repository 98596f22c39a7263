"""The library path from other training loops: the runnable examples, the Lightning callback, and
`amnesiac ledger verify` on a ledger recorded outside a run directory."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from amnesiac import LedgerStore
from amnesiac.ledger import verify_ledger

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "amnesiac", *args], capture_output=True, text=True)


def test_the_own_loop_example_runs_and_its_ledger_verifies(tmp_path):
    receipt = runpy.run_path(str(EXAMPLES / "own_loop.py"))["main"](str(tmp_path))
    assert receipt["n_steps_reverted"] > 0 and receipt["workflow"] == "library"
    assert (tmp_path / "model.safetensors").is_file()
    ok = _cli("ledger", "verify", str(tmp_path / "ledger"), "--deep")
    assert ok.returncode == 0 and "all good" in ok.stdout, ok.stdout + ok.stderr
    blob = sorted((tmp_path / "ledger" / "blobs").iterdir())[0]
    raw = bytearray(blob.read_bytes())
    raw[-3] ^= 0xFF
    blob.write_bytes(bytes(raw))
    bad = _cli("ledger", "verify", str(tmp_path / "ledger"), "--deep")
    assert bad.returncode == 1 and "NOT OK" in bad.stdout, bad.stdout + bad.stderr


def test_the_shard_ledger_example_keeps_one_sum_per_shard_and_forgets_one(tmp_path):
    receipt = runpy.run_path(str(EXAMPLES / "shard_ledger.py"))["main"](str(tmp_path), epochs=3)
    assert receipt["n_steps_reverted"] == 1 and receipt["ledger_kind"] == "shards"
    ok = _cli("ledger", "verify", str(tmp_path / "ledger"), "--deep")
    assert ok.returncode == 0 and "all good" in ok.stdout, ok.stdout + ok.stderr
    with LedgerStore.open(tmp_path / "ledger") as store:
        rows = list(store.iter_steps())
        assert len(rows) == 10 and [r.state for r in rows].count("reverted") == 1
        assert store.index.shard_generation() == 3  # one commit per epoch; the deletion adopted no new sums
    assert len(list((tmp_path / "ledger" / "blobs").iterdir())) == 9  # the subtracted sum was destroyed


def _lightning_fit(tmp_path, *, records: int, batch_size: int, shuffle: bool, **trainer_options):
    """Fit the example's classifier with the callback, noting each training batch's ids as Lightning passes
    them; returns the model, its initial state, the callback, the trainer and the ids seen per batch."""
    pl = pytest.importorskip("lightning.pytorch")
    from torch.utils.data import DataLoader

    from amnesiac.integrations.lightning import AmnesiacCallback

    mod = runpy.run_path(str(EXAMPLES / "lightning_forget.py"))
    seen: list[set[int]] = []

    class Watched(mod["Classifier"]):
        def training_step(self, batch, batch_idx):
            seen.append(set(batch[2].tolist()))
            return super().training_step(batch, batch_idx)

    torch.manual_seed(0)
    model = Watched()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    cb = AmnesiacCallback(tmp_path / "ledger")
    trainer = pl.Trainer(callbacks=[cb], logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", **trainer_options)
    trainer.fit(model, DataLoader(mod["Records"](records), batch_size=batch_size, shuffle=shuffle))
    return model, initial, cb, trainer, seen


def test_lightning_callback_records_every_step_with_its_batch_and_forgets(tmp_path):
    from amnesiac import forget_records

    model, initial, cb, trainer, seen = _lightning_fit(tmp_path, records=96, batch_size=16, shuffle=True, max_epochs=2)
    store = cb.store
    steps = list(store.iter_steps())
    assert len(steps) == trainer.global_step == len(seen) == 12
    assert [set(r.ids.tolist()) for r in steps] == seen  # each step holds exactly its batch's ids
    # the recorded updates add up to final - initial, so subtracting some is exact
    total = {k: torch.zeros_like(v, dtype=torch.float32) for k, v in initial.items() if v.is_floating_point()}
    for r in steps:
        for k, d in store.load_update(r).items():
            total[k] += d.float()
    for k, v in total.items():
        assert torch.allclose(initial[k] + v, model.state_dict()[k], atol=1e-5), k
    forget = sorted(seen[0])[:3] + sorted(seen[-1])[:2]
    deletion = forget_records(model, store, forget, force=True)  # 2 of 12 steps: past the planner, on purpose
    want = sorted(r.step for r in steps if set(r.ids.tolist()) & set(forget))
    assert deletion.receipt["steps_reverted"] == want
    store.close()
    assert verify_ledger(LedgerStore.open(tmp_path / "ledger"), deep=True).ok


def test_lightning_gradient_accumulation_gives_each_step_the_ids_of_its_batches(tmp_path):
    _, _, cb, trainer, seen = _lightning_fit(tmp_path, records=64, batch_size=8, shuffle=False, max_epochs=1,
                                             accumulate_grad_batches=2)
    steps = list(cb.store.iter_steps())
    assert len(seen) == 8 and len(steps) == trainer.global_step == 4
    assert [set(r.ids.tolist()) for r in steps] == [seen[2 * i] | seen[2 * i + 1] for i in range(4)]
    cb.store.close()

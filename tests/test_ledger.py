import textwrap
import time

import pytest
import torch

from amnesiac.errors import ConfigError, LedgerCorruptError, LedgerError, RecorderError
from amnesiac.ledger import LedgerStore, Recorder, estimate_for_model, tracked_state, verify_ledger
from amnesiac.run import RunDir, TrainConfig, train_run
from amnesiac.training import batches, fit
from conftest import kill_when


def _store(tmp_path, name="ledger", dtype="float32"):
    return LedgerStore.create(tmp_path / name, manifest={"storage_dtype": dtype})


def _state(model):
    return {k: v.detach().clone() for k, v in tracked_state(model).items()}


def _subtract_all(model, store):
    state = {k: v.detach().clone().float() for k, v in tracked_state(model).items()}
    for rec in store.iter_steps():
        for k, d in store.load_update(rec).items():
            state[k] -= d.float()
    return state


def _train_recorded(rec, model, opt, data, batch_size, seed):
    """One epoch under ``rec``, step by step; returns {step: (ids, state before, state after)}."""
    loss_fn = torch.nn.CrossEntropyLoss()
    out = {}
    for step, (x, y, ids) in enumerate(batches(data, batch_size, seed=seed), start=1):
        before = _state(model)
        with rec.batch(ids):
            loss_fn(model(x), y).backward()
            opt.step()
            opt.zero_grad()
        out[step] = (ids.tolist(), before, _state(model))
    return out


OPTIMIZERS = {
    "sgd-momentum-wd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-2),
}


@pytest.mark.parametrize("state_dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_undoing_every_step_returns_the_initial_state(tmp_path, tiny_data, tiny_net, opt_name, state_dtype):
    # float32 state on CPU: the writer thread computes each delta; float64: the training thread does
    tiny_net.to(state_dtype)
    tiny_net.register_forward_pre_hook(lambda m, args: tuple(a.to(state_dtype) for a in args))
    initial = _state(tiny_net)
    opt = OPTIMIZERS[opt_name](tiny_net.parameters())
    store = _store(tmp_path)
    with Recorder(tiny_net, opt, store) as rec:
        assert rec._defer == (state_dtype == torch.float32)
        fit(tiny_net, opt, tiny_data, epochs=3, batch_size=16, recorder=rec, progress=False)
    assert store.last_step() == 15
    final = _state(tiny_net)
    assert not torch.allclose(final["bn.running_mean"], initial["bn.running_mean"])  # buffers did move
    back = _subtract_all(tiny_net, store)
    assert set(back) == set(initial)
    for k in initial:
        torch.testing.assert_close(back[k], initial[k].float(), rtol=0, atol=1e-5, msg=k)


def test_run_level_ledger_reconstructs_initial_weights(tmp_path):
    result = train_run(TrainConfig(epochs=2, record="all"), tmp_path / "run", progress=False)
    store = RunDir.open(tmp_path / "run").open_ledger()
    initial = store.load_initial()
    back = _subtract_all(result.model, store)
    for k, v in back.items():
        torch.testing.assert_close(v, initial[k].float(), rtol=0, atol=1e-5, msg=k)
    man = store.manifest
    assert man["optimizer"]["class"] == "Adam" and man["optimizer"]["lr"] == 1e-3
    assert ["fc.weight"] != [f[0] for f in man["model_fingerprint"]][:1]
    assert any(name.endswith("running_var") for name, _, _ in man["model_fingerprint"])


def test_gradient_accumulation_collects_every_micro_batch(tmp_path, tiny_data, tiny_net):
    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1)
    store = _store(tmp_path)
    loss_fn = torch.nn.CrossEntropyLoss()
    with Recorder(tiny_net, opt, store) as rec:
        micro = list(batches(tiny_data, 8, shuffle=False))
        for a, b in [(micro[0], micro[1]), (micro[2], micro[3])]:
            for x, y, ids in (a, b):
                with rec.batch(ids):
                    loss_fn(tiny_net(x), y).backward()
            opt.step()
            opt.zero_grad()
    assert store.last_step() == 2
    assert store.step(1).ids.tolist() == list(range(100, 116))
    assert store.step(2).ids.tolist() == list(range(116, 132))


def test_skipped_gradscaler_step_carries_its_ids_to_the_next_step(tmp_path, tiny_data, tiny_net):
    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=float("inf"))  # first step's gradients overflow
    store = _store(tmp_path)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y, ids = tiny_data[list(range(8))]
    before = _state(tiny_net)
    with Recorder(tiny_net, opt, store) as rec:
        with rec.batch(ids[:4]):  # an overflowing step: GradScaler skips optimizer.step()
            scaler.scale(loss_fn(tiny_net(x[:4]), y[:4])).backward()
            scaler.step(opt)
            scaler.update(new_scale=1.0)
            opt.zero_grad()
        rec.flush()
        assert store.last_step() == 0 and rec.pending_ids.tolist() == ids[:4].tolist()
        with rec.batch(ids[4:]):
            scaler.scale(loss_fn(tiny_net(x[4:]), y[4:])).backward()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad()
    assert store.last_step() == 1
    assert store.step(1).ids.tolist() == ids.tolist()  # conservative: both batches
    # the recorded delta still adds up to the whole change, BatchNorm drift of the skipped batch included
    after = _state(tiny_net)
    delta = store.load_update(1)
    for k in before:
        torch.testing.assert_close(after[k] - delta[k], before[k], rtol=0, atol=1e-6)


def test_discard_pending_drops_a_skipped_steps_ids(tmp_path, tiny_data, tiny_net):
    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1)
    store = _store(tmp_path)
    x, y, ids = tiny_data[list(range(8))]
    with Recorder(tiny_net, opt, store) as rec:
        with rec.batch(ids[:4]):
            pass
        rec.discard_pending()
        with rec.batch(ids[4:]):
            torch.nn.functional.cross_entropy(tiny_net(x[4:]), y[4:]).backward()
            opt.step()
    assert store.step(1).ids.tolist() == ids[4:].tolist()


def test_a_step_without_ids_is_refused_before_anything_changes(tmp_path, tiny_data, tiny_net):
    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1)
    store = _store(tmp_path)
    x, y, _ = tiny_data[list(range(8))]
    with Recorder(tiny_net, opt, store):
        torch.nn.functional.cross_entropy(tiny_net(x), y).backward()
        params_before = {k: v.clone() for k, v in tiny_net.named_parameters()}
        with pytest.raises(RecorderError, match="no sample ids declared"):
            opt.step()
        for k, v in tiny_net.named_parameters():
            assert torch.equal(v, params_before[k])
    assert store.last_step() == 0


def test_hooks_are_removed_on_close(tmp_path, tiny_data, tiny_net):
    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1)
    store = _store(tmp_path)
    Recorder(tiny_net, opt, store).close()
    x, y, _ = tiny_data[list(range(4))]
    torch.nn.functional.cross_entropy(tiny_net(x), y).backward()
    opt.step()  # no recorder: must not raise
    assert store.last_step() == 0


def test_watch_policy_stores_only_steps_with_watched_ids(tmp_path, tiny_data, tiny_net):
    opt = torch.optim.Adam(tiny_net.parameters(), lr=1e-2)
    store = _store(tmp_path)
    watched = [105, 150]
    with Recorder(tiny_net, opt, store, policy="watch", watch_ids=watched) as rec:
        snapshots = {st: (b, a) for st, (_, b, a) in _train_recorded(rec, tiny_net, opt, tiny_data, 8, seed=1).items()}
    recs = list(store.iter_steps())
    assert len(recs) == 10  # every step indexed
    stored = [r.step for r in recs if r.recorded]
    expected = [r.step for r in recs if set(r.ids.tolist()) & set(watched)]
    assert stored == expected and 1 <= len(stored) <= 2
    assert store.steps_for_ids(watched) == expected
    for s in stored:  # each stored update is exactly that step's change, buffers included
        before, after = snapshots[s]
        delta = store.load_update(s)
        for k in before:
            torch.testing.assert_close(before[k] + delta[k], after[k], rtol=0, atol=1e-6)
    assert not store.step(next(r.step for r in recs if not r.recorded)).recorded


def test_callable_policy(tmp_path, tiny_data, tiny_net):
    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1)
    store = _store(tmp_path)
    with Recorder(tiny_net, opt, store, policy=lambda ids: int(ids.min()) < 120) as rec:
        fit(tiny_net, opt, tiny_data, epochs=1, batch_size=16, recorder=rec, progress=False)
    for r in store.iter_steps():
        assert r.recorded == (int(r.ids.min()) < 120)


@pytest.mark.parametrize("dtype,tol", [("float16", 5e-3), ("bfloat16", 3e-2)])
def test_low_precision_storage(tmp_path, tiny_data, tiny_net, dtype, tol):
    initial = _state(tiny_net)
    opt = torch.optim.Adam(tiny_net.parameters(), lr=1e-2)
    store = _store(tmp_path, dtype=dtype)
    with Recorder(tiny_net, opt, store, dtype=dtype) as rec:
        fit(tiny_net, opt, tiny_data, epochs=2, batch_size=16, recorder=rec, progress=False)
    upd = store.load_update(1)
    assert all(v.dtype == getattr(torch, dtype) for v in upd.values())
    back = _subtract_all(tiny_net, store)  # summed in float32
    for k in initial:
        torch.testing.assert_close(back[k], initial[k], rtol=0, atol=tol, msg=k)


def test_buffers_can_be_left_out(tmp_path, tiny_data, tiny_net):
    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1)
    store = _store(tmp_path)
    with Recorder(tiny_net, opt, store, include_buffers=False) as rec:
        fit(tiny_net, opt, tiny_data, epochs=1, batch_size=40, recorder=rec, progress=False)
    keys = set(store.load_update(1))
    assert "bn.running_mean" not in keys and "bn.weight" in keys and "conv.weight" in keys


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_blob_is_detected_by_step(tmp_path, tiny_data, tiny_net, damage):
    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1)
    store = _store(tmp_path)
    with Recorder(tiny_net, opt, store) as rec:
        fit(tiny_net, opt, tiny_data, epochs=1, batch_size=16, recorder=rec, progress=False)
    path = store.path / "blobs" / store.step(3).blob
    raw = path.read_bytes()
    if damage == "flip":
        path.write_bytes(raw[:-5] + bytes([raw[-5] ^ 0xFF]) + raw[-4:])
    elif damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    else:
        path.unlink()
    with pytest.raises(LedgerCorruptError, match="step 3") as err:
        store.load_update(3)
    assert err.value.steps == [3]
    report = verify_ledger(store, progress=False)
    assert not report.ok and list(report.bad) == [3] and report.checked == 4


def test_writer_failure_surfaces_in_the_training_thread(tmp_path, tiny_data, tiny_net, monkeypatch):
    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1)
    store = _store(tmp_path)

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "put_step", broken)
    rec = Recorder(tiny_net, opt, store)
    with pytest.raises(RecorderError, match="No space left"):
        fit(tiny_net, opt, tiny_data, epochs=2, batch_size=8, recorder=rec, progress=False)
        rec.flush()
    with pytest.raises(RecorderError):
        rec.close()


def test_backpressure_keeps_every_step_in_order(tmp_path, tiny_data, tiny_net, monkeypatch):
    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1)
    store = _store(tmp_path)
    real = store.put_step
    high_water = []

    rec = Recorder(tiny_net, opt, store, queue_size=1)

    def slow(*args, **kwargs):
        high_water.append(rec._writer.queue.qsize())
        time.sleep(0.01)
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "put_step", slow)
    fit(tiny_net, opt, tiny_data, epochs=1, batch_size=8, recorder=rec, progress=False)
    rec.close()
    assert [r.step for r in store.iter_steps()] == list(range(1, 11))
    assert max(high_water) <= 1


def test_unstored_steps_are_indexed_in_groups_and_flush_makes_them_durable(tmp_path, tiny_data, tiny_net):
    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1)
    store = _store(tmp_path)
    watched = int(tiny_data.ids[45])
    rec = Recorder(tiny_net, opt, store, policy="watch", watch_ids=[watched])
    rec._unstored_group = 4
    # 40 steps, one holds the watched id
    seen = [ids for ids, _, _ in _train_recorded(rec, tiny_net, opt, tiny_data, 2, seed=3).values()]
    rec.flush()
    recs = list(store.iter_steps())
    assert [r.step for r in recs] == list(range(1, 41))
    assert [r.ids.tolist() for r in recs] == seen
    assert [r.step for r in recs if r.recorded] == [next(i for i, b in enumerate(seen, 1) if watched in b)]
    rec.close()


@pytest.mark.parametrize("policy", ["all", "watch"])
def test_slow_writer_never_sees_a_reused_snapshot(tmp_path, tiny_data, tiny_net, monkeypatch, policy):
    """The writer subtracts pooled snapshots while training goes on: each stored delta must still be exactly
    its own step's change, and the pool must stay within its bound."""
    opt = torch.optim.Adam(tiny_net.parameters(), lr=1e-2)
    store = _store(tmp_path)
    real = store.put_step

    def slow(*args, **kwargs):
        time.sleep(0.02)
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "put_step", slow)
    watch = [int(i) for i in tiny_data.ids[::3]]
    rec = Recorder(tiny_net, opt, store, queue_size=1, policy=policy, watch_ids=watch if policy == "watch" else None,
                   offload_delta=True)
    changes = {st: {k: v - b[k] for k, v in a.items()}
               for st, (_, b, a) in _train_recorded(rec, tiny_net, opt, tiny_data, 8, seed=2).items()}
    rec.close()
    assert rec._pool.made <= 3
    assert rec._current is None and rec._pool.free.empty()  # closing lets the snapshots go
    stored = [r.step for r in store.iter_steps() if r.recorded]
    assert len(stored) >= 3
    for s_ in stored:
        for k, d in store.load_update(s_).items():
            torch.testing.assert_close(d, changes[s_][k], rtol=0, atol=1e-6, msg=f"step {s_} {k}")


def test_only_a_writable_open_removes_leftovers_and_only_those_a_crash_explains(tmp_path, tiny_data, tiny_net):
    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1)
    store = _store(tmp_path)
    with Recorder(tiny_net, opt, store) as rec:
        fit(tiny_net, opt, tiny_data, epochs=1, batch_size=40, recorder=rec, progress=False)
    store.close()
    blobs = tmp_path / "ledger" / "blobs"
    (blobs / "000000000099.safetensors").write_bytes(b"partial")  # a write whose row never committed
    (blobs / ".000000000003.safetensors.x.tmp").write_bytes(b"partial")
    (blobs / "notes.txt").write_bytes(b"the user's")  # not the ledger's: never deleted
    everything = sorted(p.name for p in blobs.iterdir())
    reader = LedgerStore.open(tmp_path / "ledger")  # a reader changes nothing
    report = verify_ledger(reader, progress=False)
    reader.close()
    assert sorted(p.name for p in blobs.iterdir()) == everything
    assert "000000000099.safetensors" in report.orphans and any("notes.txt" in p for p in report.problems)
    writer = LedgerStore.open(tmp_path / "ledger", writable=True)
    assert sorted(p.name for p in blobs.iterdir()) == ["000000000001.safetensors", "000000000002.safetensors", "notes.txt"]
    (blobs / "notes.txt").unlink()
    assert verify_ledger(writer, progress=False).ok


def test_a_missing_index_is_an_error_and_nothing_is_deleted(tmp_path, tiny_data, tiny_net):
    from amnesiac.errors import LedgerCorruptError

    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1)
    store = _store(tmp_path)
    with Recorder(tiny_net, opt, store) as rec:
        fit(tiny_net, opt, tiny_data, epochs=1, batch_size=40, recorder=rec, progress=False)
    store.close()
    (tmp_path / "ledger" / "index.sqlite").unlink()
    for name in ("index.sqlite-wal", "index.sqlite-shm"):
        (tmp_path / "ledger" / name).unlink(missing_ok=True)
    for writable in (False, True):
        with pytest.raises(LedgerCorruptError, match="index.sqlite is missing"):
            LedgerStore.open(tmp_path / "ledger", writable=writable)
    assert not (tmp_path / "ledger" / "index.sqlite").exists()
    assert len(list((tmp_path / "ledger" / "blobs").iterdir())) == 2


def test_bad_arguments_are_refused(tmp_path, tiny_net):
    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1)
    store = _store(tmp_path)
    with pytest.raises(ConfigError, match="dtype must be one of"):
        Recorder(tiny_net, opt, store, dtype="float8")
    with pytest.raises(ConfigError, match="differs from the ledger's storage dtype 'float32'"):
        Recorder(tiny_net, opt, store, dtype="float16")  # the manifest is the one source of the storage dtype
    with pytest.raises(ConfigError, match="needs watch_ids"):
        Recorder(tiny_net, opt, store, policy="watch")
    other = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="none of the model's parameters"):
        Recorder(tiny_net, other, store)
    with pytest.raises(LedgerError, match="already holds a ledger"):
        _store(tmp_path)
    with pytest.raises(LedgerError, match="no ledger"):
        LedgerStore.open(tmp_path / "nothing")


def test_estimate_matches_real_blob_size(tmp_path):
    result = train_run(TrainConfig(epochs=1, record="all", ledger_dtype="float16"), tmp_path / "run", progress=False)
    store = RunDir.open(tmp_path / "run").open_ledger()
    est = estimate_for_model(result.model, num_examples=1438, batch_size=64, epochs=1, dtype="float16")
    actual = store.step(1).nbytes
    assert est.steps == store.last_step() == 23
    assert abs(est.bytes_per_step - actual) / actual < 0.05


def test_resume_truncates_steps_beyond_the_checkpoint(tmp_path):
    train_run(TrainConfig(epochs=1, record="all"), tmp_path / "run", progress=False)
    run = RunDir.open(tmp_path / "run")
    store = run.open_ledger(writable=True)
    store.put_step(24, epoch=1, ids=[1, 2], update=None)  # a step the saved model does not contain
    store.close()
    cfg = run.config
    cfg.epochs = 2
    run.write_config(cfg)
    result = train_run(cfg, tmp_path / "run", resume=True, progress=False)
    store = run.open_ledger()
    assert [r.step for r in store.iter_steps()] == list(range(1, 47))
    back = _subtract_all(result.model, store)
    for k, v in store.load_initial().items():
        if k in back:
            torch.testing.assert_close(back[k], v.float(), rtol=0, atol=1e-5)


CRASH_SCRIPT = textwrap.dedent("""
    import sys
    from amnesiac.run import TrainConfig, train_run
    record = sys.argv[2]
    train_run(TrainConfig(epochs=40, batch_size=16, record=record, watch_class=3 if record == "watch" else None),
              sys.argv[1], progress=False)
""")


def _saved_step(out):
    try:
        return int(RunDir.open(out).model_meta()["step"])
    except Exception:  # not written yet, or being replaced
        return 0


@pytest.mark.parametrize("record", ["all", "watch"])
def test_sigkill_mid_training_leaves_a_ledger_that_verifies_and_resumes(tmp_path, record):
    out = tmp_path / "run"
    # kill once two epochs are saved and the third is under way
    kill_when(CRASH_SCRIPT, [str(out), record], lambda: _saved_step(out) >= 180, timeout=120, settle=0.3,
              what="training did not get far enough to test a crash")
    run = RunDir.open(out)
    audit = run.audit(deep=True)  # a reader, before anything recovers: committed state is consistent
    # a kill that lands inside an atomic write leaves its temporary file, and one inside an epoch's commit leaves
    # its journal: the audit names either and the next lock holder removes or completes it (checked below);
    # anything else is a problem
    left_for_recovery = ("left over from a write that a crash interrupted", "an interrupted change is pending")
    problems = [p for p in audit.problems if not any(m in p for m in left_for_recovery)]
    assert audit.ledger.ok and not problems, (audit.problems, audit.ledger)
    with run.lock():
        pass  # what the next command does first: finish or roll back, remove explained leftovers
    assert run.audit().ok  # the lock holder removed the leftovers and finished or rolled back the change
    store = run.open_ledger()
    report = verify_ledger(store, progress=False)
    assert report.ok and report.orphans == []
    assert store.index.get_meta("training_complete") == "0"
    steps = [r.step for r in store.iter_steps()]
    assert steps == list(range(1, len(steps) + 1))
    saved_step = run.model_meta()["step"]
    assert saved_step % 90 == 0 and saved_step <= len(steps)  # 90 steps per epoch at batch 16
    store.close()
    cfg = run.config
    cfg.epochs = saved_step // 90 + 1
    run.write_config(cfg)
    result = train_run(cfg, out, resume=True, progress=False)
    store = run.open_ledger()
    assert verify_ledger(store, progress=False).ok
    assert store.last_step() == 90 * cfg.epochs and store.index.get_meta("training_complete") == "1"
    if record == "all":
        back = _subtract_all(result.model, store)
        for k, v in store.load_initial().items():
            if k in back:
                torch.testing.assert_close(back[k], v.float(), rtol=0, atol=1e-4)
    else:  # every step is indexed, and exactly the steps holding a watched id store their update
        watched = set(run.training_data().ids_of_class(3).tolist())
        recs = list(store.iter_steps())
        assert any(r.recorded for r in recs) and not all(r.recorded for r in recs)
        for r in recs:
            assert r.recorded == bool(watched & set(r.ids.tolist())), r.step


@pytest.mark.parametrize("change", ["convert", "assign"])
def test_replacing_the_models_tensors_after_attaching_is_refused(tmp_path, tiny_data, tiny_net, change):
    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1)
    store = _store(tmp_path)
    x, y, ids = tiny_data[list(range(8))]
    with Recorder(tiny_net, opt, store) as rec:
        if change == "convert":
            tiny_net.double()  # converts every tensor in place of the old ones
            x = x.double()
        else:
            fresh = {k: v.clone() for k, v in tiny_net.state_dict().items()}
            tiny_net.load_state_dict(fresh, assign=True)
        with rec.batch(ids), pytest.raises(RecorderError, match="replaced since this Recorder was created"):
            torch.nn.functional.cross_entropy(tiny_net(x), y).backward()
            opt.step()
        rec.discard_pending()
    assert store.last_step() == 0


def test_the_users_exception_is_not_replaced_by_a_failing_close(tmp_path, tiny_data, tiny_net, monkeypatch):
    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1)
    store = _store(tmp_path)
    rec = Recorder(tiny_net, opt, store)
    monkeypatch.setattr(rec, "flush", lambda: (_ for _ in ()).throw(RecorderError("flush failed")))
    with pytest.raises(KeyError, match="the user's"), pytest.warns(RuntimeWarning, match="flush failed"):
        with rec:
            raise KeyError("the user's")


def test_a_dropped_recorder_stops_its_writer_thread(tmp_path, tiny_data, tiny_net):
    import gc
    import threading

    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1)
    store = _store(tmp_path)
    before = {t.name for t in threading.enumerate()}
    rec = Recorder(tiny_net, opt, store)
    writer = rec._writer
    for h in rec._handles:  # the optimizer's hooks hold the recorder; a user who drops it drops them too
        h.remove()
    del rec
    gc.collect()
    writer.join(timeout=5)
    assert not writer.is_alive() and {t.name for t in threading.enumerate()} <= before | {"MainThread"}


def test_a_failed_write_rolls_back_and_the_store_stays_usable(tmp_path):
    store = _store(tmp_path)
    store.put_step(1, epoch=0, ids=[1, 2], update=None)
    with pytest.raises(LedgerError, match="recorded once"):
        store.put_step(1, epoch=0, ids=[3], update=None)
    store.index.set_meta(head_hash="x")  # the connection is not stuck inside a transaction
    store.put_step(2, epoch=0, ids=[3], update=None)
    assert store.steps_for_ids([3], cross_check=True) == [2] and store.index.get_meta("head_hash") == "x"
    assert verify_ledger(store, progress=False).ok


def test_flush_makes_steps_durable_with_fsync(tmp_path, tiny_data, tiny_net, monkeypatch):
    import os as _os

    synced = []
    real = _os.fsync
    monkeypatch.setattr(_os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1)
    store = _store(tmp_path)
    with Recorder(tiny_net, opt, store) as rec:
        fit(tiny_net, opt, tiny_data, epochs=1, batch_size=40, recorder=rec, progress=False)
        n = len(synced)
        rec.flush()
        assert len(synced) >= n + 3  # two blobs and their directory


def test_a_ledger_held_open_sees_damage_made_after_its_first_cross_check(tmp_path, tiny_data, tiny_net):
    """The full scan behind a cross-checked lookup is kept between requests (the deletion service holds the
    ledger open), but a change by another connection, or a write of its own, makes the next lookup scan again."""
    import sqlite3

    import numpy as np

    store = _store(tmp_path)
    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1)
    with Recorder(tiny_net, opt, store) as rec:
        steps = _train_recorded(rec, tiny_net, opt, tiny_data, 16, seed=0)
    sid = steps[3][0][0]
    assert store.steps_for_ids([sid], cross_check=True) == [3]
    store.index.insert_rows([(99, 1, "train", np.array([sid], dtype=np.int64), None, None, 0)])
    assert store.steps_for_ids([sid], cross_check=False) == [3, 99]
    with pytest.raises(LedgerCorruptError):  # its own write counts: step 99 leaves a gap in the numbering
        store.steps_for_ids([sid], cross_check=True)
    other = sqlite3.connect(store.path / "index.sqlite")
    other.execute("DELETE FROM steps WHERE step = 99")
    other.execute("DELETE FROM step_ids WHERE step = 99")
    other.commit()
    assert store.steps_for_ids([sid], cross_check=True) == [3]
    raw = bytearray(other.execute("SELECT ids FROM steps WHERE step = 3").fetchone()[0])
    raw[0] ^= 1  # one id inside step 3's own row: its checksum no longer matches
    other.execute("UPDATE steps SET ids = ? WHERE step = 3", (bytes(raw),))
    other.commit()
    other.close()
    with pytest.raises(LedgerCorruptError):
        store.steps_for_ids([sid], cross_check=True)
    store.close()

"""The shard ledger: shard-confined batching, one stored sum per shard, and forgetting from it.

What must hold (issue: a shard ledger whose size does not grow with epochs): a shard's stored sum is exactly
the sum of the per-step updates of that shard's steps; a 10-epoch shard ledger is the size of a 1-epoch one;
crashes leave a ledger that verifies; forgetting subtracts the shards that held the records, and repair
lands in sums a later request undoes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from amnesiac.cli import main
from amnesiac.data import ShardBatchSampler, ShardMap, load_dataset, make_shards, shard_batch_order
from amnesiac.errors import ConfigError, RecorderError
from amnesiac.ledger import LedgerStore, Recorder, verify_ledger
from amnesiac.ledger.sums import norm_of, sum_updates
from amnesiac.models import build_model
from amnesiac.run import RunDir, TrainConfig, train_run
from amnesiac.unlearn import forget
from amnesiac.utils import model_hash, model_state

# --------------------------------------------------------------------------- shards and batching


def test_make_shards_partitions_every_record_once_with_the_asked_sizes():
    ids = np.arange(100, 1100, 3)
    by_size = make_shards(ids, shard_size=64, seed=1)
    sizes = sorted(len(m) for m in by_size.members().values())
    assert sorted(by_size.ids.tolist()) == sorted(ids.tolist())
    assert sizes[-1] == 64 and sum(sizes) == ids.size and sizes.count(64) == ids.size // 64
    by_count = make_shards(ids, num_shards=7, seed=1)
    assert by_count.num_shards == 7 and max(len(m) for m in by_count.members().values()) - \
        min(len(m) for m in by_count.members().values()) <= 1
    # seeded: the same seed gives the same shards, another seed other shards
    assert np.array_equal(make_shards(ids, shard_size=64, seed=1).shard, by_size.shard)
    assert not np.array_equal(make_shards(ids, shard_size=64, seed=2).shard, by_size.shard)


def test_subject_shards_keep_every_subject_whole():
    ids = np.arange(200)
    subjects = {f"s{k}": list(range(10 * k, 10 * k + 1 + k % 4)) for k in range(12)}
    shards = make_shards(ids, shard_size=8, subjects=subjects, seed=0)
    for recs in subjects.values():
        assert len(set(shards.shard_of(recs).tolist())) == 1  # a subject never spans shards
    owned = {i for recs in subjects.values() for i in recs}
    for members in shards.members().values():  # a shard never mixes subjects' records with others'
        assert set(members.tolist()) <= owned or not set(members.tolist()) & owned


def test_bad_shard_arguments_are_refused_with_what_was_given():
    with pytest.raises(ConfigError, match="exactly one of shard_size"):
        make_shards(np.arange(10), shard_size=2, num_shards=2)
    with pytest.raises(ConfigError, match="got 0"):
        make_shards(np.arange(10), shard_size=0)
    with pytest.raises(ConfigError, match="more than once"):
        ShardMap([1, 1], [1, 2])
    with pytest.raises(ConfigError, match="two subjects"):
        make_shards(np.arange(10), shard_size=4, subjects={"a": [1, 2], "b": [2]})
    with pytest.raises(ConfigError, match="in no shard"):
        make_shards(np.arange(10), shard_size=4).shard_of([10])


def test_each_batch_comes_from_one_shard_and_a_shard_is_one_visit_per_epoch():
    ids = np.arange(500)
    shards = make_shards(ids, shard_size=50, seed=0)
    orders = [shard_batch_order(shards, ids, batch_size=16, seed=3, epoch=e) for e in range(2)]
    for order in orders:
        seq = [int(np.unique(shards.shard_of(ids[b]))[0]) for b in order]
        assert all(np.unique(shards.shard_of(ids[b])).size == 1 for b in order)
        runs = [seq[0]] + [b for a, b in zip(seq, seq[1:]) if a != b]
        assert len(runs) == shards.num_shards  # each shard's batches are consecutive: one visit
        assert sorted(np.concatenate(order).tolist()) == ids.tolist()
    assert [b.tolist() for b in orders[0]] != [b.tolist() for b in orders[1]]  # reshuffled every epoch
    sampler = ShardBatchSampler(shards, ids, batch_size=16, seed=3)
    sampler.set_epoch(1)
    assert [b for b in sampler] == [b.tolist() for b in orders[1]]


# --------------------------------------------------------------------------- recording


def _train_own_loop(tmp, kind: str, epochs: int, shards: ShardMap, *, batch_size: int = 16, dtype: str = "float32"):
    """Digits, small CNN, shard-confined batches; the ledger of ``kind`` ('shards' or 'steps')."""
    train = load_dataset("digits").train
    ids = train.ids.numpy()
    torch.manual_seed(0)
    net = build_model("small-cnn", in_channels=1, num_classes=10, image_size=8)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    store = LedgerStore.create(tmp / f"ledger-{kind}-{epochs}", initial=model_state(net),
                               manifest={"storage_dtype": dtype, "ledger_kind": kind})
    rec = Recorder(net, opt, store, policy="shards" if kind == "shards" else "all",
                   shards=shards if kind == "shards" else None, dtype=dtype)
    sampler = ShardBatchSampler(shards, ids, batch_size=batch_size, seed=0)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        rec.set_epoch(epoch)
        for positions in sampler:
            x, y, i = train[torch.as_tensor(positions)]
            with rec.batch(i):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(x), y).backward()
                opt.step()
        rec.flush()
        store.mark_head(net)
    rec.close()
    return net, store


def test_a_shard_sum_equals_the_per_step_updates_of_that_shards_steps(tmp_path):
    shards = make_shards(load_dataset("digits").train.ids.numpy(), shard_size=64, seed=0)
    net_s, by_shard = _train_own_loop(tmp_path, "shards", 3, shards)
    net_p, by_step = _train_own_loop(tmp_path, "steps", 3, shards)
    assert model_hash(net_s) == model_hash(net_p)  # recording never changes training
    members = shards.members()
    rows = list(by_step.iter_steps())
    checked = 0
    for shard in (1, 7, shards.num_shards):
        steps = [r.step for r in rows if np.isin(r.ids, members[shard]).all()]
        assert len(steps) == 3 * -(-len(members[shard]) // 16)  # every step of the shard, in every epoch
        per_step = sum_updates(by_step, steps)
        stored = by_shard.load_update(shard)
        scale = norm_of(per_step)
        assert scale > 0
        worst = max(float((stored[k] - per_step[k]).abs().max()) for k in per_step)
        assert worst <= 1e-5 * scale, (shard, worst, scale)
        checked += 1
    assert checked == 3


def test_a_ten_epoch_shard_ledger_is_the_size_of_a_one_epoch_one(tmp_path):
    shards = make_shards(load_dataset("digits").train.ids.numpy(), num_shards=12, seed=0)
    _, one = _train_own_loop(tmp_path, "shards", 1, shards, batch_size=64)
    _, ten = _train_own_loop(tmp_path, "shards", 10, shards, batch_size=64)
    sizes = []
    for store in (one, ten):
        blobs = sorted((store.path / "blobs").iterdir())
        assert len(blobs) == 12  # one sum per shard; no version left behind
        sizes.append(sum(p.stat().st_size for p in blobs))
        assert verify_ledger(store, deep=True).ok
    # equal up to the generation number in each blob's header
    assert abs(sizes[0] - sizes[1]) <= 12 * 16, sizes


def test_the_estimate_for_the_papers_mnist_setting_with_100_shards_is_90_times_smaller(capsys):
    assert main(["ledger", "estimate", "--model", "resnet18", "--dataset", "mnist", "--epochs", "10",
                 "--batch-size", "64", "--dtype", "float16", "--shards", "100", "--json"]) == 0
    est = json.loads(capsys.readouterr().out)
    assert est["shards"] == 100 and est["every_step_total_bytes"] >= 90 * est["total_bytes"]


def test_the_recorder_refuses_a_step_mixing_shards_before_it_runs(tmp_path):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    shards = ShardMap([1, 2, 3, 4], [1, 1, 2, 2])
    store = LedgerStore.create(tmp_path / "l", manifest={"ledger_kind": "shards"}, initial=model.state_dict())
    before = [p.detach().clone() for p in model.parameters()]
    with Recorder(model, opt, store, policy="shards", shards=shards) as rec:
        with pytest.raises(RecorderError, match="mixes records of shards"):
            with rec.batch([1, 3]):
                pass
        with pytest.raises(RecorderError, match="micro-batches of one optimizer step come from shards 1 and 2"):
            with rec.batch([1]):
                model(torch.ones(1, 2)).sum().backward()
            with rec.batch([3]):
                pass
        rec.discard_pending()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(ConfigError, match="does not fit this ledger"):
        Recorder(model, opt, store, policy="all")
    other = LedgerStore.create(tmp_path / "m", manifest={}, initial=model.state_dict())
    with pytest.raises(ConfigError, match="does not fit this ledger"):
        Recorder(model, opt, other, policy="shards", shards=shards)


def test_an_uncommitted_sum_is_removed_by_the_next_writer_and_a_foreign_file_is_not(tmp_path):
    shards = make_shards(load_dataset("digits").train.ids.numpy(), num_shards=4, seed=0)
    _, store = _train_own_loop(tmp_path, "shards", 1, shards, batch_size=64)
    committed = sorted(p.name for p in (store.path / "blobs").iterdir())
    store.shards.put_visit(2, epoch=1, ids=[], update={k: torch.zeros_like(v) for k, v in store.load_update(2).items()})
    store.close()
    (store.path / "blobs" / "notes.txt").write_text("mine")
    reader = LedgerStore.open(store.path)
    report = verify_ledger(reader)
    assert sorted(report.orphans) == ["000000000002-g00000002.safetensors", "notes.txt"]
    assert [p for p in report.problems if "notes.txt" in p] == report.problems  # only the foreign file is a problem
    reader.close()
    LedgerStore.open(store.path, writable=True).close()
    left = sorted(p.name for p in (store.path / "blobs").iterdir())
    assert left == sorted(committed + ["notes.txt"])


# --------------------------------------------------------------------------- run directories


@pytest.fixture(scope="module")
def shard_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "run"
    train_run(TrainConfig(epochs=3, batch_size=32, batching="shards", shard_size=64), out, progress=False)
    return out


@pytest.fixture
def srun(shard_run, tmp_path):
    import shutil

    shutil.copytree(shard_run, tmp_path / "run")
    return RunDir.open(tmp_path / "run")


def test_forgetting_subtracts_exactly_the_sums_of_the_shards_that_held_the_records(srun):
    store = srun.open_ledger()
    shards = srun.shard_map()
    wanted = shards.members()[5][:3].tolist()
    expected = sum_updates(store, [5])
    store.close()
    before = srun.load_model().state_dict()
    result = forget(srun, ids=wanted, evaluate_after=False, progress=False)
    assert result.receipt["steps_reverted"] == [5] and result.receipt["ledger_kind"] == "shards"
    after = result.model.state_dict()
    for name, delta in expected.items():
        assert torch.allclose(before[name].float() - delta, after[name].float(), atol=1e-6)
    store = srun.open_ledger()
    assert store.step(5).state == "reverted" and store.step(5).blob is None
    store.close()
    assert main(["ledger", "verify", str(srun.path), "--deep"]) == 0


def test_repair_lands_in_shard_sums_that_a_later_request_undoes(srun):
    shards = srun.shard_map()
    first = shards.members()[2][:2].tolist()
    done = forget(srun, ids=first, options={"repair_epochs": 1}, evaluate_after=False, progress=False)
    store = srun.open_ledger()
    rows = {r.step: r for r in store.iter_steps()}
    reborn = [r for r in rows.values() if r.kind == "repair" and r.step > shards.num_shards]
    # the rest of shard 2 got a shard of its own, holding none of the forgotten records
    assert len(reborn) == 1 and set(reborn[0].ids.tolist()) == set(shards.members()[2].tolist()) - set(first)
    # one repair epoch visits every standing shard: each sum now holds the repair's updates on its records
    standing = [r for r in rows.values() if r.state == "applied"]
    assert len(standing) == shards.num_shards and all(r.blob.endswith("-g00000004.safetensors") for r in standing)
    assert done.receipt["optimizer_steps"] > 0
    store.close()
    assert main(["ledger", "verify", str(srun.path), "--deep"]) == 0  # initial + every standing sum = model
    # a record of the reborn shard: the later request subtracts the repair's sum too
    later = int(reborn[0].ids[0])
    plan = forget(srun, ids=[later], dry_run=True, progress=False).plan
    assert reborn[0].step in plan.to_revert


def test_forgetting_a_subject_touches_one_shard(tmp_path):
    subjects = {f"person{k}": list(range(20 * k, 20 * k + 10)) for k in range(10)}
    (tmp_path / "subjects.json").write_text(json.dumps(subjects))
    out = tmp_path / "run"
    assert main(["train", "--batching", "shards", "--shard-size", "64", "--shard-by-subject",
                 str(tmp_path / "subjects.json"), "--epochs", "2", "--out", str(out), "--no-progress"]) == 0
    run = RunDir.open(out)
    for k in (0, 4, 9):
        plan = forget(run, subjects=[f"person{k}"], subject_map=subjects, dry_run=True, progress=False).plan
        assert len(plan.affected_steps) == 1
    assert "shards" in plan.reason


def test_the_cli_refuses_shard_options_that_do_not_fit(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--batching", "shards", "--shards", "4", "--shard-size", "8", "--out", str(out)]) == 2
    assert "exactly one of shard_size and num_shards" in capsys.readouterr().err
    assert main(["train", "--shard-size", "8", "--out", str(out)]) == 2
    assert "only apply with batching='shards'" in capsys.readouterr().err
    assert main(["train", "--batching", "shards", "--shards", "4", "--record", "watch", "--watch-class", "3",
                 "--out", str(out)]) == 2
    assert not out.exists()


SHARD_TRAIN = textwrap.dedent("""
    import sys
    from amnesiac.run import TrainConfig, train_run
    cfg = TrainConfig(epochs=3, batch_size=32, batching="shards", shard_size=64)
    train_run(cfg, sys.argv[1], resume=len(sys.argv) > 2, progress=False)
""")

SHARD_TRAIN_POINTS = [("ledger:shard-visit", 5), ("ledger:shard-visit", 30), ("train:after-flush", 2),
                      ("train-epoch:after-next", 2), ("train-epoch:after-ledger", 2), ("ledger:after-fold", 1),
                      ("train-epoch:after-rename", 3)]


@pytest.mark.parametrize("point,nth", SHARD_TRAIN_POINTS)
def test_a_killed_shard_ledger_training_resumes_to_the_same_model(tmp_path, shard_run, point, nth):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", SHARD_TRAIN, str(out)],
                          env={**os.environ, "AMNESIAC_CRASH_AT": f"{point}#{nth}"}, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    subprocess.run([sys.executable, "-c", SHARD_TRAIN, str(out), "resume"], check=True, capture_output=True)
    assert main(["ledger", "verify", str(out), "--deep"]) == 0  # initial + every shard sum = the model
    run = RunDir.open(out)
    assert model_hash(run.load_model()) == model_hash(RunDir.open(shard_run).load_model())
    assert len(list((run.ledger_path / "blobs").iterdir())) == run.shard_map().num_shards
    assert forget(run, ids=[5, 6], evaluate_after=False, progress=False).receipt is not None


FORGET_SHARDS = textwrap.dedent("""
    import sys
    from amnesiac.unlearn import forget
    forget(sys.argv[1], ids=[3, 4], options={"repair_steps": 5}, evaluate_after=False, progress=False)
""")


@pytest.mark.parametrize("point", ["ledger:shard-visit", "forget:after-method", "forget:after-next",
                                   "forget:after-ledger", "ledger:after-fold", "forget:after-rename"])
def test_a_killed_shard_ledger_forget_leaves_the_old_or_the_new_state(srun, point):
    old = model_hash(srun.load_model())
    blobs_before = sorted(p.name for p in (srun.ledger_path / "blobs").iterdir())
    proc = subprocess.run([sys.executable, "-c", FORGET_SHARDS, str(srun.path)],
                          env={**os.environ, "AMNESIAC_CRASH_AT": point}, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert main(["ledger", "recover", str(srun.path)]) == 0
    assert main(["ledger", "verify", str(srun.path), "--deep"]) == 0
    assert main(["receipts", "verify", str(srun.path)]) == 0
    head = model_hash(srun.load_model())
    store = srun.open_ledger()
    if head == old:  # rolled back: every sum as it was, no receipt
        assert sorted(p.name for p in (srun.ledger_path / "blobs").iterdir()) == blobs_before
        assert store.events("forget") == [] and not list(store.iter_steps(state="reverted"))
    else:
        assert len(store.events("forget")) == 1 and sorted(store.forgotten_ids().tolist()) == [3, 4]
        named = {r.blob for r in store.iter_steps() if r.blob}
        assert named == {p.name for p in (srun.ledger_path / "blobs").iterdir()}  # nothing stale left
    store.close()
    assert point not in ("ledger:shard-visit", "forget:after-method", "forget:after-next") or head == old

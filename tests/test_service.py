"""The deletion service's core without HTTP: the durable queue, batches planned together, one receipt per
request, the run held against other writers, and exactly-once application across a SIGKILL."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from amnesiac.config import Thresholds
from amnesiac.errors import RequestError, RunDirError
from amnesiac.service import BatchApplier, DeletionQueue, IdempotencyConflictError, QueueFullError
from amnesiac.unlearn import forget, list_receipts
from amnesiac.unlearn.proofs import verify_receipts


@pytest.fixture
def run(served_run):
    return served_run


def test_queue_is_durable_idempotent_and_bounded(tmp_path):
    q = DeletionQueue(tmp_path / "q.sqlite", max_pending=2)
    a = q.submit(ids=[5, 3, 5], idempotency_key="t-1")
    assert a.ids == [3, 5] and a.status == "queued"
    assert q.submit(ids=[3, 5], idempotency_key="t-1").request_id == a.request_id  # same key, same records
    with pytest.raises(IdempotencyConflictError, match="t-1"):
        q.submit(ids=[4], idempotency_key="t-1")
    q.submit(ids=[4])
    with pytest.raises(QueueFullError, match="max_pending=2"):
        q.submit(ids=[6])
    q.close()
    again = DeletionQueue(tmp_path / "q.sqlite")  # what was accepted survives a reopen
    assert [r.ids for r in again] == [[3, 5], [4]] and again.counts()["queued"] == 2
    again.close()


def test_reconciling_trusts_the_ledgers_receipts_over_the_queues_last_move(tmp_path):
    """Only accepting is fsynced: a power loss may lose a later move (applying, done), so a request whose receipt
    the ledger holds is done whatever the queue says, and an applying one without a receipt is queued again."""
    q = DeletionQueue(tmp_path / "q.sqlite")
    lost_done, lost_applying, unapplied, waiting = (q.submit(ids=[i]) for i in (1, 2, 3, 4))
    q.mark_applying([lost_done.request_id, unapplied.request_id], "batch_a")
    receipt = {"method": "amnesiac", "model_hash_after": "h"}
    committed = {lost_done.request_id: receipt, lost_applying.request_id: receipt}
    assert q.reconcile(committed) == (2, 1)
    assert {r.request_id: r.status for r in q} == {lost_done.request_id: "done", lost_applying.request_id: "done",
                                                  unapplied.request_id: "queued", waiting.request_id: "queued"}
    assert [r["request_id"] for r in q.receipts()] == [lost_done.request_id, lost_applying.request_id]
    assert q.reconcile(committed) == (0, 0)  # a second restart finds nothing to do
    q.close()


def test_a_batch_is_one_commit_with_a_receipt_per_request(run):
    with BatchApplier(run, thresholds=Thresholds(0.5, 0.9), repair=0) as ap:
        a = ap.submit(ids=[17, 42], idempotency_key="k")
        b = ap.submit(ids=[42, 99])
        before = ap.model_hash
        batches = ap.apply_pending()
        assert len(batches) == 1 and batches[0].request_ids == [a.request_id, b.request_id]
        union = set(ap.store.steps_for_ids([17, 42, 99]))
        assert set(batches[0].steps_reverted) == union
        ra, rb = (batches[0].receipts[r] for r in (a.request_id, b.request_id))
        assert set(ra.steps_reverted) == set(ap.store.steps_for_ids([17, 42]))  # each its own records' steps
        assert set(rb.steps_reverted) == set(ap.store.steps_for_ids([42, 99]))
        assert ra.model_hash_before == before and ra.model_hash_after == ap.model_hash != before
        assert ap.queue.get(a.request_id).status == "done" and ap.queue.get(a.request_id).ids == []  # raw ids dropped
        info = ap.model_info()
        assert info["reverted"] == len(union) and info["head_hash"] == ap.model_hash
    stored = list_receipts(run)
    assert [r["request_id"] for r in stored] == [a.request_id, b.request_id]
    assert stored[0]["batch"]["id"] == stored[1]["batch"]["id"] == batches[0].batch_id
    assert not run.audit(deep=True).problems


def test_a_batch_the_planner_refuses_is_split_and_a_request_too_big_alone_is_refused(run):
    store = run.open_ledger()
    total = store.index.count_steps()
    store.close()
    # each single record touches 2 of the steps: a share that passes alone, while three together do not
    limit = 4.5 / total
    with BatchApplier(run, thresholds=Thresholds(limit, limit), repair=0) as ap:
        reqs = [ap.submit(ids=[i]) for i in (1, 2, 3)]
        big = ap.submit(ids=list(range(100, 160)))
        batches = ap.apply_pending()
        done = [r for b in batches for r in b.request_ids]
        assert sorted(done) == sorted(r.request_id for r in reqs) and len(batches) >= 2
        refused = ap.queue.get(big.request_id)
        assert refused.status == "refused" and "planner recommends" in refused.reason


def test_bad_requests_store_nothing(run):
    with BatchApplier(run, max_ids=5) as ap:
        for bad, match in [({"ids": [10**9]}, "not records this model was trained on"), ({"ids": []}, "empty"),
                           ({"ids": [1.5]}, "integer"), ({"ids": list(range(6))}, "at most 5"),
                           ({"subjects": ["ann"]}, "no subject map"), ({}, "exactly one way")]:
            with pytest.raises(RequestError, match=match):
                ap.submit(**bad)
        assert sum(ap.queue.counts().values()) == 0


def test_a_served_run_refuses_other_writers_naming_the_service(run):
    with BatchApplier(run, owner={"url": "http://127.0.0.1:8470"}):
        with pytest.raises(RunDirError, match="served by a deletion service.*127.0.0.1:8470"):
            forget(run, ids=[3], progress=False)
    assert forget(run, ids=[3], progress=False, evaluate_after=False).receipt is not None  # released on close


APPLY = textwrap.dedent("""
    import sys
    from amnesiac.config import Thresholds
    from amnesiac.service import BatchApplier
    with BatchApplier(sys.argv[1], thresholds=Thresholds(0.5, 0.9), repair=2) as ap:
        if sys.argv[2] == "submit":
            for k in range(4):
                ap.submit(ids=[10 * k + 1, 10 * k + 2], idempotency_key=f"ticket-{k}")
        else:
            ap.apply_pending()
            print(ap.queue.counts())
""")


@pytest.mark.parametrize("point", ["service:after-applying", "service:after-method", "forget:after-next",
                                   "forget:after-ledger", "service:after-commit"])
def test_a_service_killed_during_a_batch_applies_every_accepted_request_exactly_once(run, point):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", APPLY, str(run.path), "submit"], check=True, env=env)
    died = subprocess.run([sys.executable, "-c", APPLY, str(run.path), "apply"],
                          env={**env, "AMNESIAC_CRASH_AT": point})
    assert died.returncode == -9
    subprocess.run([sys.executable, "-c", APPLY, str(run.path), "apply"], check=True, env=env)
    receipts = list_receipts(run)
    with DeletionQueue(run.path / "service" / "queue.sqlite") as q:
        requests = list(q)
    assert [r.status for r in requests] == ["done"] * 4
    assert sorted(r["request_id"] for r in receipts) == sorted(r.request_id for r in requests)  # once each
    audit = run.audit(deep=True)
    assert not audit.problems and not audit.ledger.bad
    assert verify_receipts(run.path).ok


def test_a_damaged_update_refuses_only_the_request_that_needs_it(run):
    with BatchApplier(run, thresholds=Thresholds(0.5, 0.9), repair=0) as ap:
        steps_a, steps_b = set(ap.store.steps_for_ids([11])), set(ap.store.steps_for_ids([12]))
        bad = sorted(steps_a - steps_b)[0]
        path = ap.store.path / "blobs" / ap.store.step(bad).blob
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        path.write_bytes(bytes(raw))
        a, b = ap.submit(ids=[11]), ap.submit(ids=[12])
        ap.apply_pending()
        assert ap.queue.get(b.request_id).status == "done"
        refused = ap.queue.get(a.request_id)
        assert refused.status == "refused" and "LedgerCorruptError" in refused.reason

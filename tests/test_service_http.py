"""The deletion service over HTTP: tokens, validation (nothing stored for a bad body), idempotency, status,
receipts and the page; and the real `amnesiac serve` process, a CLI forget refused beside it, SIGTERM."""

from __future__ import annotations

import json
import signal
import time

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from amnesiac.cli import main  # noqa: E402
from amnesiac.config import Thresholds  # noqa: E402
from amnesiac.service import BatchApplier, DeletionQueue, free_port, start_service  # noqa: E402
from amnesiac.service.app import create_app  # noqa: E402
from amnesiac.unlearn import list_receipts  # noqa: E402
from amnesiac.unlearn.proofs import export_receipts, prove_receipt  # noqa: E402

TOKEN = "t" * 24
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def run(served_run):
    return served_run


@pytest.fixture
def client(run):
    with BatchApplier(run, subject_map={"ann": [3, 4], "bob": [5]}, thresholds=Thresholds(0.05, 0.5)) as applier:
        with TestClient(create_app(applier, token=TOKEN, poll_s=0.05)) as c:
            c.applier = applier
            yield c


def _wait_done(client, rid, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = client.get(f"/v1/deletions/{rid}", headers=AUTH).json()
        if status["status"] in ("done", "refused"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"{rid} not applied in {timeout} s")


def test_every_endpoint_but_healthz_needs_the_token(client):
    assert client.get("/healthz").status_code == 200
    for method, path in [("post", "/v1/deletions"), ("get", "/v1/deletions/x"), ("get", "/v1/receipts"),
                         ("get", "/v1/receipts/x"), ("get", "/v1/model"), ("get", "/")]:
        for headers in ({}, {"Authorization": "Bearer wrong-token-of-some-length"}, {"Authorization": TOKEN}):
            assert getattr(client, method)(path, headers=headers).status_code == 401, (path, headers)
    assert sum(client.applier.queue.counts().values()) == 0


BAD_BODIES = [
    (b"not json", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (b"{}", "exactly one way"),
    (b'{"ids": [1], "subjects": ["ann"]}', "exactly one way"),
    (b'{"ids": "17"}', "list of integer"),
    (b'{"ids": [1.5]}', "integers"),
    (b'{"ids": [true]}', "integers"),
    (b'{"ids": []}', "empty"),
    (b'{"ids": [999999]}', "not records this model was trained on"),
    (b'{"ids": [-1]}', "integers from 0"),
    (json.dumps({"ids": list(range(10_001))}).encode(), "at most"),
    (b'{"subjects": ["zed"]}', "unknown data subject"),
    (b'{"subjects": "ann"}', "list of strings"),
    (b'{"ids": [1], "idempotency_key": 7}', "idempotency_key"),
    (b'{"ids": [1], "priority": "high"}', "unknown field"),
    (b"x" * (1 << 20 + 1), "bytes"),
]


@pytest.mark.parametrize("body,match", BAD_BODIES)
def test_a_bad_request_gets_a_4xx_with_a_message_and_stores_nothing(client, body, match):
    answer = client.post("/v1/deletions", content=body, headers=AUTH)
    assert 400 <= answer.status_code < 500 and match in answer.json()["detail"], answer.text
    assert sum(client.applier.queue.counts().values()) == 0


def test_a_request_is_accepted_applied_and_proven(client, tmp_path):
    first = client.post("/v1/deletions", json={"ids": [17, 42], "idempotency_key": "ticket-1"}, headers=AUTH)
    assert first.status_code == 202 and first.json()["status"] == "queued"
    rid = first.json()["request_id"]
    again = client.post("/v1/deletions", json={"ids": [42, 17], "idempotency_key": "ticket-1"}, headers=AUTH)
    assert again.json()["request_id"] == rid  # the same key never makes a second request
    other = client.post("/v1/deletions", json={"ids": [5], "idempotency_key": "ticket-1"}, headers=AUTH)
    assert other.status_code == 409
    subj = client.post("/v1/deletions", json={"subjects": ["ann"]}, headers=AUTH).json()["request_id"]
    for r in (rid, subj):
        assert _wait_done(client, r)["status"] == "done", _wait_done(client, r)["reason"]
    receipt = client.get(f"/v1/receipts/{rid}", headers=AUTH).json()
    assert receipt["request_id"] == rid and receipt["request"]["count"] == 2 and receipt["batch"]["id"]
    listed = client.get("/v1/receipts", headers=AUTH).json()
    assert [r["request_id"] for r in listed] == [rid, subj]
    assert [r["request_id"] for r in client.get(f"/v1/receipts?after={rid}", headers=AUTH).json()] == [subj]
    model = client.get("/v1/model", headers=AUTH).json()
    assert model["head_hash"] == receipt["model_hash_after"] or model["head_hash"] == listed[-1]["model_hash_after"]
    assert model["queue"]["done"] == 2 and model["reverted"] > 0
    page = client.get("/", headers=AUTH).text
    assert rid in page and model["head_hash"][:16] in page and "done" in page
    assert client.get("/v1/deletions/del_nope", headers=AUTH).status_code == 404
    # the requester's proof comes with the status (the secret, not the ids), never with the receipt
    proof = _wait_done(client, rid)["proof"]
    assert proof["secret"] and "ids" not in proof and "proof" not in receipt and "secret" not in json.dumps(listed)
    export_receipts(client.applier.run.path, tmp_path / "bundle.json")
    assert prove_receipt(tmp_path / "bundle.json", proof, ids=[17, 42])["ok"]
    assert not prove_receipt(tmp_path / "bundle.json", proof, ids=[17, 43])["ok"]


def _serve(run, port=None, env=None):
    """`amnesiac serve` on ``run`` in its own process, answering; returns (process, base url, auth header)."""
    served = start_service(run.path, port=port, env=env, timeout=60)
    return served.process, served.url, served.headers


def test_the_served_run_refuses_a_cli_forget_and_sigterm_stops_the_service(run, tmp_path, capsys):
    proc, base, auth = _serve(run)
    try:
        assert oct((run.path / "service" / "token").stat().st_mode & 0o777) == "0o600"
        rid = httpx.post(base + "/v1/deletions", json={"ids": [7]}, headers=auth).json()["request_id"]
        assert main(["forget", str(run.path), "--ids", "9"]) == 1
        assert "served by a deletion service" in capsys.readouterr().err
        end = time.monotonic() + 60
        while httpx.get(f"{base}/v1/deletions/{rid}", headers=auth).json()["status"] != "done":
            assert time.monotonic() < end
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert not (run.path / ".service.json").exists()
    assert main(["ledger", "verify", str(run.path), "--deep"]) == 0


def test_the_service_process_killed_mid_batch_applies_every_accepted_request_once_after_a_restart(run):
    """SIGKILL of `amnesiac serve` itself between the subtraction and the commit of a batch: every request that
    got a 202 is applied exactly once by the restarted service, and the ledger verifies deep."""
    port = free_port()
    proc, base, auth = _serve(run, port, {"AMNESIAC_CRASH_AT": "service:after-method"})
    try:
        rids = []
        with httpx.Client(base_url=base, headers=auth) as c:
            for i in (20, 30, 40):
                try:
                    answer = c.post("/v1/deletions", json={"ids": [i, i + 1]})
                except httpx.TransportError:  # the worker's batch killed the process first
                    break
                assert answer.status_code == 202
                rids.append(answer.json()["request_id"])
        assert rids and proc.wait(timeout=60) == -signal.SIGKILL  # the worker reached the crash point in a batch
    finally:
        if proc.poll() is None:
            proc.kill()
    proc, base, auth = _serve(run, port)
    try:
        with httpx.Client(base_url=base, headers=auth) as c:
            end = time.monotonic() + 60
            while {c.get(f"/v1/deletions/{r}").json()["status"] for r in rids} != {"done"}:
                assert time.monotonic() < end
                time.sleep(0.1)
            receipts = c.get("/v1/receipts").json()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    with DeletionQueue(run.path / "service" / "queue.sqlite") as q:
        statuses = {r.request_id: r.status for r in q}  # a request stored but killed before its 202 counts too
    stored = sorted(statuses)
    assert set(rids) <= set(stored) and set(statuses.values()) == {"done"}
    assert sorted(r["request_id"] for r in receipts) == stored
    assert sorted(r["request_id"] for r in list_receipts(run)) == stored  # the ledger: one receipt each
    assert main(["ledger", "verify", str(run.path), "--deep"]) == 0

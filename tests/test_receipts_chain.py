"""Receipts a third party can verify: the hash chain, the Merkle commitments to the ledger's rows, commitments to
ids instead of same-file salts, the export for an auditor and the requester's proof."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3

import pytest

from amnesiac.cli import main
from amnesiac.ledger.chain import inclusion_path, leaf_hash, merkle_root, verify_inclusion
from amnesiac.ledger.format import event_checksum
from amnesiac.unlearn.proofs import export_receipts, prove_receipt, verify_receipts
from amnesiac.utils import hash_ids

FORGOTTEN = [[1111, 1303], [1201]]  # ids far above any step number, count or class in a digits run's receipts


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 33])
def test_every_leaf_has_an_inclusion_proof_and_a_wrong_one_fails(size):
    leaves = [hashlib.sha256(str(i).encode()).digest() for i in range(size)]
    root = merkle_root(leaves)
    for k in range(size):
        path = inclusion_path(k, leaves)
        assert verify_inclusion(k, size, leaves[k], path, root)
        assert not verify_inclusion(k, size, hashlib.sha256(b"other").digest(), path, root)
        if size > 1:
            assert not verify_inclusion((k + 1) % size, size, leaves[k], path, root)
    assert merkle_root(leaves[:-1]) != root or size == 0


@pytest.fixture
def forgotten(served_run, tmp_path):
    """The served digits run after two deletions through the CLI, each writing the requester's proof."""
    for k, ids in enumerate(FORGOTTEN):
        assert main(["forget", str(served_run.path), "--ids", ",".join(map(str, ids)), "--no-eval", "--no-progress",
                     "--force", "--proof-out", str(tmp_path / f"proof-{k}.json")]) == 0
    return served_run


def _events(run):
    con = sqlite3.connect(run.ledger_path / "index.sqlite")
    rows = con.execute("SELECT id, time, kind, payload FROM events WHERE kind = 'forget' ORDER BY id").fetchall()
    return con, rows


def test_an_unchanged_run_and_its_export_verify_and_a_proof_holds_only_for_its_own_run(forgotten, tmp_path, capsys):
    assert main(["receipts", "verify", str(forgotten.path)]) == 0
    bundle = tmp_path / "bundle.json"
    assert main(["receipts", "export", str(forgotten.path), "--out", str(bundle)]) == 0
    assert main(["receipts", "verify", str(bundle), "--model", str(forgotten.model_path)]) == 0
    capsys.readouterr()
    assert main(["receipts", "prove", str(bundle), "--proof", str(tmp_path / "proof-0.json"), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["ok"] and shown["receipt_number"] == 1 and shown["inclusion"]
    assert all(p["leaf"]["state"] == "reverted" and p["leaf"]["update"] is None for p in shown["inclusion"])
    proof = json.loads((tmp_path / "proof-0.json").read_text())
    assert main(["forget", str(forgotten.path), "--ids", "5", "--no-eval", "--no-progress", "--force"]) == 0
    assert main(["receipts", "export", str(forgotten.path), "--out", str(tmp_path / "newer.json")]) == 0
    assert prove_receipt(tmp_path / "newer.json", proof)["ok"]  # still proven after a later deletion
    stranger = {**proof, "secret": "0" * 64}
    assert not prove_receipt(bundle, stranger)["ok"]


def test_a_proof_fails_against_another_runs_bundle(forgotten, served_source, tmp_path):
    other = tmp_path / "other-run"
    shutil.copytree(served_source.path, other)
    assert main(["forget", str(other), "--ids", "1111,1303", "--no-eval", "--no-progress", "--force",
                 "--proof-out", str(tmp_path / "theirs.json")]) == 0
    assert main(["receipts", "export", str(other), "--out", str(tmp_path / "theirs-bundle.json")]) == 0
    assert main(["receipts", "prove", str(tmp_path / "theirs-bundle.json"), "--proof",
                 str(tmp_path / "proof-0.json")]) == 1
    assert prove_receipt(tmp_path / "theirs-bundle.json", tmp_path / "theirs.json")["ok"]


@pytest.mark.parametrize("tamper", ["edit-byte", "edit-and-reseal", "drop-first", "drop-last", "reorder"])
def test_a_changed_dropped_or_moved_receipt_fails_verify_naming_it(forgotten, tamper, capsys):
    con, rows = _events(forgotten)
    (id1, t1, k1, p1), (id2, t2, k2, p2) = rows[0], rows[1]
    if tamper == "edit-byte":  # one byte of the receipt, its stored checksum left as it was
        con.execute("UPDATE events SET payload = ? WHERE id = ?", (p1.replace('"amnesiac"', '"amnesiaC"', 1), id1))
    elif tamper == "edit-and-reseal":  # an editor who also recomputes the row checksum
        edited = p2.replace('"n_steps_reverted": ', '"n_steps_reverted": 1', 1)
        con.execute("UPDATE events SET payload = ?, sum = ? WHERE id = ?", (edited, event_checksum(t2, k2, edited), id2))
    elif tamper.startswith("drop"):
        con.execute("DELETE FROM events WHERE id = ?", (id1 if tamper == "drop-first" else id2,))
    else:
        con.execute("UPDATE events SET payload = ?, sum = ? WHERE id = ?", (p2, event_checksum(t1, k1, p2), id1))
        con.execute("UPDATE events SET payload = ?, sum = ? WHERE id = ?", (p1, event_checksum(t2, k2, p1), id2))
    con.commit()
    con.close()
    capsys.readouterr()
    assert main(["receipts", "verify", str(forgotten.path)]) == 1
    out = capsys.readouterr().out
    named = {"edit-byte": "receipt #1", "edit-and-reseal": "receipt #2", "drop-first": "receipt #1",
             "drop-last": "dropped", "reorder": "receipt #1"}[tamper]
    assert "PROBLEM" in out and named in out, out


def test_a_replaced_model_file_or_an_edited_bundle_fails(forgotten, served_source, tmp_path, capsys):
    bundle = tmp_path / "bundle.json"
    export_receipts(forgotten.path, bundle)
    assert verify_receipts(bundle, model=served_source.model_path).problems  # the model before the deletions
    shutil.copy(served_source.model_path, forgotten.model_path)
    capsys.readouterr()
    assert main(["receipts", "verify", str(forgotten.path)]) == 1
    assert str(forgotten.model_path) in capsys.readouterr().out
    data = json.loads(bundle.read_text())
    data["receipts"][0]["receipt"]["method"] = "retrain"
    bundle.write_text(json.dumps(data))
    assert not verify_receipts(bundle).ok


def test_a_changed_row_after_the_last_receipt_fails(forgotten):
    con = sqlite3.connect(forgotten.ledger_path / "index.sqlite")
    step = json.loads(_events(forgotten)[1][-1][-1])["steps_reverted"][0]
    con.execute("UPDATE steps SET state = 'applied' WHERE step = ?", (step,))
    con.commit()
    con.close()
    report = verify_receipts(forgotten.path)
    assert any("Merkle root" in p for p in report.problems) and any(f"step {step}" in p for p in report.problems)


def test_no_forgotten_id_can_be_recovered_from_the_receipt_rows(forgotten):
    con, rows = _events(forgotten)
    salt = dict(con.execute("SELECT key, value FROM meta").fetchall()).get("id_salt", "")
    linked = con.execute("SELECT COUNT(*) FROM forgotten WHERE event != 0").fetchone()[0]
    con.close()
    receipts = " ".join(r[3] for r in rows)
    for sample_id in (i for ids in FORGOTTEN for i in ids):
        encodings = [str(sample_id), hash_ids([sample_id], salt)[1][0],
                     hashlib.sha256(str(sample_id).encode()).hexdigest()[:16]]
        for enc in encodings:
            assert not re.search(rf"(?<![0-9a-fA-F.]){enc}(?![0-9a-fA-F.])", receipts), (sample_id, enc)
    assert linked == 0  # the ids kept to refuse them later are not tied to a receipt
    for k, ids in enumerate(FORGOTTEN):
        receipt = json.loads(rows[k][3])
        assert "ids_hashed" not in receipt and len(receipt["ids_committed"]) == len(ids)


def test_chain_links_each_receipt_to_the_one_before_and_commits_to_rows_and_model(forgotten):
    _, rows = _events(forgotten)
    first, second = (json.loads(r[3]) for r in rows)
    assert first["chain"]["seq"] == 1 and second["chain"]["prev"] == first["receipt_hash"]
    assert first["ledger_rows"]["root_after"] == second["ledger_rows"]["root_before"]
    store = forgotten.open_ledger()
    assert store.index.get_meta("chain_head") == second["receipt_hash"]
    assert merkle_root([leaf_hash(p) for p in store.index.row_preimages()]) == second["ledger_rows"]["root_after"]
    store.close()


def test_any_edited_byte_of_any_receipt_fails_even_with_its_row_checksum_recomputed(forgotten):
    con, rows = _events(forgotten)
    for event_id, t, kind, payload in rows:
        for pos in range(0, len(payload), max(1, len(payload) // 40)):
            edited = payload[:pos] + chr(ord(payload[pos]) ^ 1) + payload[pos + 1 :]
            con.execute("UPDATE events SET payload = ?, sum = ? WHERE id = ?", (edited, event_checksum(t, kind, edited),
                                                                              event_id))
            con.commit()
            report = verify_receipts(forgotten.path)
            assert not report.ok and any(f"(audit-log entry {event_id})" in p for p in report.problems), pos
            con.execute("UPDATE events SET payload = ?, sum = ? WHERE id = ?", (payload, event_checksum(t, kind, payload),
                                                                              event_id))
            con.commit()
    con.close()
    assert verify_receipts(forgotten.path).ok


def test_a_ledger_with_receipts_from_before_the_chain_verifies_from_where_the_chain_starts(served_run, capsys):
    """An older ledger's receipts have no chain fields: they stay readable, the chain starts at the first receipt
    written after them, and verify says so."""
    con = sqlite3.connect(served_run.ledger_path / "index.sqlite")
    old = json.dumps({"kind": "forget", "receipt_version": 1, "method": "amnesiac", "steps_reverted": [],
                      "ids_hashed": ["00"], "model_hash_after": "", "request": {"type": "ids", "count": 1}})
    con.execute("INSERT INTO events (time, kind, payload, sum) VALUES (?, 'forget', ?, ?)",
                (1.5, old, event_checksum(1.5, "forget", old)))
    con.commit()
    con.close()
    assert main(["forget", str(served_run.path), "--ids", "1201", "--no-eval", "--no-progress", "--force"]) == 0
    capsys.readouterr()
    assert main(["receipts", "verify", str(served_run.path)]) == 0
    out = capsys.readouterr().out
    assert "the chain starts at receipt #2" in out and "1 chained" in out


def test_a_bundle_of_the_wrong_shape_is_reported_not_raised(forgotten, tmp_path, capsys):
    bundle = tmp_path / "bundle.json"
    export_receipts(forgotten.path, bundle)
    data = json.loads(bundle.read_text())
    data["rows"][0] = {"not": "a row"}
    data["receipts"][1]["receipt"]["ledger_rows"] = "nothing"
    bundle.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["receipts", "verify", str(bundle)]) == 1
    assert "PROBLEM" in capsys.readouterr().out
    assert not prove_receipt(bundle, tmp_path / "proof-0.json")["ok"]
    bundle.write_text("[1, 2]")
    assert main(["receipts", "verify", str(bundle)]) == 2  # not a bundle at all: bad input

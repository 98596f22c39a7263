"""Receipts a third party can check: verify a run's hash-chained receipts, export them for an auditor, verify an
export on another machine against a model file, and prove to a requester that their ids are in a receipt.

    amnesiac receipts verify runs/digits                       # the chain, the rows, the model file
    amnesiac receipts export runs/digits --out digits.receipts.json
    amnesiac receipts verify digits.receipts.json --model model.safetensors
    amnesiac receipts prove digits.receipts.json --proof proof.json

What a check establishes is written in :mod:`amnesiac.ledger.chain` and in docs/receipts.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LedgerCorruptError
from ..ledger import is_bare_ledger, reading_ledger
from ..ledger.chain import (
    CHAINED_KINDS,
    GENESIS,
    RECEIPT_HASH,
    inclusion_path,
    leaf_hash,
    merkle_root,
    receipt_hash,
    verify_inclusion,
)
from ..run import RunDir
from ..run.checkpoint import load_tensors
from ..utils import atomic_write_json, commit_ids, state_hash
from .receipts import PROOF_FORMAT

BUNDLE_FORMAT = "amnesiac-receipts-bundle-v1"


@dataclass
class ChainReport:
    """What :func:`verify_receipts` found: ``ok`` when ``problems`` is empty; ``notes`` say what was not covered
    (receipts from before the chain, rows recorded after the last receipt)."""

    source: str
    receipts: int = 0
    chain_start: int | None = None
    head: str | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "ok": self.ok, "receipts": self.receipts, "chain_start": self.chain_start,
                "head": self.head, "problems": self.problems, "notes": self.notes}


@dataclass
class _Entry:
    """One audit-log receipt as stored: its number among them, its entry id, its row kind, its payload (None
    when it is not a JSON object) and whether it matches its stored checksum."""

    number: int
    event_id: int
    kind: str
    payload: dict[str, Any] | None
    sound: bool = True

    @property
    def label(self) -> str:
        return f"receipt #{self.number} (audit-log entry {self.event_id})"


@dataclass
class _Chain:
    """A chain's material, from a ledger or from a bundle."""

    entries: list[_Entry]
    head: str | None
    length: int
    rows: list[dict[str, Any]]
    model_hash: str | None  # the model file's (None: no file to check)
    model_label: str
    ledger_head: str | None = None


# ---------------------------------------------------------------------- reading
def _ledger_chain(store: Any, model_file: Path | None) -> _Chain:
    entries = []
    for number, (event_id, kind, text, sound) in enumerate(store.index.chain_entries(), 1):
        try:
            payload = json.loads(text)
            payload = payload if isinstance(payload, dict) else None
        except ValueError:
            payload = None
        entries.append(_Entry(number, event_id, kind, payload, sound))
    length = store.index.get_meta("chain_length")
    return _Chain(entries, store.index.get_meta("chain_head"), int(length) if length and length.isdigit() else 0,
                  store.index.row_preimages(), _file_hash(model_file), str(model_file),
                  ledger_head=store.index.get_meta("head_hash"))


def _file_hash(path: Path | None) -> str | None:
    if path is None:
        return None
    if not path.is_file():
        return "missing"
    try:
        return state_hash(load_tensors(path)[0])
    except Exception:  # noqa: BLE001 - a damaged or foreign file: reported as not the committed model
        return "unreadable"


def _read_bundle(path: Path) -> dict[str, Any]:
    try:
        bundle = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path} is not a receipts bundle ({err}); make one with `amnesiac receipts export`") from None
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise ConfigError(f"{path} is not a receipts bundle (format {BUNDLE_FORMAT!r} expected)")
    return bundle


def _bundle_chain(bundle: dict[str, Any], model_file: Path | None) -> _Chain:
    entries = [_Entry(k, int(e.get("id", 0)), str(e.get("row_kind", "")),
                      e.get("receipt") if isinstance(e.get("receipt"), dict) else None)
               for k, e in enumerate(bundle.get("receipts", []), 1) if isinstance(e, dict)]
    return _Chain(entries, bundle.get("chain_head"), int(bundle.get("chain_length") or 0), list(bundle.get("rows", [])),
                  _file_hash(model_file), str(model_file))


# ---------------------------------------------------------------------- checking
def _check(chain: _Chain, report: ChainReport) -> list[dict[str, Any]]:
    """The chain's hashes and links, its head, the rows' root, each reverted row, the model; returns the
    chained receipts in order. A receipt or row of the wrong shape (a bundle is anyone's file) is reported as
    a problem, never raised."""
    try:
        return _check_all(chain, report)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        report.problems.append(f"a receipt or row has the wrong shape ({type(err).__name__}: {err}): it was changed")
        return []


def _check_all(chain: _Chain, report: ChainReport) -> list[dict[str, Any]]:
    chained = _check_links(chain, report)
    if chain.head is not None or chained:
        last = chained[-1][RECEIPT_HASH] if chained else None
        if last != chain.head or len(chained) != chain.length:
            report.problems.append(f"the chain's head names receipt {chain.length} ({str(chain.head)[:16]}) but the "
                                   f"receipts end at {len(chained)} ({str(last)[:16]}): a receipt was dropped or added")
    report.head = chain.head
    if chained:
        grown = _check_rows(chained, chain.rows, report)
        _check_model(chained, chain, report, rows_added=grown)
    return chained


def _check_links(chain: _Chain, report: ChainReport) -> list[dict[str, Any]]:
    chained: list[dict[str, Any]] = []
    prev = GENESIS
    for entry in chain.entries:
        label, kind, payload = entry.label, entry.kind, entry.payload
        if payload is None:
            report.problems.append(f"{label} is not a JSON object: it was damaged")
            continue
        link = payload.get("chain")
        if link is None:
            if chained:
                report.problems.append(f"{label} has no link in the chain, which started before it: it was added")
            continue
        if report.chain_start is None:
            report.chain_start = entry.number
        if not entry.sound:
            report.problems.append(f"{label} does not match its stored checksum: it was changed")
        if receipt_hash(payload) != payload.get(RECEIPT_HASH):
            report.problems.append(f"{label} does not match its hash: it was changed")
        if not isinstance(link, dict) or link.get("prev") != prev or link.get("seq") != len(chained) + 1:
            report.problems.append(f"{label} does not follow the receipt before it in the chain (a receipt was "
                                   "dropped, added or moved)")
        elif kind and link.get("kind") != kind:
            report.problems.append(f"{label} is stored as a {kind!r} entry but was chained as {link.get('kind')!r}")
        prev = str(payload.get(RECEIPT_HASH))
        chained.append(payload)
    report.receipts = len(chained)
    if report.chain_start and report.chain_start > 1:
        report.notes.append(f"the chain starts at receipt #{report.chain_start}: the {report.chain_start - 1} "
                            "before it were written before receipts were chained and are not covered")
    return chained


def _check_rows(chained: list[dict[str, Any]], rows: list[dict[str, Any]], report: ChainReport) -> bool:
    """The rows against the last receipt's root, and every reverted row; True when rows were added after it."""
    committed = chained[-1].get("ledger_rows") or {}
    count = int(committed.get("count") or 0)
    if len(rows) < count:
        report.problems.append(f"the ledger holds {len(rows)} rows but the last receipt committed to {count}: "
                               "rows were removed")
    elif merkle_root([leaf_hash(r) for r in rows[:count]]) != committed.get("root_after"):
        report.problems.append("the ledger's rows are not the ones the last receipt committed to (Merkle root "
                               "mismatch): a row was changed after it, or a destruction it ordered is unfinished")
    if len(rows) > count:
        report.notes.append(f"{len(rows) - count} row(s) were recorded after the last receipt; no receipt covers them")
    by_step = {int(r["step"]): r for r in rows}
    for number, payload in enumerate(chained, 1):
        kept = bool(payload.get("kept_for_research"))
        for step in payload.get("steps_reverted") or []:
            row = by_step.get(int(step))
            if row is None or row.get("state") != "reverted" or (not kept and row.get("update") is not None):
                what = "missing" if row is None else ("not marked reverted" if row.get("state") != "reverted"
                                                      else "still holding its stored update")
                report.problems.append(f"chained receipt {number} reverted step {step}, which is {what}")
                break
    return len(rows) > count


def _check_model(chained: list[dict[str, Any]], chain: _Chain, report: ChainReport, *, rows_added: bool) -> None:
    changes = [p for p in chained if p.get("model_hash_after")]
    if not changes:
        return
    last = changes[-1]["model_hash_after"]
    if rows_added:  # training went on after the last deletion (a ledger of your own loop): a newer model
        return
    if chain.ledger_head is not None and chain.ledger_head != last:
        report.problems.append(f"the ledger's head model {chain.ledger_head[:16]} is not the last receipt's "
                               f"{last[:16]}")
    if chain.model_hash is not None and chain.model_hash != last:
        what = {"missing": "is missing", "unreadable": "cannot be read as a model"}.get(
            chain.model_hash, f"holds model {chain.model_hash[:16]}")
        report.problems.append(f"the model file {chain.model_label} {what}, not the last receipt's {last[:16]}")


# ---------------------------------------------------------------------- the public functions
def verify_receipts(target: str | os.PathLike[str], *, model: str | os.PathLike[str] | None = None) -> ChainReport:
    """Check the receipts of a run, of a ledger of your own loop, or of an exported bundle (then ``model``, a
    model file, is checked against the last receipt; a run's own model file is checked always). Changes
    nothing."""
    path = Path(target)
    report = ChainReport(str(path))
    model_file = Path(model) if model is not None else None
    if path.is_file():
        _check(_bundle_chain(_read_bundle(path), model_file), report)
        if model_file is None:
            report.notes.append("no --model given: the model file was not checked")
        return report
    with _reading(path) as (store, run_model):
        _check(_ledger_chain(store, model_file or run_model), report)
    return report


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[tuple[Any, Path | None]]:
    """The ledger of a run (with its model file) or a bare ledger, opened as every reader opens it: under the
    shared lock, so no deletion changes it meanwhile."""
    if is_bare_ledger(path):
        with reading_ledger(path) as store:
            yield store, None
        return
    run = RunDir.open(path)
    with run.reading():
        if not run.has_ledger():
            raise ConfigError(f"{path} has no ledger ({run.no_ledger_reason()}); its receipts are in receipts.json "
                              "and are not chained")
        with run.open_ledger() as store:
            yield store, run.model_path


def export_receipts(target: str | os.PathLike[str], out: str | os.PathLike[str]) -> dict[str, Any]:
    """Write what an auditor needs to check a run's receipts without its ledger: the chained receipts, the
    chain's head, the rows' leaf contents (no ids: a hash of each row's ids) and their root, the head model's
    hash. Refuses a chain that does not verify. Returns the bundle."""
    out_path = Path(out)
    if out_path.exists():
        raise ConfigError(f"--out {out_path} exists; choose a new file name")
    if not out_path.parent.is_dir():
        raise ConfigError(f"the folder of --out {out_path} does not exist")
    path = Path(target)
    with _reading(path) as (store, run_model):  # one read: what is checked is what is exported
        chain = _ledger_chain(store, run_model)
    report = ChainReport(str(path))
    _check(chain, report)
    if not report.ok:
        raise LedgerCorruptError(f"the receipts of {target} do not verify, so they are not exported: "
                                 + "; ".join(report.problems))
    chained = [e for e in chain.entries if e.payload is not None and "chain" in e.payload]
    committed = (chained[-1].payload or {}).get("ledger_rows", {}) if chained else {}
    count = int(committed.get("count") or 0)  # the check above matched these rows to the committed root
    bundle = {"format": BUNDLE_FORMAT, "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "source": str(path), "chain_head": chain.head, "chain_length": chain.length,
              "receipts": [{"id": e.event_id, "row_kind": e.kind, "receipt": e.payload} for e in chained],
              "rows": chain.rows[:count], "rows_root": committed.get("root_after", merkle_root([])),
              "model_hash": chain.ledger_head}
    atomic_write_json(out_path, bundle)
    return bundle


def prove_receipt(bundle_path: str | os.PathLike[str], proof: str | os.PathLike[str] | dict[str, Any], *,
                  ids: list[int] | None = None) -> dict[str, Any]:
    """Show that a requester's ids are committed to in a receipt of a bundle, and that every row that receipt
    reverted is, in the last committed state, reverted with its update destroyed (with a Merkle inclusion
    proof per row). ``proof`` is the file (or dict) the requester got; ``ids`` adds the ids when it holds only
    the secret (as the deletion service gives it). Returns ``{"ok": bool, ...}``; changes nothing."""
    bundle = _read_bundle(Path(bundle_path))
    given = _read_proof(proof)
    wanted = ids if ids is not None else given.get("ids")
    if not isinstance(wanted, list) or not wanted or not all(isinstance(i, int) and not isinstance(i, bool)
                                                               for i in wanted):
        raise ConfigError("the proof holds no ids; give them (--ids 17,42): the ids of your request")
    _, digest, commitments = commit_ids(wanted, str(given["secret"]))
    report = ChainReport(str(bundle_path))
    chained = _check(_bundle_chain(bundle, None), report)
    out: dict[str, Any] = {"ok": False, "bundle": str(bundle_path), "chain_ok": report.ok, "problems": report.problems}
    found = [(k, p) for k, p in enumerate(chained, 1) if p.get("ids_digest") == digest]
    if not found:
        out["problems"] = [*report.problems, "no receipt in this bundle commits to these ids with this secret"]
        return out
    number, receipt = found[0]
    if sorted(receipt.get("ids_committed") or []) != commitments:
        out["problems"] = [*report.problems, f"chained receipt {number} has the digest but not the commitments"]
        return out
    try:
        return _prove(bundle, receipt, number, chained[-1].get("ledger_rows") or {}, out, report)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        out["problems"] = [*report.problems, f"the bundle's rows have the wrong shape ({err})"]
        return out


def _prove(bundle: dict[str, Any], receipt: dict[str, Any], number: int, committed: dict[str, Any],
           out: dict[str, Any], report: ChainReport) -> dict[str, Any]:
    """The inclusion proof of every row ``receipt`` reverted, against the root the last receipt committed to
    (``committed``, its ``ledger_rows``), not a root the bundle merely states."""
    rows = list(bundle.get("rows", []))[: int(committed.get("count") or 0)]
    leaves = [leaf_hash(r) for r in rows]
    root = committed.get("root_after")
    position = {int(r["step"]): k for k, r in enumerate(rows)}
    proofs, bad = [], []
    for step in receipt.get("steps_reverted") or []:
        k = position.get(int(step))
        if k is None:
            bad.append(f"step {step} is not among the bundle's rows")
            continue
        path = inclusion_path(k, leaves)
        sound = verify_inclusion(k, len(leaves), leaves[k], path, str(root))
        done = rows[k].get("state") == "reverted" and (rows[k].get("update") is None or receipt.get("kept_for_research"))
        if not (sound and done):
            bad.append(f"step {step}: " + ("its inclusion proof fails" if not sound else "not reverted and destroyed"))
        proofs.append({"step": int(step), "leaf_index": k, "leaf": rows[k], "path": path})
    out.update(ok=report.ok and not bad, receipt_number=number, receipt_hash=receipt.get(RECEIPT_HASH),
               method=receipt.get("method"), model_hash_after=receipt.get("model_hash_after"), rows_root=root,
               tree_size=len(leaves), inclusion=proofs, problems=[*report.problems, *bad])
    return out


def _read_proof(proof: str | os.PathLike[str] | dict[str, Any]) -> dict[str, Any]:
    if isinstance(proof, dict):
        given = proof
    else:
        try:
            given = json.loads(Path(proof).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ConfigError(f"{proof} is not a proof file ({err})") from None
    if not isinstance(given, dict) or given.get("format") != PROOF_FORMAT or not isinstance(given.get("secret"), str):
        raise ConfigError(f"{proof if not isinstance(proof, dict) else 'the proof'} is not a proof "
                          f"(format {PROOF_FORMAT!r} with a secret expected)")
    return given


__all__ = ["BUNDLE_FORMAT", "CHAINED_KINDS", "ChainReport", "export_receipts", "prove_receipt", "verify_receipts"]

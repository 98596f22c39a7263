"""Fault campaign: random SIGKILLs of training and forgetting, random bit flips and deleted files.

    python benchmarks/fault_campaign.py --train-kills 100 --forget-kills 100 --flips 200

Every trial works on a fresh copy of a small digits run (small-cnn, 2 epochs, batch 64: 46 steps, every
update stored). What is counted, per the ledger's rules:

* kills of ``amnesiac train`` at a random moment: after the next command (a resume) the run must verify
  (``--deep``), be forgettable from, and a reader must never have seen a state that lies;
* kills of ``forget`` (half of them with a repair) at a random moment: after the next command takes the
  lock, the run holds the old state (no receipt, the old model) or the new one (one receipt whose model is
  the head and the file on disk), never a mix; a receipt never exists without its model;
* single-bit flips at random offsets of a random file (index, manifest, initial weights, model, a blob) and
  the deletion of each file kind: each must be detected by ``verify --deep`` or refused by ``forget``; a
  deletion served on a damaged run must revert exactly the steps an undamaged copy reverts and give the same
  model; no command may raise a traceback; no command that refuses may remove a blob.

Flips that change no byte SQLite reads (free space inside a page) cannot be seen by any check and change
nothing; they are counted as "harmless" when the index's logical content (every table, dumped) equals the
undamaged one and the deletion served equals the reference. Results go to
``benchmarks/results/fault_campaign.json``; docs/benchmarks.md quotes them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save  # noqa: E402

from amnesiac.cli import main  # noqa: E402
from amnesiac.errors import AmnesiacError, PendingChangeError  # noqa: E402
from amnesiac.run import RunDir, TrainConfig, train_run  # noqa: E402
from amnesiac.unlearn import forget, list_receipts  # noqa: E402
from amnesiac.utils import model_hash  # noqa: E402

CONFIG = dict(dataset="digits", model="small-cnn", epochs=2, batch_size=64, seed=0)
REQUEST = [17, 500, 900]

TRAIN = textwrap.dedent("""
    import sys
    from amnesiac.run import TrainConfig, train_run
    train_run(TrainConfig(**eval(sys.argv[2])), sys.argv[1], progress=False)
""")
FORGET = textwrap.dedent("""
    import sys
    from amnesiac.unlearn import forget
    forget(sys.argv[1], ids=eval(sys.argv[2]), options={"repair_steps": int(sys.argv[3])}, evaluate_after=False,
           progress=False)
""")


def quiet(fn, *args, **kwargs):
    """Call ``fn`` with stdout/stderr captured; returns (result or exit code, traceback text or None)."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            return fn(*args, **kwargs), None
    except AmnesiacError as err:
        return err, None
    except SystemExit as err:
        return err.code, None
    except Exception:  # noqa: BLE001 - a traceback is exactly what the campaign counts
        return None, traceback.format_exc()


def blobs_of(run: Path) -> set[str]:
    d = run / "ledger" / "blobs"
    return {p.name for p in d.iterdir()} if d.is_dir() else set()


def state_of(run: RunDir) -> dict:
    """The committed state as the ledger and the files say: head, model hash, receipts, forgotten ids."""
    store = run.open_ledger()
    try:
        return {"head": store.get_meta("head_hash"), "model": model_hash(run.load_model()),
                "receipts": store.events("forget"), "forgotten": store.forgotten_ids().tolist()}
    finally:
        store.close()


def kill_after(argv: list[str], delay: float) -> int:
    proc = subprocess.Popen([sys.executable, "-c", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return proc.returncode


def timed(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", *argv], check=True, capture_output=True)
    return time.perf_counter() - t


errors: list[str] = []  # the first messages of failures, kept in the result file


def train_kills(n: int, work: Path, rng: random.Random, counts: dict) -> None:
    """``n`` trainings killed while training ran (a run that finished first, or was killed before its run
    directory existed, is counted apart and tried again, up to 3n attempts)."""
    full = timed([TRAIN, str(work / "probe"), repr(CONFIG)])
    i = 0
    while counts["killed_during_training"] < n and i < 3 * n:
        i += 1
        out = work / f"train-{i}"
        rc = kill_after([TRAIN, str(out), repr(CONFIG)], rng.uniform(0.3, full))
        if rc != -9:
            counts["finished_before_kill"] += 1
            shutil.rmtree(out, ignore_errors=True)
            continue
        if not (out / "config.json").is_file():
            counts["killed_before_run_existed"] += 1
            continue
        counts["killed_during_training"] += 1
        run = RunDir.open(out)
        # a reader right after the kill: either a consistent committed state or an explicit report
        audit, tb = quiet(run.audit, deep=True)
        if tb:
            counts["tracebacks"] += 1
        elif audit.ok and run.model_path.is_file():
            st = state_of(run)
            if not (st["head"] == st["model"]):
                counts["verify_passed_but_state_wrong"] += 1
        res, tb = quiet(train_run, TrainConfig(**CONFIG), out, resume=True, progress=False)
        if tb or isinstance(res, Exception):
            counts["resume_failed"] += 1
            counts["tracebacks"] += bool(tb)
            errors.append(tb or str(res))
            continue
        audit = run.audit(deep=True)
        res, tb = quiet(forget, run, ids=REQUEST, evaluate_after=False, progress=False)
        if tb or isinstance(res, Exception) or res.receipt is None or not run.audit(deep=True).ok:
            counts["cannot_forget_after_next_command"] += 1
            counts["tracebacks"] += bool(tb)
            errors.append(tb or str(res))
        elif not audit.ok:
            counts["verify_failed_after_resume"] += 1
        else:
            counts["ok"] += 1
        shutil.rmtree(out, ignore_errors=True)


def forget_kills(n: int, base: Path, work: Path, rng: random.Random, counts: dict) -> None:
    base_hash = model_hash(RunDir.open(base).load_model())
    probe = work / "probe-forget"
    shutil.copytree(base, probe)
    full = {r: timed([FORGET, str(probe), repr(REQUEST), str(r)]) for r in (0, 40)}
    i = 0
    while counts["killed_during_forget"] < n and i < 3 * n:
        i += 1
        repair = 40 if counts["killed_during_forget"] % 2 else 0  # half of the kills with a repair
        out = work / f"forget-{i}"
        shutil.copytree(base, out)
        rc = kill_after([FORGET, str(out), repr(REQUEST), str(repair)], rng.uniform(0.2, full[repair]))
        if rc != -9:
            counts["finished_before_kill"] += 1
            shutil.rmtree(out, ignore_errors=True)
            continue
        counts["killed_during_forget"] += 1
        counts[f"killed_with_repair_{bool(repair)}"] += 1
        run = RunDir.open(out)
        seen, tb = quiet(list_receipts, run)  # a reader before recovery
        if tb:
            counts["tracebacks"] += 1
        elif not isinstance(seen, PendingChangeError) and not isinstance(seen, Exception):
            st = state_of(run)  # no pending change: what readers see must be whole
            if len(seen) != len(st["receipts"]) or (seen and seen[-1]["model_hash_after"] != st["model"]):
                counts["reader_saw_mixed_state"] += 1
        res, tb = quiet(main, ["ledger", "recover", str(out)])
        if tb:
            counts["tracebacks"] += 1
        st = state_of(run)
        old = st["model"] == base_hash == st["head"] and not st["receipts"] and not st["forgotten"]
        new = (len(st["receipts"]) == 1 and st["receipts"][0]["model_hash_after"] == st["model"] == st["head"]
               and sorted(st["forgotten"]) == sorted(REQUEST))
        if st["receipts"] and st["receipts"][-1]["model_hash_after"] != st["model"]:
            counts["receipt_without_its_model"] += 1
        if not (old or new):
            counts["mixed_state"] += 1
        audit = run.audit(deep=True)
        if audit.ok and not (old or new):
            counts["verify_passed_but_state_wrong"] += 1
        if not audit.ok:
            counts["verify_failed_after_recovery"] += 1
        counts["ended_old" if old else "ended_new" if new else "ended_other"] += 1
        res, tb = quiet(forget, run, ids=[40, 41], evaluate_after=False, progress=False)
        if tb or isinstance(res, Exception) or res.receipt is None or not run.audit(deep=True).ok:
            counts["cannot_forget_after_next_command"] += 1
            counts["tracebacks"] += bool(tb)
            errors.append(tb or str(res))
        else:
            counts["ok"] += 1
        shutil.rmtree(out, ignore_errors=True)


def logical_dump(index: Path) -> list[str] | None:
    try:
        con = sqlite3.connect(f"file:{index}?mode=ro", uri=True)
        try:
            return list(con.iterdump())
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return None


def flips(n: int, base: Path, work: Path, rng: random.Random, counts: dict, by_kind: dict) -> None:
    ref = work / "reference"
    shutil.copytree(base, ref)
    ref_result = forget(RunDir.open(ref), ids=REQUEST, evaluate_after=False, progress=False)
    ref_steps, ref_hash = sorted(ref_result.receipt["steps_reverted"]), ref_result.receipt["model_hash_after"]
    ref_dump = logical_dump(base / "ledger" / "index.sqlite")
    kinds = ["index", "manifest", "initial", "model", "blob"]
    trials = [("flip", kinds[i % len(kinds)]) for i in range(n)]
    trials += [("delete", k) for k in ("index", "manifest", "initial", "model", "blob", "blobs-dir", "config")]
    for i, (action, kind) in enumerate(trials):
        out = work / f"flip-{i}"
        shutil.copytree(base, out)
        led = out / "ledger"
        target = {"index": led / "index.sqlite", "manifest": led / "manifest.json",
                  "initial": led / "initial.safetensors", "model": out / "model.safetensors",
                  "blob": led / "blobs" / rng.choice(sorted(p.name for p in (led / "blobs").iterdir())),
                  "blobs-dir": led / "blobs", "config": out / "config.json"}[kind]
        if action == "flip":
            data = bytearray(target.read_bytes())
            pos = rng.randrange(len(data))
            data[pos] ^= 1 << rng.randrange(8)
            target.write_bytes(bytes(data))
        elif target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
        key = f"{action}:{kind}"
        row = by_kind.setdefault(key, {"trials": 0, "detected_by_verify": 0, "refused_by_forget": 0,
                                       "served_correctly": 0, "harmless": 0, "wrong_steps_or_model": 0,
                                       "tracebacks": 0, "blobs_removed_on_refusal": 0})
        row["trials"] += 1
        same_logic = action == "flip" and kind == "index" and logical_dump(target) == ref_dump
        audit, tb = quiet(lambda o=out: RunDir.open(o).audit(deep=True))
        detected = tb is None and (isinstance(audit, AmnesiacError) or not audit.ok)
        row["tracebacks"] += bool(tb)
        row["detected_by_verify"] += detected
        before = blobs_of(out)
        code, tb = quiet(main, ["forget", str(out), "--ids", ",".join(map(str, REQUEST)), "--no-eval", "--no-progress"])
        row["tracebacks"] += bool(tb)
        if code == 0:
            receipt = RunDir.open(out).open_ledger(check_manifest=False).events("forget")[-1]
            same = sorted(receipt["steps_reverted"]) == ref_steps and receipt["model_hash_after"] == ref_hash
            if same:
                row["served_correctly"] += 1
                if not detected and same_logic:
                    row["harmless"] += 1
            else:
                row["wrong_steps_or_model"] += 1
        else:
            row["refused_by_forget"] += 1
            if blobs_of(out) != before:
                row["blobs_removed_on_refusal"] += 1
        if not detected and code == 0 and not same_logic:
            counts["undetected_and_not_harmless"] += 1
            row.setdefault("undetected_at", []).append(pos if action == "flip" else None)
        shutil.rmtree(out, ignore_errors=True)
    for row in by_kind.values():
        for k, v in row.items():
            if k != "trials":
                counts[f"flips_{k}"] = counts.get(f"flips_{k}", 0) + v


def main_(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-kills", type=int, default=100)
    ap.add_argument("--forget-kills", type=int, default=100)
    ap.add_argument("--flips", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="fault_campaign", help="result file name under benchmarks/results")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    from collections import Counter

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = work / "base"
        train_run(TrainConfig(**CONFIG), base, progress=False)
        results = {}
        for name, fn in (("train_kills", lambda c: train_kills(args.train_kills, work, rng, c)),
                         ("forget_kills", lambda c: forget_kills(args.forget_kills, base, work, rng, c))):
            counts: Counter = Counter()
            t = time.perf_counter()
            fn(counts)
            results[name] = {"counts": dict(counts), "seconds": round(time.perf_counter() - t, 1)}
            print(name, dict(counts), flush=True)
            for e in errors[:3]:
                print("  error:", e[-500:], flush=True)
        counts = Counter()
        by_kind: dict = {}
        t = time.perf_counter()
        flips(args.flips, base, work, rng, counts, by_kind)
        results["flips"] = {"counts": dict(counts), "by_kind": by_kind, "seconds": round(time.perf_counter() - t, 1)}
        print("flips", dict(counts), flush=True)
        for k, v in by_kind.items():
            print(f"  {k:16s} {v}", flush=True)
    save(args.name, {"command": "python benchmarks/fault_campaign.py " + " ".join(argv or sys.argv[1:]),
                     "config": CONFIG, "request": REQUEST, "results": results, "first_errors": errors[:10],
                     "seconds": round(time.perf_counter() - t0, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main_())

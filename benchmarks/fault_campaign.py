"""Fault campaign: random SIGKILLs of training and forgetting, random bit flips and deleted files.

    python benchmarks/fault_campaign.py --train-kills 100 --forget-kills 100 --flips 200
    python benchmarks/fault_campaign.py --train-kills 0 --forget-kills 0 --flips 0 \
        --index-damage 40 --library-kills 40 --verify-beside 20 --name fault_campaign_round2

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

* index damage (``--index-damage``): a committed step's row deleted, or re-keyed to a free number by one
  flipped bit; no command may delete a committed blob, verify must report it, a served deletion must revert the
  reference's steps;
* library kills (``--library-kills``): ``forget_records(save_to=...)`` killed at its named points and at
  random; after ``amnesiac ledger recover`` the file at ``save_to`` is the ledger's head, a receipt exists
  exactly when its model does, no reverted update is left, and ``verify --deep`` passes;
* verify beside forget (``--verify-beside``): ``verify`` run over and over while a forget runs; it must say
  "being changed" or pass, never report damage that is not there.

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
           progress=False, force=True)
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
        return {"head": store.index.get_meta("head_hash"), "model": model_hash(run.load_model()),
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
    if not n:
        return
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
        res, tb = quiet(forget, run, ids=REQUEST, evaluate_after=False, progress=False, force=True)
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
    if not n:
        return
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
        res, tb = quiet(forget, run, ids=[40, 41], evaluate_after=False, progress=False, force=True)
        if tb or isinstance(res, Exception) or res.receipt is None or not run.audit(deep=True).ok:
            counts["cannot_forget_after_next_command"] += 1
            counts["tracebacks"] += bool(tb)
            errors.append(tb or str(res))
        else:
            counts["ok"] += 1
        shutil.rmtree(out, ignore_errors=True)


def index_damage(n: int, base: Path, work: Path, rng: random.Random, counts: dict) -> None:
    """``n`` damaged indexes: a committed step's row deleted, or re-keyed by one flipped bit of its step number
    (shadowing the row that number named, if any; the last step half of the time, the case the second campaign
    found). No command
    may delete a blob the sealed head says is committed; verify must report the damage; a deletion served on
    the damaged run must revert exactly the reference's steps (or be refused)."""
    for failure in ("committed_blobs_deleted", "verify_missed_damage", "forget_served_wrong", "tracebacks"):
        counts[failure] += 0  # listed in the results even when none happened
    ref = work / "reference-index"
    shutil.copytree(base, ref)
    ref_result = forget(RunDir.open(ref), ids=REQUEST, evaluate_after=False, progress=False, force=True)
    ref_steps = sorted(ref_result.receipt["steps_reverted"])
    with RunDir.open(base).open_ledger() as store:
        last = store.last_step()
    for i in range(n):
        out = work / f"index-{i}"
        shutil.copytree(base, out)
        step = last if i % 2 == 0 else rng.randrange(1, last + 1)
        action = "delete" if i % 4 < 2 else "rekey"
        con = sqlite3.connect(out / "ledger" / "index.sqlite")
        if action == "delete":
            con.execute("DELETE FROM steps WHERE step = ?", (step,))
            con.execute("DELETE FROM step_ids WHERE step = ?", (step,))
        else:  # one bit of the key flipped; a key that names another row shadows it, as a B-tree lookup would
            new = step ^ (1 << rng.randrange(8))
            for sql in ("DELETE FROM steps WHERE step = ?", "DELETE FROM step_ids WHERE step = ?"):
                con.execute(sql, (new,))
            con.execute("UPDATE steps SET step = ? WHERE step = ?", (new, step))
            con.execute("UPDATE step_ids SET step = ? WHERE step = ?", (new, step))
        con.commit()
        con.close()
        counts[f"{action}_row"] += 1
        committed = blobs_of(out)
        audit, tb = quiet(lambda o=out: RunDir.open(o).audit(deep=True))
        counts["tracebacks"] += bool(tb)
        if tb is None and not isinstance(audit, AmnesiacError) and audit.ok:
            counts["verify_missed_damage"] += 1
        for argv in (["ledger", "recover", str(out)],
                     ["forget", str(out), "--ids", ",".join(map(str, REQUEST)), "--no-eval", "--no-progress",
                      "--force"]):
            code, tb = quiet(main, argv)
            counts["tracebacks"] += bool(tb)
            gone = committed - blobs_of(out)
            if argv[0] == "forget" and code == 0:
                receipt = RunDir.open(out).open_ledger().events("forget")[-1]
                counts["forget_served" if sorted(receipt["steps_reverted"]) == ref_steps else "forget_served_wrong"] += 1
                gone -= {f"{s:012d}.safetensors" for s in receipt["steps_reverted"]}  # destroyed by the deletion
            elif argv[0] == "forget":
                counts["forget_refused"] += 1
            if gone:
                counts["committed_blobs_deleted"] += 1
                errors.append(f"{argv[0]} after {action} of step {step} removed {sorted(gone)}")
        shutil.rmtree(out, ignore_errors=True)


OWN_LOOP = textwrap.dedent("""
    import sys, torch
    from amnesiac import LedgerStore, Recorder
    from amnesiac.run.checkpoint import save_tensors
    folder = sys.argv[1]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    store = LedgerStore.create(folder + "/ledger", manifest={"storage_dtype": "float32"}, initial=model.state_dict())
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(640, 64, generator=g), torch.randint(0, 10, (640,), generator=g)
    with Recorder(model, opt, store) as rec:
        for epoch in range(3):
            order = torch.randperm(640, generator=g)
            for b in range(20):
                ids = order[32 * b: 32 * b + 32]
                with rec.batch(ids):
                    torch.nn.functional.cross_entropy(model(x[ids]), y[ids]).backward()
                    opt.step()
                    opt.zero_grad()
    save_tensors(folder + "/model.safetensors", model.state_dict())
    store.mark_head(model, model_file=folder + "/model.safetensors")
""")
LIBRARY_FORGET = textwrap.dedent("""
    import sys, torch
    from amnesiac import forget_records
    from amnesiac.run.checkpoint import load_tensors
    folder = sys.argv[1]
    model = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10))
    model.load_state_dict(load_tensors(folder + "/model.safetensors")[0])
    forget_records(model, folder + "/ledger", eval(sys.argv[2]), save_to=folder + "/model.safetensors", force=True)
""")
LIBRARY_REQUEST = [17, 300, 600]
LIBRARY_POINTS = ("library:after-next", "library:after-ledger", "library:after-rename", "library:after-destroy")


def _library_state(folder: Path) -> dict:
    from amnesiac import LedgerStore
    from amnesiac.run.checkpoint import load_tensors

    with LedgerStore.open(folder / "ledger") as store:
        receipts = store.events("forget")
        return {"head": store.index.get_meta("head_hash"), "receipts": receipts, "blobs": blobs_of(folder),
                "file": state_hash_of(load_tensors(folder / "model.safetensors")[0])}


def state_hash_of(tensors: dict) -> str:
    from amnesiac.utils import state_hash

    return state_hash(tensors)


def library_kills(n: int, work: Path, rng: random.Random, counts: dict) -> None:
    """``n`` library deletions (``forget_records(save_to=...)``) killed: half at a named point (each point in
    turn), half at a random moment. After ``amnesiac ledger recover LEDGER`` the model at ``save_to`` must be
    the ledger's head, a receipt must exist exactly when the deletion committed, no reverted update may stay,
    and ``verify --deep`` must pass."""
    import os

    for failure in ("model_file_not_head", "receipt_without_its_model", "reverted_blobs_left",
                    "verify_failed_after_recovery", "failed_without_kill", "tracebacks"):
        counts[failure] += 0
    own = work / "own-loop"
    own.mkdir()
    subprocess.run([sys.executable, "-c", OWN_LOOP, str(own)], check=True, capture_output=True)
    probe = work / "own-probe"
    shutil.copytree(own, probe)
    full = timed([LIBRARY_FORGET, str(probe), repr(LIBRARY_REQUEST)])
    i = 0
    while counts["killed_at_named_point"] + counts["killed_at_random"] < n and i < 3 * n:
        i += 1
        folder = work / f"lib-{i}"
        shutil.copytree(own, folder)
        kills = counts["killed_at_named_point"] + counts["killed_at_random"]
        named = kills % 2 == 0  # every other kill at a named point, each point in turn
        env = {**os.environ, "AMNESIAC_CRASH_AT": LIBRARY_POINTS[(kills // 2) % len(LIBRARY_POINTS)]} if named else None
        proc = subprocess.Popen([sys.executable, "-c", LIBRARY_FORGET, str(folder), repr(LIBRARY_REQUEST)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            proc.wait(timeout=None if named else rng.uniform(0.6 * full, full))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        if proc.returncode != -9:
            counts["finished_before_kill" if proc.returncode == 0 else "failed_without_kill"] += 1
            if proc.returncode:
                errors.append(f"library forget exited {proc.returncode}: {proc.stderr.read().decode()[-400:]}")
            shutil.rmtree(folder, ignore_errors=True)
            continue
        counts["killed_at_named_point" if named else "killed_at_random"] += 1
        code, tb = quiet(main, ["ledger", "recover", str(folder / "ledger")])
        counts["tracebacks"] += bool(tb)
        st = _library_state(folder)
        if st["file"] != st["head"]:
            counts["model_file_not_head"] += 1
        if len(st["receipts"]) > 1 or (st["receipts"] and st["receipts"][-1]["model_hash_after"] != st["file"]):
            counts["receipt_without_its_model"] += 1
        if st["receipts"]:
            counts["ended_new"] += 1
            left = st["blobs"] & {f"{s:012d}.safetensors" for s in st["receipts"][-1]["steps_reverted"]}
            counts["reverted_blobs_left"] += bool(left)
        else:
            counts["ended_old"] += 1
        code, tb = quiet(main, ["ledger", "verify", str(folder / "ledger"), "--deep"])
        counts["verify_failed_after_recovery"] += code != 0
        counts["ok"] += code == 0 and st["file"] == st["head"]
        shutil.rmtree(folder, ignore_errors=True)


def verify_during_forget(n: int, base: Path, work: Path, counts: dict) -> None:
    """``n`` forgets (half with a repair) with ``verify`` run over and over beside each until it ends: every
    verify must say the run is being changed, or pass; any other finding is a false alarm."""
    counts["false_alarms"] += 0
    counts["tracebacks"] += 0
    for i in range(n):
        out = work / f"beside-{i}"
        shutil.copytree(base, out)
        proc = subprocess.Popen([sys.executable, "-c", FORGET, str(out), repr(REQUEST), str(40 * (i % 2))],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None:
            time.sleep(0.05)
            audit, tb = quiet(lambda o=out, d=bool(i % 2): RunDir.open(o).audit(deep=d))
            counts["verifies"] += 1
            if tb:
                counts["tracebacks"] += 1
            elif isinstance(audit, PendingChangeError):
                counts["said_being_changed"] += 1
            elif isinstance(audit, AmnesiacError) or not audit.ok:
                counts["false_alarms"] += 1
                errors.append(f"verify beside forget: {audit if isinstance(audit, AmnesiacError) else audit.problems}")
            else:
                counts["passed"] += 1
        counts["forgets_finished"] += proc.returncode == 0
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
    ref_result = forget(RunDir.open(ref), ids=REQUEST, evaluate_after=False, progress=False, force=True)
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
        code, tb = quiet(main, ["forget", str(out), "--ids", ",".join(map(str, REQUEST)), "--no-eval", "--no-progress",
                                "--force"])
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
    ap.add_argument("--index-damage", type=int, default=0, help="indexes with a committed row deleted or re-keyed")
    ap.add_argument("--library-kills", type=int, default=0, help="forget_records(save_to=...) killed")
    ap.add_argument("--verify-beside", type=int, default=0, help="forgets with verify run beside them")
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
                         ("forget_kills", lambda c: forget_kills(args.forget_kills, base, work, rng, c)),
                         ("index_damage", lambda c: index_damage(args.index_damage, base, work, rng, c)),
                         ("library_kills", lambda c: library_kills(args.library_kills, work, rng, c)),
                         ("verify_beside_forget", lambda c: verify_during_forget(args.verify_beside, base, work, c))):
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
        if args.flips:
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

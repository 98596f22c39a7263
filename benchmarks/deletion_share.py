"""What share of training a deletion request touches, by how the ledger was recorded (README: "Keeping
deletions cheap").

    python benchmarks/deletion_share.py                  # digits, small-cnn, 5 and 10 epochs, 5 request seeds

The planner's advice follows the share of steps (or shards) a request touches: amnesiac alone up to 1%,
with a repair up to 10%, another method beyond. With random batching a record sits in a different batch every
epoch, so k records touch about k x epochs steps, and the share grows with the epochs and the batch size.
This script trains the bundled digits (1,438 records) three ways, random batching, one-batch shards and
subject-aligned shards (subjects of 5 records), and plans requests of 1 and 10 random records and 1 and 3
subjects on each (``amnesiac.plan_deletion``: nothing changes). It prints the mean share and the planner's
advice over the request seeds, and writes ``benchmarks/results/deletion_share.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save  # noqa: E402

from amnesiac import plan_deletion  # noqa: E402
from amnesiac.data import load_dataset  # noqa: E402
from amnesiac.run import TrainConfig, train_run  # noqa: E402


def subjects_of(ids: np.ndarray, size: int, seed: int) -> dict[str, list[int]]:
    """Fictitious data subjects: the records in random groups of ``size``."""
    perm = np.random.default_rng(seed).permutation(ids)
    return {f"s{k}": perm[i : i + size].tolist() for k, i in enumerate(range(0, perm.size, size))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, nargs="+", default=[5, 10])
    ap.add_argument("--requests", type=int, default=5, help="request seeds per row")
    ap.add_argument("--subject-size", type=int, default=5)
    args = ap.parse_args(argv)
    rows = []
    train_ids = load_dataset("digits").train.ids.numpy()
    subjects = subjects_of(train_ids, args.subject_size, seed=0)
    names = sorted(subjects)
    with tempfile.TemporaryDirectory() as tmp:
        subjects_file = Path(tmp) / "subjects.json"
        subjects_file.write_text(json.dumps(subjects))
        for epochs in args.epochs:
            for name, extra in (("random batching (every step)", {}),
                                ("one-batch shards", {"batching": "shards", "shard_size": 64}),
                                ("subject-aligned shards", {"batching": "shards", "shard_subjects": str(subjects_file)})):
                out = Path(tmp) / f"{epochs}-{len(rows)}"
                cfg = TrainConfig(dataset="digits", model="small-cnn", epochs=epochs, batch_size=64, **extra)
                run = train_run(cfg, out, progress=False).run
                for label, pick in (("1 record", lambda g: g.choice(train_ids, 1, replace=False)),
                                    ("10 records", lambda g: g.choice(train_ids, 10, replace=False)),
                                    ("1 subject", lambda g: subjects[names[g.integers(len(names))]]),
                                    ("3 subjects", lambda g: sum((subjects[n] for n in g.choice(names, 3, replace=False)), []))):
                    shares, advice = [], Counter()
                    for seed in range(args.requests):
                        plan = plan_deletion(run.ledger_path, pick(np.random.default_rng(seed)))
                        shares.append(plan.share)
                        advice[plan.recommendation] += 1
                    row = {"epochs": epochs, "ledger": name, "request": label, "share_mean": float(np.mean(shares)),
                           "share_min": float(np.min(shares)), "share_max": float(np.max(shares)),
                           "advice": dict(advice), "units": plan.total_steps}
                    rows.append(row)
                    print(f"{epochs:2d} epochs  {name:30s} {label:11s} share {100 * row['share_mean']:6.2f}% "
                          f"[{100 * row['share_min']:.2f}, {100 * row['share_max']:.2f}] of {plan.total_steps} "
                          f"{'shards' if 'shards' in name else 'steps'}; advice {dict(advice)}", flush=True)
    save("deletion_share", {"command": "python benchmarks/deletion_share.py " + " ".join(argv or sys.argv[1:]),
                            "rows": rows, "subject_size": args.subject_size, "request_seeds": args.requests})
    return 0


if __name__ == "__main__":
    sys.exit(main())

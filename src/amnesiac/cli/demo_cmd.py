"""``amnesiac demo``: train with a ledger, forget, attack, and print a before/after table (about a minute)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .common import add_subparser, table

EXAMPLES = """\
  amnesiac demo --out runs/demo
  amnesiac demo --out runs/demo --class 5
"""


def add_parser(sub: Any) -> None:
    p = add_subparser(sub, "demo", help="train, forget, attack and compare, on the bundled digits",
                      description="The paper in one minute on the bundled digits: train a small CNN with a ledger "
                                  "while one class is rare (its examples touch about 10% of the steps, as the "
                                  "paper's 100 threes did), forget that class with amnesiac unlearning and a short "
                                  "repair, retrain a reference from scratch without it, and measure all three "
                                  "models with the same attacks.", examples=EXAMPLES)
    p.add_argument("--out", required=True, help="directory for the runs (created; an earlier demo's output there is "
                                                "replaced, anything else is refused)")
    p.add_argument("--class", dest="class_", type=int, default=3, metavar="CLASS", help="the class to forget (default 3)")
    p.add_argument("--keep", type=int, default=17,
                   help="training examples of that class, drawn at random (default 17: at batch 8 they touch about "
                        "10%% of the steps, as the paper's 100 threes did at batch 64)")
    p.add_argument("--batch-size", type=int, default=8, help="training batch size (default 8)")
    p.add_argument("--epochs", type=int, default=5, help="training epochs (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training and the request (default 0)")
    p.add_argument("--threads", type=int, default=1,
                   help="PyTorch threads (default 1: the table is then the same on every CPU; with more threads "
                        "sums run in another order and the last digits, and a borderline inversion, can change)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars (long work still prints a line now and then)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..errors import ConfigError
    from ..run import TrainConfig, train_run
    from ..unlearn import forget
    from ..utils import usable_cores

    cores = usable_cores()
    if not 1 <= args.threads <= cores:
        raise ConfigError(f"--threads must lie in 1..{cores} (the cores this process may use), got {args.threads}")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    out = _fresh_out(Path(args.out))
    progress = False if args.no_progress else None
    c = args.class_
    cfg = TrainConfig(dataset="digits", model="small-cnn", epochs=args.epochs, batch_size=args.batch_size,
                      seed=args.seed, limit_class={c: args.keep}, eval_class=c, record="watch", watch_class=c)
    print(f"1/4 training on digits with a ledger ({args.keep} examples of class {c}) ...", flush=True)
    original = train_run(cfg, out / "original", progress=progress)
    forgotten_ids = original.run.training_data().ids_of_class(c).tolist()
    print("2/4 retraining a reference from scratch without them ...", flush=True)
    ref_cfg = TrainConfig.from_dict({**cfg.to_dict(), "exclude_ids": forgotten_ids, "record": "none"})
    reference = train_run(ref_cfg, out / "retrained", progress=progress)
    print(f"3/4 forgetting class {c} with amnesiac unlearning (+ 1 repair epoch) ...", flush=True)
    result = forget(original.run, class_=c, options={"repair_epochs": 1}, out=str(out / "forgotten"), progress=progress)
    print("4/4 attacking the three models ...", flush=True)
    models = {"original": original.run.load_model(), "amnesiac": result.model, "retrained": reference.model}
    rows, summary = _measure(args, out, original.run.bundle(), models, forgotten_ids, progress)
    print()
    print(table(rows, ["", "original", "after amnesiac", "retrained (reference)"]))
    print(summary)
    r = result.receipt
    assert r is not None  # a class request on a fresh run always changes the model
    print(f"\namnesiac reverted {r['n_steps_reverted']} of {r['plan']['total_steps']} steps "
          f"({100 * r['plan']['share']:.1f}%) and repaired with {r['optimizer_steps']} steps; "
          f"receipt in {out / 'forgotten'} (amnesiac receipts {out / 'forgotten'})")
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


def _fresh_out(out: Path) -> Path:
    """The demo's output folder, empty; only an earlier demo's output is ever replaced."""
    import shutil

    from ..errors import ConfigError

    marker = out / ".amnesiac-demo"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a directory for the demo's runs")
    if out.exists() and any(out.iterdir()):
        if not marker.is_file():
            raise ConfigError(f"--out {out} exists and is not the output of an earlier demo; choose a new directory "
                              "(the demo replaces only its own earlier output)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text("written by `amnesiac demo`; the next demo with this --out replaces this directory\n")
    return out


def _measure(args: argparse.Namespace, out: Path, bundle: Any, models: dict[str, Any], forgotten_ids: list[int],
             progress: bool | None) -> tuple[list[list[Any]], str]:
    """Accuracy, membership (loss and LiRA AUC with intervals) and inversion rows, and a line saying what the
    membership numbers show."""
    from ..attacks import (
        ShadowRecipe,
        inversion_references,
        invert,
        run_attacks,
        score_inversion,
        train_evaluator,
        train_shadows,
    )
    from ..training import evaluate

    c = args.class_
    members = bundle.train.only_ids(forgotten_ids)
    # non-members from the same distribution: the training records of the class that the run left out
    # (test records come from other writers, which a model can tell apart without any membership)
    non_members = bundle.train.subset((bundle.train.targets == c).nonzero().flatten()).without_ids(forgotten_ids)
    shadows = train_shadows(bundle.test, ShadowRecipe("small-cnn", args.epochs, args.batch_size), n=8, seed=args.seed,
                            cache_dir=out / "cache", progress=progress)
    report = run_attacks(models, members, non_members, attacks=("loss", "lira"), shadows=shadows, progress=False)
    evaluator = train_evaluator(bundle.train, "small-cnn", cache_dir=out / "cache", progress=progress)
    refs = inversion_references(bundle.train, seed=args.seed)
    sets = {"test": bundle.test, f"class {c}": bundle.test.subset((bundle.test.targets == c).nonzero().flatten()),
            "other classes": bundle.test.subset((bundle.test.targets != c).nonzero().flatten())}
    rows: list[list[Any]] = [[f"test accuracy, {label}"] + [evaluate(m, ds)["accuracy"] for m in models.values()]
                             for label, ds in sets.items()]
    rows.append([f"accuracy on the {len(members)} forgotten records"] + [evaluate(m, members)["accuracy"] for m in models.values()])
    for attack in ("loss", "lira"):
        rows.append([f"membership AUC ({attack}), 95% CI"] + [
            f"{report.results[n][attack]['auc']:.3f} [{report.results[n][attack]['auc_ci95'][0]:.2f}, "
            f"{report.results[n][attack]['auc_ci95'][1]:.2f}]" for n in models])
    inv = [score_inversion(invert(m, c, shape=(1, 8, 8), variant="regularised", iterations=400, restarts=4,
                                  prior=refs.prior_for("regularised"), seed=args.seed), evaluator, refs)["recognised"]
           for m in models.values()]
    rows.append([f"inversions of class {c} recognised"] + inv)
    lira = {n: report.results[n]["lira"]["auc"] for n in models}
    summary = (f"\nmembership: {len(members)} forgotten records against the {len(non_members)} training records of "
               f"class {c} the run left out; AUC 0.5 = the attacker cannot tell them apart. LiRA gives "
               f"{lira['original']:.2f} on the original, {lira['amnesiac']:.2f} after amnesiac and "
               f"{lira['retrained']:.2f} on the reference retrained without them: after amnesiac the attacker is "
               f"{abs(lira['amnesiac'] - lira['retrained']):.2f} from the reference.")
    return rows, summary

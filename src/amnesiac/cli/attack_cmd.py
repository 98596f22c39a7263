"""``amnesiac attack``: membership inference and model inversion against a run's model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..names import ATTACKS, SHADOW_ATTACKS

if TYPE_CHECKING:
    from ..run import RunDir

from .common import add_subparser, emit_json, table

MIA_EXAMPLES = """\
  amnesiac attack mia runs/digits-forgot --target-ids 17,42,100-140 --reference runs/digits-retrain
  amnesiac attack mia runs/digits --target-class 3 --attacks loss,lira,shadow --shadows 8 --out attacks/
"""
INVERSION_EXAMPLES = """\
  amnesiac attack inversion runs/digits --class 3 --reference runs/digits-retrain --out attacks/
  amnesiac attack inversion runs/digits --class 3 --variant original --restarts 2 --iterations 300
  amnesiac attack inversion runs/digits --class 3 --variant authors --iterations 1000 --process-every 500
"""
EXAMPLES = MIA_EXAMPLES + INVERSION_EXAMPLES


def add_parser(sub: Any) -> None:
    p = add_subparser(sub, "attack", help="measure forgetting: membership inference, model inversion",
                      description="Attack a run's model to measure what can still be learned about records. "
                                  "Every figure is reported for the run and, with --reference, for a model "
                                  "retrained without the records, side by side.", examples=EXAMPLES)
    sub2 = p.add_subparsers(dest="attack_command", metavar="ATTACK")
    mia = sub2.add_parser("mia", help="membership inference on target records",
                          description="Membership inference: are the target records recognisable as training data?",
                          epilog="examples:\n" + MIA_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    mia.add_argument("run", help="run directory whose model is attacked")
    mia.add_argument("--target-ids", default=None, help="target sample ids (training records), e.g. 1,5,10-20")
    mia.add_argument("--target-ids-file", default=None, help="file of target ids (JSON list or one per line)")
    mia.add_argument("--target-class", type=int, default=None, help="every training record of this class")
    mia.add_argument("--max-targets", type=int, default=500, help="sample at most this many targets (default 500)")
    mia.add_argument("--reference", default=None, help="run directory of a model retrained without the targets")
    mia.add_argument("--attacks", default=",".join(ATTACKS), help=f"comma-separated, from {', '.join(ATTACKS)}")
    mia.add_argument("--attack-option", action="append", default=[], metavar="ATTACK.NAME=VALUE",
                     help="an attack's own option, e.g. logreg.folds=3, shokri-paper.attack_epochs=50, lira.min_out=4 "
                          "(repeatable; an option the attack does not take is refused)")
    mia.add_argument("--shadows", type=int, default=16, help="shadow models (default 16, as in the paper)")
    mia.add_argument("--shadow-epochs", type=int, default=None, help="epochs per shadow model (default: the run's)")
    mia.add_argument("--cache", default=None, help="directory to keep shadow models in (reused across calls)")
    mia.add_argument("--seed", type=int, default=0, help="seed for the target sample, non-members and shadows")
    mia.add_argument("--out", default=None, help="directory for mia.json")
    mia.add_argument("--json", action="store_true", help="print the result as JSON")
    mia.add_argument("--no-progress", action="store_true", help="hide progress bars (long work still prints a line now and then)")
    mia.set_defaults(func=run_mia)
    inv = sub2.add_parser("inversion", help="invert a class from the model",
                          description="Model inversion: reconstruct what the model holds about a class.",
                          epilog="examples:\n" + INVERSION_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    inv.add_argument("run", help="run directory whose model is inverted")
    inv.add_argument("--class", dest="class_", type=int, required=True, metavar="CLASS", help="the class to reconstruct")
    inv.add_argument("--reference", default=None, help="run directory of a model retrained without the class")
    inv.add_argument("--variant", default="regularised", choices=["paper", "authors", "original", "regularised"],
                     help="regularised: total variation and an L2 pull to the data's mean image, images a person can "
                          "read (default); paper: as the paper's text describes it; authors: as the authors' code "
                          "does it; original: Fredrikson et al.")
    inv.add_argument("--iterations", type=int, default=600, help="gradient steps per restart (default 600)")
    inv.add_argument("--process-every", type=int, default=200, help="denoise the image every N steps (default 200)")
    inv.add_argument("--restarts", type=int, default=6, help="independent inversions (default 6)")
    inv.add_argument("--lr", type=float, default=None, help="step size on the input (default: 1.0 for authors, 0.05 otherwise)")
    inv.add_argument("--cache", default=None, help="directory to keep the evaluation classifier in")
    inv.add_argument("--seed", type=int, default=0, help="seed of the starting images")
    inv.add_argument("--out", default=None, help="directory for inversion.json and the PNG grid")
    inv.add_argument("--json", action="store_true", help="print the result as JSON")
    inv.add_argument("--no-progress", action="store_true", help="hide progress bars (long work still prints a line now and then)")
    inv.set_defaults(func=run_inversion)
    p.set_defaults(func=lambda args: _help(p))


def _targets(args: argparse.Namespace, run: RunDir):
    """The target records: records the run trained on (after --limit-class and --exclude), never others."""
    import torch

    from ..utils import parse_ids, read_ids_file
    train = run.training_data()
    given = [x for x in (args.target_ids, args.target_ids_file, args.target_class) if x is not None]
    if len(given) != 1:
        raise ConfigError("name the targets in exactly one way: --target-ids, --target-ids-file or --target-class")
    if args.target_class is not None:
        ids = train.ids_of_class(args.target_class)
        if ids.numel() == 0:
            raise ConfigError(f"the run trained on no record of class {args.target_class}")
    else:
        ids = torch.as_tensor(parse_ids(args.target_ids) if args.target_ids else read_ids_file(args.target_ids_file))
        unknown = ids[~torch.isin(ids, train.ids)]
        if unknown.numel():
            shown = ", ".join(map(str, unknown[:10].tolist()))
            raise ConfigError(f"{unknown.numel()} target id(s) are not records this run trained on ({shown}); "
                              "membership can only be tested for records that were in its training data")
    if args.max_targets < 1:
        raise ConfigError(f"--max-targets must be at least 1, got {args.max_targets}")
    if ids.numel() > args.max_targets:  # a seeded random sample, never the first records
        g = torch.Generator().manual_seed(args.seed)
        ids = ids[torch.randperm(ids.numel(), generator=g)[: args.max_targets]]
    return train.only_ids(ids)


def _load_models(run: RunDir, reference: str | None) -> dict[str, Any]:
    """The run's model and the reference's, read as committed state; done before any expensive work, so a
    bad --reference is refused at once."""

    from ..run import RunDir
    models = {}
    with run.reading():
        models["run"] = run.load_model()
    if reference:
        ref = RunDir.open(reference)
        with ref.reading():
            models["reference"] = ref.load_model()
    return models


def _attack_options(given: list[str]) -> dict[str, dict[str, Any]]:
    """``["logreg.folds=3"]`` as ``{"logreg": {"folds": 3}}``; values are read as integers or numbers."""
    out: dict[str, dict[str, Any]] = {}
    for item in given:
        head, eq, raw = item.partition("=")
        attack, dot, name = head.partition(".")
        if not (eq and dot and attack and name and raw):
            raise ConfigError(f"--attack-option {item!r}: expected ATTACK.NAME=VALUE, e.g. logreg.folds=3")
        try:
            value: Any = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"--attack-option {item!r}: the value must be a number, got {raw!r}") from None
        out.setdefault(attack.strip(), {})[name.strip()] = value
    return out


def run_mia(args: argparse.Namespace) -> int:

    from ..attacks import (
        ShadowRecipe,
        canonical_attack,
        check_attack_options,
        matched_non_members,
        run_attacks,
        train_shadows,
    )
    from ..run import RunDir
    from ..utils import atomic_write_json
    run = RunDir.open(args.run)
    cfg = run.config
    attacks = [canonical_attack(a.strip()) for a in args.attacks.split(",") if a.strip()]
    attack_options = check_attack_options(attacks, _attack_options(args.attack_option))
    if args.shadows < 1:
        raise ConfigError(f"--shadows must be at least 1, got {args.shadows}")
    members = _targets(args, run)
    models = _load_models(run, args.reference)
    pool = run.bundle().test
    non_members = matched_non_members(pool, members, seed=args.seed)
    progress = False if args.no_progress else None
    shadows = None
    if any(a in SHADOW_ATTACKS for a in attacks):
        recipe = ShadowRecipe(cfg.model, args.shadow_epochs or cfg.epochs, cfg.batch_size, cfg.optimizer, cfg.lr)
        shadows = train_shadows(pool, recipe, n=args.shadows, seed=args.seed, cache_dir=args.cache, progress=progress)
    report = run_attacks(models, members, non_members, attacks=attacks, shadows=shadows, seed=args.seed,
                         non_member_pool_positions=pool.positions_of(non_members.ids).tolist(),
                         options=attack_options, progress=progress)
    result = {"run": str(run.path), "reference": args.reference, **report.as_dict()}
    if args.out:
        atomic_write_json(Path(args.out) / "mia.json", result)
    if args.json:
        emit_json(result)
        return 0
    rows = []
    for attack in attacks:
        for name in models:
            r = report.results[name][attack]
            t1 = r["tpr_at_1pct_fpr"]
            lo, hi = r["auc_ci95"]
            rows.append([attack, name, f"{r['auc']:.3f} [{lo:.2f}, {hi:.2f}]", _num(r["recall"]), _num(r["precision"]),
                         _num(r["fpr"]), f"{t1['tpr']:.3f} at FPR {t1['fpr']:.3f}"])
    print(f"{report.members} target records vs {report.non_members} matched non-members; {report.shadows} shadow models")
    print(table(rows, ["attack", "model", "AUC [95% CI]", "recall", "precision", "FPR", "TPR at FPR <= 1% (reached)"]))
    if report.non_members < 100:
        print(f"note: with {report.non_members} non-members the smallest FPR above 0 is {1 / report.non_members:.3f}, "
              "so 'TPR at FPR <= 1%' is the TPR at FPR 0")
    if any(r[4] == "n/a" for r in rows):
        print("precision n/a: the attack called no record a member at its threshold")
    return 0


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _check_inversion_args(args: argparse.Namespace) -> None:
    """Refuse bad numbers at once, before the evaluator trains, not after."""
    for flag, value in (("--iterations", args.iterations), ("--restarts", args.restarts),
                        ("--process-every", args.process_every)):
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    if args.lr is not None and not args.lr > 0:
        raise ConfigError(f"--lr must be a positive step size, got {args.lr}")


def run_inversion(args: argparse.Namespace) -> int:

    from ..attacks import (
        inversion_references,
        invert,
        save_grid,
        score_inversion,
        train_evaluator,
        untrained_copy,
    )
    from ..run import RunDir
    from ..utils import atomic_write_json
    _check_inversion_args(args)
    run = RunDir.open(args.run)
    cfg = run.config
    bundle = run.bundle()
    info = bundle.info
    if not 0 <= args.class_ < info.num_classes:
        raise ConfigError(f"--class must lie in 0..{info.num_classes - 1}, got {args.class_}")
    progress = False if args.no_progress else None
    models = _load_models(run, args.reference)
    cache = args.cache or args.out
    evaluator = train_evaluator(bundle.train, cfg.model, cache_dir=cache, progress=progress)
    refs = inversion_references(bundle.train, seed=args.seed)
    shape = (info.channels, info.image_size, info.image_size)

    def inv_of(model: Any) -> Any:
        return invert(model, args.class_, shape=shape, variant=args.variant, iterations=args.iterations,
                      process_every=args.process_every, restarts=args.restarts, lr=args.lr, seed=args.seed,
                      prior=refs.prior_for(args.variant), progress=progress)

    baseline = inv_of(untrained_copy(models["run"], seed=args.seed))  # the architecture having learned nothing
    scores = {"never trained": score_inversion(baseline, evaluator, refs)}
    rows_img = {"never trained": baseline.images}
    for name, model in models.items():
        inv = inv_of(model)
        scores[name] = score_inversion(inv, evaluator, refs, baseline=baseline)
        rows_img[name] = inv.images
    rows_img["class mean"] = refs.means[args.class_][None]
    result = {"run": str(run.path), "reference": args.reference, "class": args.class_, "variant": args.variant,
              "scores": scores}
    if args.out:
        png = save_grid(Path(args.out) / f"inversion-class{args.class_}.png", rows_img,
                        title=f"inversions of class {args.class_} ({args.variant} variant)")
        result["png"] = str(png)
        atomic_write_json(Path(args.out) / "inversion.json", result)
    if args.json:
        emit_json(result)
        return 0
    rows = [[n, s["recognised"], s["class_margin"], s["nearest_real_agreement"], s["evaluator_accuracy"],
             s["evaluator_confidence"], s["target_model_cost"]] for n, s in scores.items()]
    print(table(rows, ["model", "recognised", "class margin", "nearest real agrees", "evaluator acc",
                       "evaluator conf", "target cost"]))
    print(f"\nrecognised: nearest real image of class {args.class_} and closer to its mean than to any other "
          f"class's (a blank image scores 0); chance for the nearest real image "
          f"{scores['never trained']['nearest_real_chance']:.2f}; 'never trained' is the same architecture "
          f"untrained, inverted the same way")
    if args.out:
        print(f"\nimages: {result['png']}")
    return 0


def _help(parser: argparse.ArgumentParser) -> int:
    """The subcommand named without an action: its help, exit 0."""
    parser.print_help()
    return 0

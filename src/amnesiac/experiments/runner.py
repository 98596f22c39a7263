"""One runner for the paper's experiments. Read it top to bottom: each stage is a function, and
:func:`reproduce` calls them in order, saving each stage's results so an interrupted run resumes.

Stages:

1. ``class_forgetting`` (Figures 1/2 and 3-6): a model trained on everything is made to forget the
   sensitive class by naive retraining and by relabelling; a model trained with only a few examples of
   the class (and a watch-list ledger) forgets it by amnesiac unlearning, then keeps training on the
   retained data. Accuracy on the class and on the rest is tracked over the post-request epochs (finely
   within the first); the class is inverted from each model at chosen epochs.
2. ``membership_inference`` (Table 1): a target model trained on a random half of the data; the
   paper's shadow-model attack (and the loss attack) on the training records of one class that the model
   classifies correctly, at epoch 0, right after the removal step (0'), and after each post-request
   epoch; beside them the same attacks on a model retrained from scratch without the targets.
3. ``figure7``: test-accuracy loss against the share of batches undone, mean and spread over runs.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..attacks import (
    ShadowRecipe,
    inversion_references,
    invert,
    matched_non_members,
    run_attacks,
    save_grid,
    score_inversion,
    train_evaluator,
    train_shadows,
    untrained_copy,
)
from ..data import load_dataset
from ..data.base import ArrayDataset
from ..errors import ConfigError, RunDirError, did_you_mean
from ..run import RunDir, TrainConfig, train_run
from ..training import evaluate, evaluate_all, num_batches, predict, resolve_device
from ..unlearn import forget, list_receipts
from ..unlearn.amnesiac import revert_updates
from ..unlearn.base import METHODS, MethodContext, check_options
from ..unlearn.request import DeletionRequest
from ..utils import atomic_write_json, progress_bar
from ..utils.progress import Heartbeat, note
from .presets import Settings, keep_for_paper_share, settings_for


# ------------------------------------------------------------------ plumbing
class Stages:
    """Runs a stage unless its result is already saved in ``DIR/stages/NAME.json``."""

    def __init__(self, out: Path) -> None:
        self.dir = out / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.skipped: list[str] = []

    def __call__(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        path = self.dir / f"{name}.json"
        if path.is_file():
            self.skipped.append(name)
            return json.loads(path.read_text())
        t = time.perf_counter()
        print(f"[{time.strftime('%H:%M:%S')}] stage {name}: started", file=sys.stderr, flush=True)
        with Heartbeat(f"stage {name}"):  # a line at least every 45 s, however long one piece of work takes
            result = fn()
        result["seconds"] = time.perf_counter() - t
        print(f"[{time.strftime('%H:%M:%S')}] stage {name}: done in {result['seconds']:.0f} s", file=sys.stderr,
              flush=True)
        atomic_write_json(path, result)
        return result


def trained_run(config: TrainConfig, path: Path, *, progress: bool | None, device: torch.device) -> RunDir:
    """Train ``config`` into ``path`` on ``device``, or reuse (or resume) what an earlier attempt left there; a
    run some deletion changed is not the trained model, and is trained again."""
    note(f"training {path.name}")
    if (path / "config.json").is_file():
        run = RunDir.open(path)
        if run.config.to_dict() == config.to_dict() and run.model_path.is_file() and not list_receipts(run):
            if int(run.model_meta().get("epoch", -1)) == config.epochs - 1:
                return run
            return train_run(config, path, resume=True, progress=progress, device=str(device)).run
        shutil.rmtree(path)
    return train_run(config, path, progress=progress, device=str(device)).run


def _class_sets(test: ArrayDataset, c: int) -> dict[str, ArrayDataset]:
    mask = test.targets == c
    return {"target": test.subset(torch.nonzero(mask).flatten()), "other": test.subset(torch.nonzero(~mask).flatten())}


def _point(model: torch.nn.Module, sets: dict[str, ArrayDataset], topk: tuple[int, ...], epoch: float,
           label: str | None = None) -> dict[str, Any]:
    return {"epoch": epoch, **({"label": label} if label else {}), **evaluate_all(model, sets, topk)}


def _rename(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for h in history:
        p = {"epoch": h["epoch"]}
        for k, v in h.items():
            if k.startswith(("target_", "other_")):
                p[k] = v
        out.append(p)
    return out


def _registered(method: str, run: RunDir, model: torch.nn.Module, forget_data: ArrayDataset, retain: ArrayDataset,
                *, kind: str, detail: dict[str, Any], options: dict[str, Any], sets: dict[str, ArrayDataset] | None = None,
                topk: tuple[int, ...] = (1,), on_epoch_end: Callable[[int, torch.nn.Module], None] | None = None,
                progress: bool | None = None) -> list[dict[str, Any]]:
    """Run the registered ``method`` (naive, relabel, ...) on ``model`` in memory, as :func:`forget` would on a
    run without a ledger, watching it train (``on_epoch_end(epochs done, model)``); its evaluations, renamed."""
    request = DeletionRequest(np.sort(forget_data.ids.numpy()), kind, detail)
    ctx = MethodContext(run, model, request, None, None, retain, forget_data, sets or {},
                        check_options(method, options), progress, on_epoch_end=on_epoch_end, topk=topk)
    history = METHODS.get(method)(ctx).history
    return _rename([h for h in history if h["epoch"] > 0])


# ------------------------------------------------------------------ stage 1: class forgetting and inversion
class _Inversions:
    """Model inversions of one class at chosen points, by each of the settings' variants, scored against real
    images and an independent evaluator, with inversions of a never-trained model of the same architecture as
    the baseline (none without inversion epochs in the settings)."""

    def __init__(self, s: Settings, bundle: Any, out: Path, progress: bool | None, device: torch.device) -> None:
        self.s, self.info, self.progress = s, bundle.info, progress
        self.scores: dict[str, dict[str, dict[str, Any]]] = {}  # variant -> method -> point -> scores
        self.baseline: dict[str, dict[str, Any]] = {}  # variant -> scores of the never-trained model's inversions
        self.images: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
        self._base_inv: dict[str, Any] = {}
        self.evaluator = self.refs = None
        if s.inversion_epochs:
            self.evaluator = train_evaluator(bundle.train, s.model, cache_dir=out / "cache", progress=progress,
                                             device=device)
            self.refs = inversion_references(bundle.train, seed=s.seed)

    @property
    def _references(self) -> Any:
        """The real images inversions are scored against (made with the evaluator; only used when it exists)."""
        if self.refs is None:
            raise RuntimeError("inversion references are made with the evaluator; this stage has none")
        return self.refs

    def _invert(self, model: torch.nn.Module, variant: str) -> Any:
        s, info = self.s, self.info
        return invert(model, s.target_class, shape=(info.channels, info.image_size, info.image_size), variant=variant,
                      iterations=s.inversion_iterations, process_every=s.inversion_process_every,
                      restarts=s.inversion_restarts, prior=self._references.prior_for(variant),
                      seed=s.seed, progress=self.progress)

    def __call__(self, method: str, label: str, model: torch.nn.Module) -> None:
        if self.evaluator is None:
            return
        for variant in self.s.inversion_variants:
            note(f"inverting {method} ({label}), {variant} variant")
            if variant not in self._base_inv:  # the same architecture having learned nothing
                base = self._invert(untrained_copy(model, seed=self.s.seed), variant)
                self._base_inv[variant] = base
                self.baseline[variant] = score_inversion(base, self.evaluator, self._references)
            inv = self._invert(model, variant)
            self.scores.setdefault(variant, {}).setdefault(method, {})[label] = score_inversion(
                inv, self.evaluator, self._references, baseline=self._base_inv[variant])
            self.images.setdefault(variant, {}).setdefault(method, {})[label] = inv.images

    def share(self, source: str, method: str, label: str) -> None:
        """Reuse ``source``'s inversions at ``label`` for ``method`` (the same model, e.g. the fully trained one)."""
        for variant in self.scores:
            if label in self.scores[variant].get(source, {}):
                self.scores[variant].setdefault(method, {})[label] = self.scores[variant][source][label]
                self.images[variant].setdefault(method, {})[label] = self.images[variant][source][label]

    def at_epochs(self, method: str, model: torch.nn.Module | None = None) -> Callable[..., None]:
        """A hook inverting ``model`` (or the model it is handed) after the settings' inversion epochs."""
        def at_end(epoch: int, current: torch.nn.Module | None = None) -> None:
            if epoch in self.s.inversion_epochs:
                chosen = current if current is not None else model
                if chosen is None:
                    raise ValueError("at_epochs: give a model, or call the hook with the model to invert")
                self(method, f"epoch {epoch}", chosen)
        return at_end

    def grids(self, out: Path) -> dict[str, str]:
        """One PNG per variant: a row per method and point, then the never-trained model's and the class mean."""
        c, names = self.s.target_class, {}
        for variant, methods in self.images.items():
            rows = {f"{m}: {label}": imgs for m, points in methods.items() for label, imgs in points.items()
                    if not (m == "relabel" and label == "trained")}  # the same model as naive's
            rows["never trained"] = self._base_inv[variant].images
            rows["class mean"] = self._references.means[c][None]
            path = save_grid(out / f"inversion-{variant}.png", rows, title=f"{variant} inversions of class {c}")
            names[variant] = path.name
        return names

    def results(self, out: Path) -> dict[str, Any]:
        return {"inversion": self.scores, "inversion_baseline": self.baseline, "inversion_grids": self.grids(out)}


# ------------------------------------------------------------------ stage 1: class forgetting and inversion
def class_forgetting(s: Settings, out: Path, data_dir: str | None, progress: bool | None,
                     device: torch.device) -> dict[str, Any]:
    """Figures 1-6: the class forgotten by naive retraining, relabelling and amnesiac unlearning, with the
    accuracy curves after the request and model inversions along the way."""
    c = s.target_class
    bundle = load_dataset(s.dataset, data_dir=data_dir)
    sets = _class_sets(bundle.test, c)
    base = TrainConfig(dataset=s.dataset, model=s.model, epochs=s.epochs, batch_size=s.batch_size, lr=s.lr,
                       seed=s.seed, data_dir=data_dir, eval_class=c, record="none")
    full = trained_run(base, out / "runs" / "full", progress=progress, device=device)
    keep = s.amnesiac_keep
    if keep is None:  # the paper's regime: as many as make about 11% of the batches hold one
        keep = keep_for_paper_share(int((bundle.train.targets != c).sum()), s.batch_size)
    amn_cfg = TrainConfig.from_dict({**base.to_dict(), "limit_class": {str(c): keep}, "record": "watch",
                                     "watch_class": c, "ledger_dtype": s.ledger_dtype})
    amn = trained_run(amn_cfg, out / "runs" / "amnesiac", progress=progress, device=device)
    inversion = _Inversions(s, bundle, out, progress, device)
    trained_model = full.load_model().to(device)
    curves = _baseline_curves(s, full, trained_model, sets, inversion, progress)
    curves["amnesiac"], summary = _amnesiac_curve(s, amn, sets, inversion, progress, device)
    summary["kept_examples"] = keep
    return {"target_class": c, "curves": curves, "amnesiac": summary, **inversion.results(out),
            "full_model_test": evaluate(trained_model, bundle.test, topk=s.topk)}


def _baseline_curves(s: Settings, full: RunDir, trained_model: torch.nn.Module, sets: dict[str, ArrayDataset],
                     inversion: _Inversions, progress: bool | None) -> dict[str, list[dict[str, Any]]]:
    """Naive retraining and relabelling, each from a copy of the fully trained model."""
    before = _point(trained_model, sets, s.topk, 0.0, "before")
    curves: dict[str, list[dict[str, Any]]] = {}
    inversion("naive", "trained", trained_model)
    inversion.share("naive", "relabel", "trained")
    for method in ("naive", "relabel"):  # each on a copy of the trained model
        curves[method] = [before] + _class_curve(method, full, copy.deepcopy(trained_model), s, sets,
                                                 inversion.at_epochs(method), progress)
    return curves


def _class_curve(method: str, run: RunDir, model: torch.nn.Module, s: Settings, sets: dict[str, ArrayDataset],
                 on_epoch_end: Callable[..., None], progress: bool | None) -> list[dict[str, Any]]:
    """``model`` trained on after a request to forget the settings' class from ``run``, by the registered
    ``method``, evaluated finely (the settings' points per epoch) and watched by ``on_epoch_end``."""
    c = s.target_class
    note(f"class {c}: {method} after the request")
    train = run.training_data()
    retain, forgotten = train.without_ids(train.ids_of_class(c)), train.only_ids(train.ids_of_class(c))
    every = max(1, num_batches(len(retain), s.batch_size) // s.evals_first_epoch)
    return _registered(method, run, model, forgotten, retain, kind="class", detail={"class": c},
                       options={"epochs": s.post_epochs, "eval_every": every}, sets=sets, topk=s.topk,
                       progress=progress, on_epoch_end=on_epoch_end)


def _amnesiac_curve(s: Settings, amn: RunDir, sets: dict[str, ArrayDataset], inversion: _Inversions,
                    progress: bool | None, device: torch.device) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The model that kept only a few examples of the class, the deletion request, then training on."""
    c = s.target_class
    amn_model = amn.load_model().to(device)
    amn_before = _point(amn_model, sets, s.topk, 0.0, "before")
    inversion("amnesiac", "trained", amn_model)
    with amn.open_ledger() as store:
        total_steps = store.index.count_steps()
    t = time.perf_counter()
    # the paper's experiment subtracts the class's steps whatever their share: past the planner's advice on purpose
    # on a copy: the trained run stays as it was, so a stage interrupted after this and run again starts from the
    # trained model, never from the forgotten one
    copy = amn.path.parent / "amnesiac-forgotten"
    if copy.exists():
        shutil.rmtree(copy)  # this stage's own scratch copy from an interrupted attempt
    result = forget(amn, class_=c, method="amnesiac", evaluate_after=False, progress=progress, force=True,
                    out=str(copy))
    forget_seconds = time.perf_counter() - t
    forgotten, receipt = _applied(result)
    model = forgotten.to(device)
    after = _point(model, sets, s.topk, 0.0, "after removal (0')")
    inversion("amnesiac", "after removal", model)
    # training on after the subtraction is the registry's naive retraining, as for the other curves and Table 1
    curve = [amn_before, after] + _class_curve("naive", amn, model, s, sets, inversion.at_epochs("amnesiac"),
                                               progress)
    n = receipt["n_steps_reverted"]
    return curve, {"steps_reverted": n, "total_steps": total_steps, "share": n / max(total_steps, 1),
                   "forget_seconds": forget_seconds}


# ------------------------------------------------------------------ stage 2: membership inference (Table 1)
MIA_ATTACKS = ("shokri-paper", "shadow", "lira", "loss")


def _attack_figures(rep: dict[str, Any]) -> dict[str, Any]:
    """Per attack: AUC with its bootstrap interval, TPR at FPR <= 1% with the FPR reached, and recall,
    precision and FPR at the attack's own threshold (recall of the paper's attack is the paper's measure)."""
    out: dict[str, Any] = {}
    for name, r in rep.items():
        t1 = r["tpr_at_1pct_fpr"]
        out[name] = {"auc": r["auc"], "auc_ci95": list(r["auc_ci95"]), "recall": r["recall"],
                     "precision": r["precision"], "fpr": r["fpr"], "tpr_at_1pct_fpr": t1["tpr"],
                     "fpr_reached": t1["fpr"], "constant_scores": bool(r.get("constant_scores", False))}
    return out


def membership_inference(s: Settings, out: Path, data_dir: str | None, progress: bool | None,
                         device: torch.device) -> dict[str, Any]:
    """Table 1: a target trained the way the authors' code trained theirs (a random share, small batches,
    enough epochs to overfit), so that at epoch 0 the attacks separate members from non-members; then each
    method, attacked at 0, 0' and after each epoch, beside a model retrained from scratch without the targets."""
    bundle = load_dataset(s.dataset, data_dir=data_dir)
    cfg, target_run, attacker_pool = _mia_target(s, bundle, out, data_dir, progress, device)
    target_model = target_run.load_model().to(device)
    train_a = target_run.training_data()
    cand = train_a.only_ids(train_a.ids_of_class(s.mia_class))
    logits, labels, ids = predict(target_model, cand)
    targets = cand.only_ids(ids[logits.argmax(1) == labels])  # the authors' members: correctly classified
    non_members = matched_non_members(bundle.test, targets, seed=s.seed)
    batch, epochs = cfg.batch_size, cfg.epochs  # the target's recipe; the shadows copy it
    shadows = train_shadows(attacker_pool, ShadowRecipe(s.model, s.shadow_epochs if not s.mia_epochs else epochs,
                                                        batch, "adam", s.lr),
                            n=s.shadows, seed=s.seed, cache_dir=out / "cache", progress=progress, device=device)

    def attack(model: torch.nn.Module, label: str) -> dict[str, Any]:
        note(f"attacking {label}")
        return _attack(model, label, targets, non_members, shadows, s.seed)

    epoch0 = attack(target_model, "the trained target")
    retain = train_a.without_ids(targets.ids)
    table = {method: _mia_method_row(method, s, target_run, target_model, targets, retain, epoch0, attack, out,
                                     progress, device, lambda m: evaluate(m, bundle.test)["accuracy"])
             for method in ("naive", "relabel", "amnesiac")}
    ref_cfg = TrainConfig.from_dict({**cfg.to_dict(), "exclude_ids": sorted(set(cfg.exclude_ids) | set(targets.ids.tolist())),
                                     "record": "none"})
    reference = trained_run(ref_cfg, out / "runs" / "mia-reference", progress=progress, device=device)
    return {"target_class": s.mia_class, "targets": len(targets), "non_members": len(non_members),
            "shadows": s.shadows, "attacks": list(MIA_ATTACKS), "target_train_records": len(train_a),
            "batch_size": batch, "epochs": epochs, "table": table,
            "retrained_reference": attack(reference.load_model().to(device), "the retrained reference"),
            "target_model_test": evaluate(target_model, bundle.test)["accuracy"],
            "num_classes": int(bundle.info.num_classes),
            "target_model_train": evaluate(target_model, train_a)["accuracy"]}


def mia_split(s: Settings, train: ArrayDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions in ``train`` of the target's records and of the attacker's (Table 1's split).

    A random ``mia_train_size`` subset (all records when None) is cut into the target's share and the
    attacker's rest. With ``mia_class_share`` each part then keeps only as many records of ``mia_class`` as make
    that share of it (the rest of the class is used by neither): on a ten-class data set this puts the class at
    CIFAR-100's one in a hundred, so that its members sit in a few percent of the target's steps, as in the paper,
    not in over half of them. The attacker's part gets the same share, since shadow models mimic the target's data.
    """
    g = torch.Generator().manual_seed(s.seed + 1000)
    order = torch.randperm(len(train), generator=g)
    if s.mia_train_size:
        order = order[: s.mia_train_size]
    # the target gets its share (the paper's code: a half); each shadow model trains on a random half of the
    # attacker's rest (with a third for the target, on as many records as the target, as Shokri et al. build them)
    cut = int(len(order) * s.mia_target_share)
    parts = [order[:cut], order[cut:]]
    if s.mia_class_share is not None:  # Settings refuses a share outside (0, 1)
        parts = [_thin_class(part, train.targets, s.mia_class, s.mia_class_share) for part in parts]
    return parts[0], parts[1]


def _thin_class(part: torch.Tensor, targets: torch.Tensor, klass: int, share: float) -> torch.Tensor:
    """``part`` with its records of ``klass`` cut to the first ones that make ``share`` of what remains."""
    is_class = targets[part] == klass
    others = int((~is_class).sum())
    keep = min(int(is_class.sum()), max(1, round(share * others / (1.0 - share))))
    kept_class = part[is_class][:keep]
    return torch.sort(torch.cat([part[~is_class], kept_class])).values


def _mia_target(s: Settings, bundle: Any, out: Path, data_dir: str | None, progress: bool | None,
                device: torch.device) -> tuple[TrainConfig, RunDir, ArrayDataset]:
    """The target run (its share of a random subset, watch-list ledger on the target class) and the
    attacker's records (the rest)."""
    mine, theirs = mia_split(s, bundle.train)
    attacker_pool = bundle.train.subset(torch.sort(theirs).values)
    outside = sorted(set(bundle.train.ids.tolist()) - set(bundle.train.ids[mine].tolist()))
    cfg = TrainConfig(dataset=s.dataset, model=s.model, epochs=s.mia_epochs or s.epochs,
                      batch_size=s.mia_batch_size or s.batch_size, lr=s.lr, seed=s.seed, data_dir=data_dir,
                      exclude_ids=outside, record="watch", watch_class=s.mia_class, ledger_dtype="float16")
    return cfg, trained_run(cfg, out / "runs" / "mia-target", progress=progress, device=device), attacker_pool


def _attack(model: torch.nn.Module, label: str, targets: ArrayDataset, non_members: ArrayDataset, shadows: Any,
            seed: int) -> dict[str, Any]:
    # a line per attack, also when the output is a log file (bars are what --no-progress hides)
    print(f"[{time.strftime('%H:%M:%S')}] membership inference: attacking {label}", file=sys.stderr, flush=True)
    try:
        rep = run_attacks({"m": model}, targets, non_members, attacks=MIA_ATTACKS, shadows=shadows, seed=seed,
                          progress=False).results["m"]
    except ConfigError as err:  # e.g. a model whose outputs are NaN: no attack can rank its records
        return {a: {"auc": None, "auc_ci95": [None, None], "recall": None, "precision": None, "fpr": None,
                    "tpr_at_1pct_fpr": None, "fpr_reached": None, "error": str(err)} for a in MIA_ATTACKS}
    return _attack_figures(rep)


def _mia_method_row(method: str, s: Settings, target_run: RunDir, target_model: torch.nn.Module,
                    targets: ArrayDataset, retain: ArrayDataset, epoch0: dict[str, Any],
                    attack: Callable[..., dict[str, Any]], out: Path, progress: bool | None,
                    device: torch.device, test_accuracy: Callable[[torch.nn.Module], float]) -> dict[str, Any]:
    """One method's row of Table 1: attacked at 0, 0' and after each epoch of training after the request."""
    batch = target_run.config.batch_size
    copy_dir = out / "runs" / f"mia-{method}"
    if copy_dir.exists():
        shutil.rmtree(copy_dir)
    row: dict[str, Any] = {"0": epoch0}
    # amnesiac forgets on a copy of the trained run, through the method registry; naive and relabel train a
    # copy of the model. 0' is right after the removal step (amnesiac: the subtraction; naive and relabel have
    # none: their model at 0' is the trained one)
    if method == "amnesiac":
        # Table 1 subtracts the targets' steps whatever their share (the paper's experiment): past the planner
        res = forget(target_run, ids=targets.ids.tolist(), method="amnesiac", evaluate_after=False,
                     out=str(copy_dir), progress=progress, force=True)
        forgotten, receipt = _applied(res)
        model = forgotten.to(device)
        row["0'"] = attack(model, "amnesiac at 0'")
        row["steps_reverted"] = receipt["n_steps_reverted"]
        row["test_accuracy_0p"] = test_accuracy(model)  # a recall of 0 from a wrecked model is not forgetting
        train_as = "naive"  # after the subtraction the paper keeps training on the retained data
    else:
        model = copy.deepcopy(target_model)
        row["0'"] = epoch0
        train_as = method

    def after_epoch(epoch: int, current: torch.nn.Module) -> None:
        row[str(epoch)] = attack(current, f"{method} after epoch {epoch}")

    # through the method registry; relabel gives each target one wrong-labelled copy in place of itself
    _registered(train_as, target_run, model, targets, retain, kind="ids", detail={},
                options={"epochs": s.mia_post_epochs, "batch_size": batch, "lr": s.lr,
                         **({"copies": 1} if train_as == "relabel" else {})},
                on_epoch_end=after_epoch, progress=progress)
    return row


# ------------------------------------------------------------------ stage 3: Figure 7
def _slot_curve(store: Any, base: torch.nn.Module, test: ArrayDataset, shares: list[float], runs: int,
                rng: np.random.Generator, base_acc: float) -> list[list[float]]:
    """Figure 7 the authors' way: each epoch's batches fall into 100 slots of consecutive positions (slot j holds
    the same positions in every epoch, each about 1% of all batches), a slot's update is summed over the epochs,
    and each run subtracts the slots in a random order, measuring the loss at each share (k% = k slots)."""
    rows = [r for r in store.iter_steps() if r.recorded and r.blob is not None]
    per_epoch = max(1, max(sum(1 for r in rows if r.epoch == e) for e in {r.epoch for r in rows}))
    first = {e: min(r.step for r in rows if r.epoch == e) for e in {r.epoch for r in rows}}
    slot_of = {r.step: min(99, (r.step - first[r.epoch]) * 100 // per_epoch) for r in rows}
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for r in rows:
        upd = store.load_update(r)
        acc = slots.setdefault(slot_of[r.step], {})
        for n, t in upd.items():
            acc[n] = acc[n] + t.float() if n in acc else t.float().clone()
    wanted = {int(round(100 * p)) for p in shares}
    out = []
    for _ in range(runs):
        order = [int(j) for j in rng.permutation(sorted(slots))]
        total: dict[str, torch.Tensor] = {}
        losses = {}
        for k in range(max(wanted) + 1):
            if k in wanted:
                model = copy.deepcopy(base)
                if total:
                    revert_updates(model, total)
                losses[k] = base_acc - evaluate(model, test)["accuracy"]
            if k < len(order):
                for n, t in slots[order[k]].items():
                    total[n] = total[n] + t if n in total else t.clone()
        out.append([losses[int(round(100 * p))] for p in shares])
    return out


def _fig7_left_out(s: Settings, train: ArrayDataset) -> list[int]:
    """The training ids Figure 7's model leaves out: all but a random ``fig7_train_size`` (none by default)."""
    if not s.fig7_train_size or s.fig7_train_size >= len(train):
        return []
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(s.seed + 7000))
    return sorted(train.ids[pick[s.fig7_train_size:]].tolist())


def _random_steps_curve(s: Settings, store: Any, base: torch.nn.Module, base_eval: dict[str, Any],
                        test: ArrayDataset, steps: list[int], shares: list[float], rng: np.random.Generator,
                        extra: list[str], *, desc: str, progress: bool | None
                        ) -> tuple[list[list[float]], dict[str, list[list[float]]]]:
    """Figure 7 our way: per run, random single steps undone one by one, the loss measured at each share."""
    need = int(round(max(shares) * len(steps)))
    cache: dict[int, dict[str, torch.Tensor]] = {}
    cacheable = sum(store.step(st).nbytes for st in steps[:1]) * need < 4 * 2**30
    rows: list[list[float]] = []
    extra_rows: dict[str, list[list[float]]] = {key: [] for key in extra}
    marks = {int(round(p * len(steps))): p for p in shares}
    for _ in progress_bar(range(s.fig7_runs), enabled=progress, desc=desc):
        order = rng.permutation(steps)[:need]
        total: dict[str, torch.Tensor] = {}
        row: list[float] = []
        more: dict[str, list[float]] = {key: [] for key in extra}
        for i in range(need + 1):
            if i in marks:
                model = copy.deepcopy(base)
                if total:
                    revert_updates(model, total)
                ev = evaluate(model, test, topk=s.topk)
                row.append(base_eval["accuracy"] - ev["accuracy"])
                for key in extra:
                    more[key].append(base_eval[key] - ev[key])
            if i == need:
                break
            st = int(order[i])
            upd = cache.get(st) if cacheable else None
            if upd is None:
                upd = {n: t.float().clone() for n, t in store.load_update(st).items()}
                if cacheable:
                    cache[st] = upd
            for n, t in upd.items():
                total[n] = total[n] + t if n in total else t.clone()
        rows.append(row)
        for key in extra:
            extra_rows[key].append(more[key])
    return rows, extra_rows


def figure7(s: Settings, out: Path, data_dir: str | None, seeds: int, progress: bool | None,
            device: torch.device) -> dict[str, Any]:
    """Figure 7 two ways: ours (random single steps undone) and the authors' slots (:func:`_slot_curve`)."""
    bundle = load_dataset(s.dataset, data_dir=data_dir)
    slot_losses: list[list[float]] = []
    shares = sorted(set(s.fig7_shares))
    losses: list[list[float]] = []
    extra = [f"top{k}" for k in s.topk if k != 1]  # CIFAR: the authors' code measured top-10
    extra_losses: dict[str, list[list[float]]] = {key: [] for key in extra}
    base_accs = []
    outside = _fig7_left_out(s, bundle.train)
    for k in range(seeds):
        note(f"Figure 7, seed {k}: training {s.fig7_epochs} recorded epoch(s)")
        cfg = TrainConfig(dataset=s.dataset, model=s.model, epochs=s.fig7_epochs, batch_size=s.batch_size, lr=s.lr,
                          seed=s.seed + k, data_dir=data_dir, record="all", ledger_dtype=s.ledger_dtype,
                          exclude_ids=outside)
        run = trained_run(cfg, out / "runs" / f"fig7-seed{k}", progress=progress, device=device)
        base = run.load_model().to(device)
        base_eval = evaluate(base, bundle.test, topk=s.topk)
        base_acc = base_eval["accuracy"]
        base_accs.append(base_acc)
        note(f"Figure 7, seed {k}: random single steps undone")
        store = run.open_ledger()
        steps = [r.step for r in store.iter_steps() if r.recorded and r.blob is not None]
        rng = np.random.default_rng(s.seed + 77 + k)
        rows, extra_rows = _random_steps_curve(s, store, base, base_eval, bundle.test, steps, shares, rng, extra,
                                               desc=f"figure 7 (seed {k})", progress=progress)
        losses += rows
        for key in extra:
            extra_losses[key] += extra_rows[key]
        note(f"Figure 7, seed {k}: the authors' slots")
        slot_losses += _slot_curve(store, base, bundle.test, shares, s.fig7_runs, rng, base_acc)
        store.close()
    arr, slots = np.asarray(losses), np.asarray(slot_losses)
    return {"shares": shares, "mean_loss": arr.mean(0).tolist(), "std_loss": arr.std(0).tolist(),
            "slots": {"mean_loss": slots.mean(0).tolist(), "std_loss": slots.std(0).tolist(), "runs": slots.tolist(),
                      "epochs": s.fig7_epochs},
            "train_records": len(bundle.train) - len(outside), "runs": arr.tolist(), "base_test_accuracy": base_accs,
            "steps_per_run": len(steps), "topk": {key: {"mean_loss": np.asarray(v).mean(0).tolist(),
                                                         "std_loss": np.asarray(v).std(0).tolist()}
                                                   for key, v in extra_losses.items()}}


# ------------------------------------------------------------------ the whole thing
from ..names import STAGES  # noqa: E402


def reproduce(preset: str, *, profile: str = "default", out: str | Path, data_dir: str | None = None, seeds: int = 1,
              progress: bool | None = None, command: str | None = None, device: str | None = None,
              stages: tuple[str, ...] = STAGES) -> dict[str, Any]:
    """Run a preset's experiments into ``out`` and write ``report.md``, ``results.json``, the figures and the
    resolved config. Finished stages are read back, not recomputed. ``device`` (``cpu``, ``cuda``,
    ``cuda:N`` or ``auto``; default CPU) is where every model trains, unlearns and is attacked; the
    ledgers, receipts and reports are the same wherever it ran."""
    from ..report import write_report

    dev = resolve_device(device)
    unknown = [st for st in stages if st not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {', '.join(map(repr, unknown))}; choose from {', '.join(STAGES)}."
                          + did_you_mean(unknown[0], STAGES))
    s = settings_for(preset, profile)
    if seeds < 1:
        raise RunDirError(f"seeds={seeds}: Figure 7 needs at least one model (seeds=1 or more)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"out={str(out)!r} is a file; give a directory for the reproduction")
    if out.is_dir() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise RunDirError(f"out={str(out)!r} is not empty and holds no earlier reproduction (no config.json); "
                          "choose a new directory")
    load_dataset(s.dataset, data_dir=data_dir)  # the data must be there before anything is written or trained
    out.mkdir(parents=True, exist_ok=True)
    config = {"preset": preset, "profile": profile, "settings": s.as_dict(), "data_dir": data_dir, "seeds": seeds,
              "device": str(dev), "command": command or f"amnesiac reproduce {preset} --profile {profile} --out {out}"}
    cfg_path = out / "config.json"
    if cfg_path.is_file():
        old = json.loads(cfg_path.read_text())
        if old.get("settings") != json.loads(json.dumps(config["settings"])) or old.get("seeds") != seeds:
            raise RunDirError(f"{out} holds a run with other settings; choose another out=DIR or delete it")
    atomic_write_json(cfg_path, config)
    run_stage = Stages(out)
    results: dict[str, Any] = {"preset": preset, "profile": profile}
    if "class_forgetting" in stages:
        results["class_forgetting"] = run_stage("class_forgetting",
                                                lambda: class_forgetting(s, out, data_dir, progress, dev))
    if "membership_inference" in stages:
        results["membership_inference"] = run_stage("membership_inference",
                                                    lambda: membership_inference(s, out, data_dir, progress, dev))
    if "figure7" in stages:
        results["figure7"] = run_stage("figure7", lambda: figure7(s, out, data_dir, seeds, progress, dev))
    results["skipped_stages"] = run_stage.skipped
    atomic_write_json(out / "results.json", results)
    write_report(out, config, results)
    return results


def _applied(result: Any) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model and receipt of a forget that changed the model (every forced request of these stages does)."""
    if result.model is None or result.receipt is None:
        raise RuntimeError(f"the deletion changed nothing ({result.message}); this stage needs its result")
    return result.model, result.receipt

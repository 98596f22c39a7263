"""Turn a reproduction's ``results`` into figures (PNG) and ``report.md``.

The paper's findings are stated as checks (:mod:`amnesiac.report.checks`), each judged against the paper's own
number where one exists; Table 1 and Figure 7 set the paper's published and digitized values beside ours, and
the authors' membership-inference notebook's printed amnesiac row beside both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .checks import (
    FIG7_CURVE,
    HOLDS,
    MIA_SIGNAL,
    NOT_JUDGED,
    PAPER_FIG7,
    PAPER_MIA_STEP_SHARE,
    PAPER_TABLE1,
    judge,
    membership_signal,
    target_steps,
)

METHOD_STYLE = {"naive": "tab:blue", "relabel": "tab:orange", "amnesiac": "tab:green"}

# Membership-inference recall printed by the authors' own notebook (github.com/lmgraves/AmnesiacML,
# "Membership Inference Attack.ipynb", commit 3c199d78): amnesiac unlearning of the correctly classified
# training records of class 11, at epoch 0, right after the removal (0') and after each of 5 epochs of
# training without them. Their setting: CIFAR-100, ResNet18 with a 7x7 first convolution, target model
# trained on a random half for 10 epochs at batch size 8, shadow-model attack.
AUTHORS_AMNESIAC_RECALL = {"0": 0.9523809523809523, "0'": 0.12698412698412698, "1": 0.015873015873015872,
                           "2": 0.0, "3": 0.0, "4": 0.0, "5": 0.0}
# The paper's Table 1 (Graves, Nagisetty, Ganesh, AAAI 2021) lives with the checks (PAPER_TABLE1).
# The paper's Figure 7 values (digitized) and the curve each dataset is set beside live with the checks.
FIG7_PAPER_CURVE = FIG7_CURVE
AUTHORS_SOURCE = ("the authors' notebook `Membership Inference Attack.ipynb` in github.com/lmgraves/AmnesiacML "
                  "(commit 3c199d78): CIFAR-100, class 11, ResNet18, target trained on a random half for 10 epochs "
                  "at batch size 8")


def _auc_cell(fig: dict[str, Any], ref: dict[str, Any] | None = None) -> str:
    if fig.get("auc") is None:
        return "n/a (outputs not finite)"
    lo, hi = fig["auc_ci95"]
    gap = "" if ref is None or ref.get("auc") is None else f" ({fig['auc'] - ref['auc']:+.2f})"
    flag = " constant scores!" if fig.get("constant_scores") else ""
    return f"{fig['auc']:.2f} [{lo:.2f}, {hi:.2f}]{gap}{flag}"


def _recall_cell(fig: dict[str, Any]) -> str:
    """The paper's attack's recall with the false-positive rate at the same threshold (a recall means little
    without it: calling every record a member gives a recall of 100%)."""
    if fig.get("recall") is None:
        return "—"
    return f"{_pct(fig['recall'])} (FPR {_pct(fig.get('fpr'))})"


def _tpr_cell(fig: dict[str, Any]) -> str:
    if fig.get("tpr_at_1pct_fpr") is None:
        return "n/a"
    return f"{fig['tpr_at_1pct_fpr']:.3f} @ {fig['fpr_reached']:.3f}"


def _share_words(s: dict[str, Any]) -> str:
    """How the target's records were drawn, in words (older results have no share: the paper's half)."""
    share = float(s.get("mia_target_share", 0.5))
    part = {0.5: "a random half", round(1 / 3, 6): "a random third"}.get(round(share, 6), f"a random {share:.0%}")
    pool = s.get("mia_train_size")
    words = part + (f" of a random {pool:,}-record subset, the attacker having the rest" if pool else
                    ", the attacker having the rest")
    if s.get("mia_class_share") is not None:
        words += (f"; class {s['mia_class']} cut to {100 * float(s['mia_class_share']):g}% of each part, a "
                  "CIFAR-100 class's share")
    return words


def _table1_section(s: dict[str, Any], mia: dict[str, Any]) -> list[str]:
    """Table 1 as the paper's and more: recall beside the published rows, then AUC with intervals and the gap
    to the retrained reference, and TPR at FPR <= 1% with the FPR reached, for every attack and method."""
    table, ref = mia["table"], mia["retrained_reference"]
    cols = [k for k in table["naive"] if k == "0'" or k.isdigit()]
    head = "| method | " + " | ".join(f"epoch {k}" for k in cols) + " |"
    rule = "|---|" + "---|" * len(cols)
    lines = ["## Membership inference on the targets (Table 1)", "",
             f"The target model trained on {mia.get('target_train_records', '?')} records ({_share_words(s)}) at batch "
             f"{mia.get('batch_size', s['batch_size'])} for {mia.get('epochs', s['epochs'])} epochs: training accuracy "
             f"{_pct(mia.get('target_model_train'))}, test accuracy {_pct(mia.get('target_model_test'))}. Targets: its "
             f"{mia['targets']} training records of class {mia['target_class']} that it classifies correctly (the "
             f"authors' members), against {mia['non_members']} test records of the class. {mia['shadows']} shadow "
             "models on halves of the attacker's records. Attacks: the paper's (`shokri-paper`, per-class MLPs), a "
             "stronger shadow attack (`shadow`, gradient-boosted trees), offline LiRA and the loss threshold.", ""]
    r0 = {a: table["naive"]["0"][a]["auc"] for a in ("shadow", "lira")}
    signal, constant = membership_signal(table["naive"])
    ignored = f" ({', '.join(constant)} left out: constant scores)" if constant else ""
    lines += [f"Signal at epoch 0: shadow AUC {r0['shadow']:.2f}, LiRA AUC {r0['lira']:.2f}; the best of them{ignored}, "
              f"{signal:.2f}, is " + (f"at least {MIA_SIGNAL:.2f}: the attacks separate members from non-members, so a "
                                      "falling recall below measures lost membership (the checks judge)."
                                      if signal >= MIA_SIGNAL else f"below {MIA_SIGNAL:.2f}: WEAK, a falling recall below "
                                      "may measure that the model stopped recognising the class rather than lost "
                                      "membership (the checks do not judge)."), ""]
    lines += ["### Recall of the paper's attack (the paper's measure), ours beside the published", "", head, rule]
    for m, row in table.items():
        lines.append(f"| {m} (this run) | " + " | ".join(_recall_cell(row[k]["shokri-paper"]) for k in cols) + " |")
        if m in PAPER_TABLE1:
            lines.append(f"| {m} (paper, Table 1) | " + " | ".join(_pct(PAPER_TABLE1[m].get(k)) for k in cols) + " |")
    lines.append("| amnesiac (authors' notebook run) | "
                 + " | ".join(_pct(AUTHORS_AMNESIAC_RECALL.get(k)) for k in cols) + " |")
    lines.append(f"| retrained reference (this run) | {_recall_cell(ref['shokri-paper'])} |" + " |" * (len(cols) - 1))
    lines += ["", "The paper's rows: Graves et al., *Amnesiac Machine Learning*, AAAI 2021, Table 1 (CIFAR-100 class "
              f"11, 119 targets); the notebook row: {AUTHORS_SOURCE}. " + _setting_differences(s, mia), ""]
    lines += _undone_lines(mia)
    for attack in mia.get("attacks", ("shokri-paper", "lira", "loss")):
        lines += [f"### `{attack}`: AUC [95% bootstrap interval] (gap to the retrained reference)", "",
                  f"Retrained reference: {_auc_cell(ref[attack])}.", "", head, rule]
        for m, row in table.items():
            lines.append(f"| {m} | " + " | ".join(_auc_cell(row[k][attack], ref[attack]) for k in cols) + " |")
        lines.append("")
    lines += ["### TPR at FPR <= 1% (FPR actually reached), LiRA", "", head, rule]
    for m, row in table.items():
        lines.append(f"| {m} | " + " | ".join(_tpr_cell(row[k]["lira"]) for k in cols) + " |")
    lines.append(f"| retrained reference | {_tpr_cell(ref['lira'])} |" + " |" * (len(cols) - 1))
    far = []
    for m, row in table.items():
        gaps = {k: row[k]["lira"]["auc"] - ref["lira"]["auc"] for k in cols
                if k != "0" and row[k]["lira"]["auc"] is not None}
        if not gaps:
            continue
        worst = max(gaps, key=lambda k: abs(gaps[k]))
        far.append(f"{m}: LiRA AUC {', '.join(f'{k}: {g:+.2f}' for k, g in gaps.items())} from the reference "
                   f"(largest at epoch {worst})")
    lines += ["", "Distance from the retrained reference after the request: " + "; ".join(far) + ".", ""]
    return lines


def _undone_lines(mia: dict[str, Any]) -> list[str]:
    """How much amnesiac undid for Table 1 and what the model scored right after: a recall of 0 means something
    only from a model that still works."""
    amn = mia["table"].get("amnesiac", {})
    if "steps_reverted" not in amn:
        return []
    total = target_steps(mia)
    share = (f" of {total} ({100 * amn['steps_reverted'] / total:.1f}% of training; the paper's: at most "
             f"{100 * PAPER_MIA_STEP_SHARE:.1f}%)" if total else "")
    acc = (f"; the model right after (0') scored {_pct(amn['test_accuracy_0p'])} on the test set, against "
           f"{_pct(mia.get('target_model_test'))} before" if amn.get("test_accuracy_0p") is not None else "")
    return [f"Amnesiac unlearning of the targets reverted {amn['steps_reverted']} training steps{share}{acc}.", ""]


def _setting_differences(s: dict[str, Any], mia: dict[str, Any]) -> str:
    """How this run's membership-inference setting differs from the one behind the published row."""
    diffs = []
    if s["dataset"] != "cifar100" or int(mia["target_class"]) != 11:
        cut = (f" (cut to {100 * float(s['mia_class_share']):g}% of the records, a CIFAR-100 class's share)"
               if s.get("mia_class_share") is not None else "")
        diffs.append(f"{s['dataset']} class {mia['target_class']}{cut} instead of CIFAR-100 class 11")
    if s["model"] != "resnet18":
        diffs.append(f"model {s['model']} instead of ResNet18")
    epochs = mia.get("epochs", s.get("mia_epochs") or s["epochs"])
    batch = mia.get("batch_size", s.get("mia_batch_size") or s["batch_size"])
    if epochs != 10:
        diffs.append(f"{epochs} training epochs instead of 10")
    if batch != 8:
        diffs.append(f"batch size {batch} instead of 8")
    if mia.get("target_train_records") and int(mia["target_train_records"]) != 25000:
        diffs.append(f"the target trained on {mia['target_train_records']} records instead of 25,000")
    if "shadows" in mia and mia["shadows"] != 20:
        diffs.append(f"{mia['shadows']} shadow models instead of the code's 20")
    if s.get("mia_post_epochs", 5) != 5:
        diffs.append(f"{s['mia_post_epochs']} epochs after the request instead of 5")
    if not diffs:
        return "This run used the same setting. "
    kind = ("so the row is for orientation, not a like-for-like comparison" if len(diffs) > 1 or "instead of CIFAR" in diffs[0]
            else "otherwise the same setting")
    return "This run differs: " + "; ".join(diffs) + f"; {kind}. "


def _figure(**kwargs: Any) -> Any:
    """A figure that never touches pyplot's global state or the caller's backend (saved with the Agg canvas)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def plot_class_forgetting(curves: dict[str, list[dict[str, Any]]], path: Path, *, target_class: int,
                          metric: str = "acc") -> Path:
    """Accuracy on the target class and on the rest over post-request training, one panel per method."""
    methods = [m for m in ("naive", "relabel", "amnesiac") if m in curves]
    fig = _figure(figsize=(4.2 * len(methods), 3.4))
    axes = fig.subplots(1, len(methods), sharey=True, squeeze=False)
    for ax, m in zip(axes[0], methods):
        pts = curves[m]
        xs = [p["epoch"] for p in pts]
        # the amnesiac curve has two points at epoch 0: before and right after the removal (0')
        for key, style, label in ((f"target_{metric}", "-o", f"class {target_class}"), (f"other_{metric}", "-s", "other classes")):
            ys = [p.get(key) for p in pts]
            ax.plot(xs, ys, style, markersize=3, label=label)
        ax.set_title(m)
        ax.set_xlabel("epochs after the deletion request")
        ax.grid(alpha=0.3)
        ax.set_ylim(-0.03, 1.03)
    axes[0][0].set_ylabel("test accuracy" + (" (top-k)" if metric != "acc" else ""))
    axes[0][-1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_figure7(fig7: dict[str, Any], path: Path) -> Path:
    """Mean test-accuracy loss against the share of batches undone, with a band of one standard deviation."""
    import numpy as np

    x = 100 * np.asarray(fig7["shares"])
    m, sd = np.asarray(fig7["mean_loss"]), np.asarray(fig7["std_loss"])
    fig = _figure(figsize=(5, 3.4))
    ax = fig.subplots()
    ax.plot(x, 100 * m, "-o", markersize=3, color="tab:green", label="random steps (ours)")
    ax.fill_between(x, 100 * (m - sd), 100 * (m + sd), color="tab:green", alpha=0.2, label="± 1 std")
    if fig7.get("slots"):
        ax.plot(x, 100 * np.asarray(fig7["slots"]["mean_loss"]), "-s", markersize=3, color="tab:purple",
                label="slots of batch positions (the authors')")
    paper = PAPER_FIG7.get(fig7.get("paper_curve") or "", {})
    if paper:
        ax.plot(list(paper), [100 * v for v in paper.values()], ":", color="black", label=f"paper ({fig7['paper_curve']})")
    ax.set_xlabel("batches undone (% of training steps)")
    ax.set_ylabel("test-accuracy loss (points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _pct(v: Any) -> str:
    return "—" if v is None else f"{100 * float(v):.1f}%"


def _kept_words(s: dict[str, Any], results: dict[str, Any]) -> str:
    """How many examples of the class the amnesiac run kept, and the share of steps that then held one."""
    summary = (results.get("class_forgetting") or {}).get("amnesiac") or {}
    kept = summary.get("kept_examples", s.get("amnesiac_keep"))
    why = [] if s.get("amnesiac_keep") is not None else ["as many as give the paper's ~11% of batches"]
    if summary.get("share") is not None:
        why.append(f"{100 * summary['share']:.1f}% of its steps held one")
    return f"{kept} examples of it" + (f" ({'; '.join(why)})" if why else "")


def _setup_section(config: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """Title, the command and the settings, with every difference from the paper's setting."""
    s = config["settings"]
    lines = [f"# Amnesiac Machine Learning, reproduced: `{config['preset']}` preset, `{config['profile']}` profile", ""]
    lines += ["Produced by:", "", "```", config["command"], "```", ""]
    lines += ["## Setup", "",
              f"- dataset **{s['dataset']}**, model **{s['model']}**, Adam lr {s['lr']}, batch {s['batch_size']}, "
              f"inputs normalised to [-1, 1], no augmentation",
              f"- {s['epochs']} epochs of training, then {s['post_epochs']} epochs after the deletion request",
              f"- sensitive class {s['target_class']}; the amnesiac model kept only {_kept_words(s, results)}, "
              "with a watch-list ledger of the steps that held one",
              f"- membership inference on class {s['mia_class']}, {s['shadows']} shadow models of {s['shadow_epochs']} epochs",
              f"- Figure 7: {s['fig7_runs']} runs x {config['seeds']} seed(s), {s['fig7_epochs']} recorded epoch(s)"
              + (f", on a random {s['fig7_train_size']:,} training records" if s.get("fig7_train_size") else ""),
              f"- device: {config.get('device', 'cpu')}"]
    lines += [f"- {n}" for n in s.get("notes", [])]
    lines.append("")
    if results.get("skipped_stages"):
        lines += [f"Stages read back from an earlier run: {', '.join(results['skipped_stages'])}.", ""]
    return lines


def _checks_section(results: dict[str, Any], dataset: str | None = None) -> list[str]:
    """The paper's findings, each judged against the paper's own number: holds, holds in shape only, no, or
    not judged (with the reason)."""
    lines: list[str] = []
    checks = judge(results, dataset)
    if checks:
        lines += ["## How this compares with the paper", "", "| the paper's finding | verdict | our numbers against the "
                  "paper's |", "|---|---|---|"]
        for c in checks:
            shown = c.verdict if c.verdict in (HOLDS, NOT_JUDGED) else f"**{c.verdict}**"
            lines.append(f"| {c.claim} | {shown} | {c.evidence} |")
        lines += ["", "'holds': our number agrees with the paper's within the stated tolerance; 'holds in shape only': "
                  "the direction agrees and the size does not (the gap is given); 'no': it does not hold, or the "
                  "setting left the paper's regime; 'not judged': this run cannot test it (the reason is in the row). "
                  "Table 1 and Figure 7 below put the paper's values beside ours.", ""]
    return lines


def _class_forgetting_section(out: Path, cf: dict[str, Any]) -> list[str]:
    """Figures 1/2 (accuracy curves) and 3-6 (inversions), with their tables."""
    lines: list[str] = []
    c = cf["target_class"]
    fig = plot_class_forgetting(cf["curves"], out / "fig-class-forgetting.png", target_class=c)
    lines += ["## Accuracy on the forgotten class and on the rest (Figures 1/2)", "",
              f"![class forgetting]({fig.name})", ""]
    if any("target_top10" in p for p in cf["curves"]["naive"]):
        fig10 = plot_class_forgetting(cf["curves"], out / "fig-class-forgetting-top10.png", target_class=c, metric="top10")
        lines += [f"![class forgetting, top-10]({fig10.name})", ""]
    amn = cf["amnesiac"]
    lines += [f"The amnesiac request reverted {amn['steps_reverted']} of {amn['total_steps']} steps "
              f"({100 * amn['share']:.1f}%) in {amn['forget_seconds']:.2f} s.", ""]
    lines += ["| method | point | epoch | class " + str(c) + " | other classes |", "|---|---|---|---|---|"]
    for m, pts in cf["curves"].items():
        keep = [pts[0]] + ([pts[1]] if m == "amnesiac" else []) + [p for p in pts if float(p["epoch"]).is_integer() and p["epoch"] >= 1]
        for p in keep:
            lines.append(f"| {m} | {p.get('label', '')} | {p['epoch']:g} | {_pct(p['target_acc'])} | {_pct(p['other_acc'])} |")
    lines.append("")
    if cf.get("inversion"):
        lines += _inversion_section(cf)
    return lines


def _visible(sc: dict[str, Any]) -> str:
    """The contrast-aware share of inversions showing the class (results from before it have none)."""
    return _pct(sc["visible"]) if "visible" in sc else "-"


def _inversion_section(cf: dict[str, Any]) -> list[str]:
    """Figures 3-6: a table and a grid of images per inversion variant."""
    c, bases = cf["target_class"], cf.get("inversion_baseline")
    if not bases:  # results written before the blank-blind scores: the evaluator's view only
        return _legacy_inversion_section(cf)
    lines = [f"## Model inversion of class {c} (Figures 3-6)", "",
             "Each model is inverted by each variant (the paper's text; the authors' code; regularised with total "
             "variation and an L2 pull towards the data's mean image). *Recognised*: the share of inversions whose "
             "most correlated real training image is of the class and which correlate more with the class's mean "
             "image than with any other class's. *Class margin*: that correlation minus the best other class's "
             "(a blank image scores 0). Class visible: the share in which the class can be seen, by a contrast-aware "
             "rule (its pattern at >= 30% of a real image's contrast, more like it than any other class) that "
             "agrees with 94% of 81 inversions labelled by eye; a faint ghost or structured noise is not visible. "
             "The baseline is the same architecture never trained, inverted the same way: "
             "it shows what the method and its prior give without any learning. The independent evaluator "
             "(another architecture trained on real data) is a second opinion that adversarial patterns can fool; "
             "SSIM to the class mean is kept for comparison with earlier reports, but it can reward dark, smooth images.",
             ""]
    for variant, methods in cf["inversion"].items():
        base = bases[variant]
        lines += [f"### {variant} variant", "",
                  f"| method | model | class visible | recognised | class margin | evaluator calls it {c} | "
                  "evaluator confidence | SSIM to class mean |", "|---|---|---|---|---|---|---|---|",
                  f"| never trained | (baseline) | {_visible(base)} | {_pct(base['recognised'])} | {base['class_margin']:.3f} | "
                  f"{_pct(base['evaluator_accuracy'])} | {base['evaluator_confidence']:.3f} | "
                  f"{base['ssim_to_class_mean']:.3f} |"]
        for m, rows in methods.items():
            for label, sc in rows.items():
                if m == "relabel" and label == "trained":
                    continue  # the same model as naive's
                lines.append(f"| {m} | {label} | {_visible(sc)} | {_pct(sc['recognised'])} | {sc['class_margin']:.3f} | "
                             f"{_pct(sc['evaluator_accuracy'])} | {sc['evaluator_confidence']:.3f} | "
                             f"{sc['ssim_to_class_mean']:.3f} |")
        lines.append("")
        grid = (cf.get("inversion_grids") or {}).get(variant)
        if grid:
            lines += [f"![{variant} inversions]({grid})", ""]
    return lines


def _legacy_inversion_section(cf: dict[str, Any]) -> list[str]:
    c = cf["target_class"]
    lines = [f"## Model inversion of class {c} (Figures 3-6)", "",
             "Scored by an independent classifier trained on real data (another architecture and seed): how often "
             "it calls the inversions the sensitive class, and its confidence (this report predates the scores "
             "against real images and a never-trained baseline).", "",
             "| method | model | evaluator calls it class " + str(c) + " | confidence |", "|---|---|---|---|"]
    for m, rows in cf["inversion"].items():
        for label, sc in rows.items():
            lines.append(f"| {m} | {label} | {_pct(sc['evaluator_accuracy'])} | {sc['evaluator_confidence']:.3f} |")
    lines.append("")
    for m, name in (cf.get("inversion_grids") or {}).items():
        lines += [f"![{m} inversions]({name})", ""]
    return lines


def _figure7_section(out: Path, f7: dict[str, Any], dataset: str | None = None) -> list[str]:
    """Figure 7: accuracy lost against the share of batches undone, beside the paper's curve where it has one."""
    lines: list[str] = []
    curve = FIG7_PAPER_CURVE.get(dataset or "")
    paper = PAPER_FIG7.get(curve or "", {})
    fig = plot_figure7({**f7, "paper_curve": curve}, out / "fig7-accuracy-loss.png")
    slots = f7.get("slots")
    lines += ["## Test-accuracy loss against the share of batches undone (Figure 7)", "", f"![figure 7]({fig.name})", "",
              f"Base test accuracy {', '.join(_pct(a) for a in f7['base_test_accuracy'])}; "
              f"{f7['steps_per_run']} recorded steps per model.", "",
              "| batches undone | mean loss (points) | std |"
              + "".join(f" mean loss, {key} | std, {key} |" for key in f7.get("topk", {}))
              + (" the authors' slots: mean | std |" if slots else "")
              + (f" the paper, {curve} (points) |" if paper else ""),
              "|---|---|---|" + "---|---|" * len(f7.get("topk", {})) + ("---|---|" if slots else "")
              + ("---|" if paper else "")]
    for i, (p, m, sd) in enumerate(zip(f7["shares"], f7["mean_loss"], f7["std_loss"])):
        more = "".join(f" {100 * v['mean_loss'][i]:.2f} | {100 * v['std_loss'][i]:.2f} |" for v in f7.get("topk", {}).values())
        pct = round(100 * p)
        theirs = (f" {100 * paper[pct]:.1f} |" if pct in paper and abs(100 * p - pct) < 1e-6 else " — |") if paper else ""
        by_slots = f" {100 * slots['mean_loss'][i]:.2f} | {100 * slots['std_loss'][i]:.2f} |" if slots else ""
        lines.append(f"| {100 * p:.0f}% | {100 * m:.2f} | {100 * sd:.2f} |" + more + by_slots + theirs)
    if paper:
        lines += ["", f"The paper's column: Graves et al., *Amnesiac Machine Learning*, AAAI 2021, Figure 7, {curve} "
                  "curve, values read off the published figure (mean of 10 runs"
                  + ("; top-10 accuracy" if curve == "CIFAR-100" else "; batch 60, 10 epochs")
                  + "; batches undone as fixed slots of batch positions summed over the epochs). "
                  + ("" if dataset in ("mnist", "cifar100")
                     else f"This run is on {dataset}, so the column is for orientation, not a like-for-like comparison. ")
                  + "A dash: the paper's figure has no point at that share."]
    if slots:
        lines += ["", "Two procedures: ours undoes single optimizer steps drawn at random; the authors' (their "
                  "evaluation notebook) groups each epoch's batches into 100 slots of consecutive positions, sums each "
                  "slot's updates over the epochs and undoes whole slots in a random order, so k% is k slots. The "
                  "second is the like-for-like comparison with the paper's curve."]
    lines.append("")
    return lines


def write_report(out: Path, config: dict[str, Any], results: dict[str, Any]) -> Path:
    """Write the figures and ``report.md`` into ``out``; returns the report's path."""
    out = Path(out)
    lines = _setup_section(config, results) + _checks_section(results, config['settings'].get('dataset'))
    if results.get("class_forgetting"):
        lines += _class_forgetting_section(out, results["class_forgetting"])
    if results.get("membership_inference"):
        lines += _table1_section(config["settings"], results["membership_inference"])
    if results.get("figure7"):
        lines += _figure7_section(out, results["figure7"], config["settings"].get("dataset"))
    lines += ["All numbers are in `results.json`; the resolved settings in `config.json`.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path

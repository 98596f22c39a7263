"""Turn a reproduction's ``results`` into figures (PNG) and ``report.md``.

The paper's findings are stated as checks, each answered from our own numbers; where ours disagree, the
report says so. Published numbers are shown beside ours only where we hold them from a source we can
name: the authors' membership-inference notebook prints the amnesiac row of Table 1 (below). The rest of
Table 1 and the values plotted in Figure 7 are not in any text we could read, so the report states the
paper's claims about them instead of typing numbers from memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

METHOD_STYLE = {"naive": "tab:blue", "relabel": "tab:orange", "amnesiac": "tab:green"}

# What the paper reports, in words (Graves, Nagisetty and Ganesh, AAAI 2021).
PAPER_CLAIMS = {
    "amnesiac_drop": "amnesiac unlearning drops accuracy on the sensitive class to about 0 immediately",
    "relabel_epoch": "unlearning by relabelling drops it within the first epoch",
    "naive_slow": "naive retraining keeps the sensitive class's accuracy up for longer than relabelling",
    "mia_drop": "right after amnesiac unlearning (epoch 0') the membership-inference recall on the targets falls far below epoch 0",
    "fig7_rises": "test-accuracy loss grows with the share of batches undone",
    "fig7_small": "undoing up to about 1% of batches costs little test accuracy (under 1 point here)",
}


# Membership-inference recall printed by the authors' own notebook (github.com/lmgraves/AmnesiacML,
# "Membership Inference Attack.ipynb", commit 3c199d78): amnesiac unlearning of the correctly classified
# training records of class 11, at epoch 0, right after the removal (0') and after each of 5 epochs of
# training without them. Their setting: CIFAR-100, ResNet18 with a 7x7 first convolution, target model
# trained on a random half for 10 epochs at batch size 8, shadow-model attack.
AUTHORS_AMNESIAC_RECALL = {"0": 0.9523809523809523, "0'": 0.12698412698412698, "1": 0.015873015873015872,
                           "2": 0.0, "3": 0.0, "4": 0.0, "5": 0.0}
# The paper's Table 1 (Graves, Nagisetty, Ganesh, AAAI 2021): recall of the shadow-model attack on the 119
# target examples (CIFAR-100 class 11, ResNet18) at epoch 0, right after the removal step (0') and after each of
# 5 epochs of training without them.
PAPER_TABLE1 = {
    "naive": {"0": 0.97478991, "0'": 0.97478991, "1": 0.09243697, "2": 0.05882352, "3": 0.0, "4": 0.0, "5": 0.0},
    "relabel": {"0": 0.97478991, "0'": 0.97478991, "1": 0.0, "2": 0.0, "3": 0.0, "4": 0.0, "5": 0.0},
    "amnesiac": {"0": 0.97478991, "0'": 0.0, "1": 0.0, "2": 0.0, "3": 0.0, "4": 0.0, "5": 0.0},
}
# The paper's Figure 7 (Graves, Nagisetty, Ganesh, AAAI 2021): mean test-accuracy loss (absolute, 0-1) of 10 runs
# against the percentage of batches undone, read off the published figure. MNIST: batch 60, 10 epochs; CIFAR-100:
# top-10 accuracy. Their procedure undid fixed slots of batch positions summed over the epochs, in random order.
PAPER_FIG7 = {
    "MNIST": dict(zip((1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 35, 40, 45, 49),
                      (.04, .06, .09, .155, .21, .27, .32, .375, .41, .42, .57, .68, .75, .81, .845, .865, .88, .88))),
    "CIFAR-100": dict(zip((1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 35, 40, 45, 49),
                          (.16, .32, .39, .49, .55, .60, .64, .66, .66, .68, .77, .80, .80, .835, .84, .84, .845, .845))),
}
FIG7_PAPER_CURVE = {"mnist": "MNIST", "fashion-mnist": "MNIST", "cifar100": "CIFAR-100"}
AUTHORS_SOURCE = ("the authors' notebook `Membership Inference Attack.ipynb` in github.com/lmgraves/AmnesiacML "
                  "(commit 3c199d78): CIFAR-100, class 11, ResNet18, target trained on a random half for 10 epochs "
                  "at batch size 8")


def _auc_cell(fig: dict[str, Any], ref: dict[str, Any] | None = None) -> str:
    if fig.get("auc") is None:
        return "n/a (outputs not finite)"
    lo, hi = fig["auc_ci95"]
    gap = "" if ref is None or ref.get("auc") is None else f" ({fig['auc'] - ref['auc']:+.2f})"
    return f"{fig['auc']:.2f} [{lo:.2f}, {hi:.2f}]{gap}"


def _tpr_cell(fig: dict[str, Any]) -> str:
    if fig.get("tpr_at_1pct_fpr") is None:
        return "n/a"
    return f"{fig['tpr_at_1pct_fpr']:.3f} @ {fig['fpr_reached']:.3f}"


def _share_words(s: dict[str, Any]) -> str:
    """How the target's records were drawn, in words (older results have no share: the paper's half)."""
    share = float(s.get("mia_target_share", 0.5))
    part = {0.5: "a random half", round(1 / 3, 6): "a random third"}.get(round(share, 6), f"a random {share:.0%}")
    pool = s.get("mia_train_size")
    return part + (f" of a random {pool:,}-record subset, the attacker having the rest" if pool else
                   ", the attacker having the rest")


def _table1_section(s: dict[str, Any], mia: dict[str, Any]) -> list[str]:
    """Table 1 as the paper's and more: recall beside the published rows, then AUC with intervals and the gap
    to the retrained reference, and TPR at FPR <= 1% with the FPR reached, for every attack and method."""
    table, ref = mia["table"], mia["retrained_reference"]
    cols = [k for k in table["naive"] if k != "steps_reverted"]
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
    signal_ok = min(r0.values()) >= 0.65
    lines += [f"Signal at epoch 0: shadow AUC {r0['shadow']:.2f}, LiRA AUC {r0['lira']:.2f} — "
              + ("the attacks separate members from non-members, so a falling recall below measures lost membership."
                 if signal_ok else "WEAK (below 0.65): a falling recall below may measure that the model stopped "
                 "recognising the class rather than lost membership."), ""]
    lines += ["### Recall of the paper's attack (the paper's measure), ours beside the published", "", head, rule]
    for m, row in table.items():
        lines.append(f"| {m} (this run) | " + " | ".join(_pct(row[k]["shokri-paper"]["recall"]) for k in cols) + " |")
        if m in PAPER_TABLE1:
            lines.append(f"| {m} (paper, Table 1) | " + " | ".join(_pct(PAPER_TABLE1[m].get(k)) for k in cols) + " |")
    lines.append("| amnesiac (authors' notebook run) | "
                 + " | ".join(_pct(AUTHORS_AMNESIAC_RECALL.get(k)) for k in cols) + " |")
    lines.append(f"| retrained reference (this run) | {_pct(ref['shokri-paper']['recall'])} |" + " |" * (len(cols) - 1))
    lines += ["", "The paper's rows: Graves et al., *Amnesiac Machine Learning*, AAAI 2021, Table 1 (CIFAR-100 class "
              f"11, 119 targets); the notebook row: {AUTHORS_SOURCE}. " + _setting_differences(s, mia), ""]
    if "steps_reverted" in table.get("amnesiac", {}):
        lines += [f"Amnesiac unlearning of the targets reverted {table['amnesiac']['steps_reverted']} training steps.", ""]
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


def _setting_differences(s: dict[str, Any], mia: dict[str, Any]) -> str:
    """How this run's membership-inference setting differs from the one behind the published row."""
    diffs = []
    if s["dataset"] != "cifar100" or int(mia["target_class"]) != 11:
        diffs.append(f"{s['dataset']} class {mia['target_class']} instead of CIFAR-100 class 11")
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
    ax.plot(x, 100 * m, "-o", markersize=3, color="tab:green", label="mean")
    ax.fill_between(x, 100 * (m - sd), 100 * (m + sd), color="tab:green", alpha=0.2, label="± 1 std")
    ax.set_xlabel("batches undone (% of training steps)")
    ax.set_ylabel("test-accuracy loss (points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _pct(v: Any) -> str:
    return "—" if v is None else f"{100 * float(v):.1f}%"


def _checks(results: dict[str, Any]) -> list[tuple[str, str, bool | None, str]]:
    """(claim key, claim, holds?, our evidence) for each of the paper's findings we can test."""
    out: list[tuple[str, str, bool | None, str]] = []
    cf = results.get("class_forgetting")
    if cf:
        curves = cf["curves"]
        amn_after = curves["amnesiac"][1]["target_acc"]
        amn_before = curves["amnesiac"][0]["target_acc"]
        out.append(("amnesiac_drop", PAPER_CLAIMS["amnesiac_drop"], amn_after <= 0.05,
                    f"class accuracy {_pct(amn_before)} before, {_pct(amn_after)} right after the removal"))
        rel = [p for p in curves["relabel"] if 0 < p["epoch"] <= 1]
        rel_end = rel[-1]["target_acc"] if rel else None
        out.append(("relabel_epoch", PAPER_CLAIMS["relabel_epoch"], rel_end is not None and rel_end <= 0.10,
                    f"class accuracy {_pct(rel_end)} after one epoch of relabelled training"))
        def first_below(pts: list[dict[str, Any]], level: float = 0.10) -> float | None:
            for p in pts:
                if p["epoch"] > 0 and p["target_acc"] <= level:
                    return float(p["epoch"])
            return None

        t_naive, t_relabel = first_below(curves["naive"]), first_below(curves["relabel"])
        holds = t_relabel is not None and (t_naive is None or t_naive > t_relabel)
        nai = [p for p in curves["naive"] if 0 < p["epoch"] <= 1]
        nai_end = nai[-1]["target_acc"] if nai else None
        when = "never" if t_naive is None else f"after {t_naive:.2g} epoch(s)"
        out.append(("naive_slow", PAPER_CLAIMS["naive_slow"], holds,
                    f"class accuracy falls below 10% {when} with naive retraining, after "
                    f"{t_relabel if t_relabel is None else f'{t_relabel:.2g}'} epoch(s) with relabelling; "
                    f"naive is at {_pct(nai_end)} after one epoch"))
    mia = results.get("membership_inference")
    if mia:
        row = mia["table"]["amnesiac"]
        r0, r0p = row["0"]["shokri-paper"]["recall"], row["0'"]["shokri-paper"]["recall"]
        ref = mia["retrained_reference"]
        signal = max(row["0"][a]["auc"] for a in ("shadow", "lira"))
        lira0, lira0p = row["0"]["lira"]["auc"], row["0'"]["lira"]["auc"]
        holds = (r0p or 0) < 0.5 * (r0 or 0) if signal >= 0.6 else None
        out.append(("mia_drop", PAPER_CLAIMS["mia_drop"], holds,
                    f"recall {_pct(r0)} at epoch 0, {_pct(r0p)} at 0' (retrained reference "
                    f"{_pct(ref['shokri-paper']['recall'])}); LiRA AUC {lira0:.2f} at 0, "
                    f"{lira0p:.2f} at 0', {ref['lira']['auc']:.2f} on the reference"
                    + ("" if signal >= 0.6 else f"; NOT JUDGED: the attacks have no membership signal at epoch 0 "
                                                f"(best AUC {signal:.2f})")))
    f7 = results.get("figure7")
    if f7:
        m = f7["mean_loss"]
        rises = m[-1] > m[0] + 0.01 and all(b >= a - 0.05 for a, b in zip(m, m[1:]))
        ev = f"loss {100 * m[0]:.1f} points at 0%, {100 * m[-1]:.1f} at {100 * f7['shares'][-1]:.0f}%"
        out.append(("fig7_rises", PAPER_CLAIMS["fig7_rises"], rises, ev))
        small = [(p, v) for p, v in zip(f7["shares"], m) if 0 < p <= 0.011]
        if small:
            p, v = small[-1]
            out.append(("fig7_small", PAPER_CLAIMS["fig7_small"], v < 0.01, f"{100 * v:.2f} points at {100 * p:.0f}%"))
    return out


def _setup_section(config: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """Title, the command and the settings, with every difference from the paper's setting."""
    s = config["settings"]
    lines = [f"# Amnesiac Machine Learning, reproduced: `{config['preset']}` preset, `{config['profile']}` profile", ""]
    lines += ["Produced by:", "", "```", config["command"], "```", ""]
    lines += ["## Setup", "",
              f"- dataset **{s['dataset']}**, model **{s['model']}**, Adam lr {s['lr']}, batch {s['batch_size']}, "
              f"inputs normalised to [-1, 1], no augmentation",
              f"- {s['epochs']} epochs of training, then {s['post_epochs']} epochs after the deletion request",
              f"- sensitive class {s['target_class']}; the amnesiac model kept only the first {s['amnesiac_keep']} "
              "examples of it, with a watch-list ledger of the steps that held one",
              f"- membership inference on class {s['mia_class']}, {s['shadows']} shadow models of {s['shadow_epochs']} epochs",
              f"- Figure 7: {s['fig7_runs']} runs x {config['seeds']} seed(s), {s['fig7_epochs']} recorded epoch(s)",
              f"- device: {config.get('device', 'cpu')}"]
    lines += [f"- {n}" for n in s.get("notes", [])]
    lines.append("")
    if results.get("skipped_stages"):
        lines += [f"Stages read back from an earlier run: {', '.join(results['skipped_stages'])}.", ""]
    return lines


def _checks_section(results: dict[str, Any]) -> list[str]:
    """The paper's findings, each judged yes, NO or not judged, with our numbers."""
    lines: list[str] = []
    checks = _checks(results)
    if checks:
        lines += ["## How this compares with the paper", "", "| the paper's finding | holds here? | our numbers |", "|---|---|---|"]
        for _, claim, ok, ev in checks:
            lines.append(f"| {claim} | {'yes' if ok else 'not judged' if ok is None else 'NO'} | {ev} |")
        lines += ["", "Beside the stated findings, Table 1 below puts the paper's published rows next to ours; a 'NO' "
                  "above is a disagreement, to be read with the setup differences listed under Setup, and 'not "
                  "judged' means this run cannot test the finding (the reason is in the row).", ""]
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
        lines += [f"## Model inversion of class {c} (Figures 3-6)", "",
                  "Scored by an independent classifier trained on real data (another architecture and seed): how "
                  "often it calls the inversions the sensitive class, its confidence, and SSIM to the class's "
                  "mean training image.", "",
                  "| method | model | evaluator calls it class " + str(c) + " | confidence | SSIM to class mean |",
                  "|---|---|---|---|---|"]
        for m, rows in cf["inversion"].items():
            for label, sc in rows.items():
                lines.append(f"| {m} | {label} | {_pct(sc['evaluator_accuracy'])} | {sc['evaluator_confidence']:.3f} | "
                             f"{sc['ssim_to_class_mean']:.3f} |")
        lines.append("")
        for m, name in cf["inversion_grids"].items():
            lines += [f"![{m} inversions]({name})", ""]
    return lines


def _figure7_section(out: Path, f7: dict[str, Any], dataset: str | None = None) -> list[str]:
    """Figure 7: accuracy lost against the share of batches undone, beside the paper's curve where it has one."""
    lines: list[str] = []
    fig = plot_figure7(f7, out / "fig7-accuracy-loss.png")
    curve = FIG7_PAPER_CURVE.get(dataset or "")
    paper = PAPER_FIG7.get(curve or "", {})
    lines += ["## Test-accuracy loss against the share of batches undone (Figure 7)", "", f"![figure 7]({fig.name})", "",
              f"Base test accuracy {', '.join(_pct(a) for a in f7['base_test_accuracy'])}; "
              f"{f7['steps_per_run']} recorded steps per model.", "",
              "| batches undone | mean loss (points) | std |"
              + "".join(f" mean loss, {key} | std, {key} |" for key in f7.get("topk", {}))
              + (f" the paper, {curve} (points) |" if paper else ""),
              "|---|---|---|" + "---|---|" * len(f7.get("topk", {})) + ("---|" if paper else "")]
    for i, (p, m, sd) in enumerate(zip(f7["shares"], f7["mean_loss"], f7["std_loss"])):
        more = "".join(f" {100 * v['mean_loss'][i]:.2f} | {100 * v['std_loss'][i]:.2f} |" for v in f7.get("topk", {}).values())
        pct = round(100 * p)
        theirs = (f" {100 * paper[pct]:.1f} |" if pct in paper and abs(100 * p - pct) < 1e-6 else " — |") if paper else ""
        lines.append(f"| {100 * p:.0f}% | {100 * m:.2f} | {100 * sd:.2f} |" + more + theirs)
    if paper:
        lines += ["", f"The paper's column: Graves et al., *Amnesiac Machine Learning*, AAAI 2021, Figure 7, {curve} "
                  "curve, values read off the published figure (mean of 10 runs"
                  + ("; top-10 accuracy" if curve == "CIFAR-100" else "; batch 60, 10 epochs")
                  + "; batches undone as fixed slots of batch positions summed over the epochs). "
                  + ("" if dataset in ("mnist", "cifar100")
                     else f"This run is on {dataset}, so the column is for orientation, not a like-for-like comparison. ")
                  + "A dash: the paper's figure has no point at that share."]
    lines.append("")
    return lines


def write_report(out: Path, config: dict[str, Any], results: dict[str, Any]) -> Path:
    """Write the figures and ``report.md`` into ``out``; returns the report's path."""
    out = Path(out)
    lines = _setup_section(config, results) + _checks_section(results)
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

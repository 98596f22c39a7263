"""Membership-inference metrics as pure functions of scores and membership labels.

Convention: a higher score means "more likely a member"; ``labels`` are 1 for members, 0 for non-members.

>>> import numpy as np
>>> s = np.array([0.9, 0.8, 0.3, 0.1]); y = np.array([1, 1, 0, 0])
>>> auc(s, y)
1.0
>>> tpr_at_fpr(s, y, 0.0)["tpr"]
1.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ConfigError


def _check(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise ConfigError(f"scores and labels must have the same length, got {s.size} and {y.size}")
    if not np.isin(y, (0, 1)).all():
        raise ConfigError("labels must be 0 (non-member) or 1 (member)")
    if not np.isfinite(s).all():
        bad = "NaN" if np.isnan(s).any() else "infinite values"
        raise ConfigError(f"scores contain {bad} ({int((~np.isfinite(s)).sum())} of {s.size}); an attack whose scores "
                          "tie at +-inf or are undefined cannot rank members, so no AUC is given")
    return s, y.astype(np.int64)


def roc_curve(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rates, true-positive rates and thresholds, from the strictest threshold down.

    The first point is (0, 0) at threshold +inf; a point is emitted at every distinct score.
    """
    s, y = _check(scores, labels)
    pos, neg = int(y.sum()), int((1 - y).sum())
    if pos == 0 or neg == 0:
        raise ConfigError(f"a ROC curve needs members and non-members; got {pos} and {neg}")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    distinct = np.flatnonzero(np.diff(s_sorted)) if s.size > 1 else np.empty(0, dtype=np.int64)
    ends = np.r_[distinct, s.size - 1]
    tps = np.cumsum(y_sorted)[ends]
    fps = (ends + 1) - tps
    tpr = np.r_[0.0, tps / pos]
    fpr = np.r_[0.0, fps / neg]
    thr = np.r_[np.inf, s_sorted[ends]]
    return fpr, tpr, thr


def auc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve (ties count one half), equal to scikit-learn's ``roc_auc_score``."""
    fpr, tpr, _ = roc_curve(scores, labels)
    area = getattr(np, "trapezoid", None) or getattr(np, "trapz")  # noqa: B009  (NumPy 2 renamed trapz)
    return float(area(tpr, fpr))


def tpr_at_fpr(scores: Any, labels: Any, max_fpr: float) -> dict[str, float]:
    """The highest TPR reachable with FPR <= ``max_fpr``, with the FPR actually reached, the threshold and counts.

    With few non-members a small FPR may be reachable only at 0; ``fpr`` tells what was reached.
    """
    if not 0 <= max_fpr <= 1:
        raise ConfigError(f"max_fpr must lie in [0, 1], got {max_fpr}")
    s, y = _check(scores, labels)
    fpr, tpr, thr = roc_curve(s, y)
    ok = np.flatnonzero(fpr <= max_fpr + 1e-12)
    i = ok[np.argmax(tpr[ok])]
    pos, neg = int(y.sum()), int((1 - y).sum())
    return {"tpr": float(tpr[i]), "fpr": float(fpr[i]), "threshold": float(thr[i]), "target_fpr": float(max_fpr),
            "true_positives": int(round(tpr[i] * pos)), "false_positives": int(round(fpr[i] * neg)),
            "members": pos, "non_members": neg}


def best_balanced_accuracy(scores: Any, labels: Any) -> dict[str, float]:
    """The best (TPR + TNR) / 2 over all thresholds, and where it is reached."""
    fpr, tpr, thr = roc_curve(scores, labels)
    bal = (tpr + 1 - fpr) / 2
    i = int(np.argmax(bal))
    return {"balanced_accuracy": float(bal[i]), "threshold": float(thr[i])}


def threshold_stats(scores: Any, labels: Any, threshold: float) -> dict[str, float | None]:
    """Recall, precision and FPR when ``score >= threshold`` is called a member. Precision is None (not
    NaN) when the threshold calls nothing a member: it is undefined, not zero.

    >>> threshold_stats([0.9, 0.2, 0.7, 0.1], [1, 1, 0, 0], 0.5)["recall"]
    0.5
    >>> threshold_stats([0.1, 0.2], [1, 0], 0.5)["precision"] is None
    True
    """
    s, y = _check(scores, labels)
    pred = s >= threshold
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    pos, neg = int(y.sum()), int((1 - y).sum())
    return {
        "recall": tp / pos if pos else None,
        "precision": tp / (tp + fp) if tp + fp else None,  # undefined when nothing is called a member
        "fpr": fp / neg if neg else None,
        "threshold": float(threshold),
        "true_positives": tp, "false_positives": fp, "members": pos, "non_members": neg,
    }


def bootstrap_ci(metric: Callable[[np.ndarray, np.ndarray], float], scores: Any, labels: Any, *,
                 n: int = 200, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap confidence interval for ``metric(scores, labels)``, resampling members and
    non-members separately (so every resample has both)."""
    s, y = _check(scores, labels)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    vals = []
    for _ in range(n):
        idx = np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)]
        vals.append(metric(s[idx], y[idx]))
    lo, hi = np.quantile(vals, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def summarize(scores: Any, labels: Any, *, threshold: float | None = None, ci: bool = True, seed: int = 0) -> dict[str, Any]:
    """Every figure the attacks report: AUC (with a bootstrap CI), TPR at 1% and 0.1% FPR, best balanced
    accuracy, and recall / precision / FPR at ``threshold`` (default: the best-balanced one)."""
    s, y = _check(scores, labels)
    out: dict[str, Any] = {"auc": auc(s, y)}
    if ci:
        out["auc_ci95"] = bootstrap_ci(auc, s, y, seed=seed)
    out["tpr_at_1pct_fpr"] = tpr_at_fpr(s, y, 0.01)
    out["tpr_at_0.1pct_fpr"] = tpr_at_fpr(s, y, 0.001)
    bb = best_balanced_accuracy(s, y)
    out["best_balanced_accuracy"] = bb["balanced_accuracy"]
    out["at_threshold"] = threshold_stats(s, y, bb["threshold"] if threshold is None else threshold)
    return out


def verification_error(model: Any, reference: Any) -> float:
    """The L2 distance between two models' weights: every floating parameter and buffer of ``model`` against the
    same-named one of ``reference`` (Thudi et al., *Unrolling SGD*, 2022, call it the verification error when the
    reference is a model retrained without the deleted records). Both must have the same architecture.

    >>> import torch
    >>> a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    >>> with torch.no_grad():
    ...     _ = b.weight.copy_(a.weight + 3.0); _ = b.bias.copy_(a.bias + 4.0)
    >>> round(verification_error(a, b), 6)
    5.830952
    """
    import torch

    mine, theirs = model.state_dict(), reference.state_dict()
    if set(mine) != set(theirs):
        differ = sorted(set(mine) ^ set(theirs))
        raise ConfigError(f"the two models differ in their tensors ({', '.join(differ[:5])}): the verification error "
                          "compares two models of one architecture")
    total = 0.0
    for name, tensor in mine.items():
        if not tensor.is_floating_point():
            continue
        other = theirs[name]
        if other.shape != tensor.shape:
            raise ConfigError(f"{name} has shape {tuple(tensor.shape)} in one model and {tuple(other.shape)} in the other")
        total += float(torch.sum((tensor.detach().double().cpu() - other.detach().double().cpu()) ** 2))
    return total ** 0.5

"""Membership-inference attacks that measure what an attacker can still learn about deleted records.

Every attack returns one score per example (higher = more likely a member); :mod:`.metrics` turns scores
into AUC, TPR at a fixed FPR, recall and precision. Members are the target records (for unlearning: the
deleted ones, which *were* in the original training set); non-members are matched records the model never
trained on.

* ``loss`` and ``confidence``: population thresholds, no shadow models.
* ``logreg``: logistic regression on the per-example (log) loss, cross-validated (the NeurIPS 2023 unlearning
  challenge starter and SCRUB evaluate this way); held-out folds are scored by the fitted direction.
* ``shadow``: a shadow-model attack with features that carry the membership signal (the true label's
  probability, loss and logit-scaled confidence, whether the prediction is right, the class) and
  gradient-boosted trees, monotone in each statistic, as the attack model, trained once per shadow set on
  every shadow model's members and non-members. Stronger than the paper's attack.
* ``shokri-paper`` (also accepted as ``shokri``): the paper's attack (Shokri et al. 2017) as the authors
  ran it: shadow models trained on random halves of the attacker's data, one attack MLP (256, 128, ReLU,
  sigmoid) per class on softmax vectors, members taken only where the shadow model classifies them correctly.
* ``lira``: LiRA, offline (Carlini et al. 2022): per-example Gaussian of the logit-scaled confidence on
  shadow models that did not train on the example; the score is the standardised distance z from that
  Gaussian (Φ(z) is the test's probability), so scores far in the tail stay distinct instead of underflowing
  to 0 and tying.
* U-LiRA (Hayes et al. 2024), for an unlearning request: :func:`train_inclusion_shadows` trains shadow models
  with and without each deleted record (on all the retained data), :func:`ulira_scores` gives each deleted
  record's likelihood ratio under a model, and :func:`ulira_auc` says how well those ratios tell an unlearned
  model from a retrained one, record by record (0.5: not at all).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.base import ArrayDataset
from ..errors import ConfigError
from ..models import build_model
from ..names import ATTACK_ALIASES as ALIASES
from ..names import ATTACKS, SHADOW_ATTACKS
from ..options import check
from ..run.checkpoint import load_tensors, save_tensors
from ..training import fit, make_optimizer, predict
from ..utils import progress_bar, seeded
from ..utils.progress import note
from .metrics import auc, summarize, threshold_stats


def canonical_attack(name: str) -> str:
    """The attack's name in :data:`ATTACKS` (``shokri`` is the paper's attack, ``shokri-paper``)."""
    name = ALIASES.get(name, name)
    if name not in ATTACKS:
        from ..errors import UnknownNameError, did_you_mean

        raise UnknownNameError(f"unknown attack {name!r}; choose from {', '.join(ATTACKS)}." + did_you_mean(name, ATTACKS))
    return name


# ------------------------------------------------------------------ per-example statistics
@dataclass
class Outputs:
    """A model's logits on a dataset, with labels and ids."""

    logits: torch.Tensor
    labels: torch.Tensor
    ids: torch.Tensor

    @property
    def softmax(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=1)

    @property
    def loss(self) -> np.ndarray:
        return nn.functional.cross_entropy(self.logits, self.labels, reduction="none").numpy()

    @property
    def true_prob(self) -> np.ndarray:
        return self.softmax.gather(1, self.labels[:, None]).squeeze(1).numpy()

    @property
    def scaled_logit(self) -> np.ndarray:
        """log p_y - log(1 - p_y), computed stably from the logits (LiRA's statistic)."""
        z = self.logits.double()
        zy = z.gather(1, self.labels[:, None]).squeeze(1)
        others = z.clone()
        others.scatter_(1, self.labels[:, None], float("-inf"))
        return (zy - torch.logsumexp(others, dim=1)).numpy()


def outputs(model: nn.Module, data: ArrayDataset) -> Outputs:
    logits, labels, ids = predict(model, data)
    return Outputs(logits, labels, ids)


def _scores_split(members: np.ndarray, non_members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.r_[members, non_members], np.r_[np.ones(len(members)), np.zeros(len(non_members))]


# ------------------------------------------------------------------ population attacks
def loss_scores(model: nn.Module, members: ArrayDataset, non_members: ArrayDataset) -> tuple[np.ndarray, np.ndarray]:
    """Score = minus the loss (a member's loss is lower)."""
    return _scores_split(-outputs(model, members).loss, -outputs(model, non_members).loss)


def confidence_scores(model: nn.Module, members: ArrayDataset, non_members: ArrayDataset) -> tuple[np.ndarray, np.ndarray]:
    """Score = the probability given to the true label."""
    return _scores_split(outputs(model, members).true_prob, outputs(model, non_members).true_prob)


def logreg_scores(model: nn.Module, members: ArrayDataset, non_members: ArrayDataset, *, folds: int = 5,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cross-validated logistic regression on the per-example loss; each held-out fold is scored by the
    direction the other folds fitted.

    The feature is log(loss), standardised over all examples (no labels used). The score of a held-out
    example is the fitted decision function without its intercept, scaled to unit slope: the ranking the
    fitted model makes inside the fold, on one scale shared by every fold. Pooling the folds' fitted
    probabilities instead mixes five different affine maps of the feature, which made this one-feature
    monotone attack weaker than the feature itself (0.54 against 0.64 for the loss in an audit).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    m_loss, n_loss = outputs(model, members).loss, outputs(model, non_members).loss
    x = np.log(np.maximum(np.r_[m_loss, n_loss], 1e-30)).reshape(-1, 1)
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-12)
    y = np.r_[np.ones(len(m_loss)), np.zeros(len(n_loss))]
    k = int(min(folds, len(m_loss), len(n_loss)))
    if k < 2:
        raise ConfigError("the logistic-regression attack needs at least 2 members and 2 non-members")
    scores = np.empty(len(y))
    for train_idx, test_idx in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(x, y):
        clf = LogisticRegression(class_weight="balanced").fit(x[train_idx], y[train_idx])
        w = clf.coef_.reshape(-1)
        scores[test_idx] = x[test_idx] @ (w / max(float(np.linalg.norm(w)), 1e-12))
    return scores, y


# ------------------------------------------------------------------ shadow models
@dataclass
class ShadowRecipe:
    """How shadow models are trained (by default: the target run's own recipe)."""

    model: str
    epochs: int
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3

    def key(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ShadowSet:
    """Shadow models and which pool examples each one trained on."""

    models: list[nn.Module]
    member_masks: np.ndarray  # (n_shadows, len(pool)) bool
    pool: ArrayDataset
    cache_dir: Path | None = None
    trained_now: int = 0
    attack_models: dict[Any, Any] = field(default_factory=dict, repr=False)  # attack models built on this set

    def __len__(self) -> int:
        return len(self.models)


def train_shadows(pool: ArrayDataset, recipe: ShadowRecipe, *, n: int = 16, seed: int = 0,
                  cache_dir: str | Path | None = None, progress: bool | None = None,
                  device: str | torch.device | None = None) -> ShadowSet:
    """Train ``n`` shadow models, each on a random half of ``pool``; reuse any already in ``cache_dir``.
    ``device`` is where they train and later predict (default CPU).

    The cache key covers the recipe, the pool's ids and the seed, so a changed setting never reuses a
    stale shadow model.
    """
    if n < 1:
        raise ConfigError(f"the number of shadow models must be at least 1, got {n}")
    if len(pool) < 4:
        raise ConfigError(f"the shadow pool needs at least 4 examples, got {len(pool)}")
    info = pool.info
    if info is None:
        raise ConfigError("the shadow pool must carry its DatasetInfo (channels, size, classes)")
    key = hashlib.sha256(json.dumps({"recipe": recipe.key(), "ids": pool.ids.tolist(), "seed": seed,
                                     "labels": pool.targets.tolist()}).encode()).hexdigest()[:16]
    folder = Path(cache_dir) / f"shadows-{key}" if cache_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, len(pool)), dtype=bool)
    for k in range(n):  # masks depend only on (seed, k): the same with or without a cache
        masks[k, rng.permutation(len(pool))[: len(pool) // 2]] = True
    models: list[nn.Module] = []
    trained = 0
    for k in progress_bar(range(n), enabled=progress, desc="shadow models"):
        path = folder / f"shadow-{k:03d}.safetensors" if folder is not None else None
        if path is not None and path.is_file():
            with seeded(seed * 1000 + k + 1):
                net = _build_shadow(recipe, info, device)
            net.load_state_dict(load_tensors(path)[0])
        else:
            note(f"training shadow model {k + 1} of {n}")  # what a running stage's heartbeat line reports
            net = _fit_shadow(recipe, info, pool.subset(np.flatnonzero(masks[k])), seed=seed * 1000 + k, device=device)
            trained += 1
            if path is not None:
                save_tensors(path, net.state_dict(), {"k": k, "key": key})
        net.eval()
        models.append(net)
    return ShadowSet(models, masks, pool, folder, trained)


def _build_shadow(recipe: ShadowRecipe, info: Any, device: str | torch.device | None) -> nn.Module:
    return build_model(recipe.model, in_channels=info.channels, num_classes=info.num_classes,
                       image_size=info.image_size).to(device or "cpu")


def _fit_shadow(recipe: ShadowRecipe, info: Any, data: ArrayDataset, *, seed: int,
                device: str | torch.device | None) -> nn.Module:
    """One shadow model, initialised under ``seed + 1`` and trained on ``data`` by the recipe with ``seed``."""
    with seeded(seed + 1):
        net = _build_shadow(recipe, info, device)
        fit(net, make_optimizer(recipe.optimizer, net.parameters(), lr=recipe.lr), data, epochs=recipe.epochs,
            batch_size=recipe.batch_size, seed=seed, progress=False)
    return net


class _AttackMLP(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def _train_attack(x: torch.Tensor, y: torch.Tensor, *, epochs: int, seed: int) -> _AttackMLP:
    with seeded(seed):
        net = _AttackMLP(x.shape[1])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 128):
            idx = order[i : i + 128]
            opt.zero_grad()
            loss_fn(net(x[idx]), y[idx]).backward()
            opt.step()
    net.eval()
    return net


def shokri_attack_models(shadows: ShadowSet, *, attack_epochs: int = 30, seed: int = 0,
                         max_per_class: int = 4000) -> tuple[_AttackMLP, dict[int, _AttackMLP]]:
    """Train (once per shadow set, then reused) the global and per-class attack models.

    Training pairs are the shadow models' softmax vectors on the pool, labelled member or not; members
    are kept only where the shadow model classifies them correctly. At most ``max_per_class`` pairs per
    class are used (sampled), which bounds the cost on large pools.
    """
    key = ("shokri-paper", attack_epochs, seed, max_per_class)
    if key in shadows.attack_models:
        return shadows.attack_models[key]
    feats, labs, cls = [], [], []
    for k, net in enumerate(shadows.models):
        out = outputs(net, shadows.pool)
        probs = out.softmax
        correct = (probs.argmax(1) == out.labels).numpy()
        inside = shadows.member_masks[k]
        keep = (inside & correct) | ~inside  # members only where the shadow model classifies them correctly
        feats.append(probs[keep])
        labs.append(torch.as_tensor(inside[keep], dtype=torch.float32))
        cls.append(out.labels[keep])
    x, y, c = torch.cat(feats), torch.cat(labs), torch.cat(cls)
    g = torch.Generator().manual_seed(seed)
    per_class: dict[int, _AttackMLP] = {}
    chosen = []
    for label in torch.unique(c).tolist():
        idx = torch.nonzero(c == label).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)[:max_per_class]]
        chosen.append(idx)
        if int(y[idx].sum()) >= 2 and int((1 - y[idx]).sum()) >= 2:
            per_class[label] = _train_attack(x[idx], y[idx], epochs=attack_epochs, seed=seed + label + 1)
    pooled = torch.cat(chosen)
    global_model = _train_attack(x[pooled], y[pooled], epochs=attack_epochs, seed=seed)
    models = (global_model, per_class)
    shadows.attack_models[key] = models
    return models


def membership_features(out: Outputs) -> np.ndarray:
    """Per-example features of a model's output that carry membership: the true label's probability, loss
    (log) and logit-scaled confidence, whether the prediction is right, and the class."""
    correct = (out.logits.argmax(1) == out.labels).double()
    return np.stack([out.true_prob, np.log(np.maximum(out.loss, 1e-30)), out.scaled_logit, correct.numpy(),
                     out.labels.numpy().astype(np.float64)], axis=1)


def shadow_attack_model(shadows: ShadowSet, *, seed: int = 0, max_pairs: int = 200_000) -> Any:
    """Gradient-boosted trees on :func:`membership_features`, trained once per shadow set (then reused) on
    every shadow model's pool outputs labelled member or not (at most ``max_pairs`` pairs, sampled)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    key = ("shadow", seed, max_pairs)
    if key in shadows.attack_models:
        return shadows.attack_models[key]
    feats = [membership_features(outputs(net, shadows.pool)) for net in shadows.models]
    x = np.concatenate(feats)
    y = np.concatenate([shadows.member_masks[k] for k in range(len(shadows.models))]).astype(np.int64)
    rng = np.random.default_rng(seed)
    if len(x) > max_pairs:
        keep = rng.choice(len(x), size=max_pairs, replace=False)
        x, y = x[keep], y[keep]
    # monotone in every statistic (a record never looks less like a member for fitting its label better),
    # which keeps the trees from inventing boundaries where the shadow data is thin, e.g. for records a target
    # memorised with unusual labels; the class is a free categorical feature (per-class calibration). Features
    # without a monotone meaning (top probability, margin, entropy) were tried and made the attack extrapolate
    # badly on such records (AUC 0.61 where the loss alone gives 1.0).
    clf = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=40,
                                         l2_regularization=1.0, monotonic_cst=[1, -1, 1, 1, 0],
                                         categorical_features=[x.shape[1] - 1], random_state=seed)
    clf.fit(x, y)
    shadows.attack_models[key] = clf
    return clf


def shadow_scores(model: nn.Module, members: ArrayDataset, non_members: ArrayDataset, shadows: ShadowSet, *,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The stronger shadow-model attack (see the module docstring): the attack model's member probability."""
    clf = shadow_attack_model(shadows, seed=seed)

    def score(data: ArrayDataset) -> np.ndarray:
        return clf.predict_proba(membership_features(outputs(model, data)))[:, 1]

    return _scores_split(score(members), score(non_members))


def shokri_scores(model: nn.Module, members: ArrayDataset, non_members: ArrayDataset, shadows: ShadowSet, *,
                  attack_epochs: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The paper's shadow-model attack: per-class attack MLPs on softmax vectors (sigmoid output = score)."""
    global_model, per_class = shokri_attack_models(shadows, attack_epochs=attack_epochs, seed=seed)

    def score(data: ArrayDataset) -> np.ndarray:
        out = outputs(model, data)
        probs = out.softmax
        s = np.empty(len(data))
        with torch.no_grad():
            for label in torch.unique(out.labels).tolist():
                rows = torch.nonzero(out.labels == label).flatten()
                net = per_class.get(label, global_model)
                s[rows.numpy()] = torch.sigmoid(net(probs[rows])).numpy()
        return s

    return _scores_split(score(members), score(non_members))


def lira_scores(model: nn.Module, members: ArrayDataset, non_members: ArrayDataset, shadows: ShadowSet, *,
                member_pool_positions: Sequence[int] | None = None,
                non_member_pool_positions: Sequence[int] | None = None,
                min_out: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """LiRA, offline: where φ_target lies in a per-example Gaussian fitted on OUT shadow models, as
    z = (φ_target - μ_out) / σ_out (the test P(φ_out <= φ_target) = Φ(z) is monotone in z; z is the score, so
    no score underflows or ties; the natural threshold z = 0 is Φ = 0.5).

    An example's OUT models are the shadow models whose half of the pool did not hold it. Examples
    outside the pool (the default for both groups) are OUT for every shadow model; give their positions
    in the pool when they were drawn from it. With fewer than ``min_out`` OUT models the global OUT
    spread is used.
    """

    def stats(data: ArrayDataset, positions: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        target_phi = outputs(model, data).scaled_logit
        shadow_phi = np.stack([outputs(net, data).scaled_logit for net in shadows.models])  # (K, n)
        out_mask = np.ones_like(shadow_phi, dtype=bool)
        if positions is not None:
            pos = np.asarray(positions, dtype=np.int64)
            if pos.shape != (len(data),):
                raise ConfigError(f"expected {len(data)} pool positions, got {pos.shape}")
            out_mask = ~shadows.member_masks[:, pos]
        return target_phi, shadow_phi, out_mask

    parts = [stats(members, member_pool_positions), stats(non_members, non_member_pool_positions)]
    all_out = np.concatenate([sp[om] for _, sp, om in parts])
    global_mean = float(all_out.mean()) if all_out.size else 0.0
    global_std = float(np.std(all_out)) if all_out.size > 1 else 1.0
    scores = []
    for target_phi, shadow_phi, out_mask in parts:
        n_out = out_mask.sum(0)
        filled = np.where(out_mask, shadow_phi, 0.0)
        mu = np.where(n_out > 0, filled.sum(0) / np.maximum(n_out, 1), global_mean)
        var = np.where(out_mask, (shadow_phi - mu) ** 2, 0.0).sum(0) / np.maximum(n_out, 1)
        sd = np.where(n_out >= min_out, np.sqrt(var), global_std)
        # the score is the standardised statistic z itself: offline LiRA's one-sided test Φ(z) is a monotone
        # function of it, so every ranking figure (AUC, TPR at FPR) is the same, but Φ(z) computed as
        # 0.5 * (1 + erf(z / √2)) is exactly 0 below z = -8 (and log Φ exactly 0 above z = 38), which turned most
        # scores of a forgotten model into ties
        scores.append((target_phi - mu) / np.maximum(sd, 1e-3))
    return _scores_split(scores[0], scores[1])


def train_inclusion_shadows(retained: ArrayDataset, candidates: ArrayDataset, recipe: ShadowRecipe, *, n: int = 8,
                            seed: int = 0, groups: Sequence[Sequence[int]] | None = None,
                            progress: bool | None = None, device: str | torch.device | None = None) -> ShadowSet:
    """Shadow models for per-record LiRA on an unlearning request (U-LiRA, Hayes et al., *Inexact Unlearning Needs
    More Careful Evaluations*, 2024): each trains on all of ``retained`` plus half of ``candidates`` (the deleted
    records), chosen so that every candidate is IN exactly ``n / 2`` of them and OUT of the others. With ``groups``
    (lists of candidate ids, one per data subject) a subject's records go in or out together. The returned set's
    pool is ``candidates`` and its masks say which shadow trained on which candidate."""
    if n < 2 or n % 2:
        raise ConfigError(f"U-LiRA needs an even number of shadow models (half with each record), at least 2; got {n}")
    info = candidates.info or retained.info
    if info is None:
        raise ConfigError("the shadow data must carry its DatasetInfo (channels, size, classes)")
    position = {int(i): k for k, i in enumerate(candidates.ids.tolist())}
    units = [[int(i)] for i in candidates.ids.tolist()] if groups is None else [[int(i) for i in g] for g in groups]
    covered = sorted(i for g in units for i in g)
    if covered != sorted(position):
        raise ConfigError(f"the groups hold {len(covered)} ids, the candidates {len(position)}: every candidate must be "
                          "in exactly one group")
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, len(candidates)), dtype=bool)
    for unit in units:
        columns = np.asarray([position[i] for i in unit], dtype=np.int64)
        masks[np.ix_(rng.permutation(n)[: n // 2], columns)] = True
    models: list[nn.Module] = []
    for k in progress_bar(range(n), enabled=progress, desc="U-LiRA shadow models"):
        data = ArrayDataset.concat([retained, candidates.subset(np.flatnonzero(masks[k]))])
        net = _fit_shadow(recipe, info, data, seed=seed * 1000 + k, device=device)
        net.eval()
        models.append(net)
    return ShadowSet(models, masks, candidates, None, n)


def ulira_scores(model: nn.Module, shadows: ShadowSet) -> np.ndarray:
    """Per-record LiRA score of ``model`` on the shadows' candidate records (their pool, in its order): the log
    likelihood ratio of the logit-scaled confidence under the record's IN Gaussian against its OUT Gaussian
    (per-record means; one pooled spread for IN and one for OUT, the LiRA paper's fixed variance, which a few
    shadow models need). Higher means "trained on it". Compare an unlearned model's scores with a retrained
    model's on the same records (:func:`ulira_auc`)."""
    (mu_in, sd_in), (mu_out, sd_out) = _ulira_gaussians(shadows)
    phi = outputs(model, shadows.pool).scaled_logit
    log_in = -0.5 * ((phi - mu_in) / sd_in) ** 2 - np.log(sd_in)
    log_out = -0.5 * ((phi - mu_out) / sd_out) ** 2 - np.log(sd_out)
    return log_in - log_out


def _ulira_gaussians(shadows: ShadowSet) -> tuple[tuple[np.ndarray, float], tuple[np.ndarray, float]]:
    """Each candidate's IN and OUT means and the pooled IN and OUT spreads, fitted once per shadow set (kept with
    its attack models: every model scored against the set reuses them)."""
    if "ulira" not in shadows.attack_models:
        shadow_phi = np.stack([outputs(net, shadows.pool).scaled_logit for net in shadows.models])  # (K, n)
        inside = shadows.member_masks
        if inside.shape != shadow_phi.shape or not (inside.any(0) & (~inside).any(0)).all():
            raise ConfigError("every candidate record needs shadow models with and without it "
                              "(train_inclusion_shadows)")

        def fitted(mask: np.ndarray) -> tuple[np.ndarray, float]:
            mean = np.where(mask, shadow_phi, 0.0).sum(0) / mask.sum(0)
            spread = float(np.sqrt(np.where(mask, (shadow_phi - mean) ** 2, 0.0).sum() / mask.sum()))
            return mean, max(spread, 1e-3)

        shadows.attack_models["ulira"] = (fitted(inside), fitted(~inside))
    return shadows.attack_models["ulira"]


def ulira_auc(unlearned: nn.Module, retrained: nn.Module, shadows: ShadowSet) -> float:
    """How well per-record LiRA tells ``unlearned`` from ``retrained`` on the deleted records: the AUC of the
    unlearned model's scores (as members) against the retrained model's (as non-members). 0.5 means the attacker
    cannot tell them apart; 1.0 that every deleted record still looks trained on."""
    a, b = ulira_scores(unlearned, shadows), ulira_scores(retrained, shadows)
    return auc(np.concatenate([a, b]), np.r_[np.ones(a.size), np.zeros(b.size)])


# ------------------------------------------------------------------ one call for a report
@dataclass
class MIAReport:
    """Figures of each attack on each model (``target`` and optionally ``reference``)."""

    results: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    members: int = 0
    non_members: int = 0
    shadows: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"members": self.members, "non_members": self.non_members, "shadows": self.shadows,
                "results": self.results}


# each attack's options: name -> kind (see amnesiac.options); anything else is refused before work starts
ATTACK_OPTIONS: dict[str, dict[str, str]] = {
    "loss": {},
    "confidence": {},
    "logreg": {"folds": "int>=2"},
    "shadow": {},
    "shokri-paper": {"attack_epochs": "int>=1"},
    "lira": {"min_out": "int>=1"},
}


def check_attack_options(attacks: Sequence[str], options: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """``options`` (attack -> its options) checked against :data:`ATTACK_OPTIONS`; options for an attack
    that is not run are refused too, since they would silently do nothing.

    >>> check_attack_options(["logreg"], {"logreg": {"folds": 3}})
    {'logreg': {'folds': 3}}
    """
    chosen = [canonical_attack(a) for a in attacks]
    out: dict[str, dict[str, Any]] = {}
    for name, opts in (options or {}).items():
        attack = canonical_attack(name)
        if attack not in chosen:
            raise ConfigError(f"options given for attack {attack!r}, which is not among the attacks run ({', '.join(chosen)})")
        out[attack] = check("attack", attack, ATTACK_OPTIONS[attack], dict(opts))
    return out


def run_attacks(models: dict[str, nn.Module], members: ArrayDataset, non_members: ArrayDataset, *,
                attacks: Sequence[str] = ATTACKS, shadows: ShadowSet | None = None, seed: int = 0,
                non_member_pool_positions: Sequence[int] | None = None,
                options: Mapping[str, Mapping[str, Any]] | None = None,
                progress: bool | None = None) -> MIAReport:
    """Run each attack on each model; the same members, non-members and shadow models for all of them.

    Recall, precision and FPR are reported at the attack's natural threshold (0.5 for ``shokri``,
    ``logreg`` and ``lira``, whose scores are probabilities) and at the best-balanced threshold otherwise.
    Members are taken to lie outside the shadow pool; if the non-members were drawn from it, give their
    positions in it (``non_member_pool_positions``) so LiRA uses only the shadow models that did not see them.
    ``options`` sets an attack's own options, e.g. ``{"logreg": {"folds": 3}}`` (see :data:`ATTACK_OPTIONS`).
    """
    opts = check_attack_options(attacks, options)
    attacks = [canonical_attack(a) for a in attacks]
    if len(members) == 0 or len(non_members) == 0:
        raise ConfigError(f"an attack needs members and non-members; got {len(members)} and {len(non_members)}")
    if any(a in SHADOW_ATTACKS for a in attacks) and shadows is None:
        raise ConfigError(f"the {', '.join(a for a in attacks if a in SHADOW_ATTACKS)} attack(s) need shadow models (train_shadows)")
    report = MIAReport(members=len(members), non_members=len(non_members), shadows=len(shadows) if shadows else 0)
    for name, model in models.items():
        report.results[name] = {}
        for attack in progress_bar(list(attacks), enabled=progress, desc=f"attacks on {name}"):
            if attack == "loss":
                s, y = loss_scores(model, members, non_members)
            elif attack == "confidence":
                s, y = confidence_scores(model, members, non_members)
            elif attack == "logreg":
                s, y = logreg_scores(model, members, non_members, seed=seed, **opts.get(attack, {}))
            elif attack == "shadow":
                s, y = shadow_scores(model, members, non_members, shadows, seed=seed)  # type: ignore[arg-type]
            elif attack == "shokri-paper":
                s, y = shokri_scores(model, members, non_members, shadows, seed=seed,  # type: ignore[arg-type]
                                     **opts.get(attack, {}))
            else:
                s, y = lira_scores(model, members, non_members, shadows,  # type: ignore[arg-type]
                                   non_member_pool_positions=non_member_pool_positions, **opts.get(attack, {}))
            natural = {"shadow": 0.5, "shokri-paper": 0.5, "logreg": 0.0, "lira": 0.0}.get(attack)
            try:
                res = summarize(s, y, threshold=natural, seed=seed)
            except ConfigError as err:
                raise ConfigError(f"attack {attack!r} on model {name!r}: {err}") from None
            res["constant_scores"] = bool(np.unique(np.asarray(s, dtype=np.float64)).size <= 1)  # ranks nothing
            res["recall"] = res["at_threshold"]["recall"]
            res["precision"] = res["at_threshold"]["precision"]
            res["fpr"] = res["at_threshold"]["fpr"]
            report.results[name][attack] = res
    return report


def matched_non_members(pool: ArrayDataset, members: ArrayDataset, *, per_member: int = 1, seed: int = 0) -> ArrayDataset:
    """Records of ``pool`` (never trained on) with the same class counts as ``members`` (times ``per_member``),
    as far as the pool allows."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    member_labels = members.targets.numpy()
    pool_labels = pool.targets.numpy()
    for label in np.unique(member_labels):
        want = int((member_labels == label).sum()) * per_member
        cand = np.flatnonzero(pool_labels == label)
        chosen += rng.choice(cand, size=min(want, cand.size), replace=False).tolist()
    if not chosen:
        raise ConfigError("the pool holds no example of the members' classes to compare against")
    return pool.subset(sorted(chosen))


__all__ = ["ATTACKS", "ATTACK_OPTIONS", "check_attack_options", "MIAReport", "Outputs", "ShadowRecipe", "ShadowSet", "canonical_attack", "confidence_scores",
           "lira_scores", "logreg_scores", "loss_scores", "matched_non_members", "membership_features", "outputs",
           "run_attacks", "shadow_scores", "shokri_scores", "threshold_stats", "train_shadows"]

"""Model inversion (Fredrikson et al. 2015) and the paper's variant, with numbers, not only pictures.

Gradient descent on the input to minimise the cost c(x) = 1 - p_target(x), inside the normalised pixel
range [-1, 1]:

* ``variant="paper"`` (Graves et al. 2021): start from a small amount of noise, apply the processing step
  (denoise, then sharpen) only every ``process_every`` iterations (the paper used 500 to 1000), run a fixed
  number of iterations, several restarts.
* ``variant="original"`` (Fredrikson et al.): start from zeros, process after every step, stop when the
  cost has not improved for ``patience`` iterations.

An inversion is scored by an independent evaluation classifier trained on real data (another architecture
and seed than the target): how often it calls the inversions the target class and with what confidence;
and by SSIM and MSE against the mean training image of the class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..utils import progress_bar

VARIANTS = ("paper", "original")


def _blur(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([1.0, 2.0, 1.0])
    k = (k[:, None] * k[None, :]) / 16.0
    c = x.shape[1]
    weight = k.expand(c, 1, 3, 3).to(x)
    return nn.functional.conv2d(nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), weight, groups=c)


def process(x: torch.Tensor, *, amount: float = 0.5) -> torch.Tensor:
    """The processing step: denoise (3x3 Gaussian blur), then sharpen (unsharp mask), clipped to [-1, 1]."""
    smooth = _blur(x)
    sharp = smooth + amount * (smooth - _blur(smooth))
    return sharp.clamp(-1.0, 1.0)


@dataclass
class Inversion:
    """The result of inverting one class: every restart's image and final cost, best first."""

    target: int
    images: torch.Tensor  # (restarts, C, H, W), values in [-1, 1]
    costs: list[float]
    iterations: list[int]
    variant: str

    @property
    def best(self) -> torch.Tensor:
        return self.images[0]


def invert(
    model: nn.Module,
    target: int,
    *,
    shape: tuple[int, int, int],
    variant: str = "paper",
    iterations: int = 1000,
    lr: float = 0.05,
    process_every: int = 500,
    restarts: int = 4,
    noise: float = 0.1,
    patience: int = 100,
    seed: int = 0,
    progress: bool | None = None,
) -> Inversion:
    """Invert ``target`` from ``model``; returns the restarts sorted by final cost (lowest first)."""
    if variant not in VARIANTS:
        raise ConfigError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if iterations < 1 or restarts < 1:
        raise ConfigError(f"iterations and restarts must be positive, got {iterations} and {restarts}")
    was_training = model.training
    grads = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(seed)  # on the CPU, so a seed gives the same start on any device
    device = next(model.parameters()).device
    images, costs, used = [], [], []
    try:
        for _ in progress_bar(range(restarts), enabled=progress, desc=f"invert class {target}"):
            if variant == "paper":
                x = (torch.randn((1, *shape), generator=g) * noise).clamp(-1, 1).to(device)
            else:
                x = torch.zeros((1, *shape), device=device)
            image, final, it = _descend(model, x, target, variant=variant, iterations=iterations, lr=lr,
                                        process_every=process_every, patience=patience)
            images.append(image)
            costs.append(final)
            used.append(it)
    finally:
        for p, flag in zip(model.parameters(), grads):  # the caller's frozen parameters stay frozen
            p.requires_grad_(flag)
        model.train(was_training)
    order = np.argsort(costs)
    return Inversion(target, torch.stack([images[i] for i in order]), [costs[i] for i in order],
                     [used[i] for i in order], variant)


def _descend(model: nn.Module, x: torch.Tensor, target: int, *, variant: str, iterations: int, lr: float,
             process_every: int, patience: int) -> tuple[torch.Tensor, float, int]:
    """One restart: gradient descent on 1 - p(target | x); the image, its final cost, the iterations used."""
    x.requires_grad_(True)
    best_cost, best_x, since = float("inf"), x.detach().clone(), 0
    it = 0
    for it in range(1, iterations + 1):
        cost = 1.0 - torch.softmax(model(x), dim=1)[0, target]
        grad, = torch.autograd.grad(cost, x)
        with torch.no_grad():
            x -= lr * grad / (grad.abs().mean() + 1e-12) * 0.1
            x.clamp_(-1.0, 1.0)
            if variant == "original" or it % process_every == 0:
                x.copy_(process(x))
        c = float(cost.detach())
        if c < best_cost - 1e-6:
            best_cost, best_x, since = c, x.detach().clone(), 0
        else:
            since += 1
        if variant == "original" and since >= patience:
            break
    chosen = best_x if variant == "original" else x.detach()
    with torch.no_grad():
        final = float(1.0 - torch.softmax(model(chosen), dim=1)[0, target])
    return chosen.squeeze(0).cpu(), final, it


def ssim(a: torch.Tensor, b: torch.Tensor, *, data_range: float = 2.0, window: int = 3) -> float:
    """Mean structural similarity of two images (C, H, W) with a uniform ``window`` x ``window`` window.

    >>> x = torch.rand(1, 8, 8)
    >>> round(ssim(x, x), 6)
    1.0
    """
    if a.shape != b.shape:
        raise ConfigError(f"ssim needs images of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    x, y = a[None].double(), b[None].double()
    c = x.shape[1]
    w = min(window, x.shape[-1], x.shape[-2])
    kernel = torch.ones(c, 1, w, w, dtype=torch.float64) / (w * w)

    def f(t: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(t, kernel, groups=c)

    mx, my = f(x), f(y)
    vx, vy, cov = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def score_inversion(inv: Inversion, evaluator: nn.Module, class_mean: torch.Tensor) -> dict[str, Any]:
    """How an independent classifier sees the inversions, and how close they are to the class's mean image."""
    evaluator.eval()
    with torch.no_grad():
        probs = torch.softmax(evaluator(inv.images.to(next(evaluator.parameters()).device)), dim=1).cpu()
    pred = probs.argmax(1)
    return {
        "target": inv.target,
        "restarts": len(inv.costs),
        "evaluator_accuracy": float((pred == inv.target).float().mean()),
        "evaluator_confidence": float(probs[:, inv.target].mean()),
        "evaluator_predictions": pred.tolist(),
        "target_model_cost": float(np.mean(inv.costs)),
        "ssim_to_class_mean": float(np.mean([ssim(img, class_mean) for img in inv.images])),
        "mse_to_class_mean": float(((inv.images - class_mean[None]) ** 2).mean()),
        "iterations": inv.iterations,
    }


def class_mean_image(data: Any, target: int) -> torch.Tensor:
    """The mean training image of ``target`` (normalised range)."""
    mask = data.targets == int(target)
    if not bool(mask.any()):
        raise ConfigError(f"no training image of class {target} to compare the inversion with")
    x, _, _ = data[torch.nonzero(mask).flatten()]
    return x.mean(0)


def save_grid(path: str | Path, rows: dict[str, torch.Tensor], *, title: str | None = None) -> Path:
    """Save inversions as a PNG grid: one row per label, one column per image."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend and figures are left alone

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_rows = len(rows)
    n_cols = max(t.shape[0] for t in rows.values())
    fig = Figure(figsize=(1.4 * n_cols + 1.2, 1.4 * n_rows + (0.4 if title else 0)))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, (label, imgs) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < imgs.shape[0]:
                img = ((imgs[c].detach().cpu() + 1) / 2).clamp(0, 1)
                if img.shape[0] == 1:
                    ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
                else:
                    ax.imshow(img.permute(1, 2, 0).numpy())
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


@dataclass
class EvaluatorSpec:
    """The independent evaluation classifier: another architecture and seed than the target."""

    model: str
    seed: int = 12345
    epochs: int = 10
    extra: dict[str, Any] = field(default_factory=dict)


def train_evaluator(train: Any, target_model_name: str, *, epochs: int = 10, seed: int = 12345,
                    cache_dir: str | Path | None = None, progress: bool | None = None,
                    device: str | torch.device | None = None) -> nn.Module:
    """Train (or load from ``cache_dir``) an evaluation classifier on real data, of another architecture,
    on ``device`` (default CPU)."""
    import hashlib
    import json

    from ..models import build_model
    from ..run.checkpoint import load_tensors, save_tensors
    from ..training import fit, make_optimizer
    from ..utils import seeded

    info = train.info
    name = "mlp" if target_model_name != "mlp" else "small-cnn"
    key = hashlib.sha256(json.dumps({"m": name, "e": epochs, "s": seed, "n": len(train), "ids": train.ids[:50].tolist(),
                                     "d": info.name}).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"evaluator-{name}-{key}.safetensors" if cache_dir is not None else None
    with seeded(seed):
        net = build_model(name, in_channels=info.channels, num_classes=info.num_classes, image_size=info.image_size)
        net.to(device or "cpu")
        if path is not None and path.is_file():
            net.load_state_dict(load_tensors(path)[0])
        else:
            fit(net, make_optimizer("adam", net.parameters()), train, epochs=epochs, batch_size=64, seed=seed,
                progress=progress, desc="evaluator")
            if path is not None:
                save_tensors(path, net.state_dict(), {"model": name})
    net.eval()
    return net

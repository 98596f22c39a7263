"""Model registry: the paper's ResNet18, a CIFAR-style ResNet18 and a small CNN.

All are written here (no torchvision needed). Every factory takes the dataset's channel count, image
size and number of classes.

>>> from amnesiac.models import build_model
>>> net = build_model("small-cnn", in_channels=1, num_classes=10, image_size=8)
>>> import torch
>>> net(torch.zeros(2, 1, 8, 8)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import Registry
from .resnet import resnet18, resnet18_cifar

__all__ = ["MLP", "MODELS", "SmallCNN", "build_model", "count_parameters"]

ModelFactory = Callable[..., nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")


class SmallCNN(nn.Module):
    """Two conv-BN-ReLU-pool blocks and a two-layer head: fast, and has BatchNorm buffers."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28, width: int = 32) -> None:
        super().__init__()
        if image_size < 4:
            raise ConfigError(f"small-cnn needs images of at least 4x4 pixels, got {image_size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * side * side, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """Flatten, two hidden layers (256, 128) with ReLU: no convolutions at all."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_channels * image_size * image_size, 256), nn.ReLU(inplace=True),
            nn.Linear(256, 128), nn.ReLU(inplace=True), nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


MODELS.register(
    "mlp",
    lambda in_channels, num_classes, image_size: MLP(in_channels, num_classes, image_size),
    help="a two-hidden-layer perceptron (256, 128): no convolutions; the default inversion evaluator for CNN targets",
)
MODELS.register(
    "resnet18",
    lambda in_channels, num_classes, image_size: resnet18(in_channels=in_channels, num_classes=num_classes),
    help="the paper's ResNet18: torchvision architecture (7x7 stride-2 stem, max-pool), C input channels, new head",
)
MODELS.register(
    "resnet18-cifar",
    lambda in_channels, num_classes, image_size: resnet18_cifar(in_channels=in_channels, num_classes=num_classes),
    help="ResNet18 with a 3x3 stride-1 stem and no max-pool, the usual choice for 32x32 images",
)
MODELS.register(
    "small-cnn",
    lambda in_channels, num_classes, image_size: SmallCNN(in_channels, num_classes, image_size),
    help="two conv-BN blocks and an MLP head (~0.4M parameters at 28x28): fast runs and tests",
)


def build_model(name: str, *, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """Build a registered model for images of ``in_channels`` x ``image_size`` x ``image_size``."""
    for label, value in (("in_channels", in_channels), ("num_classes", num_classes), ("image_size", image_size)):
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{label} must be a positive integer, got {value!r}")
    return MODELS.get(name)(in_channels=in_channels, num_classes=num_classes, image_size=image_size)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

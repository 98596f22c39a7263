"""ResNet18 (He et al. 2016) in the torchvision layout, with a configurable input channel count.

Parameter names match torchvision's ``resnet18`` (``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``fc``),
so a torchvision state dict with the same channel count and head loads into :func:`resnet18`.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet18; ``cifar_stem=True`` swaps the 7x7/2 stem and max-pool for a 3x3/1 stem."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1000, *, cifar_stem: bool = False) -> None:
        super().__init__()
        if cifar_stem:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool: nn.Module = nn.Identity() if cifar_stem else nn.MaxPool2d(3, stride=2, padding=1)
        planes = [64, 128, 256, 512]
        layers = []
        in_planes = 64
        for i, p in enumerate(planes):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(in_planes, p, stride), BasicBlock(p, p, 1)))
            in_planes = p
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(in_channels: int = 3, num_classes: int = 1000) -> ResNet18:
    """The paper's ResNet18: torchvision's architecture with ``in_channels`` inputs and a new head."""
    return ResNet18(in_channels, num_classes, cifar_stem=False)


def resnet18_cifar(in_channels: int = 3, num_classes: int = 100) -> ResNet18:
    """ResNet18 with a 3x3 stride-1 stem and no max-pool (the common CIFAR variant)."""
    return ResNet18(in_channels, num_classes, cifar_stem=True)

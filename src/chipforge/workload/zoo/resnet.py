"""ResNet-50 (He et al. 2016) as a PyTorch module: torchvision's layout (v1.5: the stride in
the 3x3 convolution of each bottleneck), random weights.

torchvision lists ResNet50_Weights.IMAGENET1K_V1 at 4.09 GFLOPS (multiply-accumulates) and
25.6M parameters per 224x224 image; tests check the imported graph against those figures.
"""

from __future__ import annotations

import torch
from torch import nn

LAYERS = (3, 4, 6, 3)  # bottlenecks per stage (He et al. 2016, Table 1)
WIDTHS = (64, 128, 256, 512)
EXPANSION = 4


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * EXPANSION
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


class ResNet50(nn.Module):
    def __init__(self, classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1, self.relu = nn.BatchNorm2d(64), nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin, stages = 64, []
        for i, (blocks, width) in enumerate(zip(LAYERS, WIDTHS, strict=True)):
            stride = 1 if i == 0 else 2
            stage = [Bottleneck(cin, width, stride)]
            stage += [Bottleneck(width * EXPANSION, width, 1) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            cin = width * EXPANSION
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 2048, H/32, W/32)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build(*, batch: int, image: int = 224, device: str = "meta"):
    with torch.device(device):
        module = ResNet50().eval()
    return module, (torch.zeros(batch, 3, image, image, device=device),)

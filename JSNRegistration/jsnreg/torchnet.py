"""The registration network as a torch module: for training only (inference runs in numpy, see
network.py, so measuring never pays torch's import of about 2 s)."""

from __future__ import annotations

import torch
from torch import nn

from .network import CONV_LAYERS


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class JSNNet(nn.Module):
    """A small plain CNN (about 0.5 M weights): 64 px in, 4 x 4 features, one hidden layer out.

    The layer list is network.CONV_LAYERS; network.NumpyNet evaluates the same weights."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(*(_block(c_in, c_out, stride) for c_in, c_out, stride in CONV_LAYERS))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(CONV_LAYERS[-1][1] * 16, 128), nn.ReLU(inplace=True),
                                  nn.Linear(128, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

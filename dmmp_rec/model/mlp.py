"""The fully connected stack every expert, tower and gate is built from."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """Linear + ReLU layers of widths `dims`; `out_dim` adds a final linear layer without an
    activation (a logit or an embedding). With no layers at all it is the identity."""

    def __init__(
        self,
        in_dim: int,
        dims: list[int],
        out_dim: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for d in dims:
            layers += [nn.Linear(width, d, device=device), nn.ReLU()]
            width = d
        if out_dim is not None:
            layers.append(nn.Linear(width, out_dim, device=device))
            width = out_dim
        self.net = nn.Sequential(*layers)
        self.out_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

"""The fully connected stack every expert, tower and gate is built from."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _SharedFirstProduct(torch.autograd.Function):
    """x W^T + b computed once and handed out twice. The second copy behaves as if `x` were
    detached: its gradient reaches W and b, never x. Both copies' weight gradients come from one
    product ((g1 + g2)^T x), so the second consumer costs no first-layer work at all."""

    @staticmethod
    def forward(ctx, x, weight, bias):  # noqa: ANN001, ANN205
        z = F.linear(x, weight, bias)
        ctx.save_for_backward(x, weight)
        return z, z.clone()

    @staticmethod
    def backward(ctx, g_full, g_frozen):  # noqa: ANN001, ANN205
        x, weight = ctx.saved_tensors
        g = g_full + g_frozen
        grad_x = g_full @ weight if ctx.needs_input_grad[0] else None
        grad_w = g.reshape(-1, g.shape[-1]).T @ x.reshape(-1, x.shape[-1])
        grad_b = g.reshape(-1, g.shape[-1]).sum(0)
        return grad_x, grad_w, grad_b


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

    @property
    def first(self) -> nn.Linear | None:
        """The layer that reads the input (None for the identity)."""
        return self.net[0] if len(self.net) else None

    def rest(self, z: torch.Tensor) -> torch.Tensor:
        """The stack above the first layer, from that layer's output `z`:
        forward(x) == rest(first(x)). A first layer linear in concatenated inputs can then be
        computed per input block and its blocks' products reused (teacher.FirstLayer)."""
        for layer in list(self.net)[1:]:
            z = layer(z)
        return z

    def forward_twice(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(forward(x), forward(x.detach())) for one first-layer product: the second output
        trains the weights only (it never sends a gradient into `x`). The layers above the
        first run twice, which is cheap next to the first when the input is wide."""
        first = self.first
        if first is None:
            return x, x.detach()
        z, z_frozen = _SharedFirstProduct.apply(x, first.weight, first.bias)
        return self.rest(z), self.rest(z_frozen)

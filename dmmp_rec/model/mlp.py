"""The fully connected stack every expert, tower and gate is built from."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from dmmp_rec.model.precision import compute_dtype


class _TwoStreams(torch.autograd.Function):
    """A Linear(+ReLU) stack run once, its output handed out twice. The second copy behaves
    as if the input were detached: its gradient reaches the weights, never the input. The
    backward carries the two output gradients down the stack separately (a separate input
    gradient needs that) but computes each layer's weight gradient once, from their sum."""

    @staticmethod
    def forward(ctx, x, relu_after, *weights_and_biases):  # noqa: ANN001, ANN205
        dtype = compute_dtype(x)  # bf16 under train.precision=bf16's autocast
        ctx.dtypes = (x.dtype, [t.dtype for t in weights_and_biases])
        weights_and_biases = tuple(t.to(dtype) for t in weights_and_biases)
        layers = list(zip(weights_and_biases[::2], weights_and_biases[1::2], strict=True))
        inputs, h = [], x.to(dtype)
        for (w, b), relu in zip(layers, relu_after, strict=True):
            inputs.append(h)
            h = F.linear(h, w, b)
            if relu:
                h = torch.relu(h)
        ctx.relu_after = relu_after
        ctx.save_for_backward(*weights_and_biases, *inputs, h)
        return h, h.clone()

    @staticmethod
    def backward(ctx, g_full, g_frozen):  # noqa: ANN001, ANN205
        n = len(ctx.relu_after)
        saved = ctx.saved_tensors
        weights = saved[0 : 2 * n : 2]
        x_dtype, param_dtypes = ctx.dtypes
        g_full, g_frozen = g_full.to(weights[0].dtype), g_frozen.to(weights[0].dtype)
        inputs, out = saved[2 * n : 3 * n], saved[3 * n]
        grads: list[torch.Tensor | None] = [None] * (2 * n)
        grad_x = None
        outputs = [*inputs[1:], out]  # each layer's output (after its ReLU)
        for i in reversed(range(n)):
            if ctx.relu_after[i]:
                alive = outputs[i] > 0
                g_full, g_frozen = g_full * alive, g_frozen * alive
            g = (g_full + g_frozen).reshape(-1, g_full.shape[-1])
            grads[2 * i] = g.T @ inputs[i].reshape(-1, inputs[i].shape[-1])
            grads[2 * i + 1] = g.sum(0)
            if i > 0:
                g_full, g_frozen = g_full @ weights[i], g_frozen @ weights[i]
            elif ctx.needs_input_grad[0]:
                grad_x = (g_full @ weights[i]).to(x_dtype)
        grads = [None if g is None else g.to(d) for g, d in zip(grads, param_dtypes, strict=True)]
        return (grad_x, None, *grads)


class MLP(nn.Module):
    """Linear + ReLU layers of widths `dims`, then optionally a linear output layer.

    Args:
        in_dim (int): input width.
        dims (list[int]): widths of the Linear + ReLU layers (may be empty).
        out_dim (int | None): adds a final linear layer of this width without an activation
            (a logit or an embedding); None: none. With no layers at all it is the identity.
        device (torch.device | str | None): where the parameters are created.
    """

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
        """The stack on `x`.

        Args:
            x (torch.Tensor): the input, [..., in_dim].

        Returns:
            torch.Tensor: [..., out_dim] (x itself for the identity).
        """
        return self.net(x)

    @property
    def first(self) -> nn.Linear | None:
        """The layer that reads the input (None for the identity)."""
        return cast(nn.Linear, self.net[0]) if len(self.net) else None

    def rest(self, z: torch.Tensor) -> torch.Tensor:
        """The stack above the first layer, from that layer's output: forward(x) == rest(first(x)).

        A first layer linear in concatenated inputs can then be computed per input block and its
        blocks' products reused (teacher.FirstLayer).

        Args:
            z (torch.Tensor): the first layer's output (before its ReLU), [..., dims[0]].

        Returns:
            torch.Tensor: what `forward` returns for the input that gave `z`.
        """
        for layer in list(self.net)[1:]:
            z = layer(z)
        return z

    def forward_twice(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(forward(x), forward(x.detach())) from one pass.

        The second output trains the weights only (it never sends a gradient into `x`), and costs no
        extra product in the forward pass nor any extra weight gradient in the backward.

        Args:
            x (torch.Tensor): the input, [B, in_dim].

        Returns:
            tuple[torch.Tensor, torch.Tensor]: the two equal outputs, [B, out_dim] each; the
            identity returns (x, x.detach()).
        """
        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        if not linears:
            return x, x.detach()
        modules = list(self.net)
        relu_after = tuple(
            i + 1 < len(modules) and isinstance(modules[i + 1], nn.ReLU)
            for i, m in enumerate(modules)
            if isinstance(m, nn.Linear)
        )
        params = [t for m in linears for t in (m.weight, m.bias)]
        return _TwoStreams.apply(x, relu_after, *params)

"""torch-rechub's DSSM with a proper output layer and its temperature in effect.

Stock 0.9.0 DSSM builds each tower as `MLP(dims, output_layer=False)`: every layer, the last
included, is Linear -> BatchNorm -> activation, so with ReLU the vector is non-negative, and
`forward` has `y = y / self.temperature` commented out, so the temperature is ignored; its
in-batch training (`MatchTrainer(in_batch_neg=True)`) scores `user_tower @ item_tower.T` with no
temperature either. This subclass changes exactly two things and nothing else of the model:

1. each tower is stock's MLP over the hidden widths followed by a plain `nn.Linear` to the vector
   width (no BatchNorm or activation on the vector), then L2 normalisation as stock;
2. the user tower returns the normalised vector divided by `temperature`, so every score torch-
   rechub computes from the towers (its point-wise `forward`, its in-batch logits) is
   cosine / temperature, which is what its docs describe. Retrieval ranks items per user, so the
   constant scale of the user vector changes no ranking.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_rechub.models.matching import DSSM


class TemperedDSSM(DSSM):
    """DSSM whose towers end in a linear layer of width `out_dim` and whose user vector carries
    1 / temperature. `tower_params` is stock's MLP params for the hidden layers
    (`dims`, `activation`, `dropout`)."""

    def __init__(
        self,
        user_features: list,
        item_features: list,
        tower_params: dict,
        out_dim: int,
        temperature: float,
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"DSSM temperature must be > 0, got {temperature}")
        super().__init__(
            user_features, item_features, dict(tower_params), dict(tower_params), temperature
        )
        hidden = list(tower_params.get("dims", []))
        user_in = hidden[-1] if hidden else self.user_dims
        item_in = hidden[-1] if hidden else self.item_dims
        self.user_mlp = nn.Sequential(self.user_mlp, nn.Linear(user_in, out_dim))  # type: ignore[has-type]
        self.item_mlp = nn.Sequential(self.item_mlp, nn.Linear(item_in, out_dim))  # type: ignore[has-type]
        self.out_dim = out_dim

    def user_tower(self, x: dict[str, torch.Tensor]) -> torch.Tensor | None:
        vector = super().user_tower(x)
        return None if vector is None else vector / self.temperature

"""The torch-rechub 0.9.0 peers on our features: feature objects, input dicts and model builders.

torch-rechub reads a dict of tensors, one per feature: a LongTensor [B] for a single-valued
feature, a padded LongTensor [B, L] for a multi-valued one (a `SequenceFeature`, pooled as our
EBC pools it, padding masked out). Its `EmbeddingLayer` concatenates the per-feature embeddings
[B, 1, D] along dim 1, so every feature must have ONE embedding width. A peer's widths come from
its recipe (rechub/recipes.py): torch-rechub's documented ones, or ours (the mean of our
per-feature dims, rounded; experts `teacher.expert_dims`, towers `teacher.tower_dims`; ESMM has
no shared bottom in torch-rechub, so each of its towers gets `expert_dims + tower_dims`; DSSM's
towers `student.tower_dims` then a linear layer to `student.out_dim`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch_rechub.basic.features import SequenceFeature, SparseFeature
from torch_rechub.models.multi_task import ESMM, MMOE, PLE
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dmmp_rec.compare.rechub.dssm import TemperedDSSM
from dmmp_rec.compare.rechub.recipes import (
    DOC_DSSM,
    DOC_ESMM_TOWER,
    DOC_MMOE,
    DOC_PLE,
    RechubKind,
    RechubRecipe,
)
from dmmp_rec.compare.rechub.recipes import recipe as get_recipe
from dmmp_rec.config.features import FeatureSpec
from dmmp_rec.config.root import DmmpConfig
from dmmp_rec.data.catalogue import item_side, user_side


def uniform_dim(cfg: DmmpConfig) -> int:
    """The one embedding width torch-rechub needs: the mean of our feature dims, rounded."""
    dims = [s.dim for s in cfg.features.all]
    return max(1, round(sum(dims) / len(dims)))


def rechub_feature(spec: FeatureSpec, dim: int) -> SparseFeature | SequenceFeature:
    """A multi-valued feature gets one extra row, `cardinality`, as its masked padding id."""
    if spec.multi_valued:
        return SequenceFeature(
            spec.name,
            vocab_size=spec.cardinality + 1,
            embed_dim=dim,
            pooling=spec.pooling,
            padding_idx=spec.cardinality,
        )
    return SparseFeature(spec.name, vocab_size=spec.cardinality, embed_dim=dim)


def input_specs(cfg: DmmpConfig) -> list[FeatureSpec]:
    """The features a peer reads, in input order: query side (user, context), then item side;
    the cross features are the teacher's alone."""
    return user_side(cfg.features) + item_side(cfg.features)


def _padded(values: torch.Tensor, lengths: torch.Tensor, pad: int) -> torch.Tensor:
    """[B, L] ids, row i holding its `lengths[i]` values then `pad`; L >= 1."""
    width = max(1, int(lengths.max())) if lengths.numel() else 1
    mask = torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]
    out = torch.full((lengths.numel(), width), pad, dtype=torch.long, device=values.device)
    out[mask] = values.long()
    return out


def kjt_to_inputs(kjt: KeyedJaggedTensor, specs: list[FeatureSpec]) -> dict[str, torch.Tensor]:
    """torch-rechub's input dict for the features `specs` of a KJT (other keys are ignored)."""
    jts = kjt.to_dict()
    inputs = {}
    for spec in specs:
        if spec.name not in jts:
            raise KeyError(f"feature {spec.name!r} is not in the batch; got {sorted(jts)}")
        jt = jts[spec.name]
        if spec.multi_valued:
            inputs[spec.name] = _padded(jt.values(), jt.lengths(), spec.cardinality)
        else:
            lengths = jt.lengths()
            if lengths.numel() and bool((lengths != 1).any()):
                raise ValueError(f"single-valued feature {spec.name!r} has a row without 1 id")
            inputs[spec.name] = jt.values().long()
    return inputs


class RechubPeer:
    """A torch-rechub model built by a recipe, with the feature lists it reads (query side, item
    side)."""

    def __init__(self, recipe: RechubRecipe | str, cfg: DmmpConfig) -> None:
        self.recipe = recipe if isinstance(recipe, RechubRecipe) else get_recipe(recipe)
        self.kind: RechubKind = self.recipe.kind
        self.embed_dim = self.recipe.embed_dim or uniform_dim(cfg)
        self.query_specs = user_side(cfg.features)
        self.item_specs = item_side(cfg.features)
        self.specs = input_specs(cfg)
        self.vector_dim = 0  # DSSM's tower output width; 0 for the rankers
        self.query_features = [rechub_feature(s, self.embed_dim) for s in self.query_specs]
        self.item_features = [rechub_feature(s, self.embed_dim) for s in self.item_specs]
        self.model = self._build(cfg)

    def _build(self, cfg: DmmpConfig) -> nn.Module:
        if self.kind == "dssm":
            return self._build_dssm(cfg)
        documented = self.recipe.widths == "documented"
        t = cfg.model.teacher
        features = self.query_features + self.item_features
        if self.kind == "esmm":
            dims = DOC_ESMM_TOWER if documented else list(t.expert_dims) + list(t.tower_dims)
            return ESMM(self.query_features, self.item_features, {"dims": dims}, {"dims": dims})
        arch = DOC_MMOE if self.kind == "mmoe" else DOC_PLE
        expert = {"dims": list(arch["expert_dims"] if documented else t.expert_dims)}
        tower = {"dims": list(arch["tower_dims"] if documented else t.tower_dims)}
        towers = [tower, dict(tower)]
        if self.kind == "mmoe":
            # ours: as our MMoE teacher, the same expert count as the CGC it is compared with
            n_expert = arch["n_expert"] if documented else t.shared_experts + 2 * t.task_experts
            return MMOE(features, ["classification"] * 2, n_expert, expert, towers)
        levels, specific, shared = (
            (arch["n_level"], arch["n_specific"], arch["n_shared"])
            if documented
            else (t.num_levels, t.task_experts, t.shared_experts)
        )
        return PLE(features, ["classification"] * 2, levels, specific, shared, expert, towers)

    def _build_dssm(self, cfg: DmmpConfig) -> nn.Module:
        s = cfg.model.student
        if self.recipe.widths == "documented":
            hidden, activation = list(DOC_DSSM["hidden_dims"]), DOC_DSSM["activation"]
            self.vector_dim = int(DOC_DSSM["out_dim"])
        else:
            hidden, activation, self.vector_dim = list(s.tower_dims), "relu", s.out_dim
        temperature = self.recipe.temperature or s.tau
        params = {"dims": hidden, "activation": activation}
        return TemperedDSSM(
            self.query_features, self.item_features, params, self.vector_dim, temperature
        )

    @property
    def task_count(self) -> int:
        """Outputs of the model: ESMM [pCVR, pCTR, pCTCVR], MMoE/PLE [CTR, CTCVR], DSSM 1."""
        return {"esmm": 3, "mmoe": 2, "ple": 2, "dssm": 1}[self.kind]

    def inputs(self, kjt: KeyedJaggedTensor) -> dict[str, torch.Tensor]:
        return kjt_to_inputs(kjt, self.specs)

    def labels(self, click: torch.Tensor, conversion: torch.Tensor) -> torch.Tensor:
        """Targets in the model's output order. MMoE and PLE learn task 2 as CTCVR over all
        impressions (MTLTrainer has no per-task row mask, so CVR on clicked rows is not an
        option without rewriting its loop); ESMM's pCVR column is not trained, as in ESMM."""
        ctcvr = click * conversion
        if self.kind == "esmm":
            return torch.stack([conversion, click, ctcvr], dim=1)
        if self.kind == "dssm":
            return click
        return torch.stack([click, ctcvr], dim=1)

    @torch.no_grad()
    def probabilities(self, kjt: KeyedJaggedTensor) -> dict[str, torch.Tensor]:
        """pctr, pcvr, pctcvr [B] of a ranking peer; pcvr = pCTCVR / pCTR for MMoE and PLE."""
        out = self.model(self.inputs(kjt))
        if self.kind == "esmm":
            return {"pcvr": out[:, 0], "pctr": out[:, 1], "pctcvr": out[:, 2]}
        if self.kind == "dssm":
            raise ValueError("DSSM is a retriever; use its towers (RechubRetriever)")
        pctr, pctcvr = out[:, 0], out[:, 1]
        pcvr = (pctcvr / pctr.clamp(min=1e-12)).clamp(max=1.0)
        return {"pctr": pctr, "pcvr": pcvr, "pctcvr": pctcvr}


class RechubRetriever(nn.Module):
    """DSSM's towers behind the retrieval interface of DMMPModel (`query_vector`,
    `item_vector`, `user_gate`), so the same encoders, FAISS index and metrics serve it."""

    def __init__(self, peer: RechubPeer) -> None:
        super().__init__()
        if peer.kind != "dssm":
            raise ValueError(f"only DSSM is a retriever, got {peer.kind}")
        self.peer = peer
        self.dssm: Any = peer.model  # torch-rechub's DSSM (untyped)

    @property
    def vector_dim(self) -> int:
        return self.peer.vector_dim

    def query_vector(self, features: KeyedJaggedTensor, beta: float = 0.0) -> torch.Tensor:
        """The user vector; a single-task retriever has no serving knob (`beta` is ignored)."""
        return self.dssm.user_tower(kjt_to_inputs(features, self.peer.query_specs))

    def item_vector(self, features: KeyedJaggedTensor) -> torch.Tensor:
        return self.dssm.item_tower(kjt_to_inputs(features, self.peer.item_specs))

    def user_gate(self, features: KeyedJaggedTensor, beta: float = 0.0) -> torch.Tensor:
        """A single (click) task: the gate is (1, 0) for every user."""
        batch = features.stride()
        return torch.tensor([1.0, 0.0]).expand(batch, 2)

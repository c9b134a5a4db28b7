"""The scoring half of the dense part: teacher and student over the pooled group embeddings.

Evaluation, validation and serving checks call `score` and pay for nothing else; the training
objective (`objective.DenseArch`) extends this module with the loss terms, their weighting and
the in-batch candidates, so the parameters keep their paths (`dense.teacher`, `dense.student`)
and a checkpoint loads into either use.
"""

from __future__ import annotations

import torch
from torch import nn

from dmmp_rec.config.model import ModelConfig
from dmmp_rec.model.output import DMMPOutput
from dmmp_rec.model.student import Student, StudentOutput
from dmmp_rec.model.teacher import Teacher, TeacherOutput


class DenseScorer(nn.Module):
    """Teacher and student; `score(groups)` is the model's scoring forward.

    Args:
        group_dims (dict[str, int]): width of each group's pooled embeddings ("user", "item",
            and "context" / "cross" when the features have them).
        cfg (ModelConfig): the model section (variant, teacher, student).
    """

    def __init__(self, group_dims: dict[str, int], cfg: ModelConfig) -> None:
        super().__init__()
        self.variant = cfg.variant
        self.has_context = group_dims.get("context", 0) > 0
        self.has_cross = group_dims.get("cross", 0) > 0  # pair features: the teacher's only
        user_dim = group_dims["user"] + group_dims.get("context", 0)
        # the teacher's input blocks in concatenation order; `cross` is the pair's only
        blocks = {g: group_dims.get(g, 0) for g in ("user", "item", "context", "cross")}
        self.teacher = Teacher({g: w for g, w in blocks.items() if w > 0}, cfg.teacher)
        self.student = Student(
            user_dim, group_dims["item"], group_dims["user"], cfg.student, cfg.variant
        )
        # Score the teacher's first layer block by block (row + item [+ pair]), as training with
        # candidates does, so scores are bit-identical to the training forward's; the objective
        # sets it when it ranks candidates (the two forms differ only in float rounding).
        self.split_first_layer = False

    def blocks(
        self, groups: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The teacher's input blocks from the pooled groups.

        Args:
            groups (dict[str, torch.Tensor]): pooled embeddings by feature group ("user", "item",
                and "context" / "cross" when the model has them), [B, width] each.

        Returns:
            tuple: (user, item, context, cross) embeddings, [B, width] each; context and cross are
            None when the model has no such group (other groups in `groups` are ignored).
        """
        context = groups["context"] if self.has_context else None
        cross = groups["cross"] if self.has_cross else None
        return groups["user"], groups["item"], context, cross

    def teacher_and_student(
        self, groups: dict[str, torch.Tensor]
    ) -> tuple[TeacherOutput, StudentOutput]:
        """Both models on the impressions, without candidates or losses.

        With `split_first_layer` the teacher's first layer is computed block by block, as training
        with candidates does, so scores are bit-identical to that training forward's.

        Args:
            groups (dict[str, torch.Tensor]): pooled embeddings by feature group ("user", "item",
                and "context" / "cross" when the model has them), [B, width] each.

        Returns:
            tuple[TeacherOutput, StudentOutput]: their outputs, [B] scores each.
        """
        user, item, context, cross = self.blocks(groups)
        if self.split_first_layer:
            first = self.teacher.first_layer()
            row = {"user": user} if context is None else {"user": user, "context": context}
            pre = first.partial(row) + first.bias + first.partial({"item": item})
            if cross is not None:
                pre = pre + first.partial({"cross": cross})
            t = self.teacher.from_first_layer(pre)
        else:
            parts = [user, item] + [x for x in (context, cross) if x is not None]
            t = self.teacher(torch.cat(parts, dim=1))
        s = self.student(user, context, item)  # the student never reads `cross`
        return t, s

    def score(self, groups: dict[str, torch.Tensor]) -> DMMPOutput:
        """The model's scoring forward: teacher and student scores of each row.

        Args:
            groups (dict[str, torch.Tensor]): pooled embeddings by feature group ("user", "item",
                and "context" / "cross" when the model has them), [B, width] each.

        Returns:
            DMMPOutput: the per-row scores, [B] each; no loss is computed, no step counted.
        """
        return DMMPOutput.from_parts(*self.teacher_and_student(groups))

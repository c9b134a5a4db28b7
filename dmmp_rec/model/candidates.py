"""Conversion distillation beyond the logged impressions: the teacher ranks in-batch candidates.

A retriever ranks the whole catalogue, but labels exist only for the items the logging policy
chose to show, and conversions are too rare (about one in a thousand impressions) for an
in-batch softmax like the click tower's. The teacher, once trained, can score ANY (user, item)
pair, so each row's user gets a short candidate list, its own item and the items of R other
rows of the batch (the batch rolled by 1..R), that the teacher ranks by pCTCVR and the
conversion tower learns to rank alike (losses.listwise_distill).

Both sides run on detached embeddings: the teacher without gradient (its side of distillation
is detached anyway), the student's user and conversion towers re-applied to the detached pooled
embeddings, so this term trains the towers only. Its gradients are O(1) per row where the
pointwise terms' are O(p); measured on the default world, letting them reach the shared tables
pulled the teacher's CTCVR AUC from 0.747 to 0.733 and the retrieval with it (docs/model.md).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from dmmp_rec.model.student import Student
from dmmp_rec.model.teacher import Teacher, TeacherOutput


class Candidates(NamedTuple):
    """Each user's candidates, [B, 1 + R]; column 0 is the row's own impression."""

    teacher_pctcvr: torch.Tensor  # detached
    s_v: torch.Tensor  # the conversion score, from the towers on detached embeddings


def candidate_shifts(batch: int, num_candidates: int) -> list[int]:
    """Rolls 1..R of the batch, at most batch - 1 (a row never meets its own item twice)."""
    return list(range(1, min(num_candidates, batch - 1) + 1))


def conversion_candidates(
    teacher: Teacher,
    teacher_out: TeacherOutput,
    student: Student,
    user: torch.Tensor,
    item: torch.Tensor,
    context: torch.Tensor | None,
    num_candidates: int,
    pair_cross: list[torch.Tensor] | None = None,
) -> Candidates:
    """Row i's user with its own item and with row (i - r)'s item for r = 1..num_candidates;
    `teacher_out` is the teacher's output on the impressions themselves (column 0);
    `pair_cross[r - 1]` is the pooled cross features of the pairs at shift r, when the
    teacher reads cross features."""
    user, item = user.detach(), item.detach()
    context = None if context is None else context.detach()
    rolls = candidate_shifts(user.shape[0], num_candidates)
    shifts = [0] + rolls
    n = len(rolls)
    items = torch.cat([item.roll(r, 0) for r in rolls]) if n else item[:0]
    parts = [user.repeat(n, 1), items] + ([context.repeat(n, 1)] if context is not None else [])
    if pair_cross is not None:
        cross = [pair_cross[r - 1].detach() for r in rolls]
        parts.append(torch.cat(cross) if n else pair_cross[0][:0].detach())
    with torch.no_grad():
        others = teacher(torch.cat(parts, dim=1)).pctcvr.view(n, user.shape[0])
    pctcvr = torch.cat([teacher_out.pctcvr.detach().unsqueeze(0), others]).T
    u = student.user_embedding(user, context)
    i_v = student.conversion_embedding(item)
    rolled = torch.stack([i_v.roll(r, 0) for r in shifts])  # [1 + R, B, d]
    s_v = (u.unsqueeze(0) * rolled).sum(-1).T / student.tau().to(u.device)
    return Candidates(pctcvr, s_v)

"""Conversion distillation beyond the logged impressions: the teacher ranks in-batch candidates.

A retriever ranks the whole catalogue, but labels exist only for the items the logging policy
chose to show, and conversions are too rare (about one in a thousand impressions) for an
in-batch softmax like the click tower's. The teacher, once trained, can score ANY (user, item)
pair, so each row's user gets a short candidate list, its own item and the items of R other
rows of the batch (the batch rolled by 1..R), that the teacher ranks by pCTCVR and the
conversion tower learns to rank alike (losses.listwise_distill).

Both sides act as if on detached embeddings: the teacher without gradient (its side of
distillation is detached anyway), the student's user and conversion towers as if re-applied to
the detached pooled embeddings, so this term trains the towers only. Its gradients are O(1) per
row where the pointwise terms' are O(p); measured on the default world, letting them reach the
shared tables pulled the teacher's CTCVR AUC from 0.747 to 0.733 and the retrieval with it
(docs/model.md).

Cost: a candidate pair reuses everything the impression's own forward pass computed. The
teacher's first layers are linear in [user, item, context, ...], so each block's share of their
pre-activations is computed once per row and a pair adds its row's share to its item's
(teacher.FirstLayer); a pair costs the layers above the first. The student's towers run once:
`MLP.forward_twice` hands their output to the candidate term a second time, with a gradient
that reaches the tower weights and not the embeddings (17.05 -> 9.64 MFLOP per sample on
configs/bench.yaml, benchmarks/README.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F

from dmmp_rec.model.student import Student, StudentOutput
from dmmp_rec.model.teacher import FirstLayer, Teacher, TeacherOutput


class Candidates(NamedTuple):
    """Each user's candidates, [B, 1 + R]; column 0 is the row's own impression."""

    teacher_pctcvr: torch.Tensor  # detached
    s_v: torch.Tensor  # the conversion score, from the towers as if on detached embeddings


def candidate_shifts(batch: int, num_candidates: int) -> list[int]:
    """Rolls 1..R of the batch, at most batch - 1 (a row never meets its own item twice).

    Args:
        batch (int): rows in the batch, B.
        num_candidates (int): candidates wanted per row besides its own item, R
            (model.candidates).

    Returns:
        list[int]: the shifts r, 1..min(R, B - 1); empty when B <= 1.
    """
    return list(range(1, min(num_candidates, batch - 1) + 1))


def forward_with_candidates(
    teacher: Teacher,
    student: Student,
    user: torch.Tensor,
    item: torch.Tensor,
    context: torch.Tensor | None,
    num_candidates: int,
    pair_blocks: Mapping[str, torch.Tensor] | None = None,
    candidate_pair_blocks: Mapping[str, torch.Tensor] | None = None,
) -> tuple[TeacherOutput, StudentOutput, Candidates]:
    """Teacher and student on the impressions, plus each user's teacher-ranked candidate list.

    The impressions' outputs are exactly `teacher(cat(blocks))` and `student(user, context,
    item)`; the candidate list of row i is its own item and row (i - r)'s item for r in
    candidate_shifts(B, num_candidates). Teacher blocks "user" and "context" belong to the row
    and "item" to the item; any other teacher block belongs to the (user, item) pair (e.g. user x
    item cross features).

    Args:
        teacher (Teacher): the trained-alongside teacher; its candidate scores are detached.
        student (Student): the three-tower (or two-tower) student.
        user (torch.Tensor): pooled user-side embeddings, [B, d_user].
        item (torch.Tensor): pooled item-side embeddings, [B, d_item].
        context (torch.Tensor | None): pooled context embeddings, [B, d_ctx]; None when the
            model has no context features.
        num_candidates (int): R, candidates per row besides its own item.
        pair_blocks (Mapping[str, torch.Tensor] | None): the impressions' own pair blocks,
            name -> [B, w]; None for none.
        candidate_pair_blocks (Mapping[str, torch.Tensor] | None): the same blocks for every
            candidate pair, name -> [R', B, w] with R' = len(candidate_shifts(B, R)); must name
            the same blocks as `pair_blocks`.

    Returns:
        tuple[TeacherOutput, StudentOutput, Candidates]: the teacher's and the student's outputs
        on the impressions, and the candidates: teacher pCTCVR and student conversion score,
        each [B, 1 + R'] with column 0 the row's own item.
    """
    pair_blocks = dict(pair_blocks or {})
    candidate_pair_blocks = dict(candidate_pair_blocks or {})
    shifts = candidate_shifts(user.shape[0], num_candidates)
    _check_pair_blocks(pair_blocks, candidate_pair_blocks, len(shifts), user.shape[0])
    first = teacher.first_layer()
    row_blocks = {"user": user} if context is None else {"user": user, "context": context}
    per_row = first.partial(row_blocks) + first.bias
    per_item = first.partial({"item": item})
    pre = per_row + per_item
    if pair_blocks:
        pre = pre + first.partial(pair_blocks)
    t = teacher.from_first_layer(pre)

    s, u_frozen, i_v_frozen = _student_twice(student, user, context, item)

    pctcvr = [t.pctcvr.detach()]
    pctcvr += _shifted_pctcvr(teacher, first, per_row, per_item, shifts, candidate_pair_blocks)
    teacher_pctcvr = torch.stack(pctcvr, dim=1)
    rolled = torch.stack([i_v_frozen.roll(r, 0) for r in [0] + shifts])  # [1 + R, B, d]
    s_v = (u_frozen.unsqueeze(0) * rolled).sum(-1).T / student.tau().to(u_frozen.device)
    return t, s, Candidates(teacher_pctcvr, s_v)


def _check_pair_blocks(
    pair_blocks: Mapping[str, torch.Tensor],
    candidate_pair_blocks: Mapping[str, torch.Tensor],
    num_shifts: int,
    batch: int,
) -> None:
    """Every pair block has candidate values too, each [num_shifts, batch, width]."""
    if set(pair_blocks) != set(candidate_pair_blocks):
        raise ValueError(
            f"pair blocks {sorted(pair_blocks)} need values for every candidate pair too; "
            f"got {sorted(candidate_pair_blocks)}"
        )
    for name, values in candidate_pair_blocks.items():
        if values.shape[:2] != (num_shifts, batch):
            raise ValueError(
                f"candidate pair block {name!r} must be [{num_shifts}, {batch}, width] "
                f"(candidates x rows), got {tuple(values.shape)}"
            )


@torch.no_grad()
def _shifted_pctcvr(
    teacher: Teacher,
    first: FirstLayer,
    per_row: torch.Tensor,
    per_item: torch.Tensor,
    shifts: list[int],
    candidate_pair_blocks: Mapping[str, torch.Tensor],
) -> list[torch.Tensor]:
    """The frozen teacher's pCTCVR of row i with row (i - r)'s item, one [B] per shift r."""
    # one shift at a time: [B, F] blocks stay in cache, no [R, B, F] tensor is built
    frozen = first.detach()
    buffer = torch.empty_like(per_row)  # reused by every shift: one fresh block, not R
    out = []
    for k, r in enumerate(shifts):
        pre_r = _rolled_sum(per_row.detach(), per_item.detach(), r, buffer)
        if candidate_pair_blocks:
            pre_r += frozen.partial({n: v[k] for n, v in candidate_pair_blocks.items()})
        out.append(teacher.from_first_layer(pre_r).pctcvr)
    return out


def _rolled_sum(row: torch.Tensor, item: torch.Tensor, r: int, out: torch.Tensor) -> torch.Tensor:
    """row + item.roll(r, 0) written into `out` in one pass (roll alone copies through an
    index on CPU)."""
    torch.add(row[r:], item[: len(item) - r], out=out[r:])
    torch.add(row[:r], item[len(item) - r :], out=out[:r])
    return out


def _student_twice(
    student: Student, user: torch.Tensor, context: torch.Tensor | None, item: torch.Tensor
) -> tuple[StudentOutput, torch.Tensor, torch.Tensor]:
    """The student's output, and u and i_v once more as if computed from detached embeddings
    (their gradients reach the towers, never the embeddings), each tower run once."""
    x = user if context is None else torch.cat([user, context], dim=1)
    u, u_frozen = (F.normalize(v, dim=-1) for v in student.user_tower.forward_twice(x))
    if student.conversion_tower is None:  # two towers: i_v is i_c (Student.conversion_embedding)
        i_c, i_v_frozen = (F.normalize(v, dim=-1) for v in student.click_tower.forward_twice(item))
        i_v = None
    else:
        i_c = F.normalize(student.click_tower(item), dim=-1)
        pair = student.conversion_tower.forward_twice(item)
        i_v, i_v_frozen = (F.normalize(v, dim=-1) for v in pair)
    return student.scores(u, i_c, i_v, user), u_frozen, i_v_frozen

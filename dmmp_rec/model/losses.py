"""Every loss term of DMMP and its baselines, as plain torch ops (no torchmetrics).

Terms (names as in outputs `loss/<term>` and `model.loss.fixed_weights`):
- teacher/ctr, teacher/ctcvr: entire-space BCE of pCTR on click and of pCTCVR on
  click-and-conversion, over every impression;
- student/ctr, student/ctcvr: BCE of sigmoid(s_c) on click, of sigmoid(s_v) on click-and-conversion;
- student/fused: BCE of sigmoid(f) on the value label y (1 conversion, c click only, 0 otherwise);
- student/inbatch: softmax of the click score over the batch's items on clicked rows, log-q
  corrected;
- distill/ctr, distill/ctcvr, distill/fused: Bernoulli KL from the teacher's pCTR, pCTCVR and
  c * pCTR + (1 - c) * pCTCVR to s_c, s_v and f, with temperature T; the teacher side is detached;
- distill/ctcvr_rank: each user's own item and R other items of the batch ranked by s_v as the
  teacher ranks them by pCTCVR (listwise KL; `distill_candidates` = R, candidates.py);
- distill/gate: the gate logit regressed on the teacher's log pCVR (gate_targets.py).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from dmmp_rec.config.model import DISTILL_TERMS, LOSS_TERMS, LossConfig
from dmmp_rec.model.candidates import Candidates
from dmmp_rec.model.gate_targets import GATE_TERM, gate_loss
from dmmp_rec.model.student import StudentOutput
from dmmp_rec.model.teacher import TeacherOutput

EPS = 1e-6


def terms_for(
    variant: str, in_batch_negatives: bool, candidates: bool = True, gate_training: str = "fused"
) -> tuple[str, ...]:
    """The loss terms a variant trains, in LOSS_TERMS order.

    Args:
        variant (str): model.variant: "dmmp", "two_tower", "no_distill", ... ("two_tower"
            trains the teacher, student/ctr and student/inbatch; "no_distill" drops the
            distillation terms).
        in_batch_negatives (bool): whether student/inbatch exists
            (model.student.in_batch_negatives).
        candidates (bool): whether the listwise candidate term distill/ctcvr_rank exists
            (model.loss.distill_candidates > 0).
        gate_training (str): model.student.gate_training; distill/gate exists only for
            "teacher_cvr" on the dmmp variant (gate_targets.py).

    Returns:
        tuple[str, ...]: the term names, a subset of LOSS_TERMS in its order.
    """
    if variant == "two_tower":
        wanted = {"teacher/ctr", "teacher/ctcvr", "student/ctr", "student/inbatch"}
    else:
        wanted = set(LOSS_TERMS)
        if variant == "no_distill":
            wanted -= set(DISTILL_TERMS)
    if not in_batch_negatives:
        wanted.discard("student/inbatch")
    if not candidates:
        wanted.discard("distill/ctcvr_rank")
    if variant != "dmmp" or gate_training != "teacher_cvr":
        wanted.discard(GATE_TERM)
    return tuple(t for t in LOSS_TERMS if t in wanted)


def bce_prob(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean BCE of probabilities (not logits), for the teacher's pCTCVR, a product of two sigmoids.

    Args:
        p (torch.Tensor): probabilities, [B]; clamped to [1e-6, 1 - 1e-6].
        y (torch.Tensor): labels in [0, 1], [B].

    Returns:
        torch.Tensor: the scalar mean over rows.
    """
    p = p.clamp(EPS, 1.0 - EPS)
    return -(y * torch.log(p) + (1.0 - y) * torch.log1p(-p)).mean()


def value_label(click: torch.Tensor, conversion: torch.Tensor, click_credit: float) -> torch.Tensor:
    """The fused score's label: y = 1 for a conversion, c for a click without one, 0 otherwise.

    Args:
        click (torch.Tensor): 0/1 click of each row, [B].
        conversion (torch.Tensor): 0/1 conversion of each row, [B] (counts only with a click).
        click_credit (float): c, model.loss.click_credit, in [0, 1].

    Returns:
        torch.Tensor: y, [B], in {0, c, 1}.
    """
    return click * (click_credit + (1.0 - click_credit) * conversion)


def distill(
    student_logit: torch.Tensor, teacher_prob: torch.Tensor, temperature: float
) -> torch.Tensor:
    """T^2 * KL(Bernoulli(sigmoid(logit(p)/T)) || Bernoulli(sigmoid(s/T))), mean over rows.

    The KL is the soft-label BCE less the target's entropy: the same gradient, but 0 when the
    student matches, so the term is comparable across steps. The teacher side is detached here.

    Args:
        student_logit (torch.Tensor): the student's score s (a logit), [B].
        teacher_prob (torch.Tensor): the teacher's probability p, [B]; clamped to
            [1e-6, 1 - 1e-6] and detached.
        temperature (float): T, model.loss.distill_temperature; > 0.

    Returns:
        torch.Tensor: the scalar term, >= 0 (0 when the student matches the teacher).
    """
    p = teacher_prob.detach().clamp(EPS, 1.0 - EPS)
    target = torch.sigmoid(torch.logit(p) / temperature)
    bce = F.binary_cross_entropy_with_logits(student_logit / temperature, target, reduction="none")
    entropy = -(target * torch.log(target) + (1.0 - target) * torch.log1p(-target))
    return temperature**2 * (bce - entropy).mean()


def listwise_distill(
    student_logits: torch.Tensor, teacher_prob: torch.Tensor, temperature: float
) -> torch.Tensor:
    """T^2 * KL(softmax(log p / T) || softmax(s / T)) over each row's candidates.

    The teacher's probabilities ranked within a user's candidate list, the way retrieval ranks:
    scale-free, so rare events (pCTCVR ~ 1e-3) teach as much ordering as common ones.

    Args:
        student_logits (torch.Tensor): the student's scores of each row's candidates, [B, n].
        teacher_prob (torch.Tensor): the teacher's probabilities of the same candidates, [B, n];
            clamped at 1e-6 and detached.
        temperature (float): T, model.loss.distill_temperature; > 0.

    Returns:
        torch.Tensor: the scalar term, mean over rows, >= 0.
    """
    log_p = torch.log(teacher_prob.detach().clamp(EPS, 1.0))
    target = torch.log_softmax(log_p / temperature, dim=1)
    pred = torch.log_softmax(student_logits / temperature, dim=1)
    kl = (target.exp() * (target - pred)).sum(1)
    return temperature**2 * kl.mean()


def in_batch_softmax(
    u: torch.Tensor,
    items: torch.Tensor,
    tau: torch.Tensor,
    item_ids: torch.Tensor,
    positive: torch.Tensor,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sampled softmax of each positive row's item against every item of the batch.

    In-batch candidates are drawn with probability q_j proportional to impression frequency, so
    logits get -log q_j (q_j estimated as the item's share of the batch), and other rows holding
    the row's own item are masked rather than counted as negatives. With `rows` only the positive
    rows' logits are built ([P, B], P ~ CTR x B): a [B, B] matrix with its masks costs more than
    the rest of the dense step's elementwise work on a CPU (18 -> 3 ms a step at B = 1024).
    Without them the [B, B] form runs, every row's loss weighted by `positive`: the same loss and
    gradients, and, unlike `positive.nonzero()`, no size the CPU must wait for the device for.

    Args:
        u (torch.Tensor): the user embeddings, [B, d], L2-normalised.
        items (torch.Tensor): the click tower's item embeddings, [B, d], L2-normalised.
        tau (torch.Tensor): the scalar temperature the scores are divided by.
        item_ids (torch.Tensor): each row's item id, [B] (equal ids are the same item).
        positive (torch.Tensor): bool, [B]: the rows whose item was clicked.
        rows (torch.Tensor | None): the positive rows' indices, [P], found on the host (the
            loader's `Batch.clicked_rows`); None to use the [B, B] form.

    Returns:
        torch.Tensor: the scalar mean cross-entropy over positive rows; 0 (still attached to the
        graph) when the batch has none.
    """
    if rows is None:
        return _in_batch_softmax_all_rows(u, items, tau, item_ids, positive)
    same = item_ids.unsqueeze(0) == item_ids.unsqueeze(1)
    log_q = torch.log(same.sum(0).to(u.dtype) / item_ids.shape[0])
    logits = torch.addmm(-log_q.unsqueeze(0), u[rows] / tau, items.T)  # [P, B]
    mask = same[rows]
    mask[torch.arange(rows.shape[0], device=mask.device), rows] = False  # the row's own item
    logits = logits.masked_fill(mask, float("-inf"))
    ce = F.cross_entropy(logits, rows, reduction="sum")
    return ce / positive.sum().to(ce.dtype).clamp(min=1.0)


def _in_batch_softmax_all_rows(
    u: torch.Tensor,
    items: torch.Tensor,
    tau: torch.Tensor,
    item_ids: torch.Tensor,
    positive: torch.Tensor,
) -> torch.Tensor:
    """`in_batch_softmax` over all B rows, the rows without a positive weighted 0."""
    n = item_ids.shape[0]
    same = item_ids.unsqueeze(0) == item_ids.unsqueeze(1)
    log_q = torch.log(same.sum(0).to(u.dtype) / n)
    logits = torch.addmm(-log_q.unsqueeze(0), u / tau, items.T)  # [B, B]
    own = torch.eye(n, dtype=torch.bool, device=same.device)
    logits = logits.masked_fill(same & ~own, float("-inf"))
    ce = F.cross_entropy(logits, torch.arange(n, device=logits.device), reduction="none")
    weight = positive.to(ce.dtype)
    return (ce * weight).sum() / weight.sum().clamp(min=1.0)


def compute_terms(
    terms: tuple[str, ...],
    teacher: TeacherOutput,
    student: StudentOutput,
    click: torch.Tensor,
    conversion: torch.Tensor,
    item_ids: torch.Tensor | None,
    cfg: LossConfig,
    candidates: Candidates | None = None,
    student_for_distill: StudentOutput | None = None,
    clicked_rows: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The scalar value of each loss term of one batch (the module docstring defines each term).

    Args:
        terms (tuple[str, ...]): the terms to compute (`terms_for`); any other name raises.
        teacher (TeacherOutput): the teacher on the impressions.
        student (StudentOutput): the student on the impressions.
        click (torch.Tensor): 0/1 click labels, [B].
        conversion (torch.Tensor): 0/1 conversion labels, [B].
        item_ids (torch.Tensor | None): each row's item id, [B]; needed by student/inbatch.
        cfg (LossConfig): model.loss (click_credit, distill_temperature).
        candidates (Candidates | None): the in-batch candidate lists that distill/ctcvr_rank
            ranks; needed by that term.
        student_for_distill (StudentOutput | None): a student pass over detached embeddings
            that the pointwise distillation terms read instead of `student` (so they do not
            reach the shared tables); None: they read `student`.
        clicked_rows (torch.Tensor | None): the clicked rows' indices, [P], found on the host,
            for the in-batch softmax; None: it uses its [B, B] form.

    Returns:
        dict[str, torch.Tensor]: term name -> scalar loss, in the order of `terms`.
    """
    distilled = student if student_for_distill is None else student_for_distill
    click = click.to(teacher.pctr.dtype)
    labels = _Labels(click, conversion.to(click.dtype), cfg.click_credit)
    out: dict[str, torch.Tensor] = {}
    for term in terms:
        if term.startswith("distill/"):
            out[term] = _distill_term(term, teacher, student, distilled, candidates, cfg)
        else:
            out[term] = _label_term(term, teacher, student, labels, item_ids, clicked_rows)
    return out


class _Labels(NamedTuple):
    """A batch's labels in the score dtype, and the click credit of the value label."""

    click: torch.Tensor
    conversion: torch.Tensor
    click_credit: float


def _label_term(
    term: str,
    teacher: TeacherOutput,
    student: StudentOutput,
    labels: _Labels,
    item_ids: torch.Tensor | None,
    clicked_rows: torch.Tensor | None,
) -> torch.Tensor:
    """One term fitted to the labels (teacher/*, student/*)."""
    click = labels.click
    if term == "teacher/ctr":
        return F.binary_cross_entropy_with_logits(teacher.logit_ctr, click)
    if term == "teacher/ctcvr":
        return bce_prob(teacher.pctcvr, click * labels.conversion)
    if term == "student/ctr":
        return F.binary_cross_entropy_with_logits(student.s_c, click)
    if term == "student/ctcvr":
        return F.binary_cross_entropy_with_logits(student.s_v, click * labels.conversion)
    if term == "student/fused":
        y = value_label(click, labels.conversion, labels.click_credit)
        return F.binary_cross_entropy_with_logits(student.fused, y)
    if term == "student/inbatch":
        if item_ids is None:
            raise ValueError("student/inbatch needs the batch's item ids")
        return in_batch_softmax(
            student.u, student.i_c, student.tau, item_ids, click > 0, clicked_rows
        )
    raise ValueError(f"unknown loss term {term!r}; known: {', '.join(LOSS_TERMS)}")


def _distill_term(
    term: str,
    teacher: TeacherOutput,
    student: StudentOutput,
    distilled: StudentOutput,
    candidates: Candidates | None,
    cfg: LossConfig,
) -> torch.Tensor:
    """One term fitted to the teacher (distill/*); `distilled` is the student they read."""
    c, temp = cfg.click_credit, cfg.distill_temperature
    if term == "distill/ctr":
        return distill(distilled.s_c, teacher.pctr, temp)
    if term == "distill/ctcvr":
        return distill(distilled.s_v, teacher.pctcvr, temp)
    if term == "distill/ctcvr_rank":
        if candidates is None:
            raise ValueError("distill/ctcvr_rank needs the in-batch candidates")
        return listwise_distill(candidates.s_v, candidates.teacher_pctcvr, temp)
    if term == "distill/fused":
        return distill(distilled.fused, c * teacher.pctr + (1 - c) * teacher.pctcvr, temp)
    if term == GATE_TERM:
        return gate_loss(student.gate, teacher.pcvr)
    raise ValueError(f"unknown loss term {term!r}; known: {', '.join(LOSS_TERMS)}")

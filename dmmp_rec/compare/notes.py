"""The notes under the comparison table: what differs between the models compared, and how to
read the numbers. Peer-specific notes come from the peer modules, which know their recipes."""

from __future__ import annotations

from dmmp_rec.compare.rechub.notes import peer_notes
from dmmp_rec.config.root import DmmpConfig

READING = (
    "Expected clicks / conversions@50 are the sums of the true pCTR / pCTCVR of the 50 items "
    "retrieved from the whole catalogue, over the oracle's (the 50 best by that probability), "
    "on a seeded sample of the day's users; bait share is the share of click-bait items among "
    "them. Logged recall counts the day's logged clicks / conversions that were retrieved: the "
    "logging policy chose what users could click, so it is exposure-biased (popularity beats "
    "every model on it) and no target uses it."
)
FRONTIER = (
    "Three-tower models are frontiers: the serving knob g' = softmax(gate_logits + [0, beta]) "
    "moves their retrieval from the click tower (beta = -inf) to the conversion tower "
    "(+inf). 'At the two-tower's clicks' reads the most expected conversions a frontier "
    "reaches with at least that many expected clicks (linear between grid points); the area is "
    "the mean of that over the click range every frontier of the seed spans. The operating "
    "point is chosen per seed on the validation day (most conversions with >= 0.9x the "
    "two-tower's validation clicks) and then read on the test day."
)
TEACHER_COLUMNS = (
    "Teacher columns of our student baselines (two-tower, no distillation, no gate) are their "
    "own CGC/PLE teachers, trained beside each student on the shared embeddings."
)


def notes_for(cfg: DmmpConfig, models: list[str]) -> list[str]:
    """The notes that apply to a comparison of `models`."""
    notes = [READING, FRONTIER, TEACHER_COLUMNS]
    if any(m.startswith("rechub_") for m in models):
        notes += peer_notes(models, cfg)
    notes.append("docs/comparison.md discusses the targets that are missed and why.")
    return notes

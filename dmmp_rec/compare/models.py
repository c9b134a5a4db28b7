"""Which models the comparison trains: our variants as config overrides, and the peers.

Every model of ours is the same config with a few keys overridden (`model.variant`,
`model.teacher.kind`, and for one DMMP point `model.loss.click_credit`), so data, sizes, seed
and training budget are the same by construction.
The torch-rechub peers read the same config for features, dims and the budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Family = Literal["dmmp_rec", "rechub"]


@dataclass(frozen=True)
class ModelSpec:
    name: str  # run directory and key in comparison.json
    label: str  # row label of the table
    short: str  # legend label of the plot
    family: Family
    overrides: tuple[str, ...] = ()  # config overrides of our models
    rechub: str | None = None  # a peer's recipe name (rechub.recipes.RECIPES), = its name


def _ours(name: str, label: str, short: str, variant: str, teacher: str, *extra: str) -> ModelSpec:
    overrides = (f"model.variant={variant}", f"model.teacher.kind={teacher}", *extra)
    return ModelSpec(name, label, short, "dmmp_rec", overrides)


def _peer(name: str, label: str, short: str) -> ModelSpec:
    return ModelSpec(name, label, short, "rechub", rechub=name)


MODELS: tuple[ModelSpec, ...] = (
    _ours("dmmp", "DMMP (CGC/PLE teacher + gated 3-tower student)", "DMMP", "dmmp", "ple"),
    # The same model with a click worth a tenth of a purchase instead of 0.3 (the value label's
    # click_credit): a second point on the click / conversion trade-off, not a different model.
    _ours(
        "dmmp_click_credit_0.1",
        "DMMP, click_credit 0.1",
        "DMMP c=0.1",
        "dmmp",
        "ple",
        "model.loss.click_credit=0.1",
    ),
    _ours("two_tower", "two-tower CTR-only (DSSM-like)", "two-tower", "two_tower", "ple"),
    _ours("no_distill", "3 towers, no distillation", "no distill", "no_distill", "ple"),
    _ours("no_gate", "3 towers, no gate (0.5/0.5)", "no gate", "no_gate", "ple"),
    _ours("teacher_mmoe", "DMMP with MMoE teacher", "DMMP/MMoE", "dmmp", "mmoe"),
    _ours(
        "teacher_shared_bottom",
        "DMMP with shared-bottom ESMM teacher",
        "DMMP/shared-bottom",
        "dmmp",
        "shared_bottom",
    ),
    # torch-rechub peers: each with torch-rechub's documented recipe, then with ours
    # (row-wise Adagrad tables, our widths); rechub/recipes.py says which is which.
    _peer("rechub_esmm", "torch-rechub ESMM", "rechub ESMM"),
    _peer("rechub_esmm_adagrad", "torch-rechub ESMM, our recipe", "rechub ESMM/ours"),
    _peer("rechub_mmoe", "torch-rechub MMoE", "rechub MMoE"),
    _peer("rechub_mmoe_adagrad", "torch-rechub MMoE, our recipe", "rechub MMoE/ours"),
    _peer("rechub_ple", "torch-rechub PLE", "rechub PLE"),
    _peer("rechub_ple_adagrad", "torch-rechub PLE, our recipe", "rechub PLE/ours"),
    _peer("rechub_dssm", "torch-rechub DSSM (in-batch)", "rechub DSSM"),
    _peer("rechub_dssm_adagrad", "torch-rechub DSSM (in-batch), our recipe", "rechub DSSM/ours"),
)


def parse_variant(text: str) -> ModelSpec:
    """A model of the user's own: "NAME=BASE key.path=value ..." is BASE (one of our models)
    with more config overrides, e.g. "dmmp_fixed=dmmp model.loss.weighting=fixed"."""
    head, *overrides = text.split()
    name, _, base = head.partition("=")
    known = {m.name: m for m in MODELS if m.family == "dmmp_rec"}
    if not name.isidentifier() or base not in known:
        raise ValueError(
            f"a variant is NAME=BASE followed by key=value overrides, BASE one of "
            f"{', '.join(known)}; got {text!r}"
        )
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ValueError(f"variant {name}: overrides must be key.path=value, got {bad}")
    spec = known[base]
    label = f"{spec.label} + {' '.join(overrides)}" if overrides else spec.label
    return ModelSpec(name, label, name, "dmmp_rec", (*spec.overrides, *overrides))


def select_models(names: list[str] | None, variants: list[str] | None = None) -> list[ModelSpec]:
    """All models and the user's variants, or the named ones (built-ins in table order, then
    variants in the order given); unknown names raise naming the known."""
    extra = [parse_variant(v) for v in variants or []]
    builtin = {m.name: m for m in MODELS}
    clash = [v.name for v in extra if v.name in builtin]
    if clash:
        raise ValueError(f"variant names {clash} are taken by built-in models")
    if not names:
        return list(MODELS) + extra
    known = [*builtin, *(v.name for v in extra)]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; known: {', '.join(known)}")
    return [m for m in MODELS if m.name in names] + [v for v in extra if v.name in names]

"""The `stack` step: the pinned versions, the right fbgemm build alone, CUDA usable."""

from __future__ import annotations

import importlib.metadata
import re
from typing import Any

from gpu_checks.core import REPO, Check, CheckFailed


def makefile_pins() -> dict[str, str]:
    text = (REPO / "Makefile").read_text()
    pins = {}
    for dist, var in (("torch", "TORCH"), ("torchrec", "TORCHREC"), ("fbgemm", "FBGEMM")):
        found = re.search(rf"^{var}_VERSION := (\S+)", text, re.M)
        if found is None:
            raise CheckFailed(f"Makefile: no {var}_VERSION pin")
        pins[dist] = found.group(1)
    return pins


def _installed(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def step_stack(check: Check) -> dict[str, Any]:
    check.commands.append(f"(in process) pinned versions, fbgemm op on {check.device}")
    if check.dry_run:
        return {}
    import torch

    pins = makefile_pins()
    want_fbgemm, other = ("fbgemm-gpu", "fbgemm-gpu-cpu")
    if check.device == "cpu":
        want_fbgemm, other = other, want_fbgemm
    found = {d: _installed(d) for d in ("torch", "torchrec", want_fbgemm, other)}
    figures: dict[str, Any] = {"pins": pins, "installed": found, "torch_cuda": torch.version.cuda}
    problems = []
    if not (found["torch"] or "").startswith(pins["torch"]):
        problems.append(f"torch {found['torch']}, pinned {pins['torch']}")
    if found["torchrec"] != pins["torchrec"]:
        problems.append(f"torchrec {found['torchrec']}, pinned {pins['torchrec']}")
    if found[want_fbgemm] != pins["fbgemm"]:
        problems.append(f"{want_fbgemm} {found[want_fbgemm]}, pinned {pins['fbgemm']}")
    if found[other] is not None:
        problems.append(f"{other} {found[other]} is installed too (make install DEVICE=...)")
    if check.device == "cuda":
        from dmmp_rec.distributed.cuda_probe import cuda_problem, probe_cuda

        state = probe_cuda()
        problem = cuda_problem(state)
        if problem is not None or not state.available:
            problems.append(problem or f"torch {torch.__version__} sees no CUDA device")
        else:
            figures["gpus"] = [f"{name} (sm_{a}{b})" for name, (a, b) in state.devices]
    if problems:
        raise CheckFailed("; ".join(problems))
    import fbgemm_gpu  # noqa: F401  (registers torch.ops.fbgemm; a mismatched build fails here)

    lengths = torch.tensor([2, 0, 3], dtype=torch.int64, device=check.device)
    offsets = torch.ops.fbgemm.asynchronous_complete_cumsum(lengths).cpu().tolist()
    if offsets != [0, 2, 2, 5]:
        raise CheckFailed(f"fbgemm's complete_cumsum on {check.device} gave {offsets}")
    figures["fbgemm_op_on"] = check.device
    return figures

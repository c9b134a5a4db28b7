"""Save the user side as a torch.export archive (.pt2) and load it back without pickle.

torch.export (not TorchScript: `torch.jit.script` warns that it is deprecated) writes the
graph as JSON and plain float tensors as raw bytes; only tensor subclasses or odd constants
would be pickled, and its loader would then call `torch.load(weights_only=False)`.
`check_pickle_free` refuses such an archive before it is loaded, so loading an exported user
side never unpickles objects.
Loading needs only torch: `torch.export.load(path).module()(values, offsets, beta)`, beta a
float32 tensor of shape [1] (0 = the gate as trained).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.export import Dim

from dmmp_rec.serving.weights import ExportError

_EXAMPLE_BATCH = 3
_EXAMPLE_IDS = 5  # != batch, so no dynamic size is specialised to another


def _example_inputs(
    cardinalities: list[int],
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    values = [torch.arange(_EXAMPLE_IDS, dtype=torch.int64) % c for c in cardinalities]
    offsets = [torch.tensor([0, 2, 4], dtype=torch.int64) for _ in cardinalities]
    return values, offsets, torch.zeros(1)


def save_user_side(
    module: nn.Module, cardinalities: list[int], path: str | Path, knob: bool = True
) -> None:
    """torch.export `module` with a dynamic batch and dynamic id counts, and save it pickle-free.

    Args:
        module (nn.Module): the user side (or an item encoder), taking (values, offsets[, beta]).
        cardinalities (list[int]): rows of each input feature's table, for the example inputs.
        path (str | Path): the .pt2 archive to write.
        knob (bool): whether its forward also takes the serving knob beta (the user side
            does, an item encoder not); default True.
    """
    batch = Dim("batch", min=1)
    dynamic: dict = {
        "values": [{0: Dim(f"ids_{i}", min=0)} for i in range(len(cardinalities))],
        "offsets": [{0: batch} for _ in cardinalities],
    }
    inputs: tuple[Any, ...] = _example_inputs(cardinalities)
    if knob:
        dynamic["beta"] = None
    else:
        inputs = inputs[:2]
    module = module.eval()
    with torch.no_grad():
        program = torch.export.export(module, inputs, dynamic_shapes=dynamic, strict=False)
    torch.export.save(program, str(path))
    check_pickle_free(path)


def check_pickle_free(path: str | Path) -> None:
    """Raise ExportError if the archive holds any pickled payload beyond plain tensors.

    Args:
        path (str | Path): a .pt2 archive (ExportError when it is not a zip archive).
    """
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise ExportError(f"{path}: not a torch.export archive ({e})") from None
    with archive:
        for name in archive.namelist():
            if name.endswith("_config.json") and "/data/" in name:
                config = json.loads(archive.read(name)).get("config", {})
                pickled = [k for k, meta in config.items() if meta.get("use_pickle")]
                if pickled:
                    raise ExportError(f"{path}: {name} stores pickled objects {pickled}")
            elif "/data/sample_inputs/" in name:
                try:  # plain tensors only; torch.export.load would retry with full pickle
                    torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                except Exception as e:
                    raise ExportError(f"{path}: {name} is not plain tensors ({e})") from None


def load_user_side(path: str | Path) -> nn.Module:
    """The exported user side as a callable module, after `check_pickle_free`.

    Args:
        path (str | Path): the .pt2 archive.

    Returns:
        nn.Module: call it as module(values, offsets, beta) (see the module docstring).

    Example::

        user_side = load_user_side("runs/export/user_side.pt2")
        # per user-side feature (manifest order): int64 ids inside its table, and bag starts
        values = [torch.tensor([0]) for _ in range(num_features)]
        offsets = [torch.tensor([0]) for _ in range(num_features)]
        query, gate = user_side(values, offsets, torch.zeros(1))  # [1, D], [1, 2]
    """
    check_pickle_free(path)
    return torch.export.load(str(path)).module()

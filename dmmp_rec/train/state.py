"""What a checkpoint records about the training job besides the tensors (trainer_state.json)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class TrainerState:
    """The job state a resume needs: where the loader stood, how many ranks wrote the
    checkpoint, and each table's optimizer layout (resume.py decides what carries over)."""

    step: int
    world_size: int
    loader: dict[str, Any]  # the loader's state_dict after `step` trained batches
    table_layouts: dict[str, list[Any]] | None = None  # absent in checkpoints before layouts
    config: str | None = None  # the config file the job was started with

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of trainer_state.json, keys in the order earlier versions wrote."""
        return {
            "step": self.step,
            "world_size": self.world_size,
            "loader": self.loader,
            "table_layouts": self.table_layouts,
            "config": self.config,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainerState:
        return cls(
            step=int(raw["step"]),
            world_size=int(raw["world_size"]),
            loader=raw["loader"],
            table_layouts=raw.get("table_layouts"),
            config=raw.get("config"),
        )

"""Override presets: named lists of `key=value` settings applied on top of a config file.

`TINY_WORLD` turns configs/synthetic.yaml into a world small enough to generate in about 2 s
and train a few steps in seconds (every table keeps the default feature list). The test suite
and the GPU check's `--cpu-smoke` both use it, so a smoke run here is the world the tests know.
"""

from __future__ import annotations

TINY_WORLD: tuple[str, ...] = (
    "synthetic.num_users=2000",
    "synthetic.num_items=3000",
    "synthetic.num_impressions=60000",
    "synthetic.num_days=6",
    "synthetic.chunk_rows=30000",
    "data.batch_size=128",
    "data.shuffle_buffer=2048",
    "model.teacher.expert_dims=[32]",
    "model.teacher.tower_dims=[16]",
    "model.student.tower_dims=[32]",
    "model.student.out_dim=8",
    "model.student.gate_dims=[8]",
)

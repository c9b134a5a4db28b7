"""Shared fixtures: one tiny synthetic world per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import CONFIG, TINY

from dmmp_rec.config import load_config


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dmmp_rec.data.synthetic.generate import generate_world

    world = tmp_path_factory.mktemp("tiny_world")
    generate_world(load_config(CONFIG, [*TINY, f"data.path={world}"]), world, progress=False)
    return world

"""Shared fixtures: tiny configurations that train in about a second on one CPU core."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

TINY = dict(model="vit_c_1gf", dataset="synthetic", image_size=8, patch_size=4, batch_size=64, device="cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)

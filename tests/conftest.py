"""Shared fixtures: tiny configurations that train in about a second on one CPU core."""

from __future__ import annotations

import os
import socket

import pytest
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

TINY = dict(model="vit_c_1gf", dataset="synthetic", image_size=8, patch_size=4, batch_size=64, device="cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


TINY_DATA = ["--dataset", "synthetic", "--image-size", "8", "--patch-size", "4", "--batch-size", "64"]


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    """A results store made by real tiny sweeps: two 3-trial EDF sweeps and a Figure 3 grid."""
    from stability.cli import main

    root = tmp_path_factory.mktemp("store")
    for model in ("vit_p_1gf", "vit_c_1gf"):
        assert (
            main(
                [
                    "sweep",
                    "--model",
                    model,
                    "--optim",
                    "adamw",
                    "--trials",
                    "3",
                    "--epochs",
                    "1",
                    "--results",
                    str(root),
                    *TINY_DATA,
                ]
            )
            == 0
        )
    assert (
        main(
            [
                "grid",
                "--figure",
                "3",
                "--models",
                "vit_p_1gf,vit_c_1gf",
                "--epochs",
                "1,2",
                "--results",
                str(root),
                *TINY_DATA,
            ]
        )
        == 0
    )
    return root


def free_port() -> int:
    """A TCP port nothing listens on (for unreachable-address tests and test Ray heads)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

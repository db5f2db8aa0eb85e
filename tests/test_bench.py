"""`stability bench` on CPU at tiny sizes: it runs and prints side-by-side ratios (no speed asserts)."""

from __future__ import annotations

import re

import pytest

from benchmarks.step import MultiheadReference, reference_model
from cli import main


def ratio(line: str) -> float:
    return float(re.search(r"ratio ([0-9.]+)", line).group(1))


def test_reference_model_uses_multihead_attention():
    import torch

    ref = reference_model("vit_c_1gf", image_size=16, patch_size=4, num_classes=10)
    assert all(isinstance(b.attn, MultiheadReference) for b in ref.blocks)
    assert ref(torch.zeros(2, 3, 16, 16)).shape == (2, 10)


def test_step_and_data_benchmarks_print_ratios(capsys):
    assert (
        main(
            [
                "bench",
                "step",
                "--model",
                "vit_c_1gf",
                "--image-size",
                "16",
                "--batch-size",
                "4",
                "--steps",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    data = ["bench", "data", "--model", "vit_p_1gf", "--image-size", "8", "--batch-size", "256", "--device", "cpu"]
    assert main(data) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    step, data = lines[0], lines[1]
    assert step.startswith("step  vit_c_1gf 16px") and "MFU" in step and ratio(step) > 0
    assert data.startswith("data  vit_p_1gf") and "digits with full augmentation" in data and ratio(data) > 0


def test_population_benchmark_prints_both_batched_forwards(capsys):
    argv = ["bench", "population", "--pack", "2", "--batch-size", "16", "--device", "cpu"]
    assert main([*argv, "--model", "vit_c_1gf"]) == 0
    vmap, packed = capsys.readouterr().out.strip().splitlines()
    assert vmap.startswith("population vit_c_1gf 8px batch 16") and "(vmap)" in vmap and ratio(vmap) > 0
    assert "2 trials as one population (packed)" in packed and ratio(packed) > 0


@pytest.mark.slow
def test_sweep_benchmark_prints_ratio(capsys):
    argv = ["bench", "sweep", "--model", "vit_p_1gf", "--trials", "2", "--image-size", "8", "--device", "cpu"]
    assert main(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("sweep vit_p_1gf 2 trials x 1 epochs") and ratio(last) > 0


def test_bench_user_errors(capsys):
    assert main(["bench", "step", "--model", "nope"]) == 2
    assert main(["bench", "step", "--steps", "0"]) == 2
    assert capsys.readouterr().err.count("error:") == 2

"""Which trials share a population (packing by run identity) and how many fit a GPU; the
device a trial takes from what Ray gave it; probes of what trials see. No Ray cluster here."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import models
from stability.errors import UserError
from stability.population import PER_MEMBER
from sweeps import cluster, grid, plan

SMOKE = plan.choose_scale("smoke", has_gpu=False)
GIB = 2**30


def check_packs(manifest: pd.DataFrame, groups: list[list[str]], size: int) -> None:
    """Every trial in exactly one pack; a pack's members differ only in per-member fields;
    packs keep manifest order and hold at most ``size`` trials."""
    flat = [i for g in groups for i in g]
    assert sorted(flat) == sorted(manifest["trial_id"])
    by_id = manifest.set_index("trial_id")
    for g in groups:
        assert 1 <= len(g) <= size
        rows = by_id.loc[g, plan.RUN_IDENTITY].astype(str)
        assert (rows.nunique() == 1).all(), rows
        assert list(by_id.loc[g, "index"]) == sorted(by_id.loc[g, "index"])


@settings(max_examples=30, deadline=None)
@given(
    models=st.lists(st.sampled_from(["vit_c_1gf", "vit_p_1gf"]), min_size=1, max_size=12),
    epochs=st.lists(st.integers(1, 3), min_size=12, max_size=12),
    size=st.integers(1, 5),
)
def test_packs_group_by_everything_but_the_per_member_fields(models, epochs, size):
    rows = [
        plan.manifest_row("s", i, m, "adamw", 1e-3 * (i + 1), 0.1 / (i + 1), SMOKE, 0, epochs=epochs[i])
        for i, m in enumerate(models)
    ]
    manifest = pd.DataFrame(rows)
    groups = plan.packs(manifest, lambda row: size)
    check_packs(manifest, groups, size)
    distinct = manifest.groupby(plan.RUN_IDENTITY).ngroups
    assert len(groups) == sum(-(-n // size) for n in manifest.groupby(plan.RUN_IDENTITY).size())
    assert len(groups) >= distinct


def test_the_per_member_set_is_lr_and_wd_only():
    assert set(PER_MEMBER) == {"lr", "wd"}
    assert not set(PER_MEMBER) & set(plan.RUN_IDENTITY)
    assert {"model", "optimizer", "epochs", "dataset", "image_size", "batch_size", "seed"} <= set(plan.RUN_IDENTITY)


@pytest.mark.parametrize("figure", [2, 3])
def test_every_point_of_figures_2_and_3_trains_alone(figure):
    sweeps = grid.plan_grid(figure, SMOKE, models=["vit_c_1gf", "regnety_1gf"])
    (manifest,) = sweeps.values()
    groups = plan.packs(manifest, lambda row: 16)
    assert all(len(g) == 1 for g in groups) and len(groups) == len(manifest)


def test_an_edf_sweep_packs_as_before():
    manifest = plan.edf_manifest("s", "vit_c_1gf", "adamw", SMOKE, trials=10, seed=0)
    groups = plan.packs(manifest, lambda row: 4)
    assert [len(g) for g in groups] == [4, 4, 2]
    assert [i for g in groups for i in g] == list(manifest["trial_id"])


def test_default_pack_follows_the_gpu_memory_a_trial_has():
    row = dict(model="vit_c_1gf", dataset="fashion-mnist", image_size=32, patch_size=4, batch_size=256)
    assert plan.default_pack(None, row) == 1  # no GPU: measured slower than one trial on a CPU
    assert plan.default_pack(80 * GIB, {**row, "dataset": "imagenet"}) == 1
    assert plan.default_pack(80 * GIB, row) == plan.POPULATION_MAX
    big = {**row, "model": "vit_c_18gf"}
    sizes = [plan.default_pack(m * GIB, big) for m in (8, 16, 40, 80)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1] < plan.POPULATION_MAX  # limited by memory
    assert plan.default_pack(80 * GIB, {**big, "batch_size": 4096}) == 1
    cost = models.complexity("vit_c_18gf", num_classes=10, image_size=32, patch_size=4)
    member = plan.TRAIN_BYTES_PER_ACT * cost["acts"] * 256 + plan.STATE_BYTES_PER_PARAM * cost["params"]
    assert sizes[-1] == int(plan.POPULATION_SHARE * 80 * GIB // member) and sizes[0] == 1


def view(**kw) -> cluster.NodeView:
    base = dict(node="10.0.0.1", sees_store=True, given_gpu=True, cuda=True, gpu_memory=80 * GIB, simulated=False)
    return cluster.NodeView(**{**base, **kw})


def test_gpu_memory_is_the_smallest_gpu_scaled_by_the_fraction():
    views = [view(), view(node="10.0.0.2", gpu_memory=40 * GIB), view(node="10.0.0.3", given_gpu=False, cuda=False)]
    assert cluster.gpu_memory_per_trial(views, 1.0) == 40 * GIB
    assert cluster.gpu_memory_per_trial(views, 0.25) == 10 * GIB
    simulated = [view(cuda=False, gpu_memory=None, simulated=True)]
    assert cluster.gpu_memory_per_trial(simulated, 0.5) == cluster.DEFAULT_GPU_MEMORY // 2


def test_a_gpu_node_without_cuda_is_refused_unless_simulated():
    with pytest.raises(UserError, match=r"10\.0\.0\.2 have no CUDA-capable PyTorch"):
        cluster.gpu_memory_per_trial([view(), view(node="10.0.0.2", cuda=False, gpu_memory=None)], 1.0)


def test_a_node_that_does_not_see_the_store_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"node\(s\) 10\.0\.0\.2 do not see the results root"):
        cluster.check_store_seen([view(), view(node="10.0.0.2", sees_store=False)], tmp_path)
    cluster.check_store_seen([view()], tmp_path)


def test_the_store_anchor_is_the_nearest_existing_folder(tmp_path):
    assert cluster.store_anchor(tmp_path / "a" / "b") == tmp_path.resolve()
    assert cluster.store_anchor(tmp_path) == tmp_path.resolve()


def test_a_trial_takes_cuda_only_from_the_gpus_ray_gave_it(monkeypatch):
    monkeypatch.delenv(cluster.SIMULATED_GPUS_ENV, raising=False)
    assert cluster.trial_device([]) == ("cpu", False)
    with pytest.raises(RuntimeError, match="sees no CUDA device"):  # this machine has no CUDA
        cluster.trial_device([0])
    monkeypatch.setenv(cluster.SIMULATED_GPUS_ENV, "1")
    assert cluster.trial_device([0]) == ("cpu", True)
    assert cluster.trial_device([]) == ("cpu", False)


def test_addresses_are_split_and_checked():
    assert cluster.split_address("127.0.0.1:6379") == ("127.0.0.1", 6379)
    assert cluster.split_address("ray://head:10001") == ("head", 10001)
    with pytest.raises(UserError, match="not HOST:PORT"):
        cluster.split_address("head")

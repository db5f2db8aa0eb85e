"""`stability study`: a user's model, data and space from one file, trained in Ray worker
processes, resumed, and drawn; the user's file reaches nodes that lack it."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pandas as pd
import pytest
from PIL import Image

from cli import main
from cli.study import read_study
from stability.errors import UserError
from tests.conftest import simulated_gpu_cluster
from tests.test_user_data import write_npz

USER_MODEL = """
from torch import nn
from models import register

@register("{name}", family="Probe")
def build(*, num_classes, image_size, in_chans, patch_size=None):
    return nn.Sequential(nn.Conv2d(in_chans, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * image_size * image_size, num_classes))
"""

STUDY = """
name = "probe"
imports = ["probe_model.py"]
models = ["probe_net", "vit_c_1gf"]
optimizers = ["adamw"]
trials = {trials}
seed = 3
dataset = "npz"
data_dir = "data.npz"
image_size = 8
patch_size = 4
epochs = 1
batch_size = 16
preset = "smoke"

[space]
lr = "log:1e-3,1e-2"
wd = "log:1e-3,1e-1"
label_smoothing = "uniform:0,0.3"
"""


@pytest.fixture(autouse=True)
def _forget_the_probe_model():
    """Each test imports its own copy of the user's file, as each command's process would."""
    yield
    from models import registry

    sys.modules.pop("probe_model", None)
    registry._ENTRIES.pop("probe_net", None)


def write_study(folder, trials: int = 3):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "probe_model.py").write_text(USER_MODEL.format(name="probe_net"))
    write_npz(folder / "data.npz", n=48, size=8)
    (folder / "probe.toml").write_text(STUDY.format(trials=trials))
    return folder / "probe.toml"


@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")
def test_a_study_runs_in_ray_workers_resumes_and_draws_both_models(tmp_path, capsys):
    study = write_study(tmp_path / "study")
    results, out = tmp_path / "results", tmp_path / "figures"
    argv = ["study", str(study), "--results", str(results), "--out", str(out), "--resamples", "50"]

    assert main([*argv, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "probe-probe_net-adamw" in plan and "label_smoothing=uniform:0,0.3" in plan
    assert not results.exists()

    assert main(argv) == 0
    said = capsys.readouterr().out
    trials = pd.concat(pd.read_parquet(p) for p in results.glob("*/trials/*.parquet"))
    assert len(trials) == 6 and set(trials["status"]) == {"ok"}
    assert set(trials["model"]) == {"probe_net", "vit_c_1gf"}
    mine = trials[trials["model"] == "probe_net"]
    assert set(mine["family"]) == {"Probe"} and set(mine["complexity_source"]) == {"measured"}
    assert set(trials.loc[trials["model"] == "vit_c_1gf", "complexity_source"]) == {"analytic"}
    assert trials["node_id"].notna().all()  # stored by the Tune trainable, in a Ray worker process
    assert trials["label_smoothing"].between(0, 0.3).all() and trials["label_smoothing"].nunique() == 3
    points = trials.groupby("model")[["lr", "wd", "label_smoothing"]].apply(lambda g: sorted(map(tuple, g.values)))
    assert points["probe_net"] == points["vit_c_1gf"]  # one seed, one space: both models see the same points
    assert set(trials["dataset"]) == {"npz"}
    assert all(json.loads(i) == [str(study.parent / "probe_model.py")] for i in trials["imports"])
    figure = out / "probe.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {figure}" in said

    figure.unlink()
    assert main(argv) == 0  # resume: nothing left to train, the figure is drawn again
    again = capsys.readouterr().out
    assert again.count("all 3 trials already have results") == 2 and figure.exists()

    study.write_text(STUDY.format(trials=2))
    assert main(argv) == 2  # fewer trials: another definition under the same sweep names
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("colour = 'blue'", "unknown key(s) colour"),
        ("trials = 'many'", "trials must be int"),
        ("sampler = 'grid'", "sampler must be random or sobol"),
    ],
)
def test_a_bad_study_file_is_one_error(tmp_path, line, message):
    study = write_study(tmp_path)
    study.write_text(line + "\n" + study.read_text().replace(line.split(" =")[0] + " =", "# was:"))
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_study(study)


def test_a_study_s_dry_run_starts_no_ray(tmp_path, capsys, ray_never_started):
    study = write_study(tmp_path / "study")
    assert main(["study", str(study), "--dry-run", "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("study probe:") and "probe-probe_net-adamw" in out and not (tmp_path / "r").exists()


def test_a_study_of_an_unknown_family_without_its_space_is_refused(tmp_path, capsys):
    study = write_study(tmp_path)
    text = study.read_text()
    study.write_text(text[: text.index("[space]")] + '[space]\nlabel_smoothing = "uniform:0,0.3"\n')
    assert main(["study", str(study), "--dry-run", "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "probe_net is of family 'Probe'" in err[0] and "--space lr=log:A,B" in err[0]


@pytest.mark.slow
@pytest.mark.usefixtures("no_ray")
def test_a_user_file_is_shipped_to_nodes_that_lack_it(tmp_path):
    """py_modules: the cluster gets the file when the command joins it; a node without the
    path imports the shipped copy and finds the model registered."""
    import ray

    from sweeps import cluster as clusters

    source = tmp_path / "shipped_probe.py"
    source.write_text(USER_MODEL.format(name="shipped_net"))

    def family_on_a_worker(path: str) -> tuple[str, str]:
        import models
        from stability.imports import load_imports

        load_imports([path])
        return models.family("shipped_net"), str(os.path.exists(path))

    with simulated_gpu_cluster({"num_cpus": 1}) as cluster, clusters.connect(cluster.address, [str(source)]):
        moved = tmp_path / "away"
        moved.mkdir()
        shutil.move(source, moved / source.name)  # the path no longer exists on any node
        family, exists = ray.get(ray.remote(family_on_a_worker).options(num_cpus=0).remote(str(source)))
    assert (family, exists) == ("Probe", "False")


def test_class_folders_and_images(tmp_path):
    """The folder dataset accepts PNGs as well as JPEGs (a researcher's own images)."""
    from stability import data

    for split in ("train", "val"):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            Image.new("RGB", (9, 9)).save(tmp_path / split / c / "0.png")
    assert data.load_dataset("folder", tmp_path, 8, workers=0).num_classes == 2

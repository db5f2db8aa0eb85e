"""The one model registry: a user's model registers like the zoo, its complexity is measured
where it has no analytic count, its defaults come from its family, and a file import finds the
copy Ray ships where the path is absent."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import models
from models import registry
from stability import optimizers
from stability.config import TrainConfig
from stability.errors import UserError
from stability.paper import optimum


class TwoLayers(nn.Module):
    """conv 3->4 (3x3, pad 1, no bias) -> max pool 2 -> flatten -> linear to classes (bias)."""

    def __init__(self, num_classes: int, image_size: int, in_chans: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, 4, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * (image_size // 2) ** 2, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x)).flatten(1))


@pytest.fixture
def two_layers():
    @models.register("test_two_layers", family="Tiny")
    def build(*, num_classes, image_size, in_chans, patch_size=None):
        return TwoLayers(num_classes, image_size, in_chans)

    yield "test_two_layers"
    registry._ENTRIES.pop("test_two_layers")


def test_a_registered_model_is_built_and_described_like_the_zoo(two_layers):
    assert two_layers in models.names()
    assert (models.family(two_layers), models.stem(two_layers)) == ("Tiny", "Tiny")
    net = models.create(two_layers, num_classes=5, image_size=8, in_chans=3)
    assert net(torch.zeros(2, 3, 8, 8)).shape == (2, 5)
    assert models.family("vit_c_1gf") == "ViT_C" and models.family("regnety_4gf") == "RegNetY"


def test_measured_complexity_counts_multiply_adds_params_and_layer_outputs(two_layers):
    cost = models.complexity(two_layers, num_classes=5, image_size=8, in_chans=3)
    conv_macs, fc_macs = 3 * 3 * 3 * 4 * 8 * 8, (4 * 4 * 4) * 5
    assert cost["complexity_source"] == "measured"
    assert cost["flops"] == conv_macs + fc_macs  # FlopCounterMode's 2 per multiply-add, halved
    assert cost["params"] == 3 * 3 * 3 * 4 + 64 * 5 + 5
    assert cost["acts"] == 4 * 8 * 8 + 4 * 4 * 4 + 5  # conv, max pool, linear outputs


@pytest.mark.parametrize("name", ["resnet50", "regnety_1gf"])
def test_measured_counts_agree_with_the_zoos_analytic_ones(name):
    """The zoo's CNNs both ways: params and acts exactly, flops up to the bias additions that
    FlopCounterMode does not count (under 0.02%)."""
    analytic = models.complexity(name, num_classes=10, image_size=64)
    with torch.device("meta"):
        measured = registry.measure(models.create(name, num_classes=10, image_size=64), torch.zeros(1, 3, 64, 64))
    assert analytic["complexity_source"] == "analytic"
    assert measured["params"] == analytic["params"] and measured["acts"] == analytic["acts"]
    assert measured["flops"] == pytest.approx(analytic["flops"], rel=2e-4) and measured["flops"] <= analytic["flops"]


def test_a_model_the_meta_device_cannot_run_is_measured_on_the_cpu():
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(12, 2)

        def forward(self, x):
            scale = float(x.abs().max().item()) + 1.0  # .item() has no value on the meta device
            return self.fc(x.flatten(1) / scale)

    @models.register("test_data_dependent", family="Tiny")
    def build(*, num_classes, image_size, in_chans, patch_size=None):
        return DataDependent()

    try:
        cost = models.complexity("test_data_dependent", num_classes=2, image_size=2, in_chans=3)
        assert (cost["flops"], cost["params"], cost["acts"], cost["complexity_source"]) == (24, 26, 2, "measured")
    finally:
        registry._ENTRIES.pop("test_data_dependent")


def test_a_name_is_registered_once(two_layers):
    with pytest.raises(ValueError, match="already registered"):

        @models.register(two_layers, family="Other")
        def other(**kw):
            return nn.Identity()


def test_defaults_follow_the_registered_family_never_the_name():
    @models.register("vit_mine", family="Mine")
    def build(*, num_classes, image_size, in_chans, patch_size=None):
        return TwoLayers(num_classes, image_size, in_chans)

    try:
        assert optimum("vit_mine", "Mine", "adamw") is None and optimizers.entry("sgd").interval("Mine") is None
        no_default = r"vit_mine \(family Mine\) has no Table 4 optimum or adamw interval: give its --lr and --wd"
        with pytest.raises(UserError, match=no_default):
            TrainConfig("vit_mine", "adamw", dataset="synthetic").resolved()
        cfg = TrainConfig("vit_mine", "adamw", lr=1e-3, wd=0.1, dataset="synthetic").resolved()
        assert (cfg.lr, cfg.wd) == (1e-3, 0.1)
    finally:
        registry._ENTRIES.pop("vit_mine")
    assert optimum("vit_s1_4gf", "ViT_C", "adamw") == optimum("vit_c_4gf", "ViT_C", "adamw")
    assert optimum("resnet50", "ResNet", "sgd") == optimum("regnety_4gf", "RegNetY", "sgd")
    adamw = optimizers.entry("adamw")
    assert adamw.interval("ViT_P") == adamw.interval("ViT_C") != adamw.interval("RegNetY")


MODEL_FILE = """
from torch import nn
from models import register

@register("{name}", family="FileFamily")
def build(*, num_classes, image_size, in_chans, patch_size=None):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_chans * image_size * image_size, num_classes))
"""


def test_a_file_import_registers_once_and_falls_back_to_the_shipped_copy(tmp_path, monkeypatch):
    """A trial process imports the file by path where it exists, else the copy Ray shipped
    (importable under the file's name); importing again does not re-run the file."""
    path = tmp_path / "user_model_a.py"
    path.write_text(MODEL_FILE.format(name="file_model_a"))
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "user_model_b.py").write_text(MODEL_FILE.format(name="file_model_b"))
    monkeypatch.syspath_prepend(str(shipped))
    try:
        assert models.import_module(str(path)) == "user_model_a"
        assert models.import_module(str(path)) == "user_model_a"  # a second import is a no-op
        assert models.family("file_model_a") == "FileFamily"
        assert models.import_in_worker(str(tmp_path / "elsewhere" / "user_model_b.py")) == "user_model_b"
        assert "file_model_b" in models.names()
        other = tmp_path / "other"
        other.mkdir()
        (other / "user_model_a.py").write_text("")
        with pytest.raises(ImportError, match="a different module named 'user_model_a'"):
            models.import_module(str(other / "user_model_a.py"))
        with pytest.raises(ImportError, match="no such file"):
            models.import_module(str(tmp_path / "missing.py"))
    finally:
        for mod, name in (("user_model_a", "file_model_a"), ("user_model_b", "file_model_b")):
            sys.modules.pop(mod, None)
            registry._ENTRIES.pop(name, None)


def test_cli_models_lists_an_imported_model_as_measured(tmp_path, capsys):
    from cli import main

    path = tmp_path / "user_model_c.py"
    path.write_text(MODEL_FILE.format(name="file_model_c"))
    try:
        assert main(["models", "--import", str(path), "--image-size", "8"]) == 0
        line = [r for r in capsys.readouterr().out.splitlines() if r.startswith("file_model_c")]
        assert len(line) == 1 and "FileFamily" in line[0] and line[0].endswith("(measured)")
        assert main(["models", "--import", str(tmp_path / "nope.py")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: --import") and "no such file" in err[0]
    finally:
        sys.modules.pop("user_model_c", None)
        registry._ENTRIES.pop("file_model_c", None)

"""A researcher's own data: an .npz file, any train/ and val/ class folders, a registered loader;
bad files are one ``error:`` line and leave the store untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cli import main
from stability import data
from stability.data import DataError, TensorData


def write_npz(path, *, channels_last: bool = False, n: int = 40, size: int = 6, **override):
    rng = np.random.default_rng(0)
    shape = (n, size, size, 3) if channels_last else (n, size, size)
    arrays = {
        "x_train": rng.integers(0, 256, shape, dtype=np.uint8),
        "y_train": rng.integers(0, 4, n),
        "x_test": rng.integers(0, 256, (n // 2, *shape[1:]), dtype=np.uint8),
        "y_test": rng.integers(0, 4, n // 2),
    }
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path, arrays


@pytest.mark.parametrize("channels_last", [False, True])
def test_npz_images_load_as_nchw_uint8_with_their_labels(tmp_path, channels_last):
    path, arrays = write_npz(tmp_path / "mine.npz", channels_last=channels_last)
    d = data.load_dataset("npz", path, 6)
    chans = 3 if channels_last else 1
    assert d.train_x.shape == (40, chans, 6, 6) and d.test_x.shape == (20, chans, 6, 6)
    assert (
        d.train_x.dtype == torch.uint8
        and d.num_classes == int(max(arrays["y_train"].max(), arrays["y_test"].max())) + 1
    )
    first = arrays["x_train"][0]
    expected = torch.from_numpy(first).permute(2, 0, 1) if channels_last else torch.from_numpy(first)[None]
    assert torch.equal(d.train_x[0], expected)
    assert torch.equal(d.train_y, torch.from_numpy(arrays["y_train"]))
    assert data.load_dataset("npz", path, 12).train_x.shape[-1] == 12  # resized once to the run's size


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"y_test": None}, "missing y_test"),
        ({"x_train": np.zeros((40, 6, 6), dtype=np.float32)}, "x_train must be uint8"),
        ({"y_train": np.zeros(39, dtype=np.int64)}, "y_train must be 40 integer labels"),
        ({"y_train": -np.ones(40, dtype=np.int64)}, "integer labels >= 0"),
        ({"x_test": np.zeros((20, 5, 5), dtype=np.uint8)}, "the same image shape"),
    ],
)
def test_a_bad_npz_file_names_what_is_wrong(tmp_path, override, message):
    path, _ = write_npz(tmp_path / "bad.npz", **override)
    with pytest.raises(DataError, match=message):
        data.load_dataset("npz", path, 6)


def test_npz_that_is_not_an_npz(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match=r"not a readable \.npz file"):
        data.load_dataset("npz", tmp_path / "junk.npz", 6)
    with pytest.raises(DataError, match=r"needs --data-dir FILE\.npz"):
        data.load_dataset("npz", None, 6)


def class_folders(root, classes=("cat", "dog"), per_class=3, splits=("train", "val")):
    for split in splits:
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (10, 12), color=(40 * i, 80, 120)).save(root / split / c / f"{i}.png")
    return root


def test_any_class_folders_are_a_dataset(tmp_path):
    root = class_folders(tmp_path / "pets")
    d = data.load_dataset("folder", root, 8, workers=0)
    assert (d.name, d.num_classes, d.train_size, len(d.test)) == ("folder", 2, 6, 6)
    x, y = d.test[0]
    assert x.shape == (3, 8, 8) and y == 0
    data.check_available("folder", root, 8)
    with pytest.raises(DataError, match="needs --data-dir PATH"):
        data.load_dataset("folder", None, 8)
    broken = class_folders(tmp_path / "broken", splits=("train",))
    with pytest.raises(DataError, match="val: missing"):
        data.check_available("folder", broken, 8)


def test_a_registered_loader_is_a_dataset_resized_to_the_run(tmp_path):
    @data.register_dataset("test-ramp")
    def ramp(data_dir, image_size):
        x = torch.arange(16 * 4 * 4, dtype=torch.uint8).view(16, 1, 4, 4)
        return TensorData("test-ramp", x, torch.arange(16) % 2, x[:4], torch.arange(4) % 2, num_classes=2)

    try:
        assert "test-ramp" in data.dataset_names() and not data.is_streamed("test-ramp")
        d = data.load_dataset("test-ramp", None, 8)
        assert d.train_x.shape == (16, 1, 8, 8) and d.num_classes == 2
        with pytest.raises(ValueError, match="'digits' is already registered"):
            data.register_dataset("digits")(ramp)
    finally:
        data._DATASETS.pop("test-ramp")


def test_a_sweep_on_a_bad_npz_is_one_error_line_and_writes_nothing(tmp_path, capsys):
    path, _ = write_npz(tmp_path / "bad.npz", y_train=None)
    results = tmp_path / "results"
    argv = ["sweep", "--model", "vit_c_1gf", "--optim", "adamw", "--dataset", "npz", "--data-dir", str(path)]
    argv += ["--image-size", "8", "--patch-size", "4", "--results", str(results), "--trials", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "missing y_train" in err[0]
    assert not results.exists()

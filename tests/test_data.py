"""Dataset readers on small files generated in each real format."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from stability import data
from stability.data import DataError


def write_idx(path, array: np.ndarray, gz: bool) -> None:
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


@pytest.fixture
def fmnist_dir(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n, gz in (("train", 50, True), ("t10k", 20, False)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{'.gz' if gz else ''}", rng.integers(0, 256, (n, 28, 28)), gz)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{'.gz' if gz else ''}", rng.integers(0, 10, n), gz)
    return tmp_path


def test_idx_reader_roundtrip(fmnist_dir):
    d = data.load_small("fashion-mnist", 32, fmnist_dir)
    assert d.train_x.shape == (50, 1, 32, 32) and d.test_x.shape == (20, 1, 32, 32)
    assert d.train_x.dtype == torch.uint8 and d.num_classes == 10
    raw = data.read_idx(fmnist_dir / "t10k-images-idx3-ubyte")
    assert raw.shape == (20, 28, 28)
    labels = data.read_idx(fmnist_dir / "t10k-labels-idx1-ubyte")
    assert torch.equal(d.test_y, torch.from_numpy(labels.astype(np.int64)))


def test_idx_errors_name_the_file(fmnist_dir, tmp_path):
    bad = fmnist_dir / "t10k-labels-idx1-ubyte"
    bad.write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 99) + b"\x01\x02")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.*header says 99"):
        data.load_small("fashion-mnist", 32, fmnist_dir)
    bad.write_bytes(b"PK\x03\x04junk")
    with pytest.raises(DataError, match="not an IDX file"):
        data.load_small("fashion-mnist", 32, fmnist_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"missing train-images-idx3-ubyte"):
        data.load_small("fashion-mnist", 32, empty)


def write_cifar(path, n: int, label_key: bytes, classes: int) -> None:
    rng = np.random.default_rng(1)
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), label_key: list(rng.integers(0, classes, n))}
    batch[label_key] = [int(v) for v in batch[label_key]]
    with open(path, "wb") as f:
        pickle.dump(batch, f)


def test_cifar10_batches(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for i in range(1, 6):
        write_cifar(root / f"data_batch_{i}", 8, b"labels", 10)
    write_cifar(root / "test_batch", 6, b"labels", 10)
    d = data.load_small("cifar10", 32, tmp_path)
    assert d.train_x.shape == (40, 3, 32, 32) and d.test_y.shape == (6,) and d.num_classes == 10


def test_cifar100_and_malicious_pickle_refused(tmp_path):
    write_cifar(tmp_path / "train", 10, b"fine_labels", 100)
    write_cifar(tmp_path / "test", 4, b"fine_labels", 100)
    assert data.load_small("cifar100", 16, tmp_path).train_x.shape == (10, 3, 16, 16)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "test", "wb") as f:
        pickle.dump({b"data": Evil()}, f)
    with pytest.raises(DataError, match=r"refusing to load builtins\.print"):
        data.load_small("cifar100", 16, tmp_path)


def jpeg_tree(root, train: int, val: int, seed: int) -> None:
    """An ImageNet-style tree: two classes, ``train`` and ``val`` random JPEGs per class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, per in (("train", train), ("val", val)):
        for cls in ("n01", "n02"):
            (root / split / cls).mkdir(parents=True)
            for i in range(per):
                Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(
                    root / split / cls / f"{i}.JPEG"
                )


def test_jpeg_folder_tree(tmp_path):
    jpeg_tree(tmp_path, train=3, val=2, seed=2)
    d = data.load_folder(tmp_path, 32, seed=0, workers=0)
    assert d.num_classes == 2 and d.train_size == 6 and len(d.test) == 4
    x, y = next(d.loader("train", 4, torch.arange(6)))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.uint8 and set(y.tolist()) <= {0, 1}
    tx, ty = next(d.loader("test", 4))
    assert tx.shape == (4, 3, 32, 32) and ty.tolist() == [0, 0, 1, 1]
    (tmp_path / "val" / "n03").mkdir()
    with pytest.raises(DataError, match="different class folders"):
        data.load_folder(tmp_path, 32, seed=0)


def test_missing_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("STABILITY_DATA", str(tmp_path))
    monkeypatch.setattr(data, "SYSTEM_DIRS", {})
    with pytest.raises(DataError, match="no fashion-mnist data found"):
        data.load_small("fashion-mnist", 32)
    with pytest.raises(DataError, match="missing"):
        data.load_folder(tmp_path / "nowhere", 224, 0)


def test_digits_and_synthetic():
    d = data.load_small("digits", 16)
    assert d.train_x.shape == (1437, 1, 16, 16) and d.test_x.shape == (360, 1, 16, 16)
    s1, s2 = data.load_small("synthetic", 8), data.load_small("synthetic", 8)
    assert torch.equal(s1.train_x, s2.train_x) and s1.num_classes == 10


def test_folder_data_workers_load_their_shards_of_each_global_batch(tmp_path):
    """With 2 workers each loads half of every global batch: together, the 1-worker batch."""
    from stability.config import TrainConfig
    from stability.distributed import World
    from stability.stream import Stream

    jpeg_tree(tmp_path, train=4, val=1, seed=3)
    d = data.load_folder(tmp_path, 16, seed=0, workers=0)
    cfg = TrainConfig("vit_p_1gf", "sgd", dataset="imagenet", image_size=16, batch_size=4, device="cpu")

    def epoch(world: World) -> list:
        return list(Stream(cfg, d, torch.device("cpu"), world).batches(0))

    whole, first, second = epoch(World()), epoch(World(0, 2)), epoch(World(1, 2))
    assert len(whole) == len(first) == len(second) == 2
    for (x, y), (x0, y0), (x1, y1) in zip(whole, first, second, strict=True):
        assert x0.shape[0] == x1.shape[0] == 2
        assert torch.equal(torch.cat([y0, y1]), y) and torch.equal(torch.cat([x0, x1]), x)


@pytest.mark.parametrize("folder", [True, False])
def test_workers_split_the_test_set_each_image_once(tmp_path, folder):
    """N workers' test batches, interleaved, are the 1-worker batches: nothing decoded twice."""
    from stability.config import TrainConfig
    from stability.distributed import World
    from stability.stream import Stream

    if folder:
        jpeg_tree(tmp_path, train=2, val=5, seed=4)  # 10 test images: batches of 3 are 3,3,3,1
        d, dataset = data.load_folder(tmp_path, 16, seed=0, workers=0), "imagenet"
    else:
        d, dataset = data.load_small("synthetic", 8), "synthetic"  # 256 test images
    cfg = TrainConfig("vit_p_1gf", "sgd", dataset=dataset, image_size=16, batch_size=4, device="cpu")
    size = 3 if folder else 100

    def share(world: World) -> list:
        return list(Stream(cfg, d, torch.device("cpu"), world).test_batches(size))

    whole, first, second = share(World()), share(World(0, 2)), share(World(1, 2))
    assert len(first) + len(second) == len(whole) and len(first) == (len(whole) + 1) // 2
    for j, (x, y) in enumerate(whole):
        xs, ys = (first if j % 2 == 0 else second)[j // 2]
        assert torch.equal(ys, y) and torch.equal(xs, x)

"""Datasets of docs/design.md, "Interfaces", and the registry a researcher's own data joins.

Small datasets (fashion-mnist, cifar10/100, digits, synthetic, an ``npz`` file) are read once
into uint8 tensors that live on the training device and are augmented there in batches.
Class folders (``folder``, or ``imagenet``: its name for ImageNet) stream images through
DataLoader worker processes. Missing or malformed files raise a ``DataError`` naming the path
and what was expected. ``register_dataset`` adds a loader under a name of one's own.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.registry import Registry
from stability.errors import UserError

SYSTEM_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}


class DataError(UserError):
    """Data missing or not in the expected format."""


@dataclass
class TensorData:
    """A small dataset held as uint8 images (N, C, H, W) and int64 labels."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    @property
    def channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def train_size(self) -> int:
        return self.train_x.shape[0]

    def to(self, device: torch.device) -> TensorData:
        moved = {k: getattr(self, k).to(device) for k in ("train_x", "train_y", "test_x", "test_y")}
        return TensorData(self.name, num_classes=self.num_classes, **moved)

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.train_x.float() / 255
        return x.mean((0, 2, 3)), x.std((0, 2, 3)).clamp(min=1e-3)


def data_dir(dataset: str, given: str | os.PathLike | None) -> Path:
    """--data-dir, else $STABILITY_DATA/<dataset>, else the Debian package's folder."""
    if given:
        return Path(given)
    env = os.environ.get("STABILITY_DATA")
    if env and (Path(env) / dataset).exists():
        return Path(env) / dataset
    if dataset in SYSTEM_DIRS and SYSTEM_DIRS[dataset].exists():
        return SYSTEM_DIRS[dataset]
    where = f"$STABILITY_DATA/{dataset}" + (f" or {SYSTEM_DIRS[dataset]}" if dataset in SYSTEM_DIRS else "")
    raise DataError(f"no {dataset} data found: pass --data-dir or put it in {where}")


# --- IDX (MNIST-style) -----------------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped): magic 0x0000 0x08 ndim, big-endian dims, uint8 data."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read IDX file ({e})") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (expected magic 0x0000 08 nn)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != int(np.prod(dims)):
        raise DataError(f"{path}: IDX data holds {len(raw) - header} bytes, header says {int(np.prod(dims))}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _idx_file(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).exists():
            return root / name
    raise DataError(f"{root}: missing {stem}[.gz] (expected the four IDX files of fashion-mnist)")


def load_fashion_mnist(root: Path) -> TensorData:
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x = read_idx(_idx_file(root, f"{prefix}-images-idx3-ubyte"))
        y = read_idx(_idx_file(root, f"{prefix}-labels-idx1-ubyte"))
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{root}: {prefix} images {x.shape} and labels {y.shape} do not match")
        parts[split] = (torch.from_numpy(x.copy())[:, None], torch.from_numpy(y.astype(np.int64)))
    return TensorData("fashion-mnist", *parts["train"], *parts["test"], num_classes=10)


def subset(data: TensorData, name: str, train: int, test: int, seed: int = 0) -> TensorData:
    """A fixed random subset of each split, the same on every machine (one seeded permutation)."""
    gen = torch.Generator().manual_seed(seed)
    tr = torch.randperm(data.train_size, generator=gen)[:train]
    te = torch.randperm(len(data.test_y), generator=gen)[:test]
    return TensorData(name, data.train_x[tr], data.train_y[tr], data.test_x[te], data.test_y[te], data.num_classes)


# --- CIFAR python batches --------------------------------------------------------------------


CIFAR_PICKLE_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR batches hold (dicts, lists, bytes, numpy arrays): no code runs."""

    def find_class(self, module: str, name: str):
        if (module, name) in CIFAR_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")


def read_cifar_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            batch = _CifarUnpickler(io.BufferedReader(f), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except FileNotFoundError:
        raise DataError(f"{path}: missing CIFAR batch") from None
    except Exception as e:
        raise DataError(f"{path}: not a CIFAR python batch ({type(e).__name__}: {e})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"{path}: expected data of shape (N, 3072) and N labels, got {data.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar(root: Path, classes: int) -> TensorData:
    if classes == 10:
        sub, train, test, key = "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", b"labels"
    else:
        sub, train, test, key = "cifar-100-python", ["train"], "test", b"fine_labels"
    base = root / sub if (root / sub).is_dir() else root
    xs, ys = zip(*(read_cifar_batch(base / name, key) for name in train), strict=True)
    tx, ty = read_cifar_batch(base / test, key)
    as_t = torch.from_numpy
    return TensorData(
        f"cifar{classes}", as_t(np.concatenate(xs)), as_t(np.concatenate(ys)), as_t(tx), as_t(ty), classes
    )


# --- digits and synthetic --------------------------------------------------------------------


def load_digits() -> TensorData:
    """scikit-learn's bundled 8x8 digits (no download); a fixed 80/20 split."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = torch.from_numpy((bunch.images * (255.0 / 16.0)).round().astype(np.uint8))[:, None]
    y = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(y))
    tr, te = order[:cut], order[cut:]
    return TensorData("digits", x[tr], y[tr], x[te], y[te], num_classes=10)


def load_synthetic(image_size: int, classes: int = 10, train: int = 1024, test: int = 256) -> TensorData:
    """Learnable random data for tests and benchmarks: class prototypes plus noise, fixed seed."""
    gen = torch.Generator().manual_seed(1234)
    coarse = torch.rand(classes, 3, 4, 4, generator=gen)
    protos = F.interpolate(coarse, size=(image_size, image_size), mode="bilinear", align_corners=False)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(classes, (n,), generator=gen)
        x = protos[y] + 0.15 * torch.randn(n, 3, image_size, image_size, generator=gen)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), y

    return TensorData("synthetic", *draw(train), *draw(test), num_classes=classes)


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def load_small(dataset: str, image_size: int, root: str | os.PathLike | None = None) -> TensorData:
    """Read a small dataset and resize it once to ``image_size``."""
    data = load_dataset(dataset, root, image_size)
    if not isinstance(data, TensorData):
        raise DataError(f"{dataset} streams its images; it is not a small dataset")
    return data


# --- npz: a researcher's arrays --------------------------------------------------------------

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: Path) -> TensorData:
    """uint8 images ``x_train``, ``x_test`` (N, H, W) or (N, H, W, C) and integer labels
    ``y_train``, ``y_test`` (N,) in one ``.npz`` file; classes are 0..max label."""
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in NPZ_KEYS if k not in f.files]
            if missing:
                raise DataError(f"{path}: missing {', '.join(missing)} (expected {', '.join(NPZ_KEYS)})")
            arrays = {k: f[k] for k in NPZ_KEYS}
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    parts = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim not in (3, 4):
            raise DataError(
                f"{path}: x_{split} must be uint8 of shape (N, H, W) or (N, H, W, C), got {x.dtype} {x.shape}"
            )
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
            raise DataError(f"{path}: y_{split} must be {len(x)} integer labels >= 0, got {y.dtype} {y.shape}")
        images = torch.from_numpy(x.copy())
        images = images[:, None] if x.ndim == 3 else images.permute(0, 3, 1, 2).contiguous()
        parts += [images, torch.from_numpy(y.astype(np.int64))]
    if parts[0].shape[1:] != parts[2].shape[1:] or not len(parts[0]) or not len(parts[2]):
        raise DataError(f"{path}: x_train and x_test must be non-empty with the same image shape")
    classes = int(max(parts[1].max(), parts[3].max())) + 1
    return TensorData(path.stem, *parts, num_classes=classes)


# --- the registry ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetEntry:
    build: Callable[..., TensorData | FolderData]  # what was registered: (root: Path | None, image_size)
    streamed: bool  # images decoded per batch by loader workers (FolderData), never held in memory
    seeded: bool = False  # build also takes (seed, workers): the streamed folders' loaders

    def load(self, root: Path | None, image_size: int, seed: int, workers: int) -> TensorData | FolderData:
        return self.build(root, image_size, seed, workers) if self.seeded else self.build(root, image_size)


_REGISTRY = Registry("dataset")
_DATASETS: dict[str, DatasetEntry] = _REGISTRY.entries


def register_dataset(name: str, *, streamed: bool = False) -> Callable[[Callable], Callable]:
    """Decorator: register ``fn(data_dir, image_size) -> TensorData | FolderData`` as dataset
    ``name``, once per name (``models.registry.Registry``, as models are). ``data_dir`` is
    ``--data-dir`` as given (None if not). A ``TensorData`` is resized to the run's image size
    after loading. Register it in a module passed with ``--import``, so every trial process
    registers it too."""
    return _REGISTRY.decorator(name, lambda fn: DatasetEntry(fn, streamed))


def dataset_names() -> list[str]:
    return list(_DATASETS)


def is_streamed(name: str) -> bool:
    return name in _DATASETS and _DATASETS[name].streamed


def load_dataset(
    name: str, root: str | os.PathLike | None, image_size: int, *, seed: int = 0, workers: int = 8
) -> TensorData | FolderData:
    """Any registered dataset; small ones resized once to ``image_size``."""
    if name not in _DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose from {', '.join(_DATASETS)}")
    data = _DATASETS[name].load(Path(root) if root else None, image_size, seed, workers)
    if isinstance(data, TensorData):
        data.train_x, data.test_x = resize(data.train_x, image_size), resize(data.test_x, image_size)
    return data


def _small(load: Callable[[Path | None], TensorData]) -> DatasetEntry:
    return DatasetEntry(lambda root, image_size: load(root), streamed=False)


def _npz(root: Path | None) -> TensorData:
    if root is None or root.suffix != ".npz":
        raise DataError("--dataset npz needs --data-dir FILE.npz")
    if not root.is_file():
        raise DataError(f"{root}: missing (expected an .npz file with {', '.join(NPZ_KEYS)})")
    return load_npz(root)


def _folder(name: str) -> DatasetEntry:
    def load(root, image_size, seed, workers):
        return load_folder(root, image_size, seed, workers, name=name)

    return DatasetEntry(load, streamed=True, seeded=True)


_DATASETS.update(
    {
        "fashion-mnist": _small(lambda root: load_fashion_mnist(data_dir("fashion-mnist", root))),
        # The `laptop` preset's data: 5k training and 2k test images of Fashion-MNIST (docs/laptop.md).
        "fashion-mnist-5k": _small(
            lambda root: subset(load_fashion_mnist(data_dir("fashion-mnist", root)), "fashion-mnist-5k", 5_000, 2_000)
        ),
        "cifar10": _small(lambda root: load_cifar(data_dir("cifar10", root), 10)),
        "cifar100": _small(lambda root: load_cifar(data_dir("cifar100", root), 100)),
        "imagenet": _folder("imagenet"),
        "folder": _folder("folder"),
        "npz": _small(_npz),
        "digits": _small(lambda root: load_digits()),
        "synthetic": DatasetEntry(lambda root, image_size: load_synthetic(image_size), streamed=False),
    }
)


# --- ImageNet: class folders of JPEGs, streamed --------------------------------------------

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".JPEG", ".JPG"}


def scan_folder(root: Path) -> tuple[list[tuple[Path, int]], list[str]]:
    if not root.is_dir():
        raise DataError(f"{root}: missing (expected a folder of class sub-folders of JPEGs)")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise DataError(f"{root}: no class sub-folders (expected <class>/<image>.JPEG)")
    items = [
        (path, label)
        for label, name in enumerate(classes)
        for path in sorted((root / name).iterdir())
        if path.suffix in IMAGE_SUFFIXES
    ]
    if not items:
        raise DataError(f"{root}: no JPEG images in its class folders")
    return items, classes


class FolderImages(torch.utils.data.Dataset):
    """Decodes one image per item in a worker: random-resized crop + flip, or resize + centre crop."""

    def __init__(self, items: list[tuple[Path, int]], image_size: int, train: bool, seed: int = 0) -> None:
        self.items, self.size, self.train, self.seed, self.epoch = items, image_size, train, seed, 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.items[i]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                im = self._train_view(im, i) if self.train else self._test_view(im)
        except OSError as e:
            raise DataError(f"{path}: cannot decode image ({e})") from None
        x = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)
        return x, label

    def _train_view(self, im, i: int):
        """Random-resized crop (scale 0.08-1, ratio 3/4-4/3) and flip, seeded per (epoch, item)."""
        from PIL import Image

        rng = np.random.default_rng((self.seed, self.epoch, i))
        w, h = im.size
        for _ in range(10):
            area = w * h * rng.uniform(0.08, 1.0)
            ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            cw, ch = round(np.sqrt(area * ratio)), round(np.sqrt(area / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
                break
        else:
            cw = ch = min(w, h)
            x0, y0 = (w - cw) // 2, (h - ch) // 2
        im = im.resize((self.size, self.size), Image.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
        return im.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else im

    def _test_view(self, im):
        """Resize the short side to size x 256/224, then centre-crop ``size``."""
        from PIL import Image

        short = round(self.size * 256 / 224)
        w, h = im.size
        scale = short / min(w, h)
        im = im.resize((max(short, round(w * scale)), max(short, round(h * scale))), Image.BILINEAR)
        w, h = im.size
        x0, y0 = (w - self.size) // 2, (h - self.size) // 2
        return im.crop((x0, y0, x0 + self.size, y0 + self.size))


@dataclass
class FolderData:
    """ImageNet-style train/ and val/ class folders, streamed through worker processes."""

    name: str
    train: FolderImages
    test: FolderImages
    num_classes: int
    workers: int = 8

    channels = 3

    @property
    def train_size(self) -> int:
        return len(self.train)

    def loader(self, split: str, batch_size: int, order: torch.Tensor | None = None) -> Iterator:
        ds = self.train if split == "train" else self.test
        return iter(
            torch.utils.data.DataLoader(
                ds,
                batch_size=batch_size,
                sampler=order.tolist() if order is not None else None,
                num_workers=self.workers,
                drop_last=split == "train",
                pin_memory=torch.cuda.is_available(),
            )
        )


def load_folder(
    root: str | os.PathLike | None, image_size: int, seed: int, workers: int = 8, name: str = "imagenet"
) -> FolderData:
    """``train/`` and ``val/`` class folders under the root (ImageNet's layout, or any)."""
    if name == "folder" and not root:
        raise DataError("--dataset folder needs --data-dir PATH (a folder with train/ and val/ class folders)")
    base = data_dir(name, root)
    train, classes = scan_folder(base / "train")
    val, val_classes = scan_folder(base / "val")
    if val_classes != classes:
        raise DataError(f"{base}: train/ and val/ hold different class folders")
    return FolderData(
        name, FolderImages(train, image_size, True, seed), FolderImages(val, image_size, False), len(classes), workers
    )


def check_available(dataset: str, root: str | os.PathLike | None, image_size: int) -> None:
    """Load the data once, so a sweep fails before writing anything: small data is read, class
    folders only scanned (their images are decoded by the loader workers of a run)."""
    load_dataset(dataset, root, image_size, workers=0)

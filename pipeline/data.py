"""Datasets as uint8 image tensors (N, C, H, W) and int64 labels.

Every source ends up in one file format, the one of a plain ``.npz`` with ``x_train``,
``y_train``, ``x_test``, ``y_test`` (plus ``mean`` and ``std`` per channel once fetched):

- ``digits``: scikit-learn's bundled handwritten digits (real 8x8 scans, 16 grey levels), the
  offline default; no network needed.
- ``cifar10``, ``cifar100``, ``svhn``, ``mnist``, ``fashion_mnist``: torchvision downloads, which
  check each archive's MD5; without a network they fail with a message saying what to do.
- ``tiny_imagenet``: the Tiny ImageNet archive (MD5-checked by torchvision's downloader), its
  labelled validation images as the test split.
- ``npz``: a file the user already has, validated and copied.

Images stay uint8 until a batch is taken: small datasets live on the device whole.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.config import DataConfig
from pipeline.io import atomic_path


class DataError(RuntimeError):
    """Data that cannot be used; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class Splits:
    x_train: torch.Tensor  # uint8 (N, C, H, W)
    y_train: torch.Tensor  # int64 (N,)
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: tuple[float, ...]  # per channel, of x_train in [0, 1]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def channels(self) -> int:
        return self.x_train.shape[1]

    def to(self, device: torch.device | str) -> Splits:
        return Splits(
            self.x_train.to(device), self.y_train.to(device), self.x_test.to(device), self.y_test.to(device),
            self.mean, self.std,
        )


def prepared_dir(cfg: DataConfig) -> Path:
    """The fetch stage's output folder: the dataset file and the record of the run that made it."""
    return Path(cfg.root) / "prepared"


def dataset_file(cfg: DataConfig) -> Path:
    """Where the fetch stage writes the dataset and every later stage reads it."""
    return prepared_dir(cfg) / "data.npz"


# --------------------------------------------------------------------------------------------
# validation and the npz format

_KEYS = ("x_train", "y_train", "x_test", "y_test")
FORMAT = ("an .npz with arrays x_train, y_train, x_test, y_test: images uint8 (N, C, H, W) with C 1 or 3 "
          "and values 0-255, labels integers 0..K-1 for K >= 2 classes, each in y_train, one per image")


def _conversion(name: str, x: np.ndarray) -> str:
    """How to turn images in a common other layout (grey without a channel axis, channels last,
    float or wider integers) into the format; empty when it is none of those."""
    expr = name
    if x.ndim == 3:
        expr += "[:, None]"
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        expr += ".transpose(0, 3, 1, 2)"
    if x.dtype != np.uint8 and x.size and np.issubdtype(x.dtype, np.number):
        low, high = x.min(), x.max()
        if np.issubdtype(x.dtype, np.floating) and 0 <= low and high <= 1:
            expr = f"({expr} * 255).round().astype(np.uint8)"
        elif 0 <= low and high <= 255:
            expr += ".round().astype(np.uint8)" if np.issubdtype(x.dtype, np.floating) else ".astype(np.uint8)"
    return f"; convert with {expr}" if expr != name else ""


def validate_arrays(arrays: dict[str, np.ndarray], source: str) -> None:
    missing = [k for k in _KEYS if k not in arrays]
    if missing:
        raise DataError(f"{source}: missing arrays {missing}; expected {FORMAT}")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3):
            raise DataError(
                f"{source}: x_{split} must be uint8 of shape (N, C, H, W) with C in (1, 3) and values 0-255, "
                f"got {x.dtype} {x.shape}{_conversion(f'x_{split}', x)}"
            )
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{source}: y_{split} must be integer labels, one per image, got {y.dtype} {y.shape}")
        if len(y) and (y.min() < 0 or y.max() >= 1000):
            raise DataError(f"{source}: y_{split} labels must lie in [0, 1000), got [{y.min()}, {y.max()}]")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(f"{source}: train images {arrays['x_train'].shape[1:]} and test images "
                        f"{arrays['x_test'].shape[1:]} differ in shape")
    if len(arrays["x_train"]) == 0 or len(arrays["x_test"]) == 0:
        raise DataError(f"{source}: empty train or test split")
    _check_classes(arrays["y_train"], arrays["y_test"], source)


_RENUMBER = ("renumber both with classes, y_train = np.unique(y_train, return_inverse=True); "
             "y_test = np.searchsorted(classes, y_test)")


def _listed(values: np.ndarray, most: int = 5) -> str:
    shown = ", ".join(str(v) for v in values[:most])
    return shown + (f", ... ({len(values)} in all)" if len(values) > most else "")


def _check_classes(y_train: np.ndarray, y_test: np.ndarray, source: str) -> None:
    """Labels are the classes 0..K-1 of the training split, at least two of them, and the test
    split uses no class the training split lacks: the network's K outputs are the training
    classes, so a gap would be an output never trained, and a test-only class one never right."""
    classes = np.unique(y_train)
    if len(classes) < 2:
        raise DataError(f"{source}: y_train has one class ({classes[0]}); a classifier needs at least 2")
    if classes[-1] != len(classes) - 1:
        missing = np.setdiff1d(np.arange(classes[-1] + 1), classes)
        raise DataError(f"{source}: y_train labels must be the classes 0..K-1, every one used; its "
                        f"{len(classes)} classes run to {classes[-1]} and miss {_listed(missing)}; {_RENUMBER}")
    unseen = np.setdiff1d(np.unique(y_test), classes)
    if len(unseen):
        raise DataError(f"{source}: y_test has labels that y_train lacks ({_listed(unseen)}; training has "
                        f"classes 0..{classes[-1]}); every test class must be trained on")


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 images, in [0, 1] units, computed in chunks."""
    c = x.shape[1]
    total, total_sq, n = np.zeros(c), np.zeros(c), 0
    for start in range(0, len(x), 4096):
        chunk = x[start:start + 4096].astype(np.float64) / 255.0
        total += chunk.sum(axis=(0, 2, 3))
        total_sq += (chunk ** 2).sum(axis=(0, 2, 3))
        n += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean ** 2, 1e-12))
    return mean.astype(np.float32), std.astype(np.float32)


def write_npz(arrays: dict[str, np.ndarray], path: Path) -> None:
    validate_arrays(arrays, str(path))
    arrays = {k: arrays[k] for k in _KEYS}
    arrays["y_train"] = arrays["y_train"].astype(np.int64)
    arrays["y_test"] = arrays["y_test"].astype(np.int64)
    arrays["mean"], arrays["std"] = channel_stats(arrays["x_train"])
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def _open_npz(path: Path, advice: str) -> dict[str, np.ndarray]:
    """The arrays of an .npz; anything else (a truncated file, a single .npy array) is a DataError."""
    try:
        if not zipfile.is_zipfile(path):  # np.load would try it as .npy or pickle and say so
            raise ValueError("not a zip archive of named arrays")
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: not a readable .npz file ({err}); {advice}") from None


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The fetch stage's dataset file, validated."""
    if not path.exists():
        raise DataError(f"{path}: not found; run the fetch stage first (dvc repro fetch)")
    arrays = _open_npz(path, "delete it and fetch again")
    validate_arrays(arrays, str(path))
    return arrays


def load_splits(cfg: DataConfig) -> Splits:
    """The fetched dataset as uint8 tensors on the CPU."""
    arrays = read_npz(dataset_file(cfg))
    if "mean" in arrays:
        mean, std = arrays["mean"], arrays["std"]
    else:
        mean, std = channel_stats(arrays["x_train"])
    t = {k: torch.from_numpy(np.ascontiguousarray(arrays[k])) for k in _KEYS}
    return Splits(t["x_train"], t["y_train"].long(), t["x_test"], t["y_test"].long(),
                  tuple(float(m) for m in mean), tuple(float(s) for s in std))


# --------------------------------------------------------------------------------------------
# sources


def _resize(x: np.ndarray, size: int | None) -> np.ndarray:
    if size is None or x.shape[-1] == size and x.shape[-2] == size:
        return x
    t = torch.from_numpy(x).float()
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return t.round().clamp(0, 255).to(torch.uint8).numpy()


def _digits(cfg: DataConfig, seed: int) -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    x = _resize(x, cfg.image_size or 16)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, bunch.target, test_size=cfg.digits_test_fraction, random_state=seed, stratify=bunch.target
    )
    return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te}


def _torchvision(cfg: DataConfig) -> dict[str, np.ndarray]:
    import torchvision.datasets as tvd

    raw = Path(cfg.root) / "raw" / cfg.dataset
    name = cfg.dataset

    def build(train: bool):
        if name == "svhn":
            return tvd.SVHN(raw, split="train" if train else "test", download=True)
        cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "mnist": tvd.MNIST,
               "fashion_mnist": tvd.FashionMNIST}[name]
        return cls(raw, train=train, download=True)

    try:
        train, test = build(True), build(False)
    except (OSError, RuntimeError) as err:  # URLError is an OSError; torchvision raises RuntimeError on bad MD5
        raise DataError(
            f"could not download {name} into {raw} ({type(err).__name__}: {err}). Without a network, "
            f"place the torchvision archive there by hand, or convert your copy to an npz file and set "
            f"data.dataset: npz with data.path"
        ) from None

    def arrays(ds) -> tuple[np.ndarray, np.ndarray]:
        if name == "svhn":
            return np.asarray(ds.data), np.asarray(ds.labels)
        x = ds.data.numpy() if torch.is_tensor(ds.data) else np.asarray(ds.data)
        y = ds.targets.numpy() if torch.is_tensor(ds.targets) else np.asarray(ds.targets)
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)  # grey (N,H,W) or RGB (N,H,W,C)
        return np.ascontiguousarray(x), y

    x_tr, y_tr = arrays(train)
    x_te, y_te = arrays(test)
    return {"x_train": _resize(x_tr, cfg.image_size), "y_train": y_tr,
            "x_test": _resize(x_te, cfg.image_size), "y_test": y_te}


# The archive of the Tiny ImageNet challenge (200 classes of 64x64 images; 100,000 train and the
# 10,000 labelled validation images, which serve as the test split, as AFA and others use them).
TINY_IMAGENET = ("http://cs231n.stanford.edu/tiny-imagenet-200.zip", "90528d7ca1a48142e341f4ef8d21d0de")


def _tiny_imagenet(cfg: DataConfig) -> dict[str, np.ndarray]:
    from PIL import Image
    from torchvision.datasets.utils import download_and_extract_archive

    raw = Path(cfg.root) / "raw" / "tiny_imagenet"
    folder = raw / "tiny-imagenet-200"
    if not (folder / "wnids.txt").exists():
        url, md5 = TINY_IMAGENET
        try:
            download_and_extract_archive(url, str(raw), md5=md5)
        except (OSError, RuntimeError) as err:
            raise DataError(
                f"could not download Tiny ImageNet into {raw} ({type(err).__name__}: {err}). Without a network, "
                f"unpack tiny-imagenet-200.zip (MD5 {md5}) there by hand, so that {folder / 'wnids.txt'} exists"
            ) from None
    wnids = (folder / "wnids.txt").read_text().split()
    label = {w: i for i, w in enumerate(wnids)}

    def load(paths: list[Path]) -> np.ndarray:
        return np.stack([np.asarray(Image.open(p).convert("RGB")).transpose(2, 0, 1) for p in paths])

    train = [(p, label[w]) for w in wnids for p in sorted((folder / "train" / w / "images").glob("*.JPEG"))]
    val = [(folder / "val" / "images" / line.split("\t")[0], label[line.split("\t")[1]])
           for line in (folder / "val" / "val_annotations.txt").read_text().splitlines() if line.strip()]
    if not train or not val:
        raise DataError(f"{folder}: no images found; unpack tiny-imagenet-200.zip there again")
    x_tr, x_te = load([p for p, _ in train]), load([p for p, _ in val])
    return {"x_train": _resize(x_tr, cfg.image_size), "y_train": np.array([y for _, y in train]),
            "x_test": _resize(x_te, cfg.image_size), "y_test": np.array([y for _, y in val])}


def _user_npz(cfg: DataConfig) -> dict[str, np.ndarray]:
    """The user's own file: what is wrong with it says what the file must hold (fetch makes it from nothing)."""
    path = Path(cfg.path)
    if not path.is_file():
        raise DataError(f"data.path: {path}: no such file; it must be {FORMAT}")
    arrays = _open_npz(path, f"it must be {FORMAT}")
    validate_arrays(arrays, str(path))
    for split in ("train", "test"):
        arrays[f"x_{split}"] = _resize(arrays[f"x_{split}"], cfg.image_size)
    return arrays


def prepare(cfg: DataConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """The configured dataset as arrays, downloaded or generated as its source requires."""
    if cfg.dataset == "digits":
        return _digits(cfg, seed)
    if cfg.dataset == "npz":
        return _user_npz(cfg)
    if cfg.dataset == "tiny_imagenet":
        return _tiny_imagenet(cfg)
    return _torchvision(cfg)

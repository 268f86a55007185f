"""scikit-learn's bundled 8x8 digits, with a fixed train / validation split.

The 1797 images are permuted with numpy's legacy RandomState(0) (stable across numpy versions) and
the last 360 of the permutation are the validation split. Pixels (0..16) are scaled to [0, 1],
normalized with the training mean and std, and upsampled to 16x16 bilinearly.
"""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

N_VAL = 360
IMAGE_SIZE = 16
SPLIT_SEED = 0


@dataclass(frozen=True)
class DigitsSplit:
    x_train: torch.Tensor  # (n, 1, 16, 16) float32
    y_train: torch.Tensor  # (n,) int64
    x_val: torch.Tensor
    y_val: torch.Tensor
    train_index: np.ndarray  # rows of load_digits() in each split
    val_index: np.ndarray


def _prepare(images: np.ndarray, mean: float, std: float) -> torch.Tensor:
    x = torch.tensor(images, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    x = (x - mean) / std
    return F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)


def load_split() -> DigitsSplit:
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.RandomState(SPLIT_SEED).permutation(len(digits.target))
    train_index, val_index = np.sort(order[:-N_VAL]), np.sort(order[-N_VAL:])
    train_pixels = digits.data[train_index] / 16.0
    mean, std = float(train_pixels.mean()), float(train_pixels.std())
    return DigitsSplit(
        x_train=_prepare(digits.data[train_index], mean, std),
        y_train=torch.tensor(digits.target[train_index], dtype=torch.long),
        x_val=_prepare(digits.data[val_index], mean, std),
        y_val=torch.tensor(digits.target[val_index], dtype=torch.long),
        train_index=train_index,
        val_index=val_index,
    )


def augment(x: torch.Tensor, gen: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Shift each image by up to max_shift pixels along each axis, filling with the background value."""
    n, c, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=float(x.min()))
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(n, c, h, w + 2 * max_shift)
    shifted = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(n, c, h, w)
    return shifted.gather(3, cols)

"""The photographs an INR represents: scikit-learn's sample images, downsampled with numpy."""

from __future__ import annotations

import numpy as np

# The two photographs that ship with scikit-learn (offline, no download).
SAMPLE_IMAGES = ("china", "flower")


def block_downsample(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop a square and average ``b x b`` pixel blocks down to ``size x size``.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        Any numeric dtype.
    size : int
        Side of the output; the block side is ``b = min(H, W) // size`` and the
        crop ``b * size`` pixels square, centred.

    Returns
    -------
    ndarray of float64, shape (size, size, C)
        Block means (an area filter, so no aliasing of fine texture).
    """
    h, w, c = image.shape
    if not 1 <= size <= min(h, w):
        raise ValueError(f"size must be in [1, {min(h, w)}], got {size}")
    b = min(h, w) // size
    side = b * size
    top, left = (h - side) // 2, (w - side) // 2
    crop = np.asarray(image[top : top + side, left : left + side], dtype=np.float64)
    return crop.reshape(size, b, size, b, c).mean(axis=(1, 3))


def load_images(names: tuple[str, ...] = SAMPLE_IMAGES, size: int = 64) -> np.ndarray:
    """The named scikit-learn sample photographs, square, RGB in [0, 1].

    Parameters
    ----------
    names : tuple of str
        Subset of ``("china", "flower")``, in the order wanted.
    size : int
        Output side in pixels (the 427 x 640 photographs are centre-cropped).

    Returns
    -------
    ndarray of float32, shape (len(names), size, size, 3)
    """
    from sklearn.datasets import load_sample_image

    unknown = [n for n in names if n not in SAMPLE_IMAGES]
    if unknown or not names:
        raise ValueError(f"unknown images {unknown or names}; choose from {SAMPLE_IMAGES}")
    out = [block_downsample(load_sample_image(f"{n}.jpg"), size) / 255.0 for n in names]
    return np.stack(out).astype(np.float32)

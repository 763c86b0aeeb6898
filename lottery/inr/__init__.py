"""Region tickets of an implicit neural representation (the paper's second domain).

An INR maps a pixel's coordinates (through Fourier features) to its colour.
Each image is cut into regions; ``rtl`` draws one ticket per region on one
shared network and routes every pixel to its region's ticket; ``imp`` draws
one ticket for all pixels, told the region by a learned embedding.
"""

from lottery.inr.config import INRDescription
from lottery.inr.fourier import fourier_features, gaussian_frequencies, pixel_coordinates
from lottery.inr.images import block_downsample, load_images
from lottery.inr.model import INR, conditioned_theta0
from lottery.inr.regions import region_masks, segment_regions
from lottery.inr.run import build_context, psnr, train_inr_run
from lottery.inr.train import Pixels, predict, route, train_joint, train_ticket

__all__ = [
    "INR",
    "INRDescription",
    "Pixels",
    "block_downsample",
    "build_context",
    "conditioned_theta0",
    "fourier_features",
    "gaussian_frequencies",
    "load_images",
    "pixel_coordinates",
    "predict",
    "psnr",
    "region_masks",
    "route",
    "segment_regions",
    "train_inr_run",
    "train_joint",
    "train_ticket",
]

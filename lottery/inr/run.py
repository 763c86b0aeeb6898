"""An INR run from description to folder: images, regions, theta_0, then the levels of rtl and imp.

As in the paper, one INR represents one image; every image of the run is a
separate experiment with its own methods ``rtl-<image>`` and ``imp-<image>``
(manifest entries carry ``method`` and ``image``). All networks of all
methods and images start from the same theta_0.

Methods
-------
rtl
    One ticket per region of the image (K = regions). Level L: the K masks
    m^L are pruned from the per-ticket extraction weights of level L-1
    (ticket k trained alone on region k's pixels from theta_0 under
    m_k^{L-1}, :func:`~lottery.inr.train.train_ticket`); then one shared theta
    is retrained jointly from theta_0 (:func:`~lottery.inr.train.train_joint`)
    and every pixel is rendered by its region's ticket (oracle routing: the
    region of a pixel of the represented image is known).
imp
    One ticket for every pixel, conditioned on the region by a learned
    embedding appended to the input (the paper's IMP baseline). Its theta_0
    extends rtl's (:func:`~lottery.inr.model.conditioned_theta0`). Each level
    trains ``rounds * K`` steps on all pixels: as many pixel presentations as
    rtl's joint retraining, and as its extraction.

Both run through the one spine (:func:`lottery.context.run_domain`, domain
:data:`INR_DOMAIN`). Resuming: a level whose folder exists is skipped. The next mask needs the
previous level's trained weights: rtl's extraction weights are recomputed,
imp's are read from ``weights.safetensors`` when kept, else recomputed. All
randomness is drawn per (seed, method, image, level, ticket).

Predictions (``predictions.parquet``): one row per region, not per pixel (the
per-pixel errors of every level would not fit the size budget of an embedded
run; the reconstructions are kept as images instead). Columns: ``sample``
(row index, = ``subset``), ``subset`` (ticket = region id within the image),
``image`` and ``region`` (group columns: image name and region name
``<image>/<j>``), ``n_pixels``, ``mse`` (mean squared error over the region's
pixels and the 3 channels, predictions clipped to [0, 1]) and ``psnr`` (dB,
peak 1). Per-level arrays (``arrays.safetensors``): ``reconstruction``, uint8
(S, S, 3). Per-run arrays (``extra/images.safetensors``): ``images`` float32
(n_images, S, S, 3) in [0, 1], ``regions`` int32 (n_images, S, S) with region
ids within each image, ``frequencies`` float32 (F, 2).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from artifacts import run_format as rf
from lottery.context import Domain, RunContext, manifest_header, run_domain
from lottery.inr.config import INRDescription
from lottery.inr.fourier import fourier_features, gaussian_frequencies, pixel_coordinates
from lottery.inr.images import load_images
from lottery.inr.model import INR, conditioned_theta0
from lottery.inr.regions import segment_regions
from lottery.inr.train import Pixels, predict, route, train_joint, train_ticket
from lottery.levels import LevelLoop, level_info, prune_level
from lottery.masks import Masks
from lottery.train import seeded_generator

EXTRA_NAME = "images"
THETA0 = rf.THETA0
TASK = "inr"


def method_name(method: str, image: str) -> str:
    """Folder and manifest name of a method on one image, e.g. ``rtl-china``."""
    return f"{method}-{image}"


def psnr(mse: float | np.ndarray, peak: float = 1.0) -> float | np.ndarray:
    """Peak signal-to-noise ratio in dB, ``10 log10(peak^2 / mse)`` (inf for mse = 0)."""
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(peak**2 / np.asarray(mse, dtype=np.float64))


@dataclass
class ImageTask:
    """One image to represent, with its regions.

    Attributes
    ----------
    name : str
        Image name (``china``, ``flower``).
    image : ndarray of float32, shape (S, S, 3)
        RGB in [0, 1].
    regions : ndarray of int32, shape (S, S)
        Region (ticket) id of every pixel, ``0..K-1``.
    pixels : Pixels
        All pixels, row-major.
    """

    name: str
    image: np.ndarray
    regions: np.ndarray
    pixels: Pixels

    @property
    def k(self) -> int:
        """Number of regions (tickets)."""
        return int(self.regions.max()) + 1

    @property
    def region_names(self) -> list[str]:
        """``"<image>/<j>"`` per region id."""
        return [f"{self.name}/{j}" for j in range(self.k)]


@dataclass
class INRContext(RunContext):
    """What every method and image of a run shares.

    Attributes
    ----------
    frequencies : ndarray of float32, shape (F, 2)
    tasks : list of ImageTask
        One per image, in ``desc.images`` order.
    keep_weights : bool
        Keep each level's trained weights (a resumed imp then needs no retraining).
    """

    desc: INRDescription
    frequencies: np.ndarray
    tasks: list[ImageTask]
    keep_weights: bool = True

    def model(self, conditioned: bool) -> INR:
        """The (structure of the) INR; conditioned = with the region embedding (imp)."""
        d = self.desc
        return INR(
            2 * d.n_frequencies,
            d.hidden,
            d.depth,
            3,
            n_regions=d.regions if conditioned else 0,
            embed_dim=d.embed_dim if conditioned else 0,
        )

    def architecture(self) -> INR:
        """The unconditioned INR, freshly initialised (theta_0: PyTorch's default Linear init)."""
        return self.model(conditioned=False)

    def shapes(self, conditioned: bool) -> dict[str, tuple[int, ...]]:
        """Prunable shapes: the weights of the Linear layers."""
        params = self.model(conditioned).named_parameters()
        return {n: tuple(p.shape) for n, p in params if n.endswith(".weight") and n != "embed.weight"}


def build_context(desc: INRDescription, run_dir: Path, keep_weights: bool = True) -> INRContext:
    """Images, regions and frequencies (computed once, then read from the run so a resume matches)."""
    path = run_dir / rf.EXTRA_DIR / f"{EXTRA_NAME}.safetensors"
    if path.is_file():
        stored = rf.load_tensors(path)
        images, regions, freqs = stored["images"], stored["regions"], stored["frequencies"]
    else:
        images = load_images(desc.images, desc.size)
        regions = np.stack(
            [
                segment_regions(im, desc.regions, position_weight=desc.position_weight, seed=desc.seed)
                for im in images
            ]
        ).astype(np.int32)
        freqs = gaussian_frequencies(desc.n_frequencies, desc.sigma, desc.seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        rf.save_tensors(path, {"images": images, "regions": regions, "frequencies": freqs})
    s = images.shape[1]
    feats = fourier_features(torch.as_tensor(pixel_coordinates(s, s)), torch.as_tensor(freqs))  # (S*S, 2F)
    tasks = [
        ImageTask(
            name,
            images[i],
            regions[i],
            Pixels(
                features=feats,
                target=torch.as_tensor(images[i].reshape(-1, 3)),
                region=torch.as_tensor(regions[i].reshape(-1).astype(np.int64)),
            ),
        )
        for i, name in enumerate(desc.images)
    ]
    return INRContext(Path(run_dir), desc, freqs, tasks, keep_weights)


def region_predictions(task: ImageTask, recon: torch.Tensor) -> pd.DataFrame:
    """One row per region: pixel count, MSE and PSNR of a reconstruction (module docstring).

    Parameters
    ----------
    task : ImageTask
    recon : tensor of float32, shape (S * S, 3)
        Reconstructed RGB of every pixel, row-major.
    """
    sq = ((recon - task.pixels.target) ** 2).mean(1).double()  # (N,)
    ids = task.pixels.region
    n = torch.bincount(ids, minlength=task.k).numpy()
    total = torch.bincount(ids, weights=sq, minlength=task.k).numpy()
    mse = total / np.maximum(n, 1)
    return pd.DataFrame(
        {
            "sample": np.arange(task.k, dtype=np.int64),
            "subset": np.arange(task.k, dtype=np.int64),
            "image": [task.name] * task.k,
            "region": task.region_names,
            "n_pixels": n.astype(np.int64),
            "mse": mse,
            "psnr": psnr(mse),
        }
    )


def level_summary(task: ImageTask, recon: torch.Tensor) -> dict[str, float]:
    """PSNR of the whole image (``psnr``) and the mean of its region PSNRs (``psnr_region_mean``)."""
    mse = float(((recon - task.pixels.target) ** 2).double().mean())
    return {
        "psnr": float(psnr(mse)),
        "psnr_region_mean": float(region_predictions(task, recon)["psnr"].mean()),
    }


def _write(
    ctx: INRContext,
    task: ImageTask,
    method: str,
    level: int,
    masks: Masks,
    recon: torch.Tensor,
    weights: dict[str, np.ndarray] | None,
    seconds: float,
    steps: int,
) -> dict[str, float]:
    s = task.image.shape[0]
    image = np.round(recon.numpy().reshape(s, s, 3) * 255).astype(np.uint8)
    metrics = level_summary(task, recon)
    info = level_info(masks, metrics, seconds=seconds, steps=steps, presentations=steps * ctx.desc.batch_size)
    rf.write_level(
        ctx.run_dir,
        method_name(method, task.name),
        level,
        masks=masks.numpy(),
        predictions=region_predictions(task, recon),
        info=info,
        weights=weights,
        arrays={"reconstruction": image},
    )
    return metrics


def _extract(
    ctx: INRContext, task: ImageTask, init: dict, masks: Masks, level: int
) -> list[dict[str, np.ndarray]]:
    """RTL ticket extraction at ``level``: each ticket trained alone on its region from theta_0."""
    d, model = ctx.desc, ctx.model(conditioned=False)
    groups = route(task.pixels.region, task.k)
    return [
        train_ticket(
            model,
            init,
            masks.ticket(k),
            task.pixels,
            groups[k],
            d.rounds,
            d.batch_size,
            d.lr,
            seeded_generator(d.seed, "rtl", task.name, level, k),
        )
        for k in range(task.k)
    ]


def _init(ctx: INRContext, method: str, conditioned: bool, keep: bool) -> dict[str, np.ndarray]:
    """theta_0 of a method: the run's ``theta0.safetensors``, extended for the conditioned model.

    The shared theta_0 is written once at the top of the run (:meth:`RunContext.theta0`);
    ``<method>/init.safetensors``
    (what :meth:`Run.init_weights` reads) only when weights are kept, so that an
    embedded run does not store four copies of it.
    """
    state = ctx.theta0()
    if conditioned:
        seed = int(seeded_generator(ctx.desc.seed, "imp", "embedding").initial_seed())
        state = conditioned_theta0(state, ctx.desc.regions, ctx.desc.embed_dim, seed)
    path = rf.method_dir(ctx.run_dir, method) / rf.INIT
    if keep and not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        rf.save_tensors(path, state)
    return state


def run_rtl(ctx: INRContext, show_progress: bool = True) -> None:
    """Run or resume the rtl levels of every image."""
    for task in ctx.tasks:
        run_rtl_image(ctx, task, show_progress)


def run_imp(ctx: INRContext, show_progress: bool = True) -> None:
    """Run or resume the imp levels of every image."""
    for task in ctx.tasks:
        run_imp_image(ctx, task, show_progress)


def run_rtl_image(ctx: INRContext, task: ImageTask, show_progress: bool = True) -> None:
    """Run or resume the rtl levels of one image (module docstring)."""
    d, name, keep_weights = ctx.desc, method_name("rtl", task.name), ctx.keep_weights
    init = _init(ctx, name, conditioned=False, keep=keep_weights)
    shapes = ctx.shapes(conditioned=False)
    model = ctx.model(conditioned=False)
    extracted: tuple[int, list[dict[str, np.ndarray]]] | None = None
    masks: Masks | None = None
    loop = LevelLoop(ctx.run_dir, name, d.levels, show_progress)
    for level, continued in loop:
        if not continued:
            masks = None
        t0 = time.perf_counter()
        if level == 0:
            masks = Masks.ones(shapes, task.k)
        else:
            if masks is None:
                masks = Masks(rf.load_masks(rf.level_dir(ctx.run_dir, name, level - 1) / rf.MASKS), shapes)
            if extracted is None or extracted[0] != level - 1:
                extracted = (level - 1, _extract(ctx, task, init, masks, level - 1))
            masks = Masks.stack(
                [
                    prune_level(extracted[1][k], masks.ticket(k), d.fraction, level, d.scope)
                    for k in range(task.k)
                ]
            )
        gen = seeded_generator(d.seed, "rtl", task.name, level, "joint")
        joint = train_joint(model, init, dict(masks), task.pixels, d.rounds, d.batch_size, d.lr, gen)
        recon = predict(model, joint, dict(masks), task.pixels, routed=True)
        steps = d.rounds * task.k
        if level < d.levels:  # the next level's masks come from this level's extraction
            extracted = (level, _extract(ctx, task, init, masks, level))
            steps *= 2
        seconds = time.perf_counter() - t0
        m = _write(ctx, task, "rtl", level, masks, recon, joint if keep_weights else None, seconds, steps)
        loop.report(sparsity=float(masks.sparsity().mean()), psnr=m["psnr"])


def run_imp_image(ctx: INRContext, task: ImageTask, show_progress: bool = True) -> None:
    """Run or resume the imp levels of one image (module docstring)."""
    d, name, keep_weights = ctx.desc, method_name("imp", task.name), ctx.keep_weights
    init = _init(ctx, name, conditioned=True, keep=keep_weights)
    shapes = ctx.shapes(conditioned=True)
    model = ctx.model(conditioned=True)
    everything = torch.arange(len(task.pixels))
    steps = d.rounds * task.k

    def train(mask: dict[str, torch.Tensor], level: int) -> dict[str, np.ndarray]:
        gen = seeded_generator(d.seed, "imp", task.name, level)
        return train_ticket(model, init, mask, task.pixels, everything, steps, d.batch_size, d.lr, gen)

    prev: tuple[dict[str, np.ndarray], dict[str, torch.Tensor]] | None = None
    loop = LevelLoop(ctx.run_dir, name, d.levels, show_progress)
    for level, continued in loop:
        if not continued:
            prev = None
        t0 = time.perf_counter()
        if level == 0:
            mask = {n: torch.ones(s, dtype=torch.bool) for n, s in shapes.items()}
        else:
            if prev is None:
                ldir = rf.level_dir(ctx.run_dir, name, level - 1)
                m_prev = {n: torch.as_tensor(m[0]) for n, m in rf.load_masks(ldir / rf.MASKS).items()}
                has = (ldir / rf.WEIGHTS).is_file()
                prev = (rf.load_tensors(ldir / rf.WEIGHTS) if has else train(m_prev, level - 1), m_prev)
            mask = prune_level(prev[0], prev[1], d.fraction, level, d.scope)
        trained = train(mask, level)
        masks = Masks({n: m[None] for n, m in mask.items()}, shapes)
        recon = predict(model, trained, dict(masks), task.pixels, routed=False)
        seconds = time.perf_counter() - t0
        m = _write(ctx, task, "imp", level, masks, recon, trained if keep_weights else None, seconds, steps)
        prev = (trained, mask)
        loop.report(sparsity=float(masks.sparsity().mean()), psnr=m["psnr"])


# The INR method registry (names as in :data:`lottery.inr.config.METHODS`).
METHODS = {"rtl": run_rtl, "imp": run_imp}


def manifest(ctx: INRContext, name: str | None) -> dict:
    """The run's manifest (``task: "inr"`` tells readers the predictions are regression rows)."""
    d = ctx.desc
    methods = {}
    for task in ctx.tasks:
        for m in d.methods:
            entry = {
                "method": m,
                "image": task.name,
                "n_pixels": [int(c) for c in np.bincount(task.regions.reshape(-1), minlength=task.k)],
            }
            if m == "rtl":
                entry |= {
                    "tickets": task.region_names,
                    "ticket_kind": "region",
                    "routings": ["oracle"],
                    "default_routing": "oracle",
                    "description": f"{task.name}: one ticket per region on one shared INR, "
                    "pixels routed by their region",
                }
            else:
                entry |= {
                    "tickets": ["all"],
                    "ticket_kind": "single",
                    "routings": [],
                    "default_routing": None,
                    "description": f"{task.name}: one ticket for every pixel, conditioned on a learned "
                    "region embedding (IMP single)",
                    "prunable": {n: list(s) for n, s in ctx.shapes(conditioned=True).items()},
                }
            methods[method_name(m, task.name)] = entry
    names = [n for t in ctx.tasks for n in t.region_names]
    return {
        **manifest_header(d, ctx.run_dir, name, TASK),
        "dataset": {
            "name": "sklearn-sample-images",
            "images": list(d.images),
            "classes": names,
            "input_shape": [2],
            "image_shape": [d.size, d.size, 3],
            "n_test": int(sum(len(t.pixels) for t in ctx.tasks)),
        },
        "model": {
            "name": "inr",
            "hidden": [d.hidden] * (d.depth - 1),
            "depth": d.depth,
            "n_frequencies": d.n_frequencies,
            "sigma": d.sigma,
            "embed_dim": d.embed_dim,
        },
        "partition": {
            "kind": "region",
            "k": len(names),
            "names": names,
            "images": [t.name for t in ctx.tasks for _ in range(t.k)],
        },
        "prunable": {n: list(s) for n, s in ctx.shapes(conditioned=False).items()},
        "groups": ["image", "region"],
        "methods": methods,
    }


INR_DOMAIN = Domain(task=TASK, build=build_context, manifest=manifest, methods=METHODS)


def train_inr_run(
    desc: INRDescription,
    run_dir: str | Path,
    *,
    name: str | None = None,
    keep_weights: bool = True,
    show_progress: bool = True,
) -> Path:
    """Run (or resume) every method of ``desc`` on every image into ``run_dir``.

    Parameters
    ----------
    desc : INRDescription
    run_dir : str or Path
        Created if missing; a folder holding another run (other hash) is refused.
    name : str, optional
        Run name in the manifest (default: the folder name).
    keep_weights : bool
        Keep each level's trained weights (a resumed imp then needs no retraining).
    show_progress : bool

    Returns
    -------
    Path
        The run folder.
    """
    # One thread: on a shared 2-core machine a second thread slows these small matmuls down.
    return run_domain(
        INR_DOMAIN,
        desc,
        run_dir,
        name=name,
        show_progress=show_progress,
        threads=1,
        keep_weights=keep_weights,
    )

"""The embedded default runs shipped under ``artifacts/``: train (or resume), then shrink for the repository.

``python -m lottery embed NAME`` trains preset ``NAME`` into ``artifacts/NAME``
and then keeps only the trained weights that ``EMBEDDED[NAME]`` lists, stored
as float16, and stores the masks once per method (``mask_levels``, see
:func:`artifacts.run_format.compact_masks`). A run group (``Embedded.seeds``) is
trained by ``python -m lottery sweep`` and shrunk by ``embed NAME --shrink-only``.
``scripts/make_embedded_runs.sh`` regenerates all of them and records the wall
time of each.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import safe_open

from artifacts import run_format as rf

THETA0 = "theta0.safetensors"  # written by lottery.pipeline.Context.theta0


@dataclass(frozen=True)
class Embedded:
    """How one embedded run is shrunk.

    Attributes
    ----------
    keep_methods : tuple of str
        Methods whose weights are kept at every level (as float16); all other
        weight files are deleted.
    seeds : tuple of int
        Empty: one run (``python -m lottery embed`` trains it). Otherwise a run
        group of these seeds, trained by ``python -m lottery sweep`` and shrunk by
        ``python -m lottery embed NAME --shrink-only``.
    fold_masks : bool
        Keep each method's masks as one ``mask_levels`` file and drop the per-level
        mask files (:func:`artifacts.run_format.compact_masks`; ``Run.masks`` reads
        both, readers of ``masks.safetensors`` itself need the per-level files), and
        store the per-sample columns common to every level once
        (:func:`artifacts.run_format.share_sample_columns`).
    drop_scores : bool
        Delete the ticket scores from the stored predictions, keeping the class
        records (:func:`artifacts.run_format.drop_scores`): a random-partition control
        is shown through its masks and its labelled collapse only.
    """

    keep_methods: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    fold_masks: bool = False
    drop_scores: bool = False


EMBEDDED: dict[str, Embedded] = {
    # issue 12's sweeps (they replaced the one-seed fashion-mlp-class, fashion-vit-cluster and
    # adult-mlp-cluster runs; those presets remain): 3 seeds each, and the random-partition
    # control beside each (its views need masks and class records only: no scores, no
    # weights); masks stored once per sweep (mask_levels), per-sample columns once per run
    # (samples.parquet)
    "fashion-mlp-class-sweep": Embedded(seeds=(0, 1, 2), fold_masks=True),
    "fashion-mlp-class-sweep-null": Embedded(seeds=(0, 1, 2), fold_masks=True, drop_scores=True),
    "fashion-mlp-class-sweep-count": Embedded(seeds=(0,), fold_masks=True),
    "fashion-vit-cluster-sweep": Embedded(keep_methods=("rtl", "imp"), seeds=(0, 1, 2), fold_masks=True),
    "fashion-vit-cluster-sweep-null": Embedded(seeds=(0, 1, 2), fold_masks=True, drop_scores=True),
    # no view reads an MLP's weights (only the ViT's attention probe does)
    "adult-mlp-cluster-sweep": Embedded(seeds=(0, 1, 2), fold_masks=True),
    "adult-mlp-cluster-sweep-null": Embedded(seeds=(0, 1, 2), fold_masks=True, drop_scores=True),
}


def to_float16(path: Path) -> bool:
    """Rewrite a weights file in float16 (metadata kept, ``dtype=float16`` added); False if already done."""
    with safe_open(str(path), framework="numpy") as f:
        meta = dict(f.metadata() or {})
    if meta.get("dtype") == "float16":
        return False
    tensors = rf.load_tensors(path)
    half = {n: v.astype(np.float16) if v.dtype == np.float32 else v for n, v in tensors.items()}
    rf.save_tensors(path, half, **{**meta, "dtype": "float16"})
    return True


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[n], b[n]) for n in a)


def redrawn_theta0(run: rf.Run) -> dict[str, np.ndarray] | None:
    """theta_0 as the run's seed draws it again (what a resumed run writes), or None.

    A classification run records its network (``manifest["model"]``, a
    :class:`lottery.models.ModelConfig`) and its seed; theta_0 is the state of
    that network freshly built after ``torch.manual_seed(seed)``
    (:meth:`lottery.context.Context.theta0`). None for runs that record no such network.

    Returns
    -------
    dict of str to ndarray, optional
        Tensor name -> array, as ``theta0.safetensors`` holds them.
    """
    import torch

    from lottery.models import ModelConfig, build_model
    from lottery.train import state_numpy

    model = run.manifest.get("model")
    seed = (run.manifest.get("description") or {}).get("seed")
    if not isinstance(model, dict) or seed is None:
        return None
    try:
        cfg = ModelConfig(
            **{
                **model,
                "input_shape": tuple(model["input_shape"]),
                "hidden": tuple(model.get("hidden") or ()),
            }
        )
    except (TypeError, KeyError, ValueError):
        return None
    torch.manual_seed(int(seed))
    return state_numpy(build_model(cfg))


def shrink(run_dir: str | Path, spec: Embedded) -> dict[str, int]:
    """Delete the weights ``spec`` does not keep and halve the rest.

    ``<method>/init.safetensors`` files that merely copy theta_0 are deleted,
    and so is ``theta0.safetensors`` itself when the run's seed redraws it bit
    for bit (:func:`redrawn_theta0`): a resumed run rewrites both exactly.
    Otherwise theta_0 stays exact (float32) so that the run can be resumed or
    extended.

    Returns
    -------
    dict
        ``removed`` and ``halved`` weight files (theta_0 counted in ``removed``).
    """
    run = rf.load_run(run_dir)
    removed = halved = 0
    theta0_path = run.path / THETA0
    theta0 = rf.load_tensors(theta0_path) if theta0_path.is_file() else None
    for method in run.methods:
        init = rf.method_dir(run.path, method) / rf.INIT
        if theta0 is not None and init.is_file() and _same(rf.load_tensors(init), theta0):
            init.unlink()  # a copy of theta_0 (no late rewinding); a resumed run rewrites it exactly
            removed += 1
        for level in run.levels(method):
            path = rf.level_dir(run.path, method, level) / rf.WEIGHTS
            if not path.is_file():
                continue
            if method in spec.keep_methods:
                halved += to_float16(path)
            else:
                path.unlink()
                removed += 1
    if theta0 is not None and (redrawn := redrawn_theta0(run)) is not None and _same(redrawn, theta0):
        theta0_path.unlink()
        removed += 1
    counts = {"removed": removed, "halved": halved}
    if spec.drop_scores:
        counts["score_files_stripped"] = rf.drop_scores(run.path)
    if spec.fold_masks:
        counts["mask_files_removed"] = rf.compact_masks(run.path)["removed"]
        counts["prediction_files_shared"] = rf.share_sample_columns(run.path)["files"]
    return counts


def shrink_embedded(name: str, root: str | Path = "artifacts") -> dict:
    """Shrink an embedded run or run group already trained under ``root/name`` (:func:`shrink`, every run).

    Returns
    -------
    dict
        ``name``, ``path``, ``runs``, ``bytes`` (after), ``removed``, ``halved``, ``mask_files_removed``,
        ``prediction_files_shared`` (level files whose per-sample columns moved to ``samples.parquet``).
    """
    if name not in EMBEDDED:
        raise ValueError(f"unknown embedded run {name!r}; known: {', '.join(EMBEDDED)}")
    out = Path(root) / name
    paths = rf.load_group(out).run_paths() if rf.is_group(out) else [out]
    totals = {"removed": 0, "halved": 0, "mask_files_removed": 0, "prediction_files_shared": 0}
    for path in paths:
        for key, value in shrink(path, EMBEDDED[name]).items():
            totals[key] = totals.get(key, 0) + value
    return {"name": name, "path": str(out), "runs": len(paths), "bytes": folder_bytes(out), **totals}


def folder_bytes(path: str | Path) -> int:
    """Total size of the files under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def make_embedded(
    name: str, root: str | Path = "artifacts", device: str = "cpu", show_progress: bool = False
) -> dict:
    """Train (or resume) embedded run ``name`` into ``root/name`` and shrink it.

    Returns
    -------
    dict
        ``name``, ``path``, ``seconds`` (wall time of this call), ``bytes``
        (size on disk after shrinking), ``removed``, ``halved``.
    """
    from lottery.pipeline import train_run
    from lottery.presets import get_preset

    if name not in EMBEDDED:
        raise ValueError(f"unknown embedded run {name!r}; known: {', '.join(EMBEDDED)}")
    if EMBEDDED[name].seeds:
        seeds = " ".join(map(str, EMBEDDED[name].seeds))
        raise ValueError(
            f"{name} is a run group: python -m lottery sweep --preset {name} --seeds {seeds} "
            f"--out {Path(root) / name}, then python -m lottery embed {name} --shrink-only"
        )
    out = Path(root) / name
    t0 = time.perf_counter()
    train_run(get_preset(name), out, device=device, name=name, show_progress=show_progress)
    counts = shrink(out, EMBEDDED[name])
    return {
        "name": name,
        "path": str(out),
        "seconds": time.perf_counter() - t0,
        "bytes": folder_bytes(out),
        **counts,
    }

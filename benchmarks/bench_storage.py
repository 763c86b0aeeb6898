"""Bytes of one fashion-mlp-class sweep on disk: per-level files against compact storage, side by side.

Synthesises a sweep of the real shapes (LeNet-300-100 on Fashion-MNIST, K = 10 class
detectors, 24 levels of 20 % per layer, a detector's head restricted to its own row)
for ``independent`` and ``rtl`` (identical masks, as the engine draws them) and ``imp``
(K = 1), with predictions for all 10,000 test images, and writes it twice in one
process: as every run is stored today (bit-packed masks per level and method, float32
scores) and compacted (:func:`artifacts.run_format.compact_masks`: one uint8 per weight
and ticket for a whole sweep, masks shared by rtl and independent stored once; scores as
uint16 steps of 1e-4). Prints the bytes of each and the ratio.

    OMP_NUM_THREADS=1 python benchmarks/bench_storage.py [--levels 24] [--samples 10000]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artifacts import run_format as rf  # noqa: E402

SHAPES = {"layers.0.weight": (300, 784), "layers.1.weight": (100, 300), "head.weight": (10, 100)}
K = 10


def nested_masks(rng: np.random.Generator, n_levels: int, k: int) -> list[dict[str, np.ndarray]]:
    """Masks (k, *shape) of levels 0..n_levels, each keeping the top 80 % of survivors by a random score."""
    score = {n: rng.random((k, *s)) for n, s in SHAPES.items()}
    level0 = {n: np.ones((k, *s), bool) for n, s in SHAPES.items()}
    if k > 1:
        level0["head.weight"][:] = False
        for t in range(k):
            level0["head.weight"][t, t] = True
    out = [level0]
    for level in range(1, n_levels + 1):
        nxt = {}
        for n, m in out[-1].items():
            flat = np.where(m, score[n], -1.0).reshape(k, -1)
            keep = np.round(m.reshape(k, -1).sum(1) * 0.8).astype(int)
            order = np.argsort(-flat, axis=1)
            new = np.zeros_like(flat, dtype=bool)
            for t in range(k):
                new[t, order[t, : keep[t]]] = True
            nxt[n] = new.reshape(m.shape)
        out.append(nxt)
        del level
    return out


def predictions(rng: np.random.Generator, n: int, k: int) -> pd.DataFrame:
    """Detector-like records: sigmoid scores rounded to 4 decimals, routed predictions."""
    label = rng.integers(0, 10, n)
    logits = rng.normal(-3.0, 2.5, (n, k))
    logits[np.arange(n), label % k] += 6.0
    scores = np.round((1 / (1 + np.exp(-logits))).astype(np.float32), 4)
    frame = pd.DataFrame(
        {"sample": np.arange(n), "label": label, "subset": label % k, "class": label.astype(str)}
    )
    for t in range(k):
        frame[f"score_{t}"] = scores[:, t]
        frame[f"detect_{t}"] = scores[:, t] > 0.5
    for r in ("oracle", "max_score", "centroid"):
        frame[f"route_{r}"] = scores.argmax(1)
        frame[f"pred_{r}"] = scores.argmax(1)
    frame["pred"] = scores.argmax(1)
    return frame


def mask_bytes(run_dir: Path) -> int:
    files = list(run_dir.rglob(rf.MASKS)) + list(run_dir.rglob(rf.MASK_LEVELS))
    return sum(f.stat().st_size for f in files)


def prediction_bytes(run_dir: Path) -> int:
    return sum(f.stat().st_size for f in run_dir.rglob(rf.PREDICTIONS))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=int, default=24)
    ap.add_argument("--samples", type=int, default=10000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    tickets = nested_masks(rng, args.levels, K)
    single = nested_masks(rng, args.levels, 1)
    frame_k, frame_1 = predictions(rng, args.samples, K), predictions(rng, args.samples, 1)
    methods = {"independent": (tickets, frame_k), "rtl": (tickets, frame_k), "imp": (single, frame_1)}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        run.mkdir()
        rf.write_manifest(
            run,
            {
                "methods": {
                    m: {"tickets": [str(i) for i in range(len(v[0][0]["head.weight"]))]}
                    for m, v in methods.items()
                }
            },
        )
        old_pred = 0
        for m, (levels, frame) in methods.items():
            for lv, masks in enumerate(levels):
                source = "initial" if lv == 0 else "independent" if m == "rtl" else "extraction"
                rf.write_level(
                    run, m, lv, masks=masks, predictions=frame, info={"sparsity": 0.0, "masks_from": source}
                )
                rf.sync_mask_levels(run, m)
                buf = io.BytesIO()
                frame.to_parquet(buf, index=False, compression="zstd")  # today's float32 scores
                old_pred += len(buf.getvalue())
        per_level = sum(f.stat().st_size for f in run.rglob(rf.MASKS))
        compact = rf.compact_masks(run)
        after = mask_bytes(run)
        new_pred = prediction_bytes(run)
        check = rf.load_run(run)
        for lv in (0, args.levels // 2, args.levels):
            got = check.masks("rtl", lv)
            assert all(np.array_equal(got[n], tickets[lv][n]) for n in SHAPES), "decoded masks differ"
    n_weights = sum(int(np.prod(s)) for s in SHAPES.values())
    rows = [
        ("masks  per-level bit-packed (independent + rtl + imp)", per_level, None),
        ("masks  mask_levels uint8 (rtl shares independent's)", after, per_level / after),
        ("preds  float32 scores (today)", old_pred, None),
        ("preds  uint16 scores (1e-4 steps, byte-stream split)", new_pred, old_pred / new_pred),
        ("total  today", per_level + old_pred, None),
        ("total  compact", after + new_pred, (per_level + old_pred) / (after + new_pred)),
    ]
    print(
        f"fashion-mlp-class-sized sweep: {args.levels + 1} levels, K={K}, {n_weights:,} weights, "
        f"{args.samples:,} test samples; {compact['removed']} per-level mask files folded"
    )
    for label, size, ratio in rows:
        print(f"{label:<56} {size / 1e6:8.2f} MB" + (f"   {ratio:.2f}x smaller" if ratio else ""))


if __name__ == "__main__":
    main()

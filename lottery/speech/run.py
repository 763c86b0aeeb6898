"""A speech-enhancement run from description to folder: corpus, test mixtures, theta_0, then the levels.

Methods (all from one theta_0 draw of the U-Net; K = number of environments)
----------------------------------------------------------------------------
independent
    K separate networks. Level L: network k is trained from theta_0 under
    mask m_k^L on environment k's mixtures for ``rounds`` steps (this is RTL's
    ticket extraction), and is evaluated on environment k's test mixtures.
    m_k^{L+1} keeps the largest-magnitude survivors of its trained weights.
rtl
    One shared network, one ticket per environment. Level L uses the masks
    m^L of the extraction above; theta is rewound to theta_0 and retrained
    jointly (``rounds`` steps per ticket, interleaved; a step of ticket k sees
    environment k only and moves only m_k's weights). A test mixture is
    routed to the ticket of its environment (known, as in the paper).
imp
    One ticket for every environment, trained ``rounds * K`` steps per level on
    mixtures of all environments, IMP-pruned level by level.

The three run through the one spine (:func:`lottery.context.run_domain`,
domain :data:`SPEECH_DOMAIN`), one method after the other. Every level is
written when done and skipped on resume. The extraction weights (shared by
independent and rtl) and the imp weights the next level prunes are kept under
``resume/`` until the run is complete (then removed), so neither a resumed run
nor the second ticket method retrains them; were they lost, they are retrained
from their seeds, identically.

Predictions (``predictions.parquet``): one row per held-out mixture.
``sample`` (int), ``subset`` and ``label`` (environment id, the ticket an
oracle routes to), ``environment`` and ``speaker`` (group columns),
``snr_db`` (the mixing SNR), ``si_snr_in`` (noisy vs clean), ``si_snr_out``
(enhanced vs clean), ``si_snri`` (improvement), all dB, and ``ticket``
(index of the ticket that enhanced the mixture: its environment for rtl /
independent, 0 for imp).

Arrays: ``extra/examples.safetensors`` holds ``noisy`` and ``clean`` int16
(K, n) at 16 kHz (one test mixture per environment at 0 dB, each clip peak
normalised to 0.9) and ``environment_ids`` int64 (K,); for the methods of
``example_methods`` every level's ``arrays.safetensors`` holds ``enhanced``
int16 (K, n) of the same mixtures.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from artifacts import run_format as rf
from lottery.context import Domain, RunContext, manifest_header, run_domain
from lottery.levels import LevelLoop, level_info, prune_level
from lottery.masks import Masks
from lottery.speech.audio import SAMPLE_RATE, loop_concat, mix_at_snr, rms
from lottery.speech.config import SpeechDescription
from lottery.speech.corpus import PROVENANCE, fingerprint, load_index, summary
from lottery.speech.model import STFTConfig, UNet, prunable_shapes
from lottery.speech.train import MixtureSampler, enhance, numpy_rng, score, train_joint, train_ticket

TASK = "speech"
THETA0 = rf.THETA0
RESUME = "resume"
EXAMPLES = "examples"
GROUPS = ["environment", "speaker"]


@dataclass
class TestSet:
    """Held-out mixtures at fixed SNRs.

    Attributes
    ----------
    mixture, clean : tensor of float32, shape (N, n)
    frame : DataFrame
        ``sample, subset, label, environment, speaker, snr_db, si_snr_in`` per mixture.
    examples : ndarray of int64, shape (K,)
        Row of the listening example of each environment.
    """

    mixture: torch.Tensor
    clean: torch.Tensor
    frame: pd.DataFrame
    examples: np.ndarray


@dataclass
class SpeechContext(RunContext):
    """What every method of a run shares."""

    desc: SpeechDescription
    corpus: Path
    index: pd.DataFrame
    train: MixtureSampler
    test: TestSet

    def model(self) -> UNet:
        """The U-Net (its structure; weights come from the states)."""
        d = self.desc
        return UNet(d.channels, d.compress, STFTConfig(d.n_fft, d.hop))

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Prunable shapes (conv and transposed-conv weights)."""
        return prunable_shapes(self.model())

    def architecture(self) -> UNet:
        """A freshly initialised U-Net (theta_0 is drawn from one)."""
        return self.model()


# ----------------------------------------------------------------------------- data


def _read(corpus: Path, rows: pd.DataFrame) -> list[np.ndarray]:
    import soundfile as sf

    out = []
    for f in rows["file"]:
        wave, rate = sf.read(str(corpus / f), dtype="float32")
        if rate != SAMPLE_RATE:
            raise ValueError(f"{f}: {rate} Hz, the corpus must be 16 kHz")
        out.append(wave)
    return out


def noise_loop(waves: list[np.ndarray]) -> np.ndarray:
    """One environment's noise files, each at unit RMS (no file drowns the others), crossfaded into a loop."""
    return loop_concat([w / max(rms(w), 1e-8) for w in waves])


def build_test_set(
    desc: SpeechDescription, speech: dict[str, np.ndarray], noise: list[np.ndarray]
) -> TestSet:
    """Held-out mixtures: per environment, SNR and index a test speaker (round robin) and a noise crop.

    Parameters
    ----------
    speech : dict of str to ndarray of float32
        Concatenated test speech per test speaker.
    noise : list of ndarray of float32
        Test-noise loop per environment.
    """
    n = int(desc.test_seconds * SAMPLE_RATE)
    speakers = sorted(s for s, w in speech.items() if len(w) >= n)
    if not speakers:
        raise ValueError(f"no test speaker has {desc.test_seconds} s of speech")
    rng = numpy_rng(desc.seed, "test-set")
    mixtures, cleans, rows = [], [], []
    for k, env in enumerate(desc.environments):
        sampler = MixtureSampler(np.zeros(n, np.float32), [noise[k]], n, (0.0, 0.0))
        for snr in desc.test_snr_db:
            for i in range(desc.test_per_snr):
                spk = speakers[(i + k) % len(speakers)]
                start = int(rng.integers(0, len(speech[spk]) - n + 1))
                clean = speech[spk][start : start + n]
                mix, _ = mix_at_snr(clean, sampler.noise_crop(0, rng), snr)
                mixtures.append(mix)
                cleans.append(clean)
                rows.append(
                    {"subset": k, "label": k, "environment": env, "speaker": spk, "snr_db": float(snr)}
                )
    frame = pd.DataFrame(rows)
    frame.insert(0, "sample", np.arange(len(frame), dtype=np.int64))
    mixture = torch.from_numpy(np.stack(mixtures))
    clean = torch.from_numpy(np.stack(cleans).astype(np.float32))
    frame["si_snr_in"] = score(mixture, clean)
    # the listening example of each environment: its first mixture at the SNR nearest 0 dB
    nearest = min(desc.test_snr_db, key=abs)
    examples = np.array(
        [frame.index[(frame["subset"] == k) & (frame["snr_db"] == nearest)][0] for k in range(desc.k)]
    )
    return TestSet(mixture, clean, frame, examples)


def build_context(desc: SpeechDescription, run_dir: Path, corpus: str | Path) -> SpeechContext:
    """Load the corpus, build the training sampler and the held-out mixtures."""
    corpus = Path(corpus).expanduser()
    index = load_index(corpus)
    noise_rows = index[index["role"] == "noise"]
    missing = [e for e in desc.environments if e not in set(noise_rows["environment"])]
    if missing:
        raise ValueError(f"the corpus has no noise for environments {missing}")
    loops: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for env in desc.environments:
        for split in ("train", "test"):
            rows = noise_rows[(noise_rows["environment"] == env) & (noise_rows["split"] == split)]
            if rows.empty:
                raise ValueError(f"environment {env!r} has no {split} noise file")
            loops[split].append(noise_loop(_read(corpus, rows)))
    clean = index[index["role"] == "clean"]
    train_speech = np.concatenate(_read(corpus, clean[clean["split"] == "train"]))
    test_speech = {
        spk: np.concatenate(_read(corpus, rows))
        for spk, rows in clean[clean["split"] == "test"].groupby("speaker", sort=True)
    }
    n = int(desc.segment_seconds * SAMPLE_RATE)
    sampler = MixtureSampler(train_speech, loops["train"], n, tuple(desc.train_snr_db))
    test = build_test_set(desc, test_speech, loops["test"])
    return SpeechContext(Path(run_dir), desc, corpus, index, sampler, test)


# ----------------------------------------------------------------------------- levels


def _int16(wave: np.ndarray) -> np.ndarray:
    """Peak-normalise to 0.9 and quantise: int16 (..., n)."""
    peak = np.max(np.abs(wave), axis=-1, keepdims=True)
    return np.round(wave / np.maximum(peak, 1e-8) * 0.9 * 32767).astype(np.int16)


def evaluate(
    ctx: SpeechContext, states: list[dict[str, np.ndarray]], masks: Masks, routed: bool
) -> tuple[pd.DataFrame, np.ndarray]:
    """Predictions frame (module docstring) and the enhanced examples int16 (K, n)."""
    t = ctx.test
    routes = (
        torch.as_tensor(t.frame["subset"].to_numpy(copy=True))
        if routed
        else torch.zeros(len(t.frame), dtype=torch.int64)
    )
    enhanced = enhance(ctx.model(), states, dict(masks), t.mixture, routes)
    frame = t.frame.copy()
    frame["si_snr_out"] = score(enhanced, t.clean)
    frame["si_snri"] = frame["si_snr_out"] - frame["si_snr_in"]
    frame["ticket"] = routes.numpy()
    return frame, _int16(enhanced[torch.as_tensor(t.examples)].numpy())


def level_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """Mean SI-SNR in / out / improvement overall and per environment (``si_snri_<env>``)."""
    out = {m: float(frame[m].mean()) for m in ("si_snri", "si_snr_in", "si_snr_out")}
    for env, rows in frame.groupby("environment", sort=False):
        out[f"si_snri_{env}"] = float(rows["si_snri"].mean())
    return out


def _write(
    ctx: SpeechContext,
    method: str,
    level: int,
    masks: Masks,
    frame: pd.DataFrame,
    example: np.ndarray,
    seconds: float,
    steps: int,
    independent: bool = False,
) -> dict[str, float]:
    metrics = level_metrics(frame)
    info = level_info(
        masks,
        metrics,
        seconds=seconds,
        steps=steps,
        presentations=steps * ctx.desc.batch_size,
        independent=independent,
    )
    arrays = {"enhanced": example} if method in ctx.desc.example_methods else None
    rf.write_level(
        ctx.run_dir, method, level, masks=masks.numpy(), predictions=frame, info=info, arrays=arrays
    )
    return metrics


def _resume_path(ctx: SpeechContext, what: str, level: int) -> Path:
    return ctx.run_dir / RESUME / f"{what}_{level:02d}.safetensors"


def _save_stacked(path: Path, states: list[dict[str, np.ndarray]], seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = {f"{k}/{n}": v for k, s in enumerate(states) for n, v in s.items()}
    rf.save_tensors(path, {**flat, "seconds": np.array([seconds], dtype=np.float64)})


def _load_stacked(path: Path, k: int) -> tuple[list[dict[str, np.ndarray]], float]:
    flat = rf.load_tensors(path)
    states = [{n.split("/", 1)[1]: v for n, v in flat.items() if n.startswith(f"{j}/")} for j in range(k)]
    return states, float(flat["seconds"].reshape(-1)[0]) if "seconds" in flat else 0.0


TICKET_METHODS = ("independent", "rtl")


def _extraction(ctx: SpeechContext, level: int, masks: Masks) -> tuple[list[dict[str, np.ndarray]], float]:
    """The K extraction networks of ``level`` (= independent's) and their training seconds.

    Ticket j is trained from theta_0 under ``masks.ticket(j)`` on environment j's
    mixtures; the result is kept under ``resume/`` for the other ticket method
    and the next level, and read back from there when present.
    """
    path = _resume_path(ctx, "tickets", level)
    if path.is_file():
        return _load_stacked(path, ctx.desc.k)
    d, model, init = ctx.desc, ctx.model(), ctx.theta0()
    t0 = time.perf_counter()
    states = [
        train_ticket(
            model,
            init,
            masks.ticket(j),
            ctx.train,
            [j],
            d.rounds,
            d.batch_size,
            d.lr,
            numpy_rng(d.seed, "tickets", level, j),
        )
        for j in range(d.k)
    ]
    seconds = time.perf_counter() - t0
    _save_stacked(path, states, seconds)
    return states, seconds


def ticket_masks(ctx: SpeechContext, level: int) -> Masks:
    """The K masks of ``level`` of both ticket methods (all ones at level 0).

    Level L prunes each ticket's extraction weights of level L-1 under its mask
    of level L-1, as written by whichever ticket method wrote that level.
    """
    shapes = ctx.shapes()
    if level == 0:
        return Masks.ones(shapes, ctx.desc.k)
    written = [
        m
        for m in TICKET_METHODS
        if m in ctx.desc.methods and level - 1 in rf.completed_levels(ctx.run_dir, m)
    ]
    if not written:
        raise ValueError(f"level {level} needs the masks of level {level - 1}, which no ticket method wrote")
    prev = Masks(rf.load_masks(rf.level_dir(ctx.run_dir, written[0], level - 1) / rf.MASKS), shapes)
    extracted, _ = _extraction(ctx, level - 1, prev)
    d = ctx.desc
    return Masks.stack(
        [prune_level(extracted[j], prev.ticket(j), d.fraction, level, d.scope) for j in range(d.k)]
    )


def run_independent(ctx: SpeechContext, show_progress: bool = True) -> None:
    """Run or resume the independent levels: the extraction networks, each on its environment."""
    d = ctx.desc
    loop = LevelLoop(ctx.run_dir, "independent", d.levels, show_progress)
    for level, _ in loop:
        masks = ticket_masks(ctx, level)
        extracted, seconds = _extraction(ctx, level, masks)
        frame, example = evaluate(ctx, extracted, masks, routed=True)
        m = _write(
            ctx, "independent", level, masks, frame, example, seconds, d.rounds * d.k, independent=True
        )
        loop.report(sparsity=float(masks.sparsity().mean()), si_snri=m["si_snri"])


def run_rtl(ctx: SpeechContext, show_progress: bool = True) -> None:
    """Run or resume the rtl levels: joint retraining of one shared U-Net under the ticket masks."""
    d = ctx.desc
    model, init = ctx.model(), ctx.theta0()
    loop = LevelLoop(ctx.run_dir, "rtl", d.levels, show_progress)
    for level, _ in loop:
        masks = ticket_masks(ctx, level)
        t0 = time.perf_counter()
        theta = train_joint(
            model, init, dict(masks), ctx.train, d.rounds, d.batch_size, d.lr, (d.seed, "rtl", level)
        )
        frame, example = evaluate(ctx, [theta], masks, routed=True)
        m = _write(ctx, "rtl", level, masks, frame, example, time.perf_counter() - t0, d.rounds * d.k)
        loop.report(sparsity=float(masks.sparsity().mean()), si_snri=m["si_snri"])


def run_imp(ctx: SpeechContext, show_progress: bool = True) -> None:
    """Run or resume the imp levels: one ticket on every environment's mixtures."""
    d, k = ctx.desc, ctx.desc.k
    model, init, shapes = ctx.model(), ctx.theta0(), ctx.shapes()
    steps = d.rounds * k

    def train(mask: dict[str, torch.Tensor], level: int) -> dict[str, np.ndarray]:
        rng = numpy_rng(d.seed, "imp", level)
        return train_ticket(model, init, mask, ctx.train, list(range(k)), steps, d.batch_size, d.lr, rng)

    loop = LevelLoop(ctx.run_dir, "imp", d.levels, show_progress)
    for level, _ in loop:
        t0 = time.perf_counter()
        if level == 0:
            mask = {n: torch.ones(s, dtype=torch.bool) for n, s in shapes.items()}
        else:
            prev = rf.load_masks(rf.level_dir(ctx.run_dir, "imp", level - 1) / rf.MASKS)
            m_prev = {n: torch.as_tensor(m[0]) for n, m in prev.items()}
            path = _resume_path(ctx, "imp", level - 1)
            weights = _load_stacked(path, 1)[0][0] if path.is_file() else train(m_prev, level - 1)
            mask = prune_level(weights, m_prev, d.fraction, level, d.scope)
        trained = train(mask, level)
        if level < d.levels:
            _save_stacked(_resume_path(ctx, "imp", level), [trained], 0.0)
        masks = Masks({n: m[None] for n, m in mask.items()}, shapes)
        frame, example = evaluate(ctx, [trained], masks, routed=False)
        m = _write(ctx, "imp", level, masks, frame, example, time.perf_counter() - t0, steps)
        loop.report(sparsity=float(masks.sparsity().mean()), si_snri=m["si_snri"])


# The speech method registry (names as in :data:`lottery.speech.config.METHODS`).
METHODS = {"rtl": run_rtl, "imp": run_imp, "independent": run_independent}


# ----------------------------------------------------------------------------- manifest and entry point


def manifest(ctx: SpeechContext, name: str | None) -> dict:
    """The run's manifest (``task: "speech"``: the predictions are per-mixture regression rows)."""
    d = ctx.desc
    envs = list(d.environments)
    shapes = ctx.shapes()
    entries = {
        "rtl": {
            "tickets": envs,
            "ticket_kind": "environment",
            "routings": ["oracle"],
            "default_routing": "oracle",
            "weights_layout": "shared",
            "description": "RTL: one ticket per acoustic environment on one shared U-Net, jointly retrained; "
            "mixtures routed by their environment",
        },
        "imp": {
            "tickets": ["all"],
            "ticket_kind": "single",
            "routings": [],
            "default_routing": None,
            "description": "one ticket for every environment (IMP single)",
        },
        "independent": {
            "tickets": envs,
            "ticket_kind": "environment",
            "routings": ["oracle"],
            "default_routing": "oracle",
            "weights_layout": "stacked",
            "description": "IMP multiple: one separate U-Net per environment, IMP-pruned on it from the "
            "shared theta_0 draw",
        },
    }
    index = ctx.index
    return {
        **manifest_header(d, ctx.run_dir, name, TASK),
        "dataset": {
            "name": "debian-speech-environments",
            "provenance": PROVENANCE,
            "classes": envs,
            "sample_rate": SAMPLE_RATE,
            "input_shape": [int(d.segment_seconds * SAMPLE_RATE)],
            "n_test": int(len(ctx.test.frame)),
            "corpus_fingerprint": fingerprint(index),
            "corpus": summary(index).to_dict(orient="records"),
            "test_speakers": sorted(
                index.loc[(index["role"] == "clean") & (index["split"] == "test"), "speaker"]
                .unique()
                .tolist()
            ),
        },
        "model": {
            "name": "unet",
            "channels": list(d.channels),
            "n_fft": d.n_fft,
            "hop": d.hop,
            "compress": d.compress,
            "n_prunable": int(sum(int(np.prod(s)) for s in shapes.values())),
            "n_params": int(sum(p.numel() for p in ctx.model().parameters())),
        },
        "partition": {"kind": "environment", "k": d.k, "names": envs},
        "prunable": {n: list(s) for n, s in shapes.items()},
        "layers": list(shapes),
        "groups": GROUPS,
        "metrics": {"primary": "si_snri", "higher_is_better": True, "unit": "dB"},
        "methods": {m: entries[m] for m in d.methods},
    }


def write_examples(ctx: SpeechContext) -> None:
    """``extra/examples.safetensors``: noisy and clean int16 (K, n) and their test rows."""
    path = ctx.run_dir / rf.EXTRA_DIR / f"{EXAMPLES}.safetensors"
    if path.is_file():
        return
    t = ctx.test
    rows = torch.as_tensor(t.examples)
    path.parent.mkdir(parents=True, exist_ok=True)
    rf.save_tensors(
        path,
        {
            "noisy": _int16(t.mixture[rows].numpy()),
            "clean": _int16(t.clean[rows].numpy()),
            "sample": t.examples.astype(np.int64),
        },
        sample_rate=str(SAMPLE_RATE),
        environments=",".join(ctx.desc.environments),
    )


def check_corpus(ctx: SpeechContext, old: dict) -> None:
    """Refuse to resume a run on another corpus than the one it was trained on."""
    if old["dataset"].get("corpus_fingerprint") != fingerprint(ctx.index):
        raise ValueError(f"{ctx.run_dir} was trained on another corpus; choose another --out")


def drop_resume_files(ctx: SpeechContext) -> None:
    """Remove ``resume/`` once every method has written every level."""
    if all(len(rf.completed_levels(ctx.run_dir, m)) == ctx.desc.levels + 1 for m in ctx.desc.methods):
        shutil.rmtree(ctx.run_dir / RESUME, ignore_errors=True)


SPEECH_DOMAIN = Domain(
    task=TASK,
    build=build_context,
    manifest=manifest,
    methods=METHODS,
    check=check_corpus,
    prepare=write_examples,
    finish=drop_resume_files,
)


def train_speech_run(
    desc: SpeechDescription,
    run_dir: str | Path,
    corpus: str | Path,
    *,
    name: str | None = None,
    show_progress: bool = True,
    threads: int = 1,
) -> Path:
    """Run (or resume) every method of ``desc`` into ``run_dir``.

    Parameters
    ----------
    desc : SpeechDescription
    run_dir : str or Path
        Created if missing; a folder holding another run (other hash or another corpus) is refused.
    corpus : str or Path
        A corpus folder built by :func:`lottery.speech.corpus.build_corpus`.
    name : str, optional
        Run name in the manifest (default: the folder name).
    show_progress : bool
    threads : int
        torch intra-op threads (1 on a shared machine: small convolutions gain little from more).

    Returns
    -------
    Path
    """
    return run_domain(
        SPEECH_DOMAIN, desc, run_dir, name=name, show_progress=show_progress, threads=threads, corpus=corpus
    )

"""The speech corpus builder: fetch Debian data packages, unpack, decode, resample, index.

``python -m lottery data speech`` runs :func:`build_corpus`. Steps:

1. ``apt-get download PKG`` into ``<root>/debs`` (skipped when a ``PKG_*.deb``
   is there already; ``--no-fetch`` never downloads).
2. ``dpkg-deb --fsys-tarfile PKG.deb | tar -x`` of the needed members (and
   the package's copyright file) into ``<root>/unpacked/PKG``; nothing is installed.
3. Every member a rule of :mod:`lottery.speech.sources` selects is decoded
   with soundfile, mixed down to mono and resampled to 16 kHz with
   :func:`scipy.signal.resample_poly`. Speech is trimmed of leading and
   trailing silence and kept if its blind SNR estimate passes
   ``min_speech_snr_db``; noise is deduplicated by content (MegaGlest ships
   the same ambience in several tilesets) and cropped to ``max_noise_seconds``.
4. Splits: speakers are disjoint between train and test (``test_speakers``);
   within each environment, noise FILES are disjoint between train and test
   (a seeded shuffle, test filled to ``noise_test_fraction`` of the duration).
5. ``<corpus>/index.csv`` (one row per kept file, columns below), the audio as
   16 kHz PCM-16 WAV under ``<corpus>/audio/``, and ``<corpus>/corpus.json``
   (packages, versions, configuration, provenance statement).

A user's own data (e.g. DNS clean speech, TAU scenes) can be added or used
alone: ``<dir>/clean/<speaker>/*.wav|flac|ogg`` and
``<dir>/noise/<environment>/*``; its package column reads ``user``.

Index columns: ``id`` (str), ``role`` (clean / noise), ``split`` (train /
test), ``speaker`` (clean) or ``""``, ``environment`` (noise) or ``""``,
``package``, ``version``, ``licence``, ``member`` (path inside the package or
its container), ``sha1`` (of the encoded member), ``seconds`` (after
trimming / cropping), ``source_rate`` (Hz), ``snr_est_db`` (speech only),
``file`` (relative to the corpus folder).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lottery.speech.audio import SAMPLE_RATE, decode, estimate_snr_db, resample, trim_silence
from lottery.speech.sources import (
    ENVIRONMENTS,
    SOURCES,
    Member,
    Source,
    classify,
    iter_members,
    package_licence,
    source,
)

DEFAULT_ROOT = Path("~/.cache/rtl-dashboard/speech").expanduser()
INDEX = "index.csv"
META = "corpus.json"
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
PROVENANCE = (
    "Acoustic environments drawn from game and voice data packages of the Debian archive "
    "(UFO:AI, MegaGlest, LinCity-NG, Simutrans, OpenTTD OpenSFX, TORCS), not from TAU Urban "
    "Acoustic Scenes; clean speech from festvox-ru, fillets-ng-data-cs and tuxpaint-stamps-default."
)
INDEX_COLUMNS = [
    "id",
    "role",
    "split",
    "speaker",
    "environment",
    "package",
    "version",
    "licence",
    "member",
    "sha1",
    "seconds",
    "source_rate",
    "snr_est_db",
    "file",
]


@dataclass(frozen=True)
class CorpusConfig:
    """How the corpus is cut.

    Attributes
    ----------
    packages : tuple of str
        Debian packages to take recordings from (default: all but the test-only one).
    test_speakers : tuple of str
        Speakers held out for evaluation; every other speaker trains.
    max_minutes_per_speaker : float
        Cap per speaker (a seeded random choice of its clips), so one voice cannot dominate.
    min_speech_seconds : float
        Shorter speech clips (after trimming) are dropped.
    min_speech_snr_db : float
        Speech clips whose blind SNR estimate is lower are dropped (noisy volunteer takes).
    max_noise_seconds, min_noise_seconds : float
        Noise files are cropped to their first ``max_noise_seconds``; files shorter than
        ``min_noise_seconds`` are dropped.
    noise_test_fraction : float
        Share of each environment's noise duration held out (whole files).
    seed : int
    """

    packages: tuple[str, ...] = tuple(s.package for s in SOURCES if not s.tests_only)
    test_speakers: tuple[str, ...] = ("fillets-cs/m", "tuxpaint/es", "tuxpaint/bg")
    max_minutes_per_speaker: float = 12.0
    min_speech_seconds: float = 1.0
    min_speech_snr_db: float = 25.0
    max_noise_seconds: float = 60.0
    min_noise_seconds: float = 0.5
    noise_test_fraction: float = 0.3
    seed: int = 0


# ----------------------------------------------------------------------------- fetch and unpack


def find_deb(debs_dir: Path, package: str) -> Path | None:
    """The newest ``PKG_*.deb`` in ``debs_dir`` (None if absent)."""
    found = sorted(debs_dir.glob(f"{package}_*.deb"))
    return found[-1] if found else None


def fetch_deb(package: str, debs_dir: Path, allow_download: bool = True) -> Path:
    """The ``.deb`` of ``package``: found in ``debs_dir``, else ``apt-get download`` into it."""
    debs_dir.mkdir(parents=True, exist_ok=True)
    deb = find_deb(debs_dir, package)
    if deb is not None:
        return deb
    if not allow_download:
        raise FileNotFoundError(f"no {package}_*.deb in {debs_dir} (and downloads are off)")
    if shutil.which("apt-get") is None:
        raise FileNotFoundError(f"apt-get is not available to download {package}; put its .deb in {debs_dir}")
    proc = subprocess.run(["apt-get", "download", package], cwd=debs_dir, capture_output=True, text=True)
    deb = find_deb(debs_dir, package)
    if proc.returncode != 0 or deb is None:
        raise FileNotFoundError(f"apt-get download {package} failed: {proc.stderr.strip()[-500:]}")
    return deb


def deb_version(deb: Path) -> str:
    """The ``Version`` field of a ``.deb``."""
    out = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def unpack_deb(deb: Path, dest: Path, src: Source) -> Path:
    """Extract ``src``'s members and its copyright file from ``deb`` into ``dest`` (no install).

    ``dpkg-deb --fsys-tarfile deb | tar -x --wildcards PATTERNS``; a marker
    file makes a second call a no-op.
    """
    marker = dest / ".unpacked"
    if marker.is_file() and marker.read_text() == deb.name:
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    patterns = [
        "./" + src.container_glob.replace("**/", "*"),
        f"./usr/share/doc/{src.package}/copyright",
    ]
    dpkg = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    tar = subprocess.run(
        ["tar", "-x", "-C", str(dest), "--wildcards", *patterns], stdin=dpkg.stdout, capture_output=True
    )
    dpkg.stdout.close()
    dpkg.wait()
    if dpkg.returncode != 0 or tar.returncode not in (0, 2):
        raise RuntimeError(f"unpacking {deb.name} failed: {tar.stderr.decode(errors='replace')[-500:]}")
    marker.write_text(deb.name)
    return dest


# ----------------------------------------------------------------------------- decoding


@dataclass
class Clip:
    """One decoded recording before the split (see the index columns)."""

    role: str
    value: str  # speaker or environment
    package: str
    version: str
    licence: str
    member: str
    sha1: str
    source_rate: int
    wave: np.ndarray = field(repr=False)
    snr_est_db: float = float("nan")

    @property
    def id(self) -> str:
        """Stable id: hash of package and member."""
        return hashlib.sha1(f"{self.package}:{self.member}".encode()).hexdigest()[:16]


def decode_member(member: Member) -> tuple[np.ndarray, int, str]:
    """Mono 16 kHz float32 waveform, source rate and sha1 of the encoded member."""
    raw = member.raw()
    wave, rate = decode(raw)
    return resample(wave, rate), rate, hashlib.sha1(raw).hexdigest()


def package_clips(
    src: Source, root: Path, version: str, cfg: CorpusConfig, log: Callable[[str], None] = print
) -> list[Clip]:
    """Decode, filter and cap the clips one unpacked package contributes."""
    rng = np.random.default_rng([cfg.seed, int(hashlib.sha1(src.package.encode()).hexdigest()[:8], 16)])
    chosen: dict[tuple[str, str], list[Member]] = {}
    for member in iter_members(src, root):
        hit = classify(src, member.name)
        if hit is not None:
            chosen.setdefault(hit, []).append(member)
    clips: list[Clip] = []
    for (role, value), members in sorted(chosen.items()):
        order = rng.permutation(len(members)) if role == "clean" else np.arange(len(members))
        budget = cfg.max_minutes_per_speaker * 60.0
        taken = 0.0
        for i in order:
            if role == "clean" and taken >= budget:
                break
            m = members[i]
            try:
                wave, rate, sha = decode_member(m)
            except Exception as e:  # noqa: BLE001 - one unreadable member is reported and skipped
                log(f"  skip {src.package}:{m.name}: {e}")
                continue
            snr = float("nan")
            if role == "clean":
                wave = trim_silence(wave)
                snr = estimate_snr_db(wave)
                if len(wave) < cfg.min_speech_seconds * SAMPLE_RATE or not snr >= cfg.min_speech_snr_db:
                    continue
                taken += len(wave) / SAMPLE_RATE
            else:
                if len(wave) < cfg.min_noise_seconds * SAMPLE_RATE:
                    continue
                wave = wave[: int(cfg.max_noise_seconds * SAMPLE_RATE)]
            licence = package_licence(src, root, m)
            clips.append(Clip(role, value, src.package, version, licence, m.name, sha, rate, wave, snr))
    return clips


def user_clips(folder: Path, cfg: CorpusConfig) -> list[Clip]:
    """Clips of a user's folder: ``clean/<speaker>/...`` and ``noise/<environment>/...``."""
    clips: list[Clip] = []
    for role in ("clean", "noise"):
        base = folder / role
        if not base.is_dir():
            continue
        for f in sorted(p for p in base.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS):
            rel = f.relative_to(base)
            value = rel.parts[0] if len(rel.parts) > 1 else ("user" if role == "clean" else "")
            if role == "noise" and not value:
                raise ValueError(f"user noise file {f} must sit in noise/<environment>/")
            wave, rate, sha = decode_member(Member(f.relative_to(folder).as_posix(), f))
            snr = float("nan")
            if role == "clean":
                wave = trim_silence(wave)
                snr = estimate_snr_db(wave)
                if len(wave) < cfg.min_speech_seconds * SAMPLE_RATE:
                    continue
            elif len(wave) < cfg.min_noise_seconds * SAMPLE_RATE:
                continue
            else:
                wave = wave[: int(cfg.max_noise_seconds * SAMPLE_RATE)]
            member = f.relative_to(folder).as_posix()
            clips.append(
                Clip(role, value, "user", "", "as supplied by the user", member, sha, rate, wave, snr)
            )
    return clips


# ----------------------------------------------------------------------------- splits


def dedupe(clips: Iterable[Clip]) -> list[Clip]:
    """Drop clips whose encoded bytes were seen before (first occurrence kept)."""
    seen: set[str] = set()
    out = []
    for c in clips:
        if c.sha1 not in seen:
            seen.add(c.sha1)
            out.append(c)
    return out


def split_noise(seconds: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Test / train assignment of whole noise files of ONE environment.

    Files are visited in a seeded random order and go to test until test holds
    ``test_fraction`` of the duration; at least one file goes to each side
    when there are two or more.

    Parameters
    ----------
    seconds : ndarray of float, shape (n,)
        Duration of every file.

    Returns
    -------
    ndarray of bool, shape (n,)
        True for test files.
    """
    n = len(seconds)
    test = np.zeros(n, dtype=bool)
    if n < 2:
        return test
    order = np.random.default_rng(seed).permutation(n)
    target = test_fraction * float(np.sum(seconds))
    held = 0.0
    for i in order:
        if held >= target or test.sum() == n - 1:
            break
        test[i] = True
        held += float(seconds[i])
    return test


def assign_splits(clips: list[Clip], cfg: CorpusConfig) -> list[str]:
    """``"train"`` / ``"test"`` per clip: speakers by ``test_speakers``, noise files per environment."""
    splits = ["train"] * len(clips)
    for i, c in enumerate(clips):
        if c.role == "clean" and c.value in cfg.test_speakers:
            splits[i] = "test"
    envs = sorted({c.value for c in clips if c.role == "noise"})
    for j, env in enumerate(envs):
        idx = [i for i, c in enumerate(clips) if c.role == "noise" and c.value == env]
        secs = np.array([len(clips[i].wave) / SAMPLE_RATE for i in idx])
        for i, is_test in zip(
            idx, split_noise(secs, cfg.noise_test_fraction, cfg.seed + 1000 * j), strict=True
        ):
            if is_test:
                splits[i] = "test"
    return splits


# ----------------------------------------------------------------------------- the builder


def write_corpus(clips: list[Clip], splits: list[str], out: Path) -> pd.DataFrame:
    """Write the 16 kHz WAV files and ``index.csv``; returns the index."""
    import soundfile as sf

    rows = []
    for c, split in zip(clips, splits, strict=True):
        folder = "clean" if c.role == "clean" else "noise"
        rel = Path("audio") / folder / c.value.replace("/", "_") / f"{c.id}.wav"
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), np.clip(c.wave, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
        rows.append(
            {
                "id": c.id,
                "role": c.role,
                "split": split,
                "speaker": c.value if c.role == "clean" else "",
                "environment": c.value if c.role == "noise" else "",
                "package": c.package,
                "version": c.version,
                "licence": c.licence,
                "member": c.member,
                "sha1": c.sha1,
                "seconds": round(len(c.wave) / SAMPLE_RATE, 4),
                "source_rate": c.source_rate,
                "snr_est_db": round(c.snr_est_db, 2) if np.isfinite(c.snr_est_db) else np.nan,
                "file": rel.as_posix(),
            }
        )
    index = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    index.to_csv(out / INDEX, index=False)
    return index


def build_corpus(
    out: str | Path,
    cfg: CorpusConfig = CorpusConfig(),
    *,
    root: str | Path = DEFAULT_ROOT,
    user_dir: str | Path | None = None,
    fetch: bool = True,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Build (or rebuild) the corpus in ``out`` (module docstring).

    Parameters
    ----------
    out : str or Path
        Corpus folder (written: ``index.csv``, ``corpus.json``, ``audio/``); replaced if it exists.
    cfg : CorpusConfig
    root : str or Path
        Holds ``debs/`` (downloaded packages) and ``unpacked/``.
    user_dir : str or Path, optional
        A folder with ``clean/`` and ``noise/<environment>/`` to add.
    fetch : bool
        Allow ``apt-get download`` of missing packages.

    Returns
    -------
    DataFrame
        The index (columns: module docstring).
    """
    out, root = Path(out).expanduser(), Path(root).expanduser()
    t0 = time.perf_counter()
    clips: list[Clip] = []
    versions: dict[str, str] = {}
    for package in cfg.packages:
        src = source(package)
        deb = fetch_deb(package, root / "debs", allow_download=fetch)
        versions[package] = deb_version(deb)
        unpacked = unpack_deb(deb, root / "unpacked" / package, src)
        got = package_clips(src, unpacked, versions[package], cfg, log)
        log(
            f"{package} {versions[package]}: {len(got)} clips, "
            f"{sum(len(c.wave) for c in got) / SAMPLE_RATE / 60:.1f} min"
        )
        clips += got
    if user_dir is not None:
        got = user_clips(Path(user_dir).expanduser(), cfg)
        log(f"user folder {user_dir}: {len(got)} clips")
        clips += got
    clips = dedupe(clips)
    if not any(c.role == "clean" for c in clips) or not any(c.role == "noise" for c in clips):
        raise ValueError("the corpus needs both clean speech and noise")
    splits = assign_splits(clips, cfg)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    index = write_corpus(clips, splits, out)
    meta = {
        "provenance": PROVENANCE,
        "sample_rate": SAMPLE_RATE,
        "config": asdict(cfg),
        "packages": versions,
        "user_dir": str(user_dir) if user_dir else None,
        "environments": sorted(index.loc[index["role"] == "noise", "environment"].unique().tolist()),
        "fingerprint": fingerprint(index),
        "build_seconds": round(time.perf_counter() - t0, 1),
    }
    (out / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    log(f"corpus written to {out}: {len(index)} files in {meta['build_seconds']} s")
    return index


def fingerprint(index: pd.DataFrame) -> str:
    """Short hash of what a corpus holds (ids, splits, sha1s): runs record it to refuse a changed corpus."""
    cols = index[["id", "role", "split", "speaker", "environment", "sha1"]].astype(str)
    text = "\n".join(",".join(r) for r in cols.itertuples(index=False))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def load_index(corpus: str | Path) -> pd.DataFrame:
    """``index.csv`` of a corpus folder (a clear error if it was not built)."""
    path = Path(corpus).expanduser() / INDEX
    if not path.is_file():
        raise FileNotFoundError(
            f"no speech corpus at {Path(corpus).expanduser()}: build it with `python -m lottery data speech`"
        )
    index = pd.read_csv(path, keep_default_na=False, na_values={"snr_est_db": [""]})
    missing = set(INDEX_COLUMNS) - set(index.columns)
    if missing:
        raise ValueError(f"{path} lacks columns {sorted(missing)}")
    return index


def summary(index: pd.DataFrame) -> pd.DataFrame:
    """Minutes and files per role, split, speaker / environment, package and licence."""
    key = index["speaker"].where(index["role"] == "clean", index["environment"])
    return (
        index.assign(group=key)
        .groupby(["role", "split", "group", "package", "licence"], as_index=False)
        .agg(files=("id", "size"), minutes=("seconds", lambda s: round(float(s.sum()) / 60.0, 2)))
    )


__all__ = [
    "ENVIRONMENTS",
    "CorpusConfig",
    "build_corpus",
    "fingerprint",
    "load_index",
    "split_noise",
    "summary",
]

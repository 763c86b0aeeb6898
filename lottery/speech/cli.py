"""``python -m lottery data speech`` (build the corpus) and ``python -m lottery speech`` (train a run)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lottery.config import add_overrides_argument, apply_overrides
from lottery.speech.config import METHODS, SpeechDescription

DEFAULT_RUNS = Path("runs")


def _names(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def add_data_command(sub: argparse._SubParsersAction) -> None:
    """Register ``data`` with its ``speech`` subcommand (the corpus builder)."""
    from lottery.speech.corpus import DEFAULT_ROOT, CorpusConfig

    c = CorpusConfig()
    data = sub.add_parser("data", help="build data sets that need preparing (speech corpus)")
    kinds = data.add_subparsers(dest="data_kind", required=True)
    p = kinds.add_parser(
        "speech",
        help="fetch Debian voice / game data packages and build the 16 kHz speech + environment-noise corpus",
        description="Download (apt-get download, no install) and unpack Debian data packages holding real "
        "speech and environmental sound, decode, resample to 16 kHz and index them with source package and "
        "licence per file. Environments come from game and voice data packages, not from TAU.",
    )
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="holds debs/ and unpacked/ (git-ignored)")
    p.add_argument("--out", type=Path, help="corpus folder (default: ROOT/corpus)")
    p.add_argument("--packages", default=",".join(c.packages), help="comma-separated Debian packages to use")
    p.add_argument("--user-dir", type=Path, help="your own data: clean/<speaker>/*, noise/<environment>/*")
    p.add_argument("--only-user", action="store_true", help="use only --user-dir (no Debian package)")
    p.add_argument("--no-fetch", action="store_true", help="never download; use the .deb files in ROOT/debs")
    p.add_argument("--test-speakers", default=",".join(c.test_speakers), help="held-out speakers")
    p.add_argument("--max-minutes-per-speaker", type=float, default=c.max_minutes_per_speaker)
    p.add_argument("--min-speech-snr", type=float, default=c.min_speech_snr_db, help="dB, blind estimate")
    p.add_argument("--noise-test-fraction", type=float, default=c.noise_test_fraction)
    p.add_argument("--seed", type=int, default=c.seed)
    p.set_defaults(func=run_data_command)


def run_data_command(args: argparse.Namespace) -> int:
    """Handler of ``python -m lottery data speech``."""
    from lottery.speech.corpus import CorpusConfig, build_corpus, summary

    if args.only_user and args.user_dir is None:
        raise ValueError("--only-user needs --user-dir")
    cfg = CorpusConfig(
        packages=() if args.only_user else _names(args.packages),
        test_speakers=_names(args.test_speakers),
        max_minutes_per_speaker=args.max_minutes_per_speaker,
        min_speech_snr_db=args.min_speech_snr,
        noise_test_fraction=args.noise_test_fraction,
        seed=args.seed,
    )
    out = args.out or args.root / "corpus"
    index = build_corpus(out, cfg, root=args.root, user_dir=args.user_dir, fetch=not args.no_fetch)
    print(summary(index).to_string(index=False))
    return 0


def add_speech_command(sub: argparse._SubParsersAction) -> None:
    """Register ``speech``: train (or resume) environment tickets of a speech-enhancement U-Net."""
    from lottery.speech.corpus import DEFAULT_ROOT

    d = SpeechDescription()
    p = sub.add_parser(
        "speech",
        help="environment tickets (rtl), IMP single (imp) and independent U-Nets for speech enhancement",
        description="Train or resume a speech-enhancement run on a corpus built by `data speech`.",
    )
    p.add_argument("--corpus", type=Path, default=DEFAULT_ROOT / "corpus", help="corpus folder")
    p.add_argument("--out", type=Path, help="run folder (default: runs/speech-unet-env-<hash>)")
    p.add_argument("--rounds", type=int, default=d.rounds, help="steps per ticket of each training phase")
    p.add_argument("--levels", type=int, default=d.levels, help="pruning levels after the dense one")
    p.add_argument("--fraction", type=float, default=d.fraction, help="fraction pruned per level")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="mixtures per step")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--channels", default=",".join(map(str, d.channels)), help="U-Net encoder widths")
    p.add_argument("--segment", type=float, default=d.segment_seconds, help="seconds per training mixture")
    p.add_argument(
        "--test-per-snr", type=int, default=d.test_per_snr, help="held-out mixtures per env and SNR"
    )
    p.add_argument("--methods", default=",".join(d.methods), help=f"comma-separated subset of {METHODS}")
    p.add_argument("--seed", type=int, default=d.seed)
    add_overrides_argument(p, "n_fft=256 --set train_snr_db=0,10")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_speech_command)


def run_speech_command(args: argparse.Namespace) -> int:
    """Handler of ``python -m lottery speech``; prints the run folder and the wall time."""
    from lottery.speech.run import train_speech_run

    desc = SpeechDescription(
        rounds=args.rounds,
        levels=args.levels,
        fraction=args.fraction,
        batch_size=args.batch_size,
        lr=args.lr,
        channels=tuple(int(c) for c in _names(args.channels)),
        segment_seconds=args.segment,
        test_per_snr=args.test_per_snr,
        methods=_names(args.methods),
        seed=args.seed,
    )
    desc = apply_overrides(desc, args.overrides)
    out = args.out or DEFAULT_RUNS / f"speech-unet-env-{desc.hash()}"
    t0 = time.perf_counter()
    run_dir = train_speech_run(
        desc, out, args.corpus, name=out.name, show_progress=not args.quiet, threads=args.threads
    )
    print(f"run written to {run_dir} in {time.perf_counter() - t0:.0f} s")
    return 0

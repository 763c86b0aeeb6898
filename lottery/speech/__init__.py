"""Environment tickets for speech enhancement (the paper's third domain).

A small U-Net on the complex STFT denoises speech mixed with the noise of K
acoustic environments (indoor, outdoor, transportation). ``rtl`` draws one
ticket per environment on one shared network and routes each mixture to its
environment's ticket; ``imp`` draws one ticket for all; ``independent``
trains one network per environment. The recordings come from Debian's game
and voice data packages (:mod:`lottery.speech.sources`), not from TAU.
"""

from lottery.speech.audio import (
    SAMPLE_RATE,
    circular_crop,
    decode,
    estimate_snr_db,
    loop_concat,
    mix_at_snr,
    resample,
    trim_silence,
)
from lottery.speech.config import SpeechDescription
from lottery.speech.corpus import CorpusConfig, build_corpus, load_index, split_noise, summary
from lottery.speech.metrics import si_snr, wsdr_loss
from lottery.speech.model import STFTConfig, UNet, istft, prunable_shapes, stft
from lottery.speech.run import build_context, train_speech_run
from lottery.speech.sources import ENVIRONMENTS, SOURCES, classify, read_opensfx, source
from lottery.speech.train import MixtureSampler, enhance, fit, train_joint, train_ticket

__all__ = [
    "ENVIRONMENTS",
    "SAMPLE_RATE",
    "SOURCES",
    "CorpusConfig",
    "MixtureSampler",
    "STFTConfig",
    "SpeechDescription",
    "UNet",
    "build_context",
    "build_corpus",
    "circular_crop",
    "classify",
    "decode",
    "enhance",
    "estimate_snr_db",
    "fit",
    "istft",
    "load_index",
    "loop_concat",
    "mix_at_snr",
    "prunable_shapes",
    "read_opensfx",
    "resample",
    "si_snr",
    "source",
    "split_noise",
    "stft",
    "summary",
    "train_joint",
    "train_speech_run",
    "train_ticket",
    "trim_silence",
    "wsdr_loss",
]

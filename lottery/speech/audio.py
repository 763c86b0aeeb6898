"""Waveform helpers: decoding, resampling, silence trimming, loudness, mixing at an SNR, looping.

Everything works on float32 numpy arrays of shape (n,) at 16 kHz unless a
function says otherwise; no torch here.
"""

from __future__ import annotations

import io
from math import gcd
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

SAMPLE_RATE = 16_000


def decode(source: str | Path | bytes) -> tuple[np.ndarray, int]:
    """Decode a WAV / OGG / FLAC file (or its bytes) to mono float32 with :mod:`soundfile`.

    Parameters
    ----------
    source : str, Path or bytes
        A file path, or the encoded file itself (e.g. a member of a container).

    Returns
    -------
    wave : ndarray of float32, shape (n,)
        Channels averaged.
    rate : int
        Sample rate of the file, Hz.
    """
    import soundfile as sf

    data = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    wave, rate = sf.read(data, dtype="float32", always_2d=True)  # (n, channels)
    return wave.mean(axis=1), int(rate)


def resample(wave: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (:func:`scipy.signal.resample_poly`) from ``rate`` to ``target`` Hz.

    Parameters
    ----------
    wave : ndarray, shape (n,)
    rate, target : int
        Sample rates in Hz.

    Returns
    -------
    ndarray of float32, shape (round(n * target / rate),) approximately
    """
    if rate <= 0 or target <= 0:
        raise ValueError(f"sample rates must be positive, got {rate} and {target}")
    if rate == target:
        return np.asarray(wave, dtype=np.float32)
    g = gcd(rate, target)
    return resample_poly(np.asarray(wave, dtype=np.float64), target // g, rate // g).astype(np.float32)


def frame_energy_db(wave: np.ndarray, frame: int = 400) -> np.ndarray:
    """Energy of consecutive non-overlapping frames in dB (25 ms frames at 16 kHz).

    Returns
    -------
    ndarray of float64, shape (n // frame,)
    """
    n = len(wave) // frame
    if n == 0:
        return np.zeros(0)
    frames = np.asarray(wave[: n * frame], dtype=np.float64).reshape(n, frame)
    return 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


def trim_silence(wave: np.ndarray, below_peak_db: float = 40.0, frame: int = 400) -> np.ndarray:
    """Cut leading and trailing frames quieter than ``below_peak_db`` under the loudest frame.

    Read speech files start and end with silence; a random crop of mostly
    silence would give the loss nothing to learn from.

    Returns
    -------
    ndarray of float32, shape (m,), m <= n (empty if the input is silent)
    """
    energy = frame_energy_db(wave, frame)
    if len(energy) == 0:
        return np.asarray(wave, dtype=np.float32)
    loud = np.flatnonzero(energy > energy.max() - below_peak_db)
    if energy.max() < -100:
        return np.zeros(0, dtype=np.float32)
    return np.asarray(wave[loud[0] * frame : (loud[-1] + 1) * frame], dtype=np.float32)


def estimate_snr_db(wave: np.ndarray, frame: int = 400) -> float:
    """A blind recording-quality estimate: loud (95th pct) over quiet (10th pct) frame energy, dB.

    A clean studio take with pauses scores high (40+ dB); a take over hiss or
    room noise scores low. Used to filter the volunteer-recorded speech.
    """
    energy = frame_energy_db(wave, frame)
    if len(energy) < 4:
        return float("nan")
    return float(np.percentile(energy, 95) - np.percentile(energy, 10))


def rms(wave: np.ndarray) -> float:
    """Root mean square of a waveform."""
    return float(np.sqrt(np.mean(np.asarray(wave, dtype=np.float64) ** 2)))


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, np.ndarray]:
    """Scale ``noise`` so that ``10 log10(P_clean / P_noise) = snr_db`` and add it.

    Parameters
    ----------
    clean, noise : ndarray, shape (..., n)
        Powers are taken over the last axis.
    snr_db : float or ndarray broadcastable to (...,)

    Returns
    -------
    mixture : ndarray, shape (..., n)
    scaled_noise : ndarray, shape (..., n)
    """
    p_clean = np.mean(np.asarray(clean, dtype=np.float64) ** 2, axis=-1, keepdims=True)
    p_noise = np.mean(np.asarray(noise, dtype=np.float64) ** 2, axis=-1, keepdims=True)
    snr = np.asarray(snr_db, dtype=np.float64)[..., None]  # (..., 1)
    gain = np.sqrt(p_clean / np.maximum(p_noise, 1e-20) / 10.0 ** (snr / 10.0))
    scaled = (noise * gain).astype(np.float32)
    return (clean + scaled).astype(np.float32), scaled


def _crossfade_join(a: np.ndarray, b: np.ndarray, fade: int) -> np.ndarray:
    f = min(fade, len(a) // 2, len(b) // 2)
    if f == 0:
        return np.concatenate([a, b])
    ramp = np.linspace(0.0, 1.0, f, dtype=np.float32)
    return np.concatenate([a[:-f], a[-f:] * (1.0 - ramp) + b[:f] * ramp, b[f:]])


def loop_concat(pieces: list[np.ndarray], fade: int = 800) -> np.ndarray:
    """Concatenate clips into one loop, joining neighbours (and the end to the start) with crossfades.

    Short noise recordings are looped and cropped; a linear crossfade of
    ``fade`` samples (50 ms at 16 kHz) at every join avoids clicks that the
    network would otherwise learn as part of the environment. The result is
    meant to be read circularly (:func:`circular_crop`): its tail is already
    faded into its head.

    Parameters
    ----------
    pieces : list of ndarray, shape (n_i,)
    fade : int
        Crossfade length in samples (shorter where a clip is shorter than ``2 * fade``).

    Returns
    -------
    ndarray of float32, shape (sum(n_i) - len(pieces) * fade,) for clips longer than ``2 * fade``
    """
    if not pieces:
        raise ValueError("nothing to concatenate")
    out = np.asarray(pieces[0], dtype=np.float32)
    for p in pieces[1:]:
        out = _crossfade_join(out, np.asarray(p, dtype=np.float32), fade)
    f = min(fade, len(out) // 2)
    if f:
        ramp = np.linspace(0.0, 1.0, f, dtype=np.float32)
        head = out[:f] * ramp + out[-f:] * (1.0 - ramp)
        out = np.concatenate([head, out[f:-f]])
    return out


def circular_crop(loop: np.ndarray, start: int, length: int) -> np.ndarray:
    """``length`` samples of ``loop`` from ``start``, wrapping around its end.

    Returns
    -------
    ndarray of float32, shape (length,)
    """
    n = len(loop)
    if n == 0:
        raise ValueError("empty loop")
    idx = (start + np.arange(length)) % n
    return np.asarray(loop[idx], dtype=np.float32)

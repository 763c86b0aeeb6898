"""Speech tickets on real recordings: SI-SNR, STFT, resampling, OpenSFX, the corpus, routing, training.

Fixtures are Debian's ``pocketsphinx-testdata`` (47 s of read English, 16 kHz)
and ``openttd-opensfx`` (vehicle and workshop sounds), installed by
``scripts/setup.sh --test`` (``apt-get install pocketsphinx-testdata
openttd-opensfx``). Tests that need them skip with the install command when
they are absent. ``RTL_SPEECH_TESTDATA`` may name another root holding the
same ``usr/share/...`` paths (e.g. the packages unpacked with ``dpkg-deb``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from torch.func import functional_call

from artifacts import run_format as rf
from lottery.speech import audio
from lottery.speech.config import SpeechDescription
from lottery.speech.corpus import CorpusConfig, build_corpus, load_index, split_noise
from lottery.speech.metrics import si_snr, wsdr_loss
from lottery.speech.model import STFTConfig, UNet, istft, prunable_shapes, stft
from lottery.speech.run import train_speech_run
from lottery.speech.sources import (
    Member,
    classify,
    dep5_licence,
    package_licence,
    parse_dep5,
    read_opensfx,
    source,
)
from lottery.speech.train import enhance, fit, leaf_params

ROOT = Path(os.environ.get("RTL_SPEECH_TESTDATA", "/"))
SPHINX = ROOT / "usr/share/pocketsphinx/test/data"
OPENSFX = ROOT / "usr/share/games/openttd/baseset/opensfx/opensfx.cat"
needs_speech = pytest.mark.skipif(
    not (SPHINX / "cards").is_dir(),
    reason="needs Debian's pocketsphinx-testdata (apt-get install pocketsphinx-testdata)",
)
needs_opensfx = pytest.mark.skipif(
    not OPENSFX.is_file(), reason="needs Debian's openttd-opensfx (apt-get install openttd-opensfx)"
)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """The five 'cards' utterances, concatenated: float32 (n,) at 16 kHz, about 10 s."""
    waves = []
    for f in sorted((SPHINX / "cards").glob("*.wav")):
        w, rate = audio.decode(f)
        assert rate == 16_000
        waves.append(w)
    return np.concatenate(waves)


@pytest.fixture(scope="module")
def opensfx() -> dict[str, Member]:
    return {m.name.split(" ", 1)[1]: m for m in read_opensfx(OPENSFX)}


# ----------------------------------------------------------------------------- SI-SNR and the loss


def test_si_snr_equals_a_hand_computed_value():
    est = torch.tensor([1.0, 2.0, 3.0, 6.0], dtype=torch.float64)
    ref = torch.tensor([1.0, 0.0, 2.0, 1.0], dtype=torch.float64)
    e, s = est - est.mean(), ref - ref.mean()  # (-2, -1, 0, 3), (0, -1, 1, 0)
    target = (e @ s) / (s @ s) * s  # <e,s> = 1, ||s||^2 = 2: (0, -0.5, 0.5, 0)
    hand = 10 * np.log10(0.5 / ((e - target) @ (e - target)).item())  # error energy 4 + .25 + .25 + 9
    assert hand == pytest.approx(10 * np.log10(0.5 / 13.5))
    assert si_snr(est, ref).item() == pytest.approx(hand, abs=1e-6)


@needs_speech
def test_si_snr_is_scale_invariant_and_very_large_for_a_scaled_copy(speech):
    x = torch.from_numpy(speech).double()
    for a in (0.01, 0.5, 7.0):
        assert si_snr(a * x, x).item() > 60.0
    noisy = x + 0.1 * torch.randn(len(x), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert si_snr(3.0 * noisy, x).item() == pytest.approx(si_snr(noisy, x).item(), abs=1e-9)
    assert si_snr(-x, x).item() > 60.0  # a negative scale is a scale too (the projection flips)


@needs_speech
@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 5.0, 10.0])
def test_si_snr_of_speech_plus_white_noise_matches_the_mixing_snr(speech, snr_db):
    noise = np.random.default_rng(1).standard_normal(len(speech)).astype(np.float32)
    mixture, scaled = audio.mix_at_snr(speech, noise, snr_db)
    p_s, p_n = np.mean(speech.astype(np.float64) ** 2), np.mean(scaled.astype(np.float64) ** 2)
    assert 10 * np.log10(p_s / p_n) == pytest.approx(snr_db, abs=1e-3)
    got = si_snr(torch.from_numpy(mixture).double(), torch.from_numpy(speech).double()).item()
    assert got == pytest.approx(snr_db, abs=0.1)


def test_wsdr_loss_is_minus_one_for_a_perfect_estimate_and_bounded():
    g = torch.Generator().manual_seed(0)
    clean, noise = torch.randn(4, 800, generator=g), torch.randn(4, 800, generator=g)
    mix = clean + noise
    assert wsdr_loss(mix, clean, clean).item() == pytest.approx(-1.0, abs=1e-5)
    # half the speech: cos(y, y/2) = 1, and the noise estimate x - y/2 = y/2 + z, by hand with numpy
    y, z = clean.double().numpy(), noise.double().numpy()
    alpha = (y * y).sum(1) / ((y * y).sum(1) + (z * z).sum(1))
    zh = 0.5 * y + z
    cos_z = (z * zh).sum(1) / (np.linalg.norm(z, axis=1) * np.linalg.norm(zh, axis=1))
    hand = float(np.mean(-alpha - (1 - alpha) * cos_z))
    assert wsdr_loss(mix, 0.5 * clean, clean).item() == pytest.approx(hand, abs=1e-5)
    assert -1.0 <= wsdr_loss(mix, mix, clean).item() <= 1.0


# ----------------------------------------------------------------------------- signal processing


@needs_speech
@pytest.mark.parametrize("cfg", [STFTConfig(512, 256), STFTConfig(256, 64)])
def test_stft_round_trip_restores_speech(speech, cfg):
    x = torch.from_numpy(speech[:16_037]).reshape(1, -1)  # a length that is no multiple of the hop
    spec = stft(x, cfg)
    assert spec.shape == (1, cfg.n_fft // 2 + 1, 1 + 16_037 // cfg.hop)
    assert spec.dtype == torch.complex64
    back = istft(spec, cfg, x.shape[-1])
    assert torch.allclose(back, x, atol=1e-5)


@pytest.mark.parametrize("rate", [44_100, 22_050, 11_025, 8_000, 48_000])
def test_resampling_keeps_a_sine_a_sine(rate):
    t_in = np.arange(int(0.5 * rate)) / rate
    out = audio.resample(np.sin(2 * np.pi * 440.0 * t_in), rate)
    t_out = np.arange(len(out)) / 16_000
    assert abs(len(out) - 8_000) <= 1
    mid = slice(400, len(out) - 400)  # the filter's edge transients aside
    np.testing.assert_allclose(out[mid], np.sin(2 * np.pi * 440.0 * t_out)[mid], atol=2e-3)


def test_trim_silence_and_loop_concat():
    rate = 16_000
    tone = np.sin(2 * np.pi * 300 * np.arange(rate) / rate).astype(np.float32)
    padded = np.concatenate([np.zeros(8000, np.float32), tone, np.zeros(4000, np.float32)])
    trimmed = audio.trim_silence(padded)
    assert abs(len(trimmed) - rate) <= 400
    ones = [np.ones(3000, np.float32), np.ones(5000, np.float32)]
    loop = audio.loop_concat(ones, fade=800)
    assert len(loop) == 8000 - 2 * 800  # one join and the closing of the loop
    np.testing.assert_allclose(loop, 1.0, atol=1e-6)  # crossfading equal levels changes nothing
    crop = audio.circular_crop(np.arange(10, dtype=np.float32), 8, 5)
    np.testing.assert_array_equal(crop, [8, 9, 0, 1, 2])


# ----------------------------------------------------------------------------- sources and licences


@needs_opensfx
def test_opensfx_container_yields_licensed_wav_clips(opensfx):
    assert len(opensfx) > 60
    assert {m.licence for m in opensfx.values()} <= {"CC-BY-3.0", "CC0-1.0", "CC-BY-SA-3.0"}
    horn = opensfx["Ship horn"]
    wave, rate = audio.decode(horn.raw())
    assert rate == 44_100 and 2.0 < len(wave) / rate < 3.0
    src = source("openttd-opensfx")
    names = {n: f"07 {n}" for n in ("Ship horn", "Cash till", "Wind", "Toyland: Bubble plop")}
    assert classify(src, names["Ship horn"]) == ("noise", "transportation")
    assert classify(src, names["Cash till"]) == ("noise", "indoor")
    assert classify(src, names["Wind"]) == ("noise", "outdoor")
    assert classify(src, names["Toyland: Bubble plop"]) is None
    assert package_licence(src, Path("/nonexistent"), horn) == "CC-BY-3.0"


def test_dep5_last_matching_stanza_wins_and_install_prefixes_are_ignored():
    text = (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nCopyright: x\nLicense: GPL-2+\n\n"
        "Files:\n base/sound/ambience/a.ogg\n base/sound/ambience/b.ogg\n"
        "Copyright: y\nLicense: CC-BY-SA-3.0\n\n"
        "Files: debian/*\nLicense: GPL-2+\n\nLicense: CC-BY-SA-3.0\n full text\n"
    )
    stanzas = parse_dep5(text)
    assert [lic for _, lic in stanzas] == ["GPL-2+", "CC-BY-SA-3.0", "GPL-2+"]
    assert dep5_licence(stanzas, "base/sound/ambience/b.ogg") == "CC-BY-SA-3.0"
    assert dep5_licence(stanzas, "usr/share/games/x/base/sound/ambience/a.ogg") == "CC-BY-SA-3.0"
    assert dep5_licence(stanzas, "base/sound/ambience/c.ogg") == "GPL-2+"
    assert parse_dep5("This package was debianized by someone.\n") == []


@pytest.mark.parametrize("seconds", [[5.0, 1.0, 2.0, 8.0, 3.0, 1.0], [1.0, 1.0], [30.0, 1.0, 1.0, 1.0]])
def test_noise_split_holds_whole_files_out_until_the_fraction_is_met(seconds):
    secs = np.array(seconds)
    test = split_noise(secs, 0.3, seed=4)
    assert test.any() and (~test).any()
    held = secs[test].sum()
    assert held >= 0.3 * secs.sum() or (~test).sum() == 1
    np.testing.assert_array_equal(test, split_noise(secs, 0.3, seed=4))  # seeded


# ----------------------------------------------------------------------------- a tiny corpus and run


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory, opensfx) -> Path:
    """A user folder: two pocketsphinx speakers, and OpenSFX clips as two environments."""
    user = tmp_path_factory.mktemp("user")
    for spk, files in (
        ("cards", sorted((SPHINX / "cards").glob("*.wav"))),
        ("librivox", sorted((SPHINX / "librivox").glob("*.wav"))),
    ):
        (user / "clean" / spk).mkdir(parents=True)
        for f in files:
            (user / "clean" / spk / f.name).write_bytes(f.read_bytes())
    envs = {
        "transportation": ["Ship horn", "Ferry horn", "Modern bus start", "Helicopter"],
        "indoor": ["Cash till", "Sawmill", "Applause", "Mining machinery"],
    }
    for env, names in envs.items():
        (user / "noise" / env).mkdir(parents=True)
        for n in names:
            (user / "noise" / env / f"{n.replace(' ', '_')}.wav").write_bytes(opensfx[n].raw())
    return user


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory, user_dir) -> Path:
    """The corpus of :func:`user_dir` (librivox held out)."""
    out = tmp_path_factory.mktemp("corpus")
    cfg = CorpusConfig(packages=(), test_speakers=("librivox",), min_speech_snr_db=0.0)
    build_corpus(out, cfg, user_dir=user_dir, log=lambda _: None)
    return out


@needs_speech
@needs_opensfx
def test_data_speech_command_builds_the_same_corpus_from_a_user_folder(
    user_dir, tiny_corpus, tmp_path, capsys
):
    from lottery.cli import main

    args = ["data", "speech", "--only-user", "--user-dir", str(user_dir), "--out", str(tmp_path / "c")]
    code = main([*args, "--test-speakers", "librivox", "--min-speech-snr", "0"])
    assert code == 0
    assert "librivox" in capsys.readouterr().out
    mine, theirs = load_index(tmp_path / "c"), load_index(tiny_corpus)
    assert mine[["id", "split", "sha1"]].equals(theirs[["id", "split", "sha1"]])
    assert main(["data", "speech", "--only-user"]) == 2
    assert "--user-dir" in capsys.readouterr().err


@needs_speech
@needs_opensfx
def test_corpus_index_records_sources_and_keeps_splits_disjoint(tiny_corpus):
    index = load_index(tiny_corpus)
    assert set(index["package"]) == {"user"} and (index["licence"] != "").all()
    clean = index[index["role"] == "clean"]
    assert set(clean.loc[clean["split"] == "test", "speaker"]) == {"librivox"}
    assert set(clean.loc[clean["split"] == "train", "speaker"]) == {"cards"}
    noise = index[index["role"] == "noise"]
    for _, rows in noise.groupby("environment"):
        assert set(rows["split"]) == {"train", "test"}
        assert not set(rows.loc[rows["split"] == "train", "sha1"]) & set(
            rows.loc[rows["split"] == "test", "sha1"]
        )
    for f in index["file"]:
        info = sf.info(str(tiny_corpus / f))
        assert info.samplerate == 16_000 and info.channels == 1
    opensfx_rate = index.loc[index["role"] == "noise", "source_rate"]
    assert (opensfx_rate == 44_100).all()


def test_enhance_routes_every_mixture_to_its_environments_ticket():
    torch.manual_seed(0)
    model = UNet((4, 8), stft_cfg=STFTConfig(128, 64))
    state = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    shapes = prunable_shapes(model)
    g = torch.Generator().manual_seed(1)
    masks = {n: torch.rand((3, *s), generator=g) < 0.6 for n, s in shapes.items()}
    mixtures = torch.randn(7, 1600, generator=g)
    routes = torch.tensor([2, 0, 1, 1, 0, 2, 2])
    out = enhance(model, [state], masks, mixtures, routes)
    params = {n: torch.as_tensor(v) for n, v in state.items()}
    for i, k in enumerate(routes.tolist()):
        w = {n: p * masks[n][k] if n in masks else p for n, p in params.items()}
        expected = functional_call(model, w, (mixtures[i : i + 1],))[0]
        torch.testing.assert_close(out[i], expected)
    with pytest.raises(ValueError, match="routes"):
        enhance(model, [state], masks, mixtures, torch.full((7,), 3))


def test_a_tickets_steps_leave_weights_outside_its_mask_untouched():
    torch.manual_seed(0)
    model = UNet((4, 8), stft_cfg=STFTConfig(128, 64))
    params = leaf_params({n: p.detach().numpy() for n, p in model.named_parameters()})
    before = {n: p.detach().clone() for n, p in params.items()}
    g = torch.Generator().manual_seed(2)
    masks = {n: torch.rand((2, *s), generator=g) < 0.5 for n, s in prunable_shapes(model).items()}

    def batches(_k):
        clean = torch.randn(4, 1600, generator=g)
        return clean + 0.5 * torch.randn(4, 1600, generator=g), clean

    fit(model, params, masks, batches, [1, 1, 1, 1], lr=1e-2)
    moved = 0
    for n, m in masks.items():
        outside = ~m[1]
        assert torch.equal(params[n].detach()[outside], before[n][outside]), n
        moved += int((params[n].detach()[m[1]] != before[n][m[1]]).sum())
    assert moved > 0
    assert not torch.equal(params["up.1.bias"].detach(), before["up.1.bias"])  # biases are shared, dense


@needs_speech
@needs_opensfx
def test_a_tiny_unet_trains_through_two_levels_with_nested_masks(tiny_corpus, tmp_path):
    desc = SpeechDescription(
        environments=("indoor", "transportation"),
        segment_seconds=0.25,
        test_snr_db=(0.0, 5.0),
        test_per_snr=3,
        test_seconds=0.5,
        n_fft=128,
        hop=64,
        channels=(4, 8),
        rounds=4,
        batch_size=4,
        levels=1,
        example_seconds=0.5,
    )
    out = train_speech_run(desc, tmp_path / "run", tiny_corpus, show_progress=False)
    run = rf.load_run(out)
    assert run.manifest["task"] == "speech" and run.manifest["groups"] == ["environment", "speaker"]
    assert set(run.methods) == {"rtl", "imp", "independent"}
    assert not (out / "resume").exists()  # removed once every level is written
    for method in run.methods:
        assert run.levels(method) == [0, 1]
        m0, m1 = run.masks(method, 0), run.masks(method, 1)
        for layer in m0:
            assert not (m1[layer] & ~m0[layer]).any(), f"{method} {layer}: level 1 is not nested in level 0"
        assert run.sparsity(method, 1) == pytest.approx(0.2, abs=0.01)
        preds = run.predictions(method, 1)
        assert len(preds) == 2 * 2 * 3
        cols = {
            "sample",
            "environment",
            "subset",
            "label",
            "speaker",
            "snr_db",
            "si_snr_in",
            "si_snr_out",
            "si_snri",
        }
        assert cols <= set(preds.columns)
        np.testing.assert_allclose(preds["si_snri"], preds["si_snr_out"] - preds["si_snr_in"])
        expected_ticket = preds["subset"] if method != "imp" else 0
        assert (preds["ticket"] == expected_ticket).all()
    # the independent networks are RTL's extraction runs: identical masks
    for layer, m in run.masks("rtl", 1).items():
        np.testing.assert_array_equal(m, run.masks("independent", 1)[layer])
    assert run.level_arrays("rtl", 1)["enhanced"].shape == (2, 8000)
    assert run.level_arrays("independent", 1) == {}
    examples = run.extra("examples")
    assert examples["noisy"].dtype == np.int16 and examples["noisy"].shape == (2, 8000)
    # a resumed run finds every level written and changes nothing
    stamp = (out / "rtl" / "level_01" / "level.json").stat().st_mtime
    train_speech_run(desc, out, tiny_corpus, show_progress=False)
    assert (out / "rtl" / "level_01" / "level.json").stat().st_mtime == stamp
    with pytest.raises(ValueError, match="different run"):
        train_speech_run(SpeechDescription(rounds=5), out, tiny_corpus, show_progress=False)
    # killed during level 1 (level folders, a partial one and the resume files lost): the
    # resumed run retrains what it needs from the seeds and writes what the full run wrote
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    for method in run.methods:
        shutil.rmtree(copy / method / "level_01")
    (copy / "imp" / "level_01.tmp-killed").mkdir()  # what write_level leaves when killed
    (copy / "imp" / "level_01.tmp-killed" / "masks.safetensors").write_bytes(b"partial")
    train_speech_run(desc, copy, tiny_corpus, show_progress=False)
    again = rf.load_run(copy)
    for method in run.methods:
        assert again.levels(method) == [0, 1]
        pd.testing.assert_frame_equal(again.predictions(method, 1), run.predictions(method, 1))
        for layer, m in run.masks(method, 1).items():
            np.testing.assert_array_equal(again.masks(method, 1)[layer], m)
    assert not (copy / "resume").exists()


def test_description_hash_is_stable_and_validates():
    assert SpeechDescription().hash() == SpeechDescription.from_dict(SpeechDescription().to_dict()).hash()
    assert SpeechDescription(rounds=5).hash() != SpeechDescription().hash()
    with pytest.raises(ValueError, match="methods"):
        SpeechDescription(methods=("nope",))
    with pytest.raises(ValueError, match="fraction"):
        SpeechDescription(fraction=1.0)


def test_corpus_builder_refuses_a_missing_corpus(tmp_path):
    with pytest.raises(FileNotFoundError, match="data speech"):
        load_index(tmp_path)

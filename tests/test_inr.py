"""INR region tickets: features, PSNR, regions, routing, masked joint steps, a tiny run end to end."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from torch.func import functional_call

from artifacts import run_format as rf
from lottery.cli import main as lottery_main
from lottery.inr import (
    INR,
    INRDescription,
    Pixels,
    block_downsample,
    conditioned_theta0,
    fourier_features,
    gaussian_frequencies,
    load_images,
    pixel_coordinates,
    predict,
    psnr,
    region_masks,
    route,
    segment_regions,
    train_inr_run,
    train_joint,
    train_ticket,
)
from lottery.inr.run import ImageTask, region_predictions
from lottery.inr.train import fit, leaf_params
from lottery.sampling import index_stream
from lottery.train import state_numpy

TINY = INRDescription(images=("china",), size=16, regions=2, rounds=10, batch_size=64, levels=2)


# ----------------------------------------------------------------------------- features, PSNR, images


def test_fourier_features_hand_computed():
    freqs = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    coords = torch.tensor([[0.25, 0.125], [0.5, 0.0]])
    # phases 2 pi B v: row 0 -> (pi/2, pi/2); row 1 -> (pi, 0)
    expected = torch.tensor([[0.0, 0.0, 1.0, 1.0], [-1.0, 1.0, 0.0, 0.0]])
    torch.testing.assert_close(fourier_features(coords, freqs), expected, atol=1e-6, rtol=0)


def test_gaussian_frequencies_are_seeded_with_the_given_scale():
    a, b = gaussian_frequencies(20000, 8.0, seed=3), gaussian_frequencies(20000, 8.0, seed=3)
    assert a.shape == (20000, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, gaussian_frequencies(20000, 8.0, seed=4))
    assert abs(a.std() - 8.0) < 0.1 and abs(a.mean()) < 0.15
    with pytest.raises(ValueError):
        gaussian_frequencies(4, 0.0, seed=0)


def test_pixel_coordinates_row_major_in_unit_square():
    c = pixel_coordinates(3, 5)
    assert c.shape == (15, 2)
    np.testing.assert_allclose(c[0], [0, 0])
    np.testing.assert_allclose(c[1], [0, 0.25])
    np.testing.assert_allclose(c[5], [0.5, 0])
    np.testing.assert_allclose(c[-1], [1, 1])


@pytest.mark.parametrize(
    ("mse", "peak", "expected"),
    [(0.01, 1.0, 20.0), (1e-3, 1.0, 30.0), (1.0, 1.0, 0.0), (65.025, 255.0, 30.0), (0.25, 1.0, 6.0206)],
)
def test_psnr_of_known_mse(mse, peak, expected):
    assert float(psnr(mse, peak)) == pytest.approx(expected, abs=1e-4)


def test_psnr_of_perfect_reconstruction_is_infinite():
    assert math.isinf(float(psnr(0.0)))


def test_region_psnr_of_a_known_error():
    rng = np.random.default_rng(0)
    image = rng.uniform(0.2, 0.8, size=(4, 4, 3)).astype(np.float32)
    regions = np.array([[0, 0, 1, 1]] * 2 + [[2, 2, 2, 2]] * 2, dtype=np.int32)
    pixels = Pixels(
        torch.zeros(16, 2),
        torch.as_tensor(image.reshape(-1, 3)),
        torch.as_tensor(regions.ravel().astype(np.int64)),
    )
    task = ImageTask("x", image, regions, pixels)
    offset = np.array([0.1, 0.2, 0.3], dtype=np.float32)  # region r is off by offset[r] in every channel
    recon = pixels.target + torch.as_tensor(offset)[pixels.region][:, None]
    frame = region_predictions(task, recon)
    assert frame["n_pixels"].tolist() == [4, 4, 8]
    np.testing.assert_allclose(frame["mse"], offset.astype(np.float64) ** 2, rtol=1e-5)
    np.testing.assert_allclose(frame["psnr"], -20 * np.log10(offset), rtol=1e-5)
    assert frame["region"].tolist() == ["x/0", "x/1", "x/2"]


def test_block_downsample_averages_centred_blocks():
    img = np.arange(4 * 6, dtype=np.float64).reshape(4, 6, 1)
    out = block_downsample(img, 2)  # block 2, crop the centred 4 x 4: columns 1..4
    crop = img[:, 1:5, 0]
    expected = np.array(
        [[crop[:2, :2].mean(), crop[:2, 2:].mean()], [crop[2:, :2].mean(), crop[2:, 2:].mean()]]
    )
    np.testing.assert_allclose(out[..., 0], expected)
    with pytest.raises(ValueError):
        block_downsample(img, 5)


def test_sample_images_are_rgb_in_unit_range():
    images = load_images(("china", "flower"), 24)
    assert images.shape == (2, 24, 24, 3) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1
    assert np.abs(images[0] - images[1]).mean() > 0.05
    with pytest.raises(ValueError):
        load_images(("mona_lisa",), 24)


# ----------------------------------------------------------------------------- regions and routing


def test_regions_partition_the_image_as_kmeans_does():
    image = load_images(("china",), 24)[0]
    regions = segment_regions(image, 5, position_weight=1.0, seed=0)
    masks = region_masks(regions, 5)
    assert masks.shape == (5, 24, 24)
    np.testing.assert_array_equal(masks.sum(axis=0), 1)  # every pixel in exactly one region
    sizes = masks.sum(axis=(1, 2))
    assert (sizes > 0).all() and (np.diff(sizes) <= 0).all()  # ids ordered by size
    rows, cols = np.meshgrid(np.linspace(0, 1, 24), np.linspace(0, 1, 24), indexing="ij")
    feats = np.column_stack([image.reshape(-1, 3), rows.ravel(), cols.ravel()])
    oracle = KMeans(n_clusters=5, n_init=10, random_state=0).fit_predict(feats)
    assert adjusted_rand_score(oracle, regions.ravel()) == pytest.approx(1.0)
    np.testing.assert_array_equal(regions, segment_regions(image, 5, position_weight=1.0, seed=0))


def test_route_sends_every_pixel_to_exactly_its_region():
    region = torch.as_tensor(np.random.default_rng(1).integers(0, 4, 200))
    groups = route(region, 4)
    assert len(groups) == 4
    np.testing.assert_array_equal(torch.sort(torch.cat(groups)).values.numpy(), np.arange(200))
    for j, idx in enumerate(groups):
        assert (region[idx] == j).all()
    with pytest.raises(ValueError):
        route(region, 3)


def _tiny_model_and_masks(k: int, seed: int = 0):
    torch.manual_seed(seed)
    model = INR(in_features=8, hidden=16, depth=3)
    state = state_numpy(model)
    gen = torch.Generator().manual_seed(seed)
    masks = {
        n: torch.rand((k, *p.shape), generator=gen) < 0.5
        for n, p in model.named_parameters()
        if n.endswith(".weight")
    }
    return model, state, masks


def _pixels(n: int, k: int, seed: int = 0) -> Pixels:
    g = torch.Generator().manual_seed(seed)
    return Pixels(
        torch.randn(n, 8, generator=g), torch.rand(n, 3, generator=g), torch.randint(0, k, (n,), generator=g)
    )


def test_routed_prediction_uses_each_pixels_region_ticket():
    model, state, masks = _tiny_model_and_masks(3)
    pixels = _pixels(40, 3)
    out = predict(model, state, masks, pixels, routed=True)
    params = {n: torch.as_tensor(v) for n, v in state.items()}
    for i in range(40):  # oracle: pixel i alone through the weights of its region's ticket
        r = int(pixels.region[i])
        w = {n: p * masks[n][r] if n in masks else p for n, p in params.items()}
        ref = functional_call(model, w, (pixels.features[i : i + 1],)).clamp(0, 1)
        torch.testing.assert_close(out[i : i + 1], ref)
    shared = predict(model, state, masks, pixels, routed=False)
    w0 = {n: p * masks[n][0] if n in masks else p for n, p in params.items()}
    torch.testing.assert_close(shared, functional_call(model, w0, (pixels.features,)).clamp(0, 1))


# ----------------------------------------------------------------------------- masked training


def _fit(schedule, model, state, masks, pixels):
    params = leaf_params(state)
    # one generator per ticket: a ticket draws the same batches whatever the others do
    streams = [
        index_stream(ix, 16, torch.Generator().manual_seed(j)) for j, ix in enumerate(route(pixels.region, 2))
    ]
    fit(model, params, masks, pixels, streams, schedule, lr=1e-2)
    return {n: p.detach().clone() for n, p in params.items()}


def test_weights_outside_the_ticket_do_not_move_on_its_steps():
    model, state, masks = _tiny_model_and_masks(2, seed=1)
    pixels = _pixels(64, 2, seed=1)
    theta0 = {n: torch.as_tensor(v) for n, v in state.items()}
    only0 = _fit([0, 0, 0], model, state, masks, pixels)
    then1 = _fit([0, 0, 0, 1, 1, 1], model, state, masks, pixels)
    for n, m in masks.items():
        m0, m1 = m[0], m[1]
        # ticket 1's steps leave every weight outside m_1 bit-identical, ticket 0's momentum notwithstanding
        torch.testing.assert_close(then1[n][~m1], only0[n][~m1], rtol=0, atol=0)
        # weights in no ticket never move
        torch.testing.assert_close(then1[n][~(m0 | m1)], theta0[n][~(m0 | m1)], rtol=0, atol=0)
        assert (then1[n][m1] != only0[n][m1]).float().mean() > 0.5  # and those inside m_1 do (bar dead units)
        assert (only0[n][m0] != theta0[n][m0]).float().mean() > 0.5


def test_trained_weights_are_zero_outside_their_masks():
    model, state, masks = _tiny_model_and_masks(2, seed=2)
    pixels = _pixels(64, 2, seed=2)
    one = {n: m[0] for n, m in masks.items()}
    w = train_ticket(
        model, state, one, pixels, torch.arange(64), 5, 16, 1e-2, torch.Generator().manual_seed(0)
    )
    joint = train_joint(model, state, masks, pixels, 3, 16, 1e-2, torch.Generator().manual_seed(0))
    for n in masks:
        assert np.all(w[n][~one[n].numpy()] == 0) and np.count_nonzero(w[n][one[n].numpy()]) > 0
        union = masks[n].any(0).numpy()
        assert np.all(joint[n][~union] == 0) and np.count_nonzero(joint[n][union]) > 0


# ----------------------------------------------------------------------------- model and description


def test_inr_is_five_linear_layers_and_conditioning_needs_the_region():
    model = INR(in_features=128, hidden=128, depth=5)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(128, 128)] * 4 + [(3, 128)]
    cond = INR(in_features=128, hidden=128, depth=5, n_regions=4, embed_dim=8)
    assert cond.layers[0].weight.shape == (128, 136)
    assert cond(torch.zeros(5, 128), torch.zeros(5, dtype=torch.int64)).shape == (5, 3)
    with pytest.raises(ValueError):
        cond(torch.zeros(5, 128))


def test_conditioned_theta0_extends_the_shared_theta0():
    torch.manual_seed(0)
    theta0 = state_numpy(INR(in_features=16, hidden=8, depth=3))
    ext = conditioned_theta0(theta0, n_regions=3, embed_dim=4, seed=7)
    assert ext["layers.0.weight"].shape == (8, 20) and ext["embed.weight"].shape == (3, 4)
    np.testing.assert_array_equal(ext["layers.0.weight"][:, :16], theta0["layers.0.weight"])
    assert np.abs(ext["layers.0.weight"][:, 16:]).max() <= 1 / math.sqrt(16)
    for n in theta0:
        if n != "layers.0.weight":
            np.testing.assert_array_equal(ext[n], theta0[n])
    np.testing.assert_array_equal(
        ext["embed.weight"], conditioned_theta0(theta0, 3, 4, seed=7)["embed.weight"]
    )


def test_description_hash_is_pinned_and_canonical():
    d = INRDescription()
    assert d.canonical() == {}
    assert d.hash() == "44136fa355b3"  # changing this orphans existing runs: add fields with defaults instead
    assert INRDescription.from_dict(TINY.to_dict()) == TINY
    assert TINY.canonical() == {
        "images": ["china"],
        "size": 16,
        "regions": 2,
        "rounds": 10,
        "batch_size": 64,
        "levels": 2,
    }
    with pytest.raises(ValueError):
        INRDescription(methods=("independent",))
    with pytest.raises(ValueError):
        INRDescription.from_dict({"colour": "red"})


# ----------------------------------------------------------------------------- a tiny run end to end


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("inr") / "run"
    train_inr_run(TINY, out, keep_weights=False, show_progress=False)
    return rf.load_run(out)


def test_tiny_run_levels_and_sparsity(tiny_run):
    assert sorted(tiny_run.methods) == ["imp-china", "rtl-china"]
    assert tiny_run.manifest["task"] == "inr" and tiny_run.manifest["groups"] == ["image", "region"]
    for method in tiny_run.methods:
        assert tiny_run.levels(method) == [0, 1, 2]
        n_layers = len(tiny_run.masks(method, 0))
        total = sum(m[0].size for m in tiny_run.masks(method, 0).values())
        for level in (0, 1, 2):
            assert abs(tiny_run.sparsity(method, level) - (1 - 0.8**level)) <= n_layers / total
    assert len(tiny_run.ticket_names("rtl-china")) == 2 and tiny_run.ticket_names("imp-china") == ["all"]


def test_tiny_run_masks_are_nested_per_ticket(tiny_run):
    for method in tiny_run.methods:
        for a, b in [(0, 1), (1, 2)]:
            ma, mb = tiny_run.masks(method, a), tiny_run.masks(method, b)
            for name in ma:
                assert not (mb[name] & ~ma[name]).any(), f"{method} level {b} revives weights of {name}"
    m0 = tiny_run.masks("rtl-china", 0)
    assert all(m.all() for m in m0.values())
    m2 = tiny_run.masks("rtl-china", 2)
    assert any((m[0] != m[1]).any() for m in m2.values())  # region tickets specialise


def test_tiny_run_predictions_and_reconstructions(tiny_run):
    images = tiny_run.extra("images")
    assert images["images"].shape == (1, 16, 16, 3) and images["regions"].shape == (1, 16, 16)
    np.testing.assert_array_equal(np.unique(images["regions"]), [0, 1])
    for method in tiny_run.methods:
        for level in tiny_run.levels(method):
            pred = tiny_run.predictions(method, level)
            assert list(pred.columns) == ["sample", "subset", "image", "region", "n_pixels", "mse", "psnr"]
            assert pred["n_pixels"].sum() == 256
            np.testing.assert_allclose(pred["psnr"], 10 * np.log10(1 / pred["mse"]))
            recon = tiny_run.level_arrays(method, level)["reconstruction"]
            assert recon.shape == (16, 16, 3) and recon.dtype == np.uint8
            # the stored picture agrees with the stored errors up to 8-bit rounding
            err = ((recon / 255.0 - images["images"][0]) ** 2).mean(-1)
            for r, row in pred.iterrows():
                assert 10 * np.log10(1 / err[images["regions"][0] == r].mean()) == pytest.approx(
                    row["psnr"], abs=0.1
                )
            info = tiny_run.level_info(method, level)
            assert info["metrics"]["psnr"] == pytest.approx(
                10 * np.log10(1 / np.average(pred["mse"], weights=pred["n_pixels"]))
            )


def test_tiny_run_methods_share_theta0(tiny_run):
    theta0 = rf.load_tensors(tiny_run.path / "theta0.safetensors")
    torch.manual_seed(TINY.seed)
    fresh = state_numpy(INR(2 * TINY.n_frequencies, TINY.hidden, TINY.depth))
    for n in theta0:
        np.testing.assert_array_equal(theta0[n], fresh[n])


def test_resume_writes_what_an_uninterrupted_run_writes(tiny_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run.path, copy)
    for method in tiny_run.methods:
        shutil.rmtree(rf.level_dir(copy, method, 2))
    train_inr_run(TINY, copy, keep_weights=False, show_progress=False)
    resumed = rf.load_run(copy)
    for method in tiny_run.methods:
        a, b = tiny_run.masks(method, 2), resumed.masks(method, 2)
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
        np.testing.assert_allclose(
            tiny_run.predictions(method, 2)["mse"], resumed.predictions(method, 2)["mse"], rtol=1e-6
        )


def test_a_folder_holding_another_run_is_refused(tiny_run):
    with pytest.raises(ValueError, match="different run"):
        train_inr_run(
            INRDescription(images=("china",), size=16, regions=3), tiny_run.path, show_progress=False
        )


def test_cli_trains_a_run_with_weights(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["inr", "--out", str(out), "--images", "flower", "--size", "12", "--regions", "2"]
    assert lottery_main([*args, "--levels", "1", "--rounds", "4", "--batch-size", "32", "--quiet"]) == 0
    assert "run written to" in capsys.readouterr().out
    run = rf.load_run(out)
    assert sorted(run.methods) == ["imp-flower", "rtl-flower"]
    w, m = run.weights("imp-flower", 1), run.masks("imp-flower", 1)
    assert w["layers.0.weight"].shape[1] == 2 * 64 + 16  # Fourier features + region embedding
    for name, mask in m.items():
        assert np.all(w[name][~mask[0]] == 0)
    np.testing.assert_array_equal(
        run.init_weights("rtl-flower")["head.weight"], run.init_weights("imp-flower")["head.weight"]
    )
    assert lottery_main(["inr", "--out", str(tmp_path / "bad"), "--methods", "independent", "--quiet"]) == 2

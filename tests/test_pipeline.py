"""Sampling pipeline on tiny random-weight models: determinism, exact paste-back, noise selection, refinement,
input checks, save/load round trip, schedulers, VAE and glyph-channel models."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from udifftext.config import NoiseSelectionConfig, RefinementConfig, SampleConfig, UNetStageConfig, load_config
from udifftext.io import MissingWeightsError
from udifftext.pipeline import UDiffTextPipeline
from udifftext.sampling import noise_selection
from udifftext.sampling.guidance import GuidedDenoiser
from udifftext.sampling.refinement import refine_latent
from udifftext.sampling.regions import Region, parse_box, parse_quad, region_mask
from udifftext.sampling.schedulers import build_scheduler

FAST = SampleConfig(steps=2, noise_selection=NoiseSelectionConfig(candidates=3, steps=1, chunk_size=2))
R = 32  # the tiny preset at half its resolution keeps these tests within seconds on 2 cores
SMALL = [f"data.resolution={R}", f"unet.sample_size={R}"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_cfg() -> UNetStageConfig:
    return load_config(UNetStageConfig, "configs/unet/tiny.yaml", SMALL)


@pytest.fixture(scope="module")
def pipe(tiny_cfg) -> UDiffTextPipeline:
    return UDiffTextPipeline.from_config(tiny_cfg)


@pytest.fixture(scope="module")
def scene() -> Image.Image:
    """An odd-sized RGBA image: the pipeline must accept any size and mode."""
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (61, 97, 4), dtype=np.uint8), mode="RGBA")


def test_same_seed_same_output_and_other_seed_differs(pipe, scene):
    a = pipe(scene, [parse_box("10,20,70,40")], ["Hello"], FAST)
    b = pipe(scene, [parse_box("10,20,70,40")], ["Hello"], FAST)
    c = pipe(scene, [parse_box("10,20,70,40")], ["Hello"], replace(FAST, seed=1))
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))
    assert a.image.size == scene.size and a.image.mode == "RGB"
    assert a.crops[0].size == (R, R) and a.heatmaps[0].shape == (5, R, R)
    assert a.record["regions"][0]["noise_selection"]["chosen"] in range(3)
    assert len(a.record["regions"][0]["noise_selection"]["scores"]) == 3


def test_pixels_outside_every_mask_are_unchanged(pipe, scene):
    regions = [parse_box("5,5,45,25"), parse_quad("50,30,90,34,88,55,52,50")]
    out = pipe(scene, regions, ["ab", "XY"], FAST)
    before = np.asarray(scene.convert("RGB"))
    after = np.asarray(out.image)
    inside = region_mask(regions[0], scene.size) | region_mask(regions[1], scene.size)
    assert np.array_equal(before[~inside], after[~inside])
    assert np.abs(before[inside].astype(int) - after[inside]).mean() > 5  # something was generated
    assert [r["text"] for r in out.record["regions"]] == ["ab", "XY"]
    assert [r["seed"] for r in out.record["regions"]] == [0, 1]


def test_select_noise_keeps_lowest_score_across_chunks():
    candidates = torch.randn(7, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    calls = []

    def stub(chunk):
        calls.append(chunk.shape[0])
        return chunk.mean(dim=(1, 2, 3))

    best, scores = noise_selection.select_noise(candidates, stub, chunk_size=3)
    assert calls == [3, 3, 1]
    assert best == int(candidates.mean(dim=(1, 2, 3)).argmin())
    assert scores == pytest.approx(candidates.mean(dim=(1, 2, 3)).tolist())


def test_pipeline_starts_from_the_lowest_scoring_candidate(pipe, scene, monkeypatch):
    seen = []

    def stub_scores(denoiser, scheduler_name, diffusion, cfg, noises, cond):
        seen.append(noises.clone())
        return noises.flatten(1)[:, 0]  # (k,) any deterministic score of the candidate itself

    monkeypatch.setattr(noise_selection, "short_run_scores", stub_scores)
    cfg = replace(FAST, noise_selection=NoiseSelectionConfig(candidates=5, steps=1, chunk_size=2))
    out = pipe(scene, [parse_box("10,20,70,40")], ["Hi"], cfg)
    candidates = torch.cat(seen)  # (5, 3, R, R), scored in chunks of 2, 2, 1
    assert [c.shape[0] for c in seen] == [2, 2, 1]
    record = out.record["regions"][0]["noise_selection"]
    assert record["chosen"] == int(candidates[:, 0, 0, 0].argmin())
    assert record["scores"] == pytest.approx(candidates[:, 0, 0, 0].tolist())
    noise, _ = noise_selection.choose_initial_noise(
        None, "euler", pipe.cfg.diffusion, cfg.noise_selection, (3, R, R), None, torch.Generator().manual_seed(0), "cpu"
    )
    assert torch.equal(noise[0], candidates[record["chosen"]])


def test_read_selection_keeps_the_sample_read_best(pipe, scene, tiny_cfg, tmp_path, monkeypatch):
    """read_selection runs K whole samples (the first is the plain run's) and pastes the one whose region the
    recognizer reads with the lowest loss as the text; every loss is in the record."""
    from udifftext.config import ReadSelectionConfig, save_config
    from udifftext.io import save_state_dict
    from udifftext.judge import RecognizerJudge
    from udifftext.recognizer.vitstr import ViTSTR

    box = [parse_box("10,20,70,40")]
    plain = pipe(scene, box, ["Hi"], FAST)
    torch.manual_seed(0)
    save_state_dict(ViTSTR(tiny_cfg.recognizer).state_dict(), tmp_path / "reader.safetensors")
    save_config(tiny_cfg.recognizer, tmp_path, "reader.yaml")
    selection = ReadSelectionConfig(enabled=True, candidates=3, recognizer=str(tmp_path / "reader.safetensors"))
    cfg = replace(FAST, read_selection=selection)
    real = pipe(scene, box, ["Hi"], cfg).record["regions"][0]["read_selection"]
    assert len(real["losses"]) == 3 and real["chosen"] == int(np.argmin(real["losses"]))
    assert len(set(real["losses"])) == 3  # three different samples
    for losses, chosen in (([0.0, 1.0, 2.0], 0), ([2.0, 1.0, 0.5], 2)):
        monkeypatch.setattr(RecognizerJudge, "losses", lambda self, crops, texts, losses=losses: losses)
        out = pipe(scene, box, ["Hi"], cfg)
        assert out.record["regions"][0]["read_selection"]["chosen"] == chosen
        assert np.array_equal(np.asarray(out.image), np.asarray(plain.image)) == (chosen == 0)
    with pytest.raises(ValueError, match="read_selection needs a recognizer"):  # this folder has none
        pipe.check_inputs(scene, box, ["a"], replace(FAST, read_selection=ReadSelectionConfig(enabled=True)))
    with pytest.raises(MissingWeightsError, match="no_reader.safetensors does not exist"):
        missing = ReadSelectionConfig(enabled=True, recognizer=str(tmp_path / "no_reader.safetensors"))
        pipe.check_inputs(scene, box, ["a"], replace(FAST, read_selection=missing))


def test_refinement_lowers_attention_loss(pipe, tiny_cfg):
    rng = np.random.default_rng(1)
    crop = rng.integers(0, 256, (R, R, 3), dtype=np.uint8)
    mask = np.zeros((R, R), np.uint8)
    mask[12:20, 4:28] = 1
    cond = pipe._condition(crop, mask, "Hello")
    denoiser = GuidedDenoiser(pipe.unet, pipe.store, 5.0, tiny_cfg.loss)
    scheduler = build_scheduler("euler", tiny_cfg.diffusion, 10)
    z = torch.randn(1, 3, R, R, generator=torch.Generator().manual_seed(0)) * scheduler.init_noise_sigma
    t = scheduler.timesteps[5]
    cfg = RefinementConfig(enabled=True, iterative_steps=[5], thresholds=[-10.0], max_iters=3)
    with torch.no_grad():
        before = float(denoiser.conditional_aae(scheduler, z, t, cond))
    refined, losses = refine_latent(denoiser, scheduler, z, t, cond, 5, 10, cfg)
    with torch.no_grad():
        after = float(denoiser.conditional_aae(scheduler, refined, t, cond))
    assert losses[0] == pytest.approx(before, abs=1e-6) and len(losses) == 3
    assert losses[2] < losses[1] < losses[0]
    assert after < before


def test_refinement_runs_in_the_pipeline(pipe, scene):
    cfg = replace(FAST, refinement=RefinementConfig(enabled=True, iterative_steps=[1], thresholds=[-10.0], max_iters=2))
    out = pipe(scene, [parse_box("10,20,70,40")], ["Hi"], cfg)
    assert {k: len(v) for k, v in out.record["regions"][0]["refinement"]["losses"].items()} == {"0": 1, "1": 2}


@pytest.mark.parametrize(
    ("regions", "texts", "message"),
    [
        ([parse_box("10,20,70,40")], ["Hello", "extra"], "2 texts for 1 regions"),
        ([parse_box("10,20,70,40")], ["HELLOWORLDXYZ"], "longer than max_len=12"),
        ([parse_box("10,20,70,40")], ["héllo"], "outside the alphabet: ['é']"),
        ([parse_box("10,20,70,40")], [""], "at least one character"),
        ([parse_box("10,20,120,40")], ["Hi"], "0 <= x0 < x1 <= 97"),
        ([parse_box("30,20,30,40")], ["Hi"], "0 <= x0 < x1 <= 97"),
        ([Region("mask", np.zeros((61, 97), bool))], ["Hi"], "mask is empty"),
        ([Region("mask", np.ones((60, 97), bool))], ["Hi"], "mask size 97x60 differs from the image 97x61"),
        ([], [], "at least one region"),
        ([Region("mask", np.pad(np.ones((1, 97), bool), ((30, 30), (0, 0))))], ["Hi"], "region 0 is too thin"),
    ],
)
def test_bad_inputs_are_one_line_value_errors(pipe, scene, regions, texts, message):
    with pytest.raises(ValueError) as err:
        pipe.check_inputs(scene, regions, texts, FAST)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_files_and_config(pipe, scene, tmp_path):
    (tmp_path / "broken.png").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        pipe.check_inputs(tmp_path / "broken.png", [parse_box("1,1,5,5")], ["a"], FAST)
    with pytest.raises(ValueError, match="image not found"):
        pipe.check_inputs(tmp_path / "missing.png", [parse_box("1,1,5,5")], ["a"], FAST)
    with pytest.raises(ValueError, match="--box must be x0,y0,x1,y1"):
        parse_box("1,2,3")
    with pytest.raises(ValueError, match="scheduler must be one of"):
        pipe.check_inputs(scene, [parse_box("1,1,5,5")], ["a"], replace(FAST, scheduler="heun"))
    with pytest.raises(ValueError, match="glyph_margin must be in"):  # before any work, glyph model or not
        pipe.check_inputs(scene, [parse_box("1,1,5,5")], ["a"], replace(FAST, glyph_margin=0.5))
    with pytest.raises(ValueError, match="glyph_shape must be one of"):
        pipe.check_inputs(scene, [parse_box("1,1,5,5")], ["a"], replace(FAST, glyph_shape="oval"))
    with pytest.raises(FileNotFoundError, match="glyph_font no_such_font.ttf does not exist"):
        pipe.check_inputs(scene, [parse_box("1,1,5,5")], ["a"], replace(FAST, glyph_font="no_such_font.ttf"))
    with pytest.raises(MissingWeightsError, match="does not exist"):
        UDiffTextPipeline.from_pretrained(tmp_path / "no_such_folder")


def test_save_pretrained_round_trip_gives_identical_output(pipe, scene, tmp_path):
    pipe.save_pretrained(tmp_path / "model")
    loaded = UDiffTextPipeline.from_pretrained(tmp_path / "model")
    a = pipe(scene, [parse_box("10,20,70,40")], ["Hello"], FAST)
    b = loaded(scene, [parse_box("10,20,70,40")], ["Hello"], FAST)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert b.record["model"] == str(tmp_path / "model")


def test_schedulers_use_upstream_timesteps(tiny_cfg):
    upstream = np.linspace(999, 0, 50, endpoint=False).astype(int)
    for name in ("euler", "ddim", "dpmpp"):
        assert build_scheduler(name, tiny_cfg.diffusion, 50).timesteps.long().tolist() == upstream.tolist()
    assert build_scheduler("euler", tiny_cfg.diffusion, 2).timesteps.long().tolist() == [999, 499]


@pytest.mark.parametrize("scheduler", ["ddim", "dpmpp"])
def test_other_schedulers_sample(pipe, scene, scheduler):
    out = pipe(scene, [parse_box("10,20,70,40")], ["Hi"], replace(FAST, scheduler=scheduler, attention_heatmaps=False))
    assert out.heatmaps == [None] and np.isfinite(np.asarray(out.image, float)).all()


def test_vae_first_stage_and_glyph_channel(tiny_cfg, scene):
    """A tiny VAE (factor 2, 4 latent channels) with a glyph channel: shapes line up, outside pixels kept; the
    glyph and its margin change the output."""
    cfg = load_config(
        UNetStageConfig,
        "configs/unet/tiny.yaml",
        [
            f"data.resolution={R}",
            "first_stage.kind=vae",
            "first_stage.block_out_channels=[32,32]",
            "unet.in_channels=10",
            "unet.out_channels=4",
            f"unet.sample_size={R // 2}",
            "unet.glyph_channel=true",
            "loss.min_attn_size=4",
        ],
    )
    vae_pipe = UDiffTextPipeline.from_config(cfg)
    region = parse_box("10,20,70,40")
    out = vae_pipe(scene, [region], ["Hey"], FAST)
    inside = region_mask(region, scene.size)
    assert np.array_equal(np.asarray(scene.convert("RGB"))[~inside], np.asarray(out.image)[~inside])
    assert out.crops[0].size == (R, R) and out.heatmaps[0].shape == (3, R, R)
    no_glyph = vae_pipe(scene, [region], ["Hey"], replace(FAST, ablate="glyph"))
    assert not np.array_equal(np.asarray(out.image), np.asarray(no_glyph.image))
    inset = vae_pipe(scene, [region], ["Hey"], replace(FAST, glyph_margin=0.3))  # the sample config reaches it
    assert not np.array_equal(np.asarray(out.image), np.asarray(inset.image))


def test_ablating_the_text_makes_the_output_independent_of_it(tiny_cfg, scene):
    """ablate='text' samples with the null context: two words of one length give the same image where they
    differ without it; the glyph ablation needs a glyph input, and an unknown ablation is refused."""
    pipe = UDiffTextPipeline.from_config(tiny_cfg)
    torch.manual_seed(0)
    for name, param in pipe.unet.named_parameters():
        if name.endswith("attn2.to_out.0.weight"):  # zero at initialisation: wake the text path up
            torch.nn.init.normal_(param, std=0.1)
    region = parse_box("10,20,70,40")

    def image(text: str, cfg: SampleConfig) -> np.ndarray:
        return np.asarray(pipe(scene, [region], [text], cfg).image)

    assert not np.array_equal(image("Hello", FAST), image("World", FAST))
    no_text = replace(FAST, ablate="text")
    assert np.array_equal(image("Hello", no_text), image("World", no_text))
    with pytest.raises(ValueError, match="needs a glyph-channel model"):
        pipe.check_inputs(scene, [region], ["Hello"], replace(FAST, ablate="glyph"))
    with pytest.raises(ValueError, match="ablate must be one of"):
        pipe.check_inputs(scene, [region], ["Hello"], replace(FAST, ablate="tokens"))


def test_sampling_at_twice_the_model_resolution(pipe, scene):
    """The convolutional UNet runs on a larger crop: crops and heatmaps at 2R, outside pixels kept, and the
    result differs from sampling at R (the model itself is unchanged)."""
    region = parse_box("10,20,70,40")
    assert pipe.size_multiple == 2 and pipe.sampling_resolution(FAST) == R  # one downsampling, pixel space
    large = pipe(scene, [region], ["Hello"], replace(FAST, resolution=2 * R))
    assert large.crops[0].size == (2 * R, 2 * R) and large.heatmaps[0].shape == (5, 2 * R, 2 * R)
    inside = region_mask(region, scene.size)
    assert np.array_equal(np.asarray(scene.convert("RGB"))[~inside], np.asarray(large.image)[~inside])
    default = pipe(scene, [region], ["Hello"], FAST)
    assert not np.array_equal(np.asarray(default.image), np.asarray(large.image))
    same = pipe(scene, [region], ["Hello"], replace(FAST, resolution=R))
    assert np.array_equal(np.asarray(default.image), np.asarray(same.image))  # resolution=R is the default
    for bad in (R + 1, -R):
        with pytest.raises(ValueError, match="positive multiple of 2"):
            pipe.check_inputs(scene, [region], ["Hello"], replace(FAST, resolution=bad))


def test_region_crop_zooms_as_the_model_was_trained(tiny_cfg):
    """A small box in a large image is cropped so that it covers the model's training area ratio."""
    mask = np.zeros((400, 400), bool)
    mask[190:210, 160:240] = True  # 80 x 20 = 1 % of the image
    for ratio in (0.04, 0.25):
        cfg = replace(tiny_cfg, data=replace(tiny_cfg.data, crop_min_area_ratio=ratio))
        crop_mask = UDiffTextPipeline.from_config(cfg)._roi(mask, (R, R)).apply_mask(mask)
        share = crop_mask.mean()
        assert share == pytest.approx(ratio, rel=0.25), (ratio, share)  # R = 32: coarse pixels


def _principal_angle(weights: np.ndarray) -> float:
    """Degrees of the main axis of a 2-D weight map (positive = clockwise on screen, y down)."""
    ys, xs = np.nonzero(weights > 0.3)
    cov = np.cov(np.stack([xs, ys]))
    vals, vecs = np.linalg.eigh(cov)
    x, y = vecs[:, np.argmax(vals)]
    return float(np.degrees(np.arctan2(y, x)) + 180) % 180


@pytest.mark.parametrize("angle", [0.0, 15.0, -20.0])
def test_glyph_canvas_follows_the_region_rotation(angle):
    from udifftext.data.render import fill_polygon, render_glyph
    from udifftext.pipeline import glyph_canvas

    rad = np.deg2rad(angle)
    rot = np.array([[np.cos(rad), -np.sin(rad)], [np.sin(rad), np.cos(rad)]])
    quad = np.array([[-40, -10], [40, -10], [40, 10], [-40, 10]], float) @ rot.T + 64
    mask = fill_polygon(128, 128, quad)
    glyph = glyph_canvas("Hello world", mask)
    assert glyph.shape == (128, 128) and glyph.dtype == np.float32
    assert glyph[mask == 0].sum() < 0.1 * glyph.sum()  # the ink stays inside the (staircase) region
    assert abs((_principal_angle(glyph) - angle + 90) % 180 - 90) < 3  # and runs along its baseline
    if angle == 0:  # an axis-aligned region gets the glyph stretched over its box
        ys, xs = np.nonzero(mask)
        box = glyph[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        np.testing.assert_allclose(box, render_glyph("Hello world", *box.shape), atol=0.05)


# A word box in perspective: 100 px long, 30 px high at its left end and 18 px at its right, tilted by 10 degrees.
TRAPEZOID = np.array([[14, 40], [114, 58], [111, 75], [10, 70]], float)


def test_region_corners_fit_the_quadrilateral_a_mask_was_drawn_from():
    """ "quad" gives back the polygon's corners (pixel edges, within a pixel) in reading order, "rect" the mask's
    minimum-area rectangle, and a mask that is no quadrilateral (an ellipse) its rectangle too."""
    import cv2

    from udifftext.data.render import fill_polygon
    from udifftext.pipeline import region_corners

    mask = fill_polygon(128, 128, TRAPEZOID)
    np.testing.assert_allclose(region_corners(mask), TRAPEZOID, atol=1.25)  # cv2 fills right/bottom edges inclusive
    rect = region_corners(mask, "rect")
    assert np.abs(rect - TRAPEZOID).max() > 3  # the rectangle overhangs the narrow end
    ellipse = np.zeros((128, 128), np.uint8)
    cv2.ellipse(ellipse, (64, 64), (50, 15), 10, 0, 360, 1, -1)
    np.testing.assert_allclose(region_corners(ellipse), region_corners(ellipse, "rect"))
    with pytest.raises(ValueError, match="glyph shape"):
        region_corners(mask, "oval")


def test_quad_glyph_stays_inside_a_region_in_perspective():
    """Warped into the rectangle, the glyph of a word in perspective overhangs the region's narrow end (the end
    letters' ascenders and descenders are lost there); warped into the quadrilateral it stays inside and its
    letters shrink towards the narrow end as the region does."""
    from udifftext.data.render import fill_polygon
    from udifftext.pipeline import glyph_canvas

    mask = fill_polygon(128, 128, TRAPEZOID)
    quad = glyph_canvas("Ilhdgpby", mask, margin=0.1)
    rect = glyph_canvas("Ilhdgpby", mask, margin=0.1, shape="rect")
    outside = [glyph[mask == 0].sum() / glyph.sum() for glyph in (rect, quad)]  # share of the ink off the region
    assert outside[0] > 0.03 and outside[1] < 0.005
    ink = quad > 0.5
    cols = ink.any(axis=0).nonzero()[0]
    first, last = (np.ptp(ink[:, c].any(axis=1).nonzero()[0]) for c in (cols[:10], cols[-10:]))  # ink heights
    assert first > 1.3 * last


def test_glyph_margin_leaves_a_blank_border():
    """glyph_margin=0.25 on a 20 x 80 box: the glyph is the 10 x 70 rendering in its middle, 5 px blank on every
    side (training words keep such a border inside their box; a glyph to the edges gets its end letters cut)."""
    from udifftext.data.render import render_glyph
    from udifftext.pipeline import glyph_canvas

    mask = np.zeros((64, 128), np.uint8)
    mask[20:40, 24:104] = 1
    glyph = glyph_canvas("Hello", mask, margin=0.25)
    box = glyph[20:40, 24:104]
    np.testing.assert_allclose(box[5:15, 5:75], render_glyph("Hello", 10, 70), atol=0.05)
    inner = np.zeros_like(box, bool)
    inner[5:15, 5:75] = True
    assert box[~inner].max() < 0.05 and glyph[mask == 0].max() < 0.05
    with pytest.raises(ValueError, match="glyph margin"):
        glyph_canvas("Hello", mask, margin=0.5)


def test_glyph_font_draws_the_glyph_in_that_font():
    """font= draws the glyph in another font file, stretched over the same box as the default DejaVu Sans."""
    from udifftext.data.render import render_glyph
    from udifftext.pipeline import glyph_canvas

    mono = "data/fonts/liberation/LiberationMono-Regular.ttf"
    mask = np.zeros((64, 128), np.uint8)
    mask[20:40, 24:104] = 1
    glyph = glyph_canvas("Il|0O", mask, font=mono)
    np.testing.assert_allclose(glyph[20:40, 24:104], render_glyph("Il|0O", 20, 80, mono), atol=0.05)
    assert np.abs(glyph - glyph_canvas("Il|0O", mask)).mean() > 0.05  # not the default font's drawing


@pytest.mark.parametrize("angle", [0.0, 15.0])
def test_position_canvas_ramps_along_the_word(angle):
    """content="position" fills the same rotated rectangle as the glyph with (i + 0.5) / width along the word:
    it rises along the baseline, is flat across it, and does not depend on the text."""
    from udifftext.data.render import fill_polygon
    from udifftext.pipeline import glyph_canvas

    rad = np.deg2rad(angle)
    rot = np.array([[np.cos(rad), -np.sin(rad)], [np.sin(rad), np.cos(rad)]])
    quad = np.array([[-40, -10], [40, -10], [40, 10], [-40, 10]], float) @ rot.T + 64
    mask = fill_polygon(128, 128, quad)
    ramp = glyph_canvas("Hello", mask, "position")
    assert ramp.shape == (128, 128) and ramp.dtype == np.float32
    np.testing.assert_array_equal(ramp, glyph_canvas("a completely different text", mask, "position"))
    assert ramp[mask == 0].sum() < 0.1 * ramp.sum() and 0 <= ramp.min() and ramp.max() <= 1
    along = np.array([np.cos(rad), np.sin(rad)])
    across = np.array([-np.sin(rad), np.cos(rad)])
    samples = [
        ramp[tuple(np.round(64 + a * along + c * across).astype(int))[::-1]]
        for a, c in [(-30, 0), (0, 0), (30, 0), (0, -6), (0, 6)]
    ]
    np.testing.assert_allclose(samples, [10.5 / 81, 40.5 / 81, 70.5 / 81, 40.5 / 81, 40.5 / 81], atol=0.03)
    if angle == 0:  # an axis-aligned region: every row of its box is the same ramp
        ys, xs = np.nonzero(mask)
        box = ramp[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        w = box.shape[1]
        np.testing.assert_allclose(box, np.broadcast_to((np.arange(w) + 0.5) / w, box.shape), atol=1e-5)
    with pytest.raises(ValueError, match="glyph content"):
        glyph_canvas("Hello", mask, "ink")


def test_rectified_model_samples_along_the_region():
    """A model trained on rectified crops (data.crop_width) samples a tilted quad through the rotated window:
    crops and heatmaps are h x w, the window follows the quad's angle, pixels outside the mask are kept, and a
    larger resolution scales both sides (or is refused when the width would not fit the downsampling)."""
    cfg = load_config(UNetStageConfig, "configs/unet/tiny.yaml", ["data.resolution=16", "data.crop_width=40"])
    rect = UDiffTextPipeline.from_config(cfg)
    scene = Image.fromarray(np.random.default_rng(1).integers(0, 256, (120, 200, 3), dtype=np.uint8))
    region = parse_quad("30,40,150,60,146,82,26,62")  # about 9.5 degrees, clockwise on screen
    out = rect(scene, [region], ["Hello"], FAST)
    assert out.crops[0].size == (40, 16) and out.heatmaps[0].shape == (5, 16, 40)
    window = out.record["regions"][0]["crop_window"]
    assert window["angle"] == pytest.approx(np.degrees(np.arctan2(20, 120)), abs=1.0)
    inside = region_mask(region, scene.size)
    assert np.array_equal(np.asarray(scene)[~inside], np.asarray(out.image)[~inside])
    assert (np.asarray(scene)[inside] != np.asarray(out.image)[inside]).mean() > 0.9
    assert rect(scene, [region], ["Hello"], replace(FAST, resolution=32)).crops[0].size == (80, 32)
    with pytest.raises(ValueError, match="crop width of 45"):
        rect.check_inputs(scene, [region], ["Hello"], replace(FAST, resolution=18))

"""The diffusion stage end to end on the tiny preset: losses, Lightning runs, resume, export, L_ocr gradients."""

import csv
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from udifftext.config import SampleConfig, UNetStageConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
FAST = ["data.resolution=32", "unet.sample_size=32", "train.batch_size=4", "train.val_samples=2", "val_steps=2"]


def tiny(tmp_path: Path, *overrides: str) -> UNetStageConfig:
    overrides = [*FAST, f"train.out_dir={tmp_path}", *overrides]
    return load_config(UNetStageConfig, ROOT / "configs/unet/tiny.yaml", overrides)


pytestmark = pytest.mark.usefixtures("one_thread")


def logged(out_dir: Path, key: str) -> list[float]:
    rows = []
    for path in sorted((out_dir / "logs").glob("version_*/metrics.csv")):
        rows += [float(r[key]) for r in csv.DictReader(path.open()) if r.get(key)]
    return rows


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """30 steps of text-free base pretraining (whole tiny UNet trainable), with validation and export."""
    from udifftext.lit.unet_module import run_unet_stage

    out = tmp_path_factory.mktemp("base")
    cfg = tiny(out, "unet.mode=base", "optim.lr=2e-3", "train.max_steps=30", "train.log_every=1")
    cfg.train.val_every, cfg.train.ckpt_every = 30, 30
    return out, run_unet_stage(cfg, "cpu", 1)


def test_base_pretraining_dsm_goes_down_and_exports(base_run):
    out, summary = base_run
    assert summary["global_step"] == 30 and summary["trainable"]["share"] == 1.0
    dsm = logged(out, "loss/dsm")
    assert len(dsm) == 30
    assert sum(dsm[-8:]) / 8 < 0.7 * sum(dsm[:8]) / 8
    assert (out / "val" / "step=30.png").is_file()
    assert not (out / "val" / "step=30_attn.png").exists()  # base mode has no text attention
    assert (out / "pipeline" / "model.yaml").is_file() and (out / "pipeline" / "unet.safetensors").is_file()


def test_text_stage_from_the_base_folder_resumes_and_exports(base_run, tmp_path):
    from udifftext.checkpoint import load_pipeline_folder
    from udifftext.lit.unet_module import run_unet_stage

    base_dir, _ = base_run
    overrides = [f"unet.base_weights={base_dir / 'pipeline'}", "train.log_every=1", "train.ckpt_every=2"]
    first = run_unet_stage(tiny(tmp_path, *overrides, "train.max_steps=2", "train.val_every=2"), "cpu", 1)
    assert first["global_step"] == 2 and 0 < first["trainable"]["share"] < 0.2
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["state_dict"] and all((".attn2." in k or ".norm2." in k) for k in ckpt["state_dict"])
    assert (tmp_path / "checkpoints" / "unet_trainable.safetensors").is_file()
    assert (tmp_path / "val" / "step=2_attn.png").is_file()
    saved = {k: v.clone() for k, v in ckpt["state_dict"].items()}

    cfg = tiny(tmp_path, *overrides, "train.max_steps=4", "train.val_every=100")
    second = run_unet_stage(cfg, "cpu", 1)  # resumes from last.ckpt
    assert second["global_step"] == 4 and second["steps_this_launch"] == 2
    assert len(logged(tmp_path, "loss/dsm")) == 4  # steps 1-2 from the first launch, 3-4 from the second
    from safetensors.torch import load_file

    state = load_pipeline_folder(tmp_path / "pipeline").unet.state_dict()
    trained = load_file(tmp_path / "checkpoints" / "unet_trainable.safetensors")  # written at step 4
    assert set(trained) == {k.removeprefix("unet.") for k in saved}
    assert all(torch.equal(state[k], v) for k, v in trained.items())
    assert any(not torch.equal(trained[k.removeprefix("unet.")], v) for k, v in saved.items())  # it trained on
    base = load_pipeline_folder(base_dir / "pipeline").unet.state_dict()
    frozen = [k for k in base if k not in trained]
    assert frozen and all(torch.equal(state[k], base[k]) for k in frozen)

    from udifftext.lit.unet_module import LitUDiffText

    trained_file = tmp_path / "checkpoints" / "unet_trainable.safetensors"
    for init in (trained_file, tmp_path / "pipeline"):
        module = LitUDiffText(tiny(tmp_path / "again", *overrides, f"init_from={init}"))
        again = module.unet.state_dict()
        assert all(torch.equal(again[k], v) for k, v in state.items()), init
    with pytest.raises(KeyError, match="missing"):  # full training needs every UNet weight
        LitUDiffText(tiny(tmp_path / "full", *overrides, "trainable=full", f"init_from={trained_file}"))

    # init_fresh_cross_attention: the char cross-attention stays as a fresh build makes it, all else is init_from's
    torch.manual_seed(0)
    built = LitUDiffText(tiny(tmp_path / "fresh", *overrides)).unet
    fresh, attention = built.state_dict(), set(built.cross_attention_parameter_names())
    for init in (trained_file, tmp_path / "pipeline"):
        torch.manual_seed(0)
        cfg = tiny(tmp_path / "again", *overrides, f"init_from={init}", "init_fresh_cross_attention=true")
        again = LitUDiffText(cfg).unet.state_dict()
        assert attention and all(torch.equal(again[k], fresh[k]) for k in attention), init
        assert any(not torch.equal(again[k], state[k]) for k in attention), init
        assert all(torch.equal(again[k], v) for k, v in state.items() if k not in attention), init


def _dataset(cfg):
    from udifftext.data.datasets import build_dataset

    return build_dataset(cfg.data)


def _collate():
    from udifftext.data.datasets import collate_batch

    return collate_batch


def test_ocr_loss_gradient_reaches_the_new_cross_attention(tmp_path):
    from udifftext.lit.unet_module import LitUDiffText

    # a random recognizer's CE (~ln 95) is above upstream's clamp of 1.0, where the clamp passes no gradient
    cfg = tiny(tmp_path, "loss.ocr_enabled=true", "loss.ocr_ce_clamp=100", "loss.local_enabled=false")
    cfg.diffusion.uncond_prob = 0.0
    torch.manual_seed(0)
    module = LitUDiffText(cfg)
    batch = next(iter(torch.utils.data.DataLoader(_dataset(cfg), 2, collate_fn=_collate())))
    terms = module.losses(batch, torch.Generator().manual_seed(0))
    assert set(terms) == {"loss/dsm", "loss/ocr", "loss"} and terms["loss/ocr"] <= cfg.loss.ocr_ce_clamp
    terms["loss/ocr"].backward()
    grads = {n: p.grad for n, p in module.unet.named_parameters() if p.requires_grad}
    assert grads and all(".attn2." in n or ".norm2." in n for n in grads)
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.endswith("to_out.0.weight"))
    assert not any(p.grad is not None for p in module.recognizer.parameters())


def test_local_loss_is_logged_and_skips_dropped_samples(tmp_path):
    from udifftext.lit.unet_module import LitUDiffText

    cfg = tiny(tmp_path, "diffusion.uncond_prob=1.0")
    module = LitUDiffText(cfg)
    batch = next(iter(torch.utils.data.DataLoader(_dataset(cfg), 2, collate_fn=_collate())))
    terms = module.losses(batch, torch.Generator().manual_seed(0))
    assert terms["loss/local"].item() == 0  # every sample unconditional: no attention target
    cfg = tiny(tmp_path, "diffusion.uncond_prob=0")
    terms = LitUDiffText(cfg).losses(batch, torch.Generator().manual_seed(0))
    assert terms["loss/local"].item() != 0
    torch.testing.assert_close(terms["loss"], terms["loss/dsm"] + 0.01 * terms["loss/local"])


@pytest.mark.parametrize("ink_prob, margin", [(0.0, 0.0), (1.0, 0.0), (0.0, 0.2)])
def test_glyph_ink_prob_feeds_the_targets_own_ink(tmp_path, ink_prob, margin):
    """glyph_ink_prob=1 trains on the union of the character masks, 0 on the plain-font render in the box, drawn
    with the blank border of unet.glyph_margin as the sampler draws it with sample.glyph_margin."""
    from udifftext.lit.unet_module import LitUDiffText
    from udifftext.pipeline import glyph_canvas

    overrides = ["unet.glyph_channel=true", "unet.in_channels=8", f"unet.glyph_ink_prob={ink_prob}"]
    cfg = tiny(tmp_path, *overrides, f"unet.glyph_margin={margin}")
    module = LitUDiffText(cfg)
    batch = next(iter(torch.utils.data.DataLoader(_dataset(cfg), 2, collate_fn=_collate())))
    seen = []
    forward = module.unet.forward
    module.unet.forward = lambda *args: seen.append(args[5]) or forward(*args)
    module.losses(batch, torch.Generator().manual_seed(0))
    ink = batch["char_seg"].amax(dim=1, keepdim=True)  # (B, 1, R, R)
    masks = [m[0].numpy() > 0.5 for m in batch["mask"]]
    pairs = list(zip(batch["text"], masks, strict=True))
    render = torch.stack([torch.from_numpy(glyph_canvas(t, m, "text", margin)) for t, m in pairs])
    unpadded = torch.stack([torch.from_numpy(glyph_canvas(t, m)) for t, m in pairs])
    assert ink.sum() > 0 and not torch.equal(ink, render[:, None])
    assert torch.equal(render, unpadded) == (margin == 0)
    torch.testing.assert_close(seen[0], ink if ink_prob else render[:, None])


def test_glyph_drop_prob_one_makes_a_token_only_twin(tmp_path):
    """glyph_drop_prob=1 empties the glyph in training (ink included), in validation sampling and in the exported
    pipeline, so a glyph model fine-tuned this way is judged on its text path alone."""
    from udifftext.lit.unet_module import LitUDiffText, export_pipeline
    from udifftext.pipeline import UDiffTextPipeline

    overrides = ["unet.glyph_channel=true", "unet.in_channels=8", "unet.glyph_ink_prob=1.0"]
    batch = None
    for drop, empty in ((0.0, False), (1.0, True)):
        module = LitUDiffText(tiny(tmp_path, *overrides, f"unet.glyph_drop_prob={drop}"))
        batch = batch or next(iter(torch.utils.data.DataLoader(_dataset(module.cfg), 2, collate_fn=_collate())))
        seen = []
        forward = module.unet.forward
        module.unet.forward = lambda *args, forward=forward, seen=seen: seen.append(args[5]) or forward(*args)
        module.losses(batch, torch.Generator().manual_seed(0))
        module.cfg.val_steps = 1
        module.sample(batch, torch.Generator().manual_seed(0))
        assert len(seen) >= 2 and all(bool(g.abs().sum() == 0) == empty for g in seen), drop
    pipe = UDiffTextPipeline.from_pretrained(export_pipeline(module, tmp_path / "twin"))
    crop_mask = np.zeros((32, 32), bool)
    crop_mask[10:20, 4:28] = True
    cond = pipe._condition(np.full((32, 32, 3), 128, np.uint8), crop_mask, "ab")
    assert cond.glyph.shape[1] == 1 and cond.glyph.abs().sum() == 0


def test_sample_config_picks_the_glyph_font_and_margin(tmp_path):
    """The exported glyph pipeline draws its glyph channel as SampleConfig says (glyph_font, glyph_margin)."""
    from udifftext.config import SampleConfig
    from udifftext.lit.unet_module import LitUDiffText, export_pipeline
    from udifftext.pipeline import UDiffTextPipeline, glyph_canvas

    module = LitUDiffText(tiny(tmp_path, "unet.glyph_channel=true", "unet.in_channels=8"))
    pipe = UDiffTextPipeline.from_pretrained(export_pipeline(module, tmp_path / "glyph"))
    crop_mask = np.zeros((32, 32), bool)
    crop_mask[8:24, 2:30] = True
    crop = np.full((32, 32, 3), 128, np.uint8)
    mono = "data/fonts/liberation/LiberationMono-Regular.ttf"
    glyphs = {}
    for font in (SampleConfig.glyph_font, mono):
        cond = pipe._condition(crop, crop_mask, "Il0", SampleConfig(glyph_font=font, glyph_margin=0.15))
        glyphs[font] = cond.glyph[0, 0]
        torch.testing.assert_close(glyphs[font], torch.from_numpy(glyph_canvas("Il0", crop_mask, "text", 0.15, font)))
    assert (glyphs[mono] - glyphs[SampleConfig.glyph_font]).abs().mean() > 0.02


def test_glyph_drop_prob_and_margin_need_the_glyph_channel_and_a_range(tmp_path):
    """Refused when the module is built, not at the first training batch."""
    from udifftext.lit.unet_module import LitUDiffText

    with pytest.raises(ValueError, match="glyph_drop_prob"):
        LitUDiffText(tiny(tmp_path, "unet.glyph_drop_prob=1.0"))
    with pytest.raises(ValueError, match="glyph_margin"):
        LitUDiffText(tiny(tmp_path, "unet.glyph_margin=0.1"))
    glyph = ["unet.glyph_channel=true", "unet.in_channels=8"]
    with pytest.raises(ValueError, match=r"glyph_margin must be in \[0, 0.5\)"):
        LitUDiffText(tiny(tmp_path, *glyph, "unet.glyph_margin=0.5"))


def test_position_glyph_trains_and_samples_with_the_ramp(tmp_path):
    """unet.glyph_content=position feeds the word-position ramp in training, validation sampling and the exported
    pipeline; it cannot be combined with the ink glyph, and an unknown content is refused."""
    from udifftext.lit.unet_module import LitUDiffText, export_pipeline
    from udifftext.pipeline import UDiffTextPipeline, glyph_canvas

    overrides = ["unet.glyph_channel=true", "unet.in_channels=8", "unet.glyph_content=position"]
    module = LitUDiffText(tiny(tmp_path, *overrides))
    batch = next(iter(torch.utils.data.DataLoader(_dataset(module.cfg), 2, collate_fn=_collate())))
    ramps = torch.stack(
        [
            torch.from_numpy(glyph_canvas(t, m[0].numpy() > 0.5, "position"))
            for t, m in zip(batch["text"], batch["mask"], strict=True)
        ]
    )[:, None]  # (B, 1, R, R)
    seen = []
    forward = module.unet.forward
    module.unet.forward = lambda *args: seen.append(args[5]) or forward(*args)
    terms = module.losses(batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(terms["loss"])
    module.cfg.val_steps = 1
    module.sample(batch, torch.Generator().manual_seed(0))
    assert len(seen) >= 2 and ramps.amax() > 0.5
    for glyph in seen:
        torch.testing.assert_close(glyph[: len(ramps)], ramps)
    pipe = UDiffTextPipeline.from_pretrained(export_pipeline(module, tmp_path / "position"))
    crop_mask = np.zeros((32, 32), bool)
    crop_mask[10:20, 4:28] = True
    cond = pipe._condition(np.full((32, 32, 3), 128, np.uint8), crop_mask, "ab")
    torch.testing.assert_close(cond.glyph[0, 0], torch.from_numpy(glyph_canvas("ab", crop_mask, "position")))
    with pytest.raises(ValueError, match="glyph_content='text'"):
        LitUDiffText(tiny(tmp_path, *overrides, "unet.glyph_ink_prob=1.0"))
    with pytest.raises(ValueError, match="unet.glyph_content must be one of"):
        LitUDiffText(tiny(tmp_path, "unet.glyph_channel=true", "unet.in_channels=8", "unet.glyph_content=ink"))


def test_mask_padding_reaches_every_unet_call(tmp_path):
    """unet.mask_padding: training, validation sampling and the exported pipeline (noise selection, refinement,
    the guided CFG batch) all give the UNet the word's characters as its context mask; L_loc resizes per config."""
    from PIL import Image

    from udifftext.config import NoiseSelectionConfig, RefinementConfig
    from udifftext.lit.unet_module import LitUDiffText, export_pipeline
    from udifftext.pipeline import UDiffTextPipeline
    from udifftext.sampling.regions import parse_box

    module = LitUDiffText(tiny(tmp_path, "unet.mask_padding=true", "loss.local_mask_resize=cover"))
    batch = next(iter(torch.utils.data.DataLoader(_dataset(module.cfg), 2, collate_fn=_collate())))
    chars = batch["char_seg_mask"]  # (B, L)
    assert 0 < chars.sum(1).min() and chars.sum(1).max() < chars.shape[1]
    seen = []
    forward = module.unet.forward
    module.unet.forward = lambda *args: seen.append(args[6]) or forward(*args)
    terms = module.losses(batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(terms["loss"]) and terms["loss/local"] != 0
    module.cfg.val_steps = 1
    module.sample(batch, torch.Generator().manual_seed(0))
    assert len(seen) == 2
    torch.testing.assert_close(seen[0], chars)
    torch.testing.assert_close(seen[1], torch.cat([chars, chars]))  # [uncond; cond]
    module.unet.forward = forward
    pipe = UDiffTextPipeline.from_pretrained(export_pipeline(module, tmp_path / "masked"))
    assert pipe.unet.mask_padding
    seen.clear()
    forward = pipe.unet.forward
    pipe.unet.forward = lambda *args: seen.append(args[6]) or forward(*args)
    cfg = SampleConfig(
        steps=2,
        noise_selection=NoiseSelectionConfig(candidates=2, steps=1, chunk_size=2),
        refinement=RefinementConfig(enabled=True, iterative_steps=[1], thresholds=[-10.0], max_iters=1),
    )
    pipe(Image.new("RGB", (64, 64), "white"), [parse_box("8,20,56,40")], ["Hey"], cfg)
    assert len(seen) >= 4  # selection, refinement, denoising
    for mask in seen:
        assert mask.shape[1] == 12 and torch.equal(mask, mask[:1].expand_as(mask))
        assert mask[0].tolist() == [1.0] * 3 + [0.0] * 9
    with pytest.raises(ValueError, match="local_mask_resize must be one of"):
        LitUDiffText(tiny(tmp_path, "loss.local_mask_resize=bilinear"))


def test_rectified_crops_train_and_export(tmp_path):
    """data.crop_width trains on R x crop_width crops end to end (losses, validation images, export) and the
    exported pipeline samples at that shape."""
    from udifftext.lit.unet_module import run_unet_stage
    from udifftext.pipeline import UDiffTextPipeline

    overrides = ["data.resolution=16", "data.crop_width=48", "unet.sample_size=16", "unet.glyph_channel=true"]
    overrides += ["unet.in_channels=8", "unet.glyph_ink_prob=1.0", "train.max_steps=2", "train.val_every=2"]
    result = run_unet_stage(tiny(tmp_path, *overrides, "train.ckpt_every=2"), "cpu", 1)
    assert result["global_step"] == 2 and torch.isfinite(torch.tensor(result["metrics"]["loss"]))
    assert (tmp_path / "val" / "step=2.png").exists()
    pipe = UDiffTextPipeline.from_pretrained(tmp_path / "pipeline")
    assert pipe.cfg.data.crop_width == 48 and pipe.sampling_shape(SampleConfig()) == (16, 48)


def test_glyph_ink_prob_needs_the_glyph_channel(tmp_path):
    from udifftext.lit.unet_module import LitUDiffText

    with pytest.raises(ValueError, match="glyph_ink_prob"):
        LitUDiffText(tiny(tmp_path, "unet.glyph_ink_prob=0.5"))


def test_script_help_is_fast_and_bad_input_exits_2(tmp_path):
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "scripts/train_unet.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "usage" in out.stdout and time.perf_counter() - start < 5
    bad = subprocess.run(
        [sys.executable, "scripts/train_unet.py", "--config", "configs/unet/tiny.yaml", "optim.lrr=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "optim.lrr" in bad.stderr


def test_script_missing_weights_exit_2_with_the_source(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import train_unet
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    argv = ["--config", "configs/unet/tiny.yaml", f"train.out_dir={tmp_path}"]
    argv.append(f"unet.base_weights={tmp_path / '512-inpainting-ema.ckpt'}")
    with pytest.raises(SystemExit) as exit_:
        train_unet.main(train_unet.parse_args(argv))
    assert exit_.value.code == 2
    assert "stabilityai/stable-diffusion-2-inpainting" in capsys.readouterr().err


def test_ema_weights_update_swap_and_reach_the_export(base_run, tmp_path):
    from safetensors.torch import load_file

    from udifftext.lit.unet_module import EmaWeights, run_unet_stage

    p = torch.nn.Parameter(torch.zeros(3))
    ema = EmaWeights({"w.x": p}, decay=0.9)
    with torch.no_grad():
        p.fill_(1.0)
    ema.update({"w.x": p})
    torch.testing.assert_close(ema.w__x, torch.full((3,), 0.1))
    ema.swap({"w.x": p})
    assert torch.allclose(p, torch.full((3,), 0.1)) and torch.equal(ema.w__x, torch.ones(3))
    with pytest.raises(ValueError, match="ema_decay"):
        EmaWeights({"w.x": p}, decay=1.0)

    base_dir, _ = base_run
    overrides = [f"unet.base_weights={base_dir / 'pipeline'}", "ema_decay=0.5", "train.ckpt_every=2"]
    run_unet_stage(tiny(tmp_path, *overrides, "train.max_steps=2", "train.val_every=2"), "cpu", 1)
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    live = {k.removeprefix("unet."): v for k, v in state.items() if k.startswith("unet.")}
    averaged = {k.removeprefix("ema.").replace("__", "."): v for k, v in state.items() if k.startswith("ema.")}
    assert live.keys() == averaged.keys() and any(not torch.equal(live[k], averaged[k]) for k in live)
    exported = load_file(tmp_path / "pipeline" / "unet.safetensors")
    assert all(torch.equal(exported[k], v) for k, v in averaged.items())
    resumed = run_unet_stage(tiny(tmp_path, *overrides, "train.max_steps=3", "train.val_every=100"), "cpu", 1)
    assert resumed["global_step"] == 3 and resumed["steps_this_launch"] == 1
    overrides[1] = "ema_decay=0"  # EMA switched off at resume: dropped; switched on: starts from the weights
    assert run_unet_stage(tiny(tmp_path, *overrides, "train.max_steps=4"), "cpu", 1)["global_step"] == 4
    overrides[1] = "ema_decay=0.9"
    assert run_unet_stage(tiny(tmp_path, *overrides, "train.max_steps=5"), "cpu", 1)["global_step"] == 5


def test_random_char_encoder_is_the_same_in_every_launch(tmp_path):
    """A frozen, not pretrained char encoder (the ablation) is drawn from train.seed, not the launch's stream: a
    resumed launch reseeds, and its checkpoint holds only the trained UNet weights."""
    from udifftext.lit.unet_module import LitUDiffText

    def encoder_after(global_seed: int, *overrides: str) -> dict:
        torch.manual_seed(global_seed)
        return LitUDiffText(tiny(tmp_path, "text_encoder.weights=''", *overrides)).text_encoder.state_dict()

    first, resumed, other = encoder_after(0), encoder_after(1), encoder_after(0, "train.seed=7")
    assert all(torch.equal(first[k], resumed[k]) for k in first)
    assert not torch.equal(first["label_embedding.weight"], other["label_embedding.weight"])

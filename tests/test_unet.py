"""TextUNet: cross-attention replacement, trainable selection, input accounting, attention capture."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from udifftext.config import UNetStageConfig, load_config
from udifftext.io import MissingWeightsError, save_state_dict
from udifftext.unet import AttentionStore, build_unet, install_attention_capture, set_trainable

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(*overrides: str) -> UNetStageConfig:
    return load_config(UNetStageConfig, ROOT / "configs/unet/tiny.yaml", list(overrides))


def inputs(B=2, C=3, h=32, w=32, L=12, W=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    noisy = torch.randn(B, C, h, w, generator=g)
    mask = torch.zeros(B, 1, h, w)
    mask[..., h // 4 : h // 2, w // 8 : 7 * w // 8] = 1
    masked = torch.randn(B, C, h, w, generator=g) * (1 - mask)
    context = torch.randn(B, L, W, generator=g)
    t = torch.tensor([10, 700])[:B]
    return noisy, t, context, mask, masked


def test_new_cross_attention_starts_exactly_at_the_base_model(tmp_path):
    torch.manual_seed(0)
    base = build_unet(tiny_cfg("unet.mode=base"))
    save_state_dict(base.state_dict(), tmp_path / "base.safetensors")
    torch.manual_seed(1)
    model = build_unet(tiny_cfg(f"unet.base_weights={tmp_path / 'base.safetensors'}"))
    noisy, t, context, mask, masked = inputs()
    with torch.no_grad():
        want = base(noisy, t, None, mask, masked)
        got = model(noisy, t, context, mask, masked)
        other_text = model(noisy, t, torch.randn_like(context), mask, masked)
    assert torch.equal(got, want)
    assert torch.equal(other_text, want)  # zero-initialised output projection: text has no effect yet
    for name in model.cross_attention_blocks:
        block = model.unet.get_submodule(name)
        assert block.attn2.to_k.bias is None and block.attn2.to_k.in_features == 32
        assert torch.count_nonzero(block.attn2.to_out[0].weight) == 0


def test_base_weights_from_a_diffusers_folder_load_strictly(tmp_path):
    torch.manual_seed(0)
    base = build_unet(tiny_cfg("unet.mode=base"))
    base.unet.save_pretrained(tmp_path / "sd" / "unet", safe_serialization=True)
    model = build_unet(tiny_cfg(f"unet.base_weights={tmp_path / 'sd'}"))
    assert torch.equal(model.unet.conv_in.weight, base.unet.conv_in.weight)


def test_base_weights_with_sd_cross_attention_drop_only_the_replaced_keys(tmp_path):
    """An SD-2-like state has attn2/norm2 of width base_cross_attention_dim: those keys alone are discarded."""
    from diffusers import UNet2DConditionModel

    from udifftext.unet.model import diffusers_unet_kwargs

    cfg = tiny_cfg()
    torch.manual_seed(0)
    sd = UNet2DConditionModel(**diffusers_unet_kwargs(cfg))
    state = sd.state_dict()
    assert any(".attn2.to_k." in k for k in state)
    save_state_dict(state, tmp_path / "sd.safetensors")
    model = build_unet(replace(cfg, unet=replace(cfg.unet, base_weights=str(tmp_path / "sd.safetensors"))))
    block = model.cross_attention_blocks[0]
    assert torch.equal(model.unet.get_submodule(block).attn1.to_q.weight, sd.get_submodule(block).attn1.to_q.weight)
    state.pop("conv_in.bias")
    save_state_dict(state, tmp_path / "broken.safetensors")
    with pytest.raises(KeyError, match="conv_in.bias"):
        build_unet(replace(cfg, unet=replace(cfg.unet, base_weights=str(tmp_path / "broken.safetensors"))))


def test_missing_base_weights_name_the_source(tmp_path):
    with pytest.raises(MissingWeightsError, match="stabilityai/stable-diffusion-2-inpainting"):
        build_unet(tiny_cfg(f"unet.base_weights={tmp_path / '512-inpainting-ema.ckpt'}"))


def test_cross_attention_only_step_leaves_everything_else_bit_identical():
    torch.manual_seed(0)
    model = build_unet(tiny_cfg())
    report = set_trainable(model, "cross_attention")
    assert 0 < report["trainable"] < report["total"]
    trainable = set(model.cross_attention_parameter_names())
    assert all((".attn2." in n or ".norm2." in n) for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    noisy, t, context, mask, masked = inputs()
    model(noisy, t, context, mask, masked).square().mean().backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable
    assert any(n.endswith("attn2.to_out.0.weight") for n in changed)


def test_trainable_modes():
    model = build_unet(tiny_cfg())
    full = set_trainable(model, "full")
    assert full["share"] == 1.0
    with pytest.raises(ValueError, match="trainable"):
        set_trainable(model, "everything")
    with pytest.raises(ValueError, match="base mode"):
        set_trainable(build_unet(tiny_cfg("unet.mode=base")), "cross_attention")


def test_in_channel_accounting_errors():
    accounting = r"unet.in_channels=7, expected 8 \(noisy 3 \+ mask 1 \+ masked 3 \+ glyph 1\)"
    with pytest.raises(ValueError, match=accounting):
        build_unet(tiny_cfg("unet.glyph_channel=true"))
    with pytest.raises(ValueError, match="unet.out_channels=3, expected 4"):
        build_unet(tiny_cfg("first_stage.kind=vae", "unet.in_channels=9"))
    model = build_unet(tiny_cfg())
    noisy, t, context, mask, masked = inputs()
    with pytest.raises(ValueError, match="glyph must be None"):
        model(noisy, t, context, mask, masked, glyph=mask)
    with pytest.raises(ValueError, match="context must have shape"):
        model(noisy, t, context[..., :16], mask, masked)
    with pytest.raises(ValueError, match="mask must have shape"):
        model(noisy, t, context, mask[:, :, :16], masked)


def test_pixel_unshuffle_stem_with_glyph_channel():
    cfg = tiny_cfg("unet.stem=pixel_unshuffle", "unet.glyph_channel=true", "unet.in_channels=8")
    model = build_unet(cfg)
    assert model.unet.config.in_channels == 32 and model.unet.config.out_channels == 12
    noisy, t, context, mask, masked = inputs()
    with torch.no_grad():
        out = model(noisy, t, context, mask, masked, glyph=mask)
    assert out.shape == noisy.shape
    with pytest.raises(ValueError, match="multiple of 4"):
        model(noisy[..., :30, :30], t, context, mask[..., :30, :30], masked[..., :30, :30], glyph=mask[..., :30, :30])


def test_attention_store_shapes_gradients_and_fallback():
    torch.manual_seed(0)
    cfg = tiny_cfg("unet.block_out_channels=[32,64,64]", "unet.head_dim=16")
    cfg.unet.down_block_types = ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]
    cfg.unet.up_block_types = ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]
    model = build_unet(cfg)
    with torch.no_grad():  # give the text a visible effect
        for name in model.cross_attention_blocks:
            torch.nn.init.normal_(model.unet.get_submodule(name).attn2.to_out[0].weight, std=0.1)
    noisy, t, context, mask, masked = inputs(h=32, w=64)
    plain = model(noisy, t, context, mask, masked)
    store = AttentionStore(max_len=10, min_size=16)
    names = install_attention_capture(model, store)
    assert names and not any(n.startswith("mid_block") for n in names)
    out = model(noisy, t, context, mask, masked)
    torch.testing.assert_close(out, plain, rtol=1e-4, atol=1e-5)
    maps = store.maps()
    # 32x64 input: level 1 is 16x32 (kept: side 16 >= 16), level 2 is 8x16 (skipped)
    assert [tuple(m.shape) for m in maps] == [(2, 10, 16, 32)] * 3
    assert all(name.startswith(("down_blocks.1", "up_blocks.1")) for name in store.names())
    assert torch.all(maps[0].sum(1) <= 1 + 1e-5) and torch.all(maps[0] >= 0)  # first 10 of 12 token probabilities
    maps[0].sum().backward()
    block = model.unet.get_submodule(store.names()[0].removesuffix(".attn2"))
    assert block.attn2.to_k.weight.grad.abs().sum() > 0
    store.clear()
    assert store.maps() == []
    store.enabled = False
    with torch.no_grad():
        fast = model(noisy, t, context, mask, masked)
    assert store.maps() == []
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)


def test_gradient_checkpointing_with_capture_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = build_unet(tiny_cfg(f"train.gradient_checkpointing={checkpointing}"))
        assert model.unet.is_gradient_checkpointing == checkpointing
        set_trainable(model, "full")
        store = AttentionStore(max_len=12, min_size=8)
        install_attention_capture(model, store)
        noisy, t, context, mask, masked = inputs()
        store.enabled = True
        out = model(noisy, t, context, mask, masked)
        store.enabled = False
        (out.square().mean() + sum(m.square().mean() for m in store.maps())).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=1e-4, atol=1e-6)


def test_mask_padding_keeps_the_cross_attention_on_the_words_characters():
    torch.manual_seed(0)
    cfg = tiny_cfg("unet.mask_padding=true")
    model = build_unet(cfg)
    with torch.no_grad():  # give the text a visible effect
        for name in model.cross_attention_blocks:
            torch.nn.init.normal_(model.unet.get_submodule(name).attn2.to_out[0].weight, std=0.1)
    store = AttentionStore(max_len=12, min_size=8)
    install_attention_capture(model, store)
    noisy, t, context, mask, masked = inputs()
    chars = torch.zeros(2, 12)
    chars[0, :3], chars[1, :7] = 1, 1  # words of 3 and 7 characters
    out = model(noisy, t, context, mask, masked, context_mask=chars)
    maps = store.maps()
    assert maps
    for m in maps:  # all probability on the characters, none on the padding
        torch.testing.assert_close(m.sum(1), torch.ones_like(m[:, 0]), rtol=0, atol=1e-5)
        assert m[0, 3:].abs().max() == 0 and m[1, 7:].abs().max() == 0
    padding_changed = torch.where(chars[..., None] > 0, context, torch.randn_like(context))
    store.clear()
    same = model(noisy, t, padding_changed, mask, masked, context_mask=chars)
    torch.testing.assert_close(same, out, rtol=0, atol=1e-6)  # the padding tokens are never read
    unmasked = build_unet(tiny_cfg())
    unmasked.load_state_dict(model.state_dict())
    reads_padding = unmasked(noisy, t, padding_changed, mask, masked, context_mask=chars)
    assert (reads_padding - unmasked(noisy, t, context, mask, masked)).abs().max() > 1e-4  # mask ignored there
    zeros = torch.zeros_like(context)  # the unconditional context: every key equal, any mask reads the same
    no_chars = torch.zeros_like(chars)  # a row without characters reads every token instead of none
    torch.testing.assert_close(
        model(noisy, t, zeros, mask, masked, context_mask=no_chars),
        model(noisy, t, zeros, mask, masked, context_mask=chars),
        rtol=0,
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="mask_padding needs context_mask"):
        model(noisy, t, context, mask, masked)

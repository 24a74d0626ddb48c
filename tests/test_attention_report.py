"""The attention report: where the char cross-attention looks, and whether L_loc can move it."""

from pathlib import Path

import pytest
import torch

from udifftext.config import UNetStageConfig, load_config
from udifftext.lit.attention_report import (
    attention_report,
    character_share,
    flat_mask_share,
    markdown,
    own_mask_share,
    report_for_config,
    training_samples,
)
from udifftext.losses import resize_char_masks

ROOT = Path(__file__).resolve().parents[1]
FAST = ["data.resolution=32", "unet.sample_size=32", "loss.min_attn_size=2"]

pytestmark = pytest.mark.usefixtures("one_thread")


def test_character_share_counts_only_the_words_tokens():
    attn = torch.zeros(2, 4, 2, 2)
    attn[0, 0], attn[0, 3] = 0.25, 0.75  # word "a": a quarter on its character, the rest on padding
    attn[1, :2] = 0.5  # word "ab": everything on its two characters
    chars = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0]])
    torch.testing.assert_close(character_share(attn, chars), torch.tensor([0.25, 1.0]))


def test_own_mask_share_measures_localisation():
    seg = torch.zeros(1, 3, 8, 8)
    seg[0, 0, :, :4], seg[0, 1, :, 4:] = 1, 1  # two characters, left and right halves; token 2 is padding
    chars = torch.tensor([[1, 1, 0]])
    inside = seg / 32  # each character's attention spread over its own half
    flat = torch.full((1, 3, 8, 8), 1 / 64)
    swapped = seg[:, [1, 0, 2]] / 32  # each character looks at the other's half
    torch.testing.assert_close(own_mask_share(inside, seg, chars), torch.tensor([1.0]))
    torch.testing.assert_close(own_mask_share(flat, seg, chars), torch.tensor([0.5]))
    torch.testing.assert_close(own_mask_share(swapped, seg, chars), torch.tensor([0.0]))
    torch.testing.assert_close(flat_mask_share(resize_char_masks(seg, (4, 4), "cover"), chars), torch.tensor([0.5]))
    assert own_mask_share(flat, torch.zeros_like(seg), chars).isnan().all()  # no masks: nothing to measure


def test_report_of_a_uniform_attention(tmp_path):
    """Zero query weights make every softmax uniform: the share is exactly n / L and L_loc's gradient reaches the
    queries (the parked case is the shipped default's, below)."""
    from udifftext.lit.unet_module import LitUDiffText

    torch.manual_seed(0)
    cfg = load_config(UNetStageConfig, ROOT / "configs/unet/tiny.yaml", [*FAST, f"train.out_dir={tmp_path}"])
    module = LitUDiffText(cfg).eval()
    batch = training_samples(cfg, 3)
    layers = [m for n, m in module.unet.unet.named_modules() if n.endswith("attn2") and not n.startswith("mid")]
    with torch.no_grad():
        for layer in layers:
            layer.to_q.weight.zero_()
    uniform = attention_report(module, batch, timestep=500)
    assert len(uniform) == len(layers) and "share on characters" in markdown(uniform)
    for row in uniform:
        assert row["char_share"] == pytest.approx(row["uniform_share"], abs=1e-5)
        assert 0 < row["uniform_share"] < 1 and row["l_loc_grad_qk"] > 1e-6
        assert row["own_mask_share"] == pytest.approx(row["flat_mask_share"], abs=1e-5)  # flat over space
        assert 0 < row["flat_mask_share"] < 0.5


def test_the_shipped_glyph_model_parks_its_text_attention_on_padding(tmp_path):
    """The finding docs/results.md builds on: the default (a glyph model) gives its words' characters almost none
    of the attention a uniform softmax would, and L_loc's gradient on most layers' queries and keys is ~0; fresh
    cross-attention on the same UNet starts near uniform, with a gradient orders of magnitude larger."""
    overrides = ["init_from=checkpoints/default", f"train.out_dir={tmp_path}"]
    cfg = load_config(UNetStageConfig, ROOT / "configs/unet/small_rect_ink.yaml", overrides)
    parked = report_for_config(cfg, samples=4, timestep=500, seed=0)
    cfg.init_fresh_cross_attention = True
    fresh = report_for_config(cfg, samples=4, timestep=500, seed=0)
    assert len(parked) == len(fresh) == 6
    for p, f in zip(parked, fresh, strict=True):
        assert p["char_share"] < 0.1 * p["uniform_share"] and f["char_share"] > 0.5 * f["uniform_share"]
    assert sum(p["l_loc_grad_qk"] for p in parked) < 0.1 * sum(f["l_loc_grad_qk"] for f in fresh)

"""Base weights in the LDM single-file layout (512-inpainting-ema.ckpt) go through diffusers' conversion.

The real file is 5 GB and not on this machine, so the test writes a tiny UNet's weights under the LDM
key names (the inverse of diffusers' renaming, spelled out below) and checks they load back exactly.
"""

import re
from pathlib import Path

import pytest
import torch

from udifftext.config import UNetStageConfig, load_config
from udifftext.unet import build_unet

ROOT = Path(__file__).resolve().parents[1]
RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3"}
RESNET |= {"time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2"}
TOP |= {"conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}


pytestmark = pytest.mark.usefixtures("one_thread")


def to_ldm(key: str, per_block: int, up_has_attention: list[bool]) -> str:
    """One diffusers UNet key -> its name in an LDM/sgm checkpoint (`model.diffusion_model.*`)."""
    n = per_block + 1
    for old, new in TOP.items():
        if key.startswith(old + "."):
            return new + key[len(old) :]
    m = re.match(r"(down|up)_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)
    if m:
        side, b, kind, i, rest = m.groups()
        index = 1 + int(b) * n + int(i) if side == "down" else int(b) * n + int(i)
        if kind == "resnets":
            first, _, tail = rest.partition(".")
            rest = f"{RESNET[first]}.{tail}"
        return f"{'input' if side == 'down' else 'output'}_blocks.{index}.{0 if kind == 'resnets' else 1}.{rest}"
    m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key)
    if m:
        return f"input_blocks.{(int(m[1]) + 1) * n}.0.op.{m[2]}"
    m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key)
    if m:
        b = int(m[1])
        return f"output_blocks.{b * n + per_block}.{2 if up_has_attention[b] else 1}.conv.{m[2]}"
    m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key)
    kind, i, rest = m.groups()
    if kind == "resnets":
        first, _, tail = rest.partition(".")
        return f"middle_block.{2 * int(i)}.{RESNET[first]}.{tail}"
    return f"middle_block.1.{rest}"


def test_ldm_checkpoint_converts_and_loads(tmp_path):
    from diffusers import UNet2DConditionModel

    from udifftext.unet.model import diffusers_unet_kwargs

    cfg = load_config(UNetStageConfig, ROOT / "configs/unet/tiny.yaml", ["unet.layers_per_block=2"])
    torch.manual_seed(0)
    base = UNet2DConditionModel(**diffusers_unet_kwargs(cfg))  # SD-2's layout: text cross-attention of width 1024
    up_attention = ["CrossAttn" in t for t in cfg.unet.up_block_types]
    state = {"model.diffusion_model." + to_ldm(k, 2, up_attention): v for k, v in base.state_dict().items()}
    state["first_stage_model.encoder.conv_in.weight"] = torch.zeros(1)  # other parts of the single file
    torch.save({"state_dict": state}, tmp_path / "512-inpainting-ema.ckpt")
    cfg.unet.base_weights = str(tmp_path / "512-inpainting-ema.ckpt")
    model = build_unet(cfg)
    base_state = base.state_dict()
    for key, value in model.unet.state_dict().items():
        if not any(f".{m}." in key for m in ("attn2", "norm2")) or "resnets" in key:
            assert torch.equal(value, base_state[key]), key


def test_ldm_checkpoint_of_another_layout_names_keys_and_shapes(tmp_path):
    """The same layout check as scripts/convert_checkpoint.py: a cross-attention of the wrong width is refused."""
    cfg = load_config(UNetStageConfig, ROOT / "configs/unet/tiny.yaml", ["unet.layers_per_block=2"])
    torch.manual_seed(0)
    ours = build_unet(cfg)  # char cross-attention of width 32, not SD-2's 1024
    up_attention = ["CrossAttn" in t for t in cfg.unet.up_block_types]
    state = {"model.diffusion_model." + to_ldm(k, 2, up_attention): v for k, v in ours.unet.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "other.ckpt")
    cfg.unet.base_weights = str(tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match=r"attn2\.to_k\.weight: \(64, 32\) vs expected \(64, 1024\)"):
        build_unet(cfg)

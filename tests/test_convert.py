"""Conversion of SD-2-inpainting, upstream UDiffText, LabelEncoder and ViTSTR weights (issue 10).

No real weights here. Each test writes a checkpoint with the real upstream key names and shapes of a
reduced-width model of the same layout (4 UNet levels, 2 layers each, SD-2 block types; 4-level VAE),
converts it and compares every tensor and the outputs with a directly built model. The LDM names come
from the inverse of diffusers' renaming (`to_ldm_*` below), and are asserted equal, name for name and
shape for shape, to the layout derived from the upstream module code (`udifftext.convert.layouts`).
The full-size layouts are checked for key/shape coverage on the meta device.
"""

import importlib.util
import re
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from udifftext.checkpoint import load_pipeline_folder, save_pipeline_folder
from udifftext.config import UNetStageConfig, load_config
from udifftext.convert.build import convert_sd2, convert_upstream
from udifftext.convert.common import check_state
from udifftext.convert.layouts import label_encoder_layout, unet_layout, vae_layout, vitstr_layout
from udifftext.convert.sd2 import sd2_unet_state, vae_state
from udifftext.convert.upstream import label_encoder_state, upstream_unet_state
from udifftext.io import MissingWeightsError

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "configs/unet/paper.yaml"
NO_PATHS = ["unet.base_weights=''", "first_stage.weights=''", "text_encoder.weights=''"]
REDUCED = [
    "unet.block_out_channels=[32,64,64,64]",
    "unet.head_dim=16",
    "unet.sample_size=16",
    "unet.base_cross_attention_dim=24",
    "first_stage.block_out_channels=[32,32,64,64]",
    "text_encoder.width=32",
    "text_encoder.layers=2",
    "text_encoder.heads=2",
    "text_encoder.ff_dim=64",
    "recognizer.img_height=64",
    "recognizer.img_width=64",
    "recognizer.embed_dim=32",
    "recognizer.depth=2",
    "recognizer.heads=2",
    *NO_PATHS,
]
RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3"}
RESNET |= {"time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2"}
TOP |= {"conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}


def load_cli():
    spec = importlib.util.spec_from_file_location("convert_checkpoint", ROOT / "scripts/convert_checkpoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reduced_cfg() -> UNetStageConfig:
    return load_config(UNetStageConfig, PAPER, REDUCED)


def unet_kwargs(cfg):
    from udifftext.unet.model import diffusers_unet_kwargs

    return diffusers_unet_kwargs(cfg)


# --------------------------------------------------------------------------- inverse of diffusers' renaming


def to_ldm_unet(key: str, kw: dict, cross: tuple[str, str]) -> str:
    """A diffusers UNet key -> its sgm/LDM name; the blocks' attn2/norm2 are named `cross`."""
    n = kw["layers_per_block"] + 1
    up_attention = ["CrossAttn" in t for t in kw["up_block_types"]]
    key = re.sub(r"(transformer_blocks\.\d+\.)attn2\.", rf"\g<1>{cross[0]}.", key)
    key = re.sub(r"(transformer_blocks\.\d+\.)norm2\.", rf"\g<1>{cross[1]}.", key)
    for old, new in TOP.items():
        if key.startswith(old + "."):
            return new + key[len(old) :]

    def resnet(rest: str) -> str:
        first, _, tail = rest.partition(".")
        return f"{RESNET[first]}.{tail}"

    if m := re.match(r"(down|up)_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        side, b, kind, i, rest = m.groups()
        index = 1 + int(b) * n + int(i) if side == "down" else int(b) * n + int(i)
        rest = resnet(rest) if kind == "resnets" else rest
        return f"{'input' if side == 'down' else 'output'}_blocks.{index}.{0 if kind == 'resnets' else 1}.{rest}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"input_blocks.{(int(m[1]) + 1) * n}.0.op.{m[2]}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        b = int(m[1])
        return f"output_blocks.{b * n + n - 1}.{2 if up_attention[b] else 1}.conv.{m[2]}"
    m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key)
    kind, i, rest = m.groups()
    return f"middle_block.{2 * int(i)}.{resnet(rest)}" if kind == "resnets" else f"middle_block.1.{rest}"


def to_ldm_vae(key: str, value: torch.Tensor, levels: int) -> tuple[str, torch.Tensor]:
    """A diffusers AutoencoderKL key -> its LDM name (mid attention as 1x1 convs)."""
    key = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
    key = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", key)
    key = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", key)
    key = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", key)
    up = r"decoder\.up_blocks\.(\d+)\."
    key = re.sub(up + r"resnets\.", lambda m: f"decoder.up.{levels - 1 - int(m[1])}.block.", key)
    key = re.sub(up + r"upsamplers\.0\.", lambda m: f"decoder.up.{levels - 1 - int(m[1])}.upsample.", key)
    if "mid_block.attentions.0." in key:
        key = key.replace("mid_block.attentions.0.", "mid.attn_1.").replace("group_norm", "norm")
        key = re.sub(r"to_([qkv])\.", r"\1.", key).replace("to_out.0.", "proj_out.")
        if value.ndim == 2:
            value = value[:, :, None, None]  # LDM stores these projections as 1x1 convolutions
    return key, value


def ldm_unet(model_state: dict, kw: dict, cross: tuple[str, str]) -> dict[str, torch.Tensor]:
    return {"model.diffusion_model." + to_ldm_unet(k, kw, cross): v.clone() for k, v in model_state.items()}


def ldm_vae(vae_state_dict: dict, levels: int, prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v.clone() for k, v in (to_ldm_vae(k, v, levels) for k, v in vae_state_dict.items())}


def shapes(state: dict, prefix: str = "") -> dict[str, tuple[int, ...]]:
    return {k[len(prefix) :]: tuple(v.shape) for k, v in state.items() if k.startswith(prefix)}


def unet_inputs(seed: int, width: int, B: int = 2) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    noisy, masked = torch.randn(B, 4, 16, 16, generator=g), torch.randn(B, 4, 16, 16, generator=g)
    mask = (torch.rand(B, 1, 16, 16, generator=g) > 0.5).float()
    t = torch.randint(0, 1000, (B,), generator=g)
    return noisy, t, torch.randn(B, 12, width, generator=g), mask, masked


# --------------------------------------------------------------------------- SD-2-inpainting


def test_sd2_single_file_and_diffusers_folder_convert_every_tensor(tmp_path):
    from diffusers import UNet2DConditionModel

    from udifftext.first_stage import build_first_stage
    from udifftext.unet.model import build_unet

    cfg = reduced_cfg()
    kw = unet_kwargs(cfg)
    torch.manual_seed(0)
    sd_unet = UNet2DConditionModel(**kw).eval()  # SD-2-inpainting layout, text cross-attention of width 24
    sd_vae = build_first_stage(cfg.first_stage).vae
    ldm = ldm_unet(sd_unet.state_dict(), kw, ("attn2", "norm2"))
    ldm |= ldm_vae(sd_vae.state_dict(), 4, "first_stage_model.")
    assert shapes(ldm, "model.diffusion_model.") == unet_layout(kw, ("attn2", "norm2"), 24)
    assert shapes(ldm, "first_stage_model.") == vae_layout([32, 32, 64, 64], 4)
    ldm |= {"cond_stage_model.model.token_embedding.weight": torch.zeros(3, 24), "betas": torch.zeros(1000)}
    torch.save({"state_dict": ldm, "global_step": 875000}, tmp_path / "512-inpainting-ema.ckpt")
    sd_unet.save_pretrained(tmp_path / "sd2/unet")
    old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    old_names = {
        re.sub(r"(attentions\.0\.)(to_[qkv]|to_out\.0)\.", lambda m: f"{m[1]}{old[m[2]]}.", k): v.contiguous()
        for k, v in sd_vae.state_dict().items()
    }
    assert "decoder.mid_block.attentions.0.proj_attn.weight" in old_names
    (tmp_path / "sd2/vae").mkdir()
    save_file(old_names, tmp_path / "sd2/vae/diffusion_pytorch_model.safetensors")  # pre-0.15 diffusers names

    single, report = convert_sd2(tmp_path / "512-inpainting-ema.ckpt", cfg)
    folder, _ = convert_sd2(tmp_path / "sd2", cfg)
    assert "random" in report["text_encoder"]
    reference = sd_unet.state_dict()
    for parts in (single, folder):
        ours = parts.unet.unet.state_dict()
        new = [k for k in ours if re.search(r"transformer_blocks\.\d+\.(attn2|norm2)\.", k)]
        assert len(new) == 16 * 7  # 16 transformer blocks x (q, k, v, out w/b, norm w/b)
        for key, value in ours.items():
            if key in new:
                assert key.endswith(("to_q.weight", "to_k.weight", "to_v.weight", "norm2.weight", "norm2.bias")) or (
                    not value.any()
                ), key  # the new attention's output projection starts at zero
            else:
                assert torch.equal(value, reference[key]), key
        for key, value in parts.first_stage.vae.state_dict().items():
            assert torch.equal(value, sd_vae.state_dict()[key]), key
    # The written folder is the `unet.base_weights` / `first_stage.weights` of a paper-scale training run.
    save_pipeline_folder(tmp_path / "sd2_base", single)
    base = replace(cfg.unet, base_weights=str(tmp_path / "sd2_base"))
    trained_from = build_unet(replace(cfg, unet=base)).unet.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in trained_from.items() if k not in new)
    vae = build_first_stage(replace(cfg.first_stage, weights=str(tmp_path / "sd2_base"))).vae.state_dict()
    assert all(torch.equal(v, sd_vae.state_dict()[k]) for k, v in vae.items())
    # Outputs equal the UNet helper's own loading of the same base weights (diffusers folder).
    direct = build_unet(replace(cfg, unet=replace(cfg.unet, base_weights=str(tmp_path / "sd2")))).eval()
    x = unet_inputs(0, 32, B=1)
    with torch.no_grad():
        assert torch.allclose(single.unet(*x), direct(*x), atol=1e-6)


# --------------------------------------------------------------------------- upstream UDiffText


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """A reduced UDiffText Lightning checkpoint, a LabelEncoder checkpoint and a ViTSTR .pth, with references."""
    from udifftext.first_stage import build_first_stage
    from udifftext.text.encoder import CharTextEncoder
    from udifftext.unet.model import build_unet

    tmp = tmp_path_factory.mktemp("upstream")
    cfg = reduced_cfg()
    kw = unet_kwargs(cfg)
    torch.manual_seed(1)
    unet = build_unet(cfg).eval()
    with torch.no_grad():
        for name, p in unet.named_parameters():  # a trained t_attn: non-zero output projection
            if name in unet.cross_attention_parameter_names():
                p.normal_(0, 0.2)
    encoder, vae = CharTextEncoder(cfg.text_encoder).eval(), build_first_stage(cfg.first_stage).vae
    state = ldm_unet(unet.unet.state_dict(), kw, ("t_attn", "t_norm"))
    assert shapes(state, "model.diffusion_model.") == unet_layout(kw, ("t_attn", "t_norm"), 32)
    old = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0."  # SD's attn2 in an older export: ignored
    state |= {old + "attn2.to_k.weight": torch.ones(32, 24), old + "norm2.weight": torch.ones(32)}
    state |= {f"conditioner.embedders.0.{k}": v.clone() for k, v in encoder.state_dict().items()}
    state |= ldm_vae(vae.state_dict(), 4, "first_stage_model.")
    state |= ldm_vae(vae.state_dict(), 4, "conditioner.embedders.2.model.")  # the LatentEncoder's copy
    state |= {"denoiser.sigmas": torch.ones(1000), "loss_fn.predictor.model.head.weight": torch.ones(2, 2)}
    torch.save({"state_dict": state, "epoch": 99, "global_step": 19500}, tmp / "udifftext.ckpt")

    torch.manual_seed(2)  # a different LabelEncoder, saved with its pretraining heads and frozen ViTSTR
    vit = vitstr_layout(32, 2, patches=16, patch_size=16)
    label = {k: torch.randn(s) for k, s in label_encoder_layout(95, 32, 12, 2, 64, pretraining=vit).items()}
    torch.save({"state_dict": label, "epoch": 19, "global_step": 7820}, tmp / "epoch=19-step=7820.ckpt")
    vitstr = {f"module.vitstr.{k}": torch.randn(s) for k, s in vit.items()}
    torch.save(vitstr, tmp / "vitstr_base_patch16_224.pth")
    return {"dir": tmp, "cfg": cfg, "unet": unet, "encoder": encoder, "vae": vae, "label": label, "vitstr": vitstr}


def test_upstream_checkpoint_through_the_script_matches_the_model(upstream, tmp_path, capsys):
    cli = load_cli()
    d = upstream["dir"]
    out = tmp_path / "paper"
    args = ["--from", "upstream", "--in", str(d / "udifftext.ckpt"), "--out", str(out)]
    args += ["--recognizer", str(d / "vitstr_base_patch16_224.pth"), *REDUCED]
    assert cli.main(cli.parse_args(args)) == 0
    printed = capsys.readouterr().out
    assert "conditioner.embedders.2 (" in printed and "loss_fn (1 keys)" in printed and "denoiser (1 keys)" in printed
    parts = load_pipeline_folder(out)  # later loads need no conversion

    reference = upstream["unet"].state_dict()
    assert parts.unet.state_dict().keys() == reference.keys()
    for key, value in parts.unet.state_dict().items():
        assert torch.equal(value, reference[key]), key
    for key, value in parts.text_encoder.state_dict().items():
        assert torch.equal(value, upstream["encoder"].state_dict()[key]), key
    for key, value in parts.first_stage.vae.state_dict().items():
        assert torch.equal(value, upstream["vae"].state_dict()[key]), key
    vit = upstream["vitstr"]
    rec = parts.recognizer.state_dict()
    assert torch.equal(rec["vit.blocks.1.attn.qkv.weight"], vit["module.vitstr.blocks.1.attn.qkv.weight"])
    head = vit["module.vitstr.head.weight"]  # rows [GO], [s], chars -> ours: end, chars
    assert torch.equal(rec["vit.head.weight"], torch.cat([head[1:2], head[2:]]))

    x = unet_inputs(3, 32, B=1)
    with torch.no_grad():
        assert torch.equal(parts.unet(*x), upstream["unet"](*x))
        texts = ["Hello", "UDiffText!"]
        assert torch.equal(parts.text_encoder.encode_text(texts), upstream["encoder"].encode_text(texts))


def test_label_encoder_checkpoint_drops_pretraining_heads(upstream):
    from udifftext.text.encoder import CharTextEncoder

    d, cfg, label = upstream["dir"], upstream["cfg"], upstream["label"]
    parts, report = convert_upstream(d / "udifftext.ckpt", cfg, encoder=str(d / "epoch=19-step=7820.ckpt"))
    assert report["text_encoder"].endswith("epoch=19-step=7820.ckpt")
    ours = parts.text_encoder.state_dict()
    assert ours.keys() == {k for k in label if not k.startswith(("cls_", "pos_head", "text_", "visual_", "logit"))}
    for key, value in ours.items():
        assert torch.equal(value, label[key]), key
    direct = CharTextEncoder(cfg.text_encoder).eval()
    direct.load_state_dict({k: label[k] for k in ours})
    with torch.no_grad():
        assert torch.equal(parts.text_encoder.encode_text(["abc"]), direct.encode_text(["abc"]))


# --------------------------------------------------------------------------- full size, meta device


def test_full_size_layouts_cover_our_models_on_meta():
    from udifftext.first_stage import FirstStage
    from udifftext.recognizer.vitstr import ViTSTR, upstream_vitstr_state_dict
    from udifftext.text.encoder import CharTextEncoder
    from udifftext.unet.model import TextUNet

    cfg = load_config(UNetStageConfig, PAPER, NO_PATHS)
    kw = unet_kwargs(cfg)
    assert kw["block_out_channels"] == (320, 640, 1280, 1280) and kw["in_channels"] == 9

    def meta(layout: dict, prefix: str = "") -> dict:
        return {prefix + k: torch.empty(s, device="meta") for k, s in layout.items()}

    with torch.device("meta"):
        unet, vae = TextUNet(cfg), FirstStage(cfg.first_stage)
        encoder, recognizer = CharTextEncoder(cfg.text_encoder), ViTSTR(cfg.recognizer)
    new = unet.cross_attention_parameter_names()
    assert len(new) == 16 * 7  # 16 transformer blocks: 6 down, 1 mid, 9 up
    sd2 = meta(unet_layout(kw, ("attn2", "norm2"), 1024), "model.diffusion_model.")
    sd2 |= meta(vae_layout([128, 256, 512, 512], 4), "first_stage_model.")
    assert len(sd2) == 686 + 248
    check_state(unet.state_dict(), sd2_unet_state(sd2, kw), "SD-2 UNet", expected_missing=new)
    check_state(vae.state_dict(), vae_state(sd2, cfg.first_stage, "SD-2 VAE"), "SD-2 VAE")
    ours = meta(unet_layout(kw, ("t_attn", "t_norm"), 2048), "model.diffusion_model.")
    check_state(unet.state_dict(), upstream_unet_state(ours, kw, 2048), "UDiffText UNet")
    vit = vitstr_layout(768, 12, patches=196, patch_size=16)
    label = meta(label_encoder_layout(95, 2048, 12, 12, 2048, pretraining=vit))
    check_state(encoder.state_dict(), label_encoder_state(label), "LabelEncoder")
    check_state(recognizer.state_dict(), upstream_vitstr_state_dict(meta(vit, "module.vitstr.")), "ViTSTR-Base")


# --------------------------------------------------------------------------- errors


def test_wrong_checkpoints_name_keys_and_shapes():
    cfg = reduced_cfg()
    kw = unet_kwargs(cfg)
    text_to_image = {**unet_layout(kw, ("attn2", "norm2"), 24), "input_blocks.0.0.weight": (32, 4, 3, 3)}
    state = {f"model.diffusion_model.{k}": torch.empty(s, device="meta") for k, s in text_to_image.items()}
    with pytest.raises(ValueError, match=r"input_blocks\.0\.0\.weight: \(32, 4, 3, 3\) vs expected \(32, 9, 3, 3\)"):
        sd2_unet_state(state, kw)
    v1 = {k.replace(".t_attn.", ".add_attn."): s for k, s in unet_layout(kw, ("t_attn", "t_norm"), 32).items()}
    state = {f"model.diffusion_model.{k}": torch.empty(s, device="meta") for k, s in v1.items()}
    with pytest.raises(ValueError, match=r"80 missing: .*t_attn.*80 unexpected: .*add_attn"):
        upstream_unet_state(state, kw, 32)
    with pytest.raises(ValueError, match="no LabelEncoder keys"):
        label_encoder_state({"encoder.weight": torch.zeros(1)})


def test_missing_files_name_the_expected_file(upstream, tmp_path):
    d, cfg = upstream["dir"], upstream["cfg"]
    with pytest.raises(MissingWeightsError, match="512-inpainting-ema.ckpt"):
        convert_sd2(tmp_path / "512-inpainting-ema.ckpt", cfg)
    (tmp_path / "sd2/unet").mkdir(parents=True)
    with pytest.raises(MissingWeightsError, match=r"unet/diffusion_pytorch_model\.safetensors"):
        convert_sd2(tmp_path / "sd2", cfg)
    with pytest.raises(MissingWeightsError, match="UDiffText UNet checkpoint"):
        convert_upstream(tmp_path / "udifftext.ckpt", cfg)
    for flag, name in (("vae", "AE_inpainting_2"), ("encoder", "epoch=19-step=7820"), ("recognizer", "vitstr_base")):
        with pytest.raises(MissingWeightsError, match=name):
            convert_upstream(d / "udifftext.ckpt", cfg, **{flag: str(tmp_path / "absent")})
    bare = torch.load(d / "udifftext.ckpt", weights_only=False)["state_dict"]
    torch.save({"state_dict": {k: v for k, v in bare.items() if k.startswith("model.")}}, tmp_path / "unet_only.ckpt")
    with pytest.raises(MissingWeightsError, match="AE_inpainting_2.safetensors"):
        convert_upstream(tmp_path / "unet_only.ckpt", cfg)
    with pytest.raises(MissingWeightsError, match=r"epoch=19-step=7820\.ckpt"):
        convert_upstream(tmp_path / "unet_only.ckpt", cfg, vae=str(d / "udifftext.ckpt"))


def test_script_refuses_non_empty_or_input_holding_output(upstream, tmp_path, capsys):
    import subprocess
    import sys

    cli = load_cli()
    start = time.perf_counter()
    script = str(ROOT / "scripts/convert_checkpoint.py")
    subprocess.run([sys.executable, script, "--help"], check=True, capture_output=True)
    assert time.perf_counter() - start < 5
    ckpt = str(upstream["dir"] / "udifftext.ckpt")
    (tmp_path / "out").mkdir()
    (tmp_path / "out/notes.txt").write_text("keep")
    assert cli.main(cli.parse_args(["--from", "upstream", "--in", ckpt, "--out", str(tmp_path / "out")])) == 2
    assert "not empty" in capsys.readouterr().err
    for out in (upstream["dir"], upstream["dir"].parent):  # the input's folder or a folder above it
        args = ["--from", "upstream", "--in", ckpt, "--out", str(out), "--overwrite"]
        assert cli.main(cli.parse_args(args)) == 2
        assert "contains the input" in capsys.readouterr().err

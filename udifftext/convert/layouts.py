"""Key names and shapes of the upstream checkpoints, derived from the upstream module code.

Why here and not only in tests: a real checkpoint is checked against the layout its config predicts
before conversion, so a wrong file (SD-2 text-to-image instead of inpainting, a v1 `add_attn` UNet, a
reduced model) fails with the offending key names and shapes instead of a half-loaded model.

- `unet_layout`: sgm/LDM ``openaimodel.UNetModel`` / UDiffText ``UnifiedUNetModel`` (``input_blocks.N.M``,
  ``middle_block``, ``output_blocks``, ``time_embed``, ``out``), keys without the ``model.diffusion_model.``
  prefix. `cross` names the transformer blocks' cross-attention: ``attn2``/``norm2`` (SD-2) or
  ``t_attn``/``t_norm`` (UDiffText); ``None`` leaves it out.
- `vae_layout`: LDM ``Encoder``/``Decoder`` (``encoder.down.I.block.J``, ``mid.attn_1`` with 1x1 convs, ...).
- `label_encoder_layout`: upstream ``LabelEncoder`` (+ its pretraining heads and frozen ViTSTR if asked).
- `vitstr_layout`: ViTSTR release ``.pth`` (timm ``VisionTransformer`` names, 96-class head).

Shapes are tuples; every function is pure (no torch import).
"""

from __future__ import annotations

from typing import Any

Layout = dict[str, tuple[int, ...]]


def _linear(out: Layout, name: str, n_out: int, n_in: int, bias: bool = True) -> None:
    out[f"{name}.weight"] = (n_out, n_in)
    if bias:
        out[f"{name}.bias"] = (n_out,)


def _conv(out: Layout, name: str, n_out: int, n_in: int, k: int) -> None:
    out[f"{name}.weight"] = (n_out, n_in, k, k)
    out[f"{name}.bias"] = (n_out,)


def _norm(out: Layout, name: str, c: int) -> None:
    out[f"{name}.weight"] = (c,)
    out[f"{name}.bias"] = (c,)


def _resblock(out: Layout, p: str, c_in: int, c_out: int, temb: int) -> None:
    """openaimodel ``ResBlock`` (no scale-shift norm)."""
    _norm(out, f"{p}.in_layers.0", c_in)
    _conv(out, f"{p}.in_layers.2", c_out, c_in, 3)
    _linear(out, f"{p}.emb_layers.1", c_out, temb)
    _norm(out, f"{p}.out_layers.0", c_out)
    _conv(out, f"{p}.out_layers.3", c_out, c_out, 3)
    if c_in != c_out:
        _conv(out, f"{p}.skip_connection", c_out, c_in, 1)


def _attention(out: Layout, p: str, c: int, context: int) -> None:
    """sgm ``CrossAttention``: q/k/v without bias, ``to_out = Sequential(Linear, Dropout)``."""
    _linear(out, f"{p}.to_q", c, c, bias=False)
    _linear(out, f"{p}.to_k", c, context, bias=False)
    _linear(out, f"{p}.to_v", c, context, bias=False)
    _linear(out, f"{p}.to_out.0", c, c)


def _spatial_transformer(
    out: Layout, p: str, c: int, cross: tuple[str, str] | None, context: int, linear: bool, depth: int
) -> None:
    _norm(out, f"{p}.norm", c)
    proj = _linear if linear else (lambda o, n, a, b: _conv(o, n, a, b, 1))
    proj(out, f"{p}.proj_in", c, c)
    for d in range(depth):
        b = f"{p}.transformer_blocks.{d}"
        _attention(out, f"{b}.attn1", c, c)
        if cross is not None:
            _attention(out, f"{b}.{cross[0]}", c, context)
            _norm(out, f"{b}.{cross[1]}", c)
        _norm(out, f"{b}.norm1", c)
        _norm(out, f"{b}.norm3", c)
        _linear(out, f"{b}.ff.net.0.proj", 8 * c, c)  # GEGLU: value and gate
        _linear(out, f"{b}.ff.net.2", c, 4 * c)
    proj(out, f"{p}.proj_out", c, c)


def unet_layout(unet_kwargs: dict[str, Any], cross: tuple[str, str] | None, context_dim: int) -> Layout:
    """LDM-layout UNet keys -> shapes for a diffusers `UNet2DConditionModel` kwargs dict (see
    `udifftext.unet.model.diffusers_unet_kwargs`); transformer depth 1, as SD-2 and UDiffText."""
    chans = list(unet_kwargs["block_out_channels"])
    n = unet_kwargs["layers_per_block"]
    attn = ["CrossAttn" in t for t in unet_kwargs["down_block_types"]]
    if ["CrossAttn" in t for t in unet_kwargs["up_block_types"]] != attn[::-1]:
        raise ValueError("up_block_types must mirror down_block_types (attention levels) for the LDM layout")
    linear = bool(unet_kwargs.get("use_linear_projection", True))
    mc, temb = chans[0], 4 * chans[0]
    out: Layout = {}

    def transformer(p: str, c: int) -> None:
        _spatial_transformer(out, p, c, cross, context_dim, linear, depth=1)

    _linear(out, "time_embed.0", temb, mc)
    _linear(out, "time_embed.2", temb, temb)
    _conv(out, "input_blocks.0.0", mc, unet_kwargs["in_channels"], 3)
    k, ch, skips = 1, mc, [mc]
    for level, c in enumerate(chans):
        for _ in range(n):
            _resblock(out, f"input_blocks.{k}.0", ch, c, temb)
            ch = c
            if attn[level]:
                transformer(f"input_blocks.{k}.1", c)
            skips.append(ch)
            k += 1
        if level != len(chans) - 1:
            _conv(out, f"input_blocks.{k}.0.op", ch, ch, 3)
            skips.append(ch)
            k += 1
    _resblock(out, "middle_block.0", ch, ch, temb)
    transformer("middle_block.1", ch)
    _resblock(out, "middle_block.2", ch, ch, temb)
    k = 0
    for level in reversed(range(len(chans))):
        c = chans[level]
        for i in range(n + 1):
            _resblock(out, f"output_blocks.{k}.0", ch + skips.pop(), c, temb)
            ch, j = c, 1
            if attn[level]:
                transformer(f"output_blocks.{k}.1", c)
                j = 2
            if level and i == n:
                _conv(out, f"output_blocks.{k}.{j}.conv", ch, ch, 3)
            k += 1
    _norm(out, "out.0", mc)
    _conv(out, "out.2", unet_kwargs["out_channels"], mc, 3)
    return out


def _vae_resnet(out: Layout, p: str, c_in: int, c_out: int) -> None:
    _norm(out, f"{p}.norm1", c_in)
    _conv(out, f"{p}.conv1", c_out, c_in, 3)
    _norm(out, f"{p}.norm2", c_out)
    _conv(out, f"{p}.conv2", c_out, c_out, 3)
    if c_in != c_out:
        _conv(out, f"{p}.nin_shortcut", c_out, c_in, 1)


def _vae_mid(out: Layout, p: str, c: int) -> None:
    _vae_resnet(out, f"{p}.mid.block_1", c, c)
    _norm(out, f"{p}.mid.attn_1.norm", c)
    for name in ("q", "k", "v", "proj_out"):
        _conv(out, f"{p}.mid.attn_1.{name}", c, c, 1)
    _vae_resnet(out, f"{p}.mid.block_2", c, c)


def vae_layout(block_out_channels: list[int], latent_channels: int, layers: int = 2) -> Layout:
    """LDM ``AutoencoderKL`` keys -> shapes (ch = block_out_channels[0], ch_mult from the rest, double_z,
    no attention outside the mid blocks), as SD-2's and upstream's ``AE_inpainting_2.safetensors``."""
    chans, z = list(block_out_channels), latent_channels
    out: Layout = {}
    _conv(out, "encoder.conv_in", chans[0], 3, 3)
    ch = chans[0]
    for i, c in enumerate(chans):
        for j in range(layers):
            _vae_resnet(out, f"encoder.down.{i}.block.{j}", ch, c)
            ch = c
        if i != len(chans) - 1:
            _conv(out, f"encoder.down.{i}.downsample.conv", c, c, 3)
    _vae_mid(out, "encoder", ch)
    _norm(out, "encoder.norm_out", ch)
    _conv(out, "encoder.conv_out", 2 * z, ch, 3)
    _conv(out, "quant_conv", 2 * z, 2 * z, 1)
    _conv(out, "post_quant_conv", z, z, 1)
    ch = chans[-1]
    _conv(out, "decoder.conv_in", ch, z, 3)
    _vae_mid(out, "decoder", ch)
    for i in reversed(range(len(chans))):
        for j in range(layers + 1):
            _vae_resnet(out, f"decoder.up.{i}.block.{j}", ch, chans[i])
            ch = chans[i]
        if i != 0:
            _conv(out, f"decoder.up.{i}.upsample.conv", ch, ch, 3)
    _norm(out, "decoder.norm_out", ch)
    _conv(out, "decoder.conv_out", 3, ch, 3)
    return out


def vitstr_layout(
    embed_dim: int, depth: int, patches: int, patch_size: int, num_classes: int = 96, mlp_ratio: float = 4.0
) -> Layout:
    """timm ``VisionTransformer`` keys of a ViTSTR (1 input channel, qkv bias, class token)."""
    d, hidden = embed_dim, int(embed_dim * mlp_ratio)
    out: Layout = {"cls_token": (1, 1, d), "pos_embed": (1, patches + 1, d)}
    _conv(out, "patch_embed.proj", d, 1, patch_size)
    for i in range(depth):
        b = f"blocks.{i}"
        _norm(out, f"{b}.norm1", d)
        _linear(out, f"{b}.attn.qkv", 3 * d, d)
        _linear(out, f"{b}.attn.proj", d, d)
        _norm(out, f"{b}.norm2", d)
        _linear(out, f"{b}.mlp.fc1", hidden, d)
        _linear(out, f"{b}.mlp.fc2", d, hidden)
    _norm(out, "norm", d)
    _linear(out, "head", num_classes, d)
    return out


def label_encoder_layout(
    num_classes: int, width: int, max_len: int, layers: int, ff_dim: int, pretraining: Layout | None = None
) -> Layout:
    """Upstream ``LabelEncoder`` keys. `pretraining`: the frozen ViTSTR's layout, to add the heads, the
    logit scale and ``visual_encoder.*`` as saved by upstream ``pretrain.py`` (clip_dim 1024)."""
    out: Layout = {"label_embedding.weight": (num_classes, width), "pos_embedding.pe": (max_len, width)}
    for i in range(layers):
        p = f"encoder.layers.{i}"
        out[f"{p}.self_attn.in_proj_weight"] = (3 * width, width)
        out[f"{p}.self_attn.in_proj_bias"] = (3 * width,)
        _linear(out, f"{p}.self_attn.out_proj", width, width)
        _linear(out, f"{p}.linear1", ff_dim, width)
        _linear(out, f"{p}.linear2", width, ff_dim)
        _norm(out, f"{p}.norm1", width)
        _norm(out, f"{p}.norm2", width)
    if pretraining is not None:
        visual_len, visual_dim = pretraining["pos_embed"][1], pretraining["cls_token"][2]
        out["logit_scale"] = ()
        _linear(out, "cls_head.1", width, width)
        _linear(out, "cls_head.3", num_classes, width)
        _linear(out, "pos_head.1", max_len, width, bias=False)
        _linear(out, "text_head.1", 1024, width, bias=False)
        _conv(out, "text_head.2", 1, max_len, 1)
        out["text_head.2.weight"] = (1, max_len, 1)  # Conv1d
        _linear(out, "visual_head.1", 1024, visual_dim, bias=False)
        _conv(out, "visual_head.2", 1, visual_len, 1)
        out["visual_head.2.weight"] = (1, visual_len, 1)
        out.update({f"visual_encoder.{k}": v for k, v in pretraining.items()})
    return out

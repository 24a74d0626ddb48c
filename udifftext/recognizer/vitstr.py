"""ViTSTR (Atienza 2021; upstream ``ViTSTREncoder``): a timm ViT on grayscale word crops that classifies
each of its first output tokens into one character of the alphabet (0 = padding / end of word).

``decoder: ctc`` reads the same network another way: every patch token is classified (0 = blank) and the
sequence is read by CTC (collapse repeats, drop blanks). With one row of column tokens each token only has to
name the character under it, instead of counting its way to the k-th character.

Our state dict is the timm model under ``vit.`` (``vit.patch_embed.proj.weight``, ``vit.blocks.{i}.*``,
``vit.norm.*``, ``vit.head.*``). ``stem: conv`` (our small preset) swaps the linear patch projection for a
small conv stack (``vit.patch_embed.proj.{i}.*``), which learns from scratch on a CPU budget.

An upstream ViTSTR ``.pth`` (deep-text-recognition-benchmark release, a ``DataParallel(Model)`` state dict)
maps as: strip ``module.`` and ``vitstr.``, prefix ``vit.``. Its 96-class head is ``[GO], [s], printable[:-6]``,
so our class 0 (end) takes row 1 (``[s]``) and class k >= 1 takes row k + 1; its output token 0 predicts
``[GO]``, hence ``recognizer.first_token: 1``. Inputs are [0, 1] crops; the network sees them mapped to
[-1, 1], as ViTSTR was trained.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from udifftext.config import RecognizerConfig
from udifftext.io import load_state_dict, load_strict
from udifftext.text.tokenizer import CharTokenizer

WEIGHTS_SOURCE = (
    "`scripts/train_encoder.py` (task: recognizer) export, the shipped checkpoints/encoders/, or an upstream "
    "ViTSTR release .pth (roatienza/deep-text-recognition-benchmark)"
)
UPSTREAM_SPECIALS = 2  # [GO], [s] precede the characters in upstream ViTSTR's head
RESIDUAL_OUTPUTS = ("attn.proj.", "mlp.fc2.")  # a timm block's last layers before each residual sum
STEM_PREFIX = "vit.patch_embed."  # the patch embedding: the linear projection or the conv stem
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as PIL's "L" conversion


STEMS = ("patch", "conv")
DECODERS = ("positions", "ctc")


class ResidualConvBlock(nn.Module):
    """``relu(x + bn(conv(relu(bn(conv(x))))))`` at constant width (a ResNet basic block). The last norm's scale
    starts at zero, so on its non-negative input (it follows a ReLU) a new block is exactly the identity."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
        )
        nn.init.zeros_(self.body[-1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


def conv_patch_embed(stem_blocks: Sequence[int] = (), stem_channels: int = 32):
    """A timm ``PatchEmbed`` whose projection is a stack of 3x3 convs (+BN, ReLU), each halving the height,
    the width or both until the patch grid is reached, and a 1x1 conv: the same token grid as the patches,
    but with the convolutional inductive bias that lets a ViT learn from far fewer samples (Xiao et al. 2021,
    "Early convolutions help transformers see better").

    ``stem_blocks[i]`` residual blocks follow the i-th stride conv (none when empty). They sit in the slot of
    its ReLU (``proj.{3i + 2}.{1..n}``), so every other layer keeps the key it has without them and a stem
    without blocks loads into one with them (``grow_depth``)."""
    from timm.layers import PatchEmbed

    class ConvPatchEmbed(PatchEmbed):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if any(side < 2 or side & (side - 1) for side in self.patch_size):
                raise ValueError(f"recognizer.stem=conv needs power-of-two patch sides >= 2, got {self.patch_size}")
            halvings = [side.bit_length() - 1 for side in self.patch_size]  # (height, width)
            levels = max(halvings)
            if stem_blocks and len(stem_blocks) != levels:
                raise ValueError(
                    f"recognizer.stem_blocks needs one count per stride conv of the stem ({levels} for patches "
                    f"{self.patch_size[0]} x {self.patch_size[1]}), got {list(stem_blocks)}"
                )
            in_chans, embed_dim = self.proj.in_channels, self.proj.out_channels
            widths = [in_chans] + [min(embed_dim, stem_channels * 2**i) for i in range(levels)]
            blocks = list(stem_blocks) or [0] * levels
            layers: list[nn.Module] = []
            for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
                stride = tuple(2 if i < n else 1 for n in halvings)
                conv = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
                activation = nn.ReLU(inplace=True)
                if blocks[i]:
                    activation = nn.Sequential(activation, *(ResidualConvBlock(c_out) for _ in range(blocks[i])))
                layers += [conv, nn.BatchNorm2d(c_out), activation]
            self.proj = nn.Sequential(*layers, nn.Conv2d(widths[-1], embed_dim, 1))

    return ConvPatchEmbed


class ViTSTR(nn.Module):
    """(B, 1, h, w) crops in [0, 1] -> (B, T, num_classes) logits: T = max_len positions, or the patch tokens
    times ``ctc_frames`` for ``decoder: ctc``; `decode`, `read` and `sequence_loss` know which."""

    def __init__(self, cfg: RecognizerConfig):
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        self.cfg = cfg
        self.tokenizer = CharTokenizer(cfg.alphabet, cfg.max_len)
        if cfg.fold_rows < 1 or cfg.img_height % cfg.fold_rows:
            raise ValueError(
                f"recognizer.fold_rows={cfg.fold_rows} must be >= 1 and divide img_height {cfg.img_height}"
            )
        folded = (cfg.img_height // cfg.fold_rows, cfg.img_width)  # what the stem sees, fold_rows channels deep
        patch = (cfg.patch_size, cfg.patch_width or cfg.patch_size)  # (height, width)
        for name, size, side in zip(("img_height / fold_rows", "img_width"), folded, patch, strict=True):
            if size % side:
                raise ValueError(f"recognizer.{name}={size} is not a multiple of its patch side {side}")
        tokens = 1 + (folded[0] // patch[0]) * (folded[1] // patch[1])
        if cfg.decoder not in DECODERS:
            raise ValueError(f"recognizer.decoder must be one of {DECODERS}, got '{cfg.decoder}'")
        if cfg.ctc_frames < 1 or (cfg.ctc_frames > 1 and cfg.decoder != "ctc"):
            raise ValueError(f"recognizer.ctc_frames must be 1, or more with decoder 'ctc', got {cfg.ctc_frames}")
        if cfg.decoder == "positions":
            outputs, needed = tokens, cfg.first_token + cfg.max_len
        else:
            outputs, needed = (tokens - 1) * cfg.ctc_frames, cfg.max_len  # every patch token, CLS left out
        if outputs < needed:
            remedy = "smaller patches or a larger crop" + (" or more ctc_frames" if cfg.decoder == "ctc" else "")
            raise ValueError(
                f"recognizer has {outputs} outputs, needs {needed} for decoder '{cfg.decoder}' "
                f"(max_len {cfg.max_len}): use {remedy}"
            )
        if cfg.stem not in STEMS:
            raise ValueError(f"recognizer.stem must be one of {STEMS}, got '{cfg.stem}'")
        if cfg.stem_blocks and cfg.stem != "conv":
            raise ValueError(f"recognizer.stem_blocks needs stem 'conv', got '{cfg.stem}'")
        extra = {"embed_layer": conv_patch_embed(cfg.stem_blocks)} if cfg.stem == "conv" else {}
        self.vit = VisionTransformer(
            img_size=folded,
            patch_size=patch,
            in_chans=cfg.fold_rows,
            num_classes=self.tokenizer.num_classes * cfg.ctc_frames,
            global_pool="",
            embed_dim=cfg.embed_dim,
            depth=cfg.depth,
            num_heads=cfg.heads,
            mlp_ratio=cfg.mlp_ratio,
            **extra,
        )

    @property
    def num_classes(self) -> int:
        return self.tokenizer.num_classes

    @property
    def num_tokens(self) -> int:
        return self.vit.patch_embed.num_patches + 1

    @property
    def embed_dim(self) -> int:
        return self.cfg.embed_dim

    def _check_crops(self, crops: torch.Tensor) -> None:
        expected = (1, self.cfg.img_height, self.cfg.img_width)
        if crops.ndim != 4 or tuple(crops.shape[1:]) != expected:
            raise ValueError(f"crops must have shape (B, {', '.join(map(str, expected))}), got {tuple(crops.shape)}")

    def features(self, crops: torch.Tensor) -> torch.Tensor:
        """All output tokens after the final norm (CLS + patches): (B, 1, h, w) -> (B, N, D).

        The contrastive pretraining uses these as the frozen visual tokens (upstream ``ViTSTREncoder``).
        """
        self._check_crops(crops)
        batch, _, height, width = crops.shape
        k = self.cfg.fold_rows
        folded = crops.reshape(batch, height // k, k, width).transpose(1, 2)  # (B, k, h / k, w): row r*k + j -> [j, r]
        return self.vit.forward_features(folded * 2.0 - 1.0)  # (B, N, D)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, 1, h, w) in [0, 1] -> (B, T, num_classes) logits (T = max_len, or the patch tokens x ctc_frames
        for CTC)."""
        features = self.features(crops)  # (B, N, D)
        if self.cfg.decoder == "ctc":
            frames = self.vit.head(features[:, 1:])  # (B, N - 1, k * C): every patch token, CLS left out
            return frames.reshape(frames.shape[0], -1, self.num_classes)  # (B, (N - 1) * k, C), k frames per token
        return self.vit.head(features[:, self.cfg.first_token : self.cfg.first_token + self.cfg.max_len])  # (B, L, C)

    def decode(self, logits: torch.Tensor) -> list[str]:
        """Greedy reading of (B, T, C) logits: positions up to the first end (0); CTC collapses repeats and
        drops blanks (0)."""
        best = logits.argmax(dim=-1)  # (B, T)
        if self.cfg.decoder == "positions":
            return self.tokenizer.decode(best)
        rows = [[i for t, i in enumerate(row) if i and (t == 0 or i != row[t - 1])] for row in best.tolist()]
        return self.tokenizer.decode(rows)

    def sequence_loss(self, logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Per-sample loss of (B, T, C) logits against (B, max_len) ids (0 = padding): the mean per-position
        cross-entropy (ViTSTR: the end class after the word is a target too), or the CTC loss per target
        character (a crop whose text cannot fit the tokens, repeats needing a blank between them, gives 0)."""
        if ids.ndim != 2 or ids.shape[0] != logits.shape[0]:
            raise ValueError(f"ids must be (B, max_len) for logits {tuple(logits.shape)}, got {tuple(ids.shape)}")
        if self.cfg.decoder == "positions":
            if logits.shape[:2] != ids.shape:
                raise ValueError(f"logits (B, L, C) {tuple(logits.shape)} do not match ids (B, L) {tuple(ids.shape)}")
            ce = F.cross_entropy(logits.transpose(1, 2).float(), ids.long(), reduction="none")  # (B, L)
            return ce.mean(dim=1)  # (B,)
        lengths = (ids > 0).sum(dim=1)  # (B,)
        log_probs = logits.float().log_softmax(dim=-1).transpose(0, 1)  # (T, B, C)
        steps = torch.full_like(lengths, log_probs.shape[0])
        loss = F.ctc_loss(log_probs, ids, steps, lengths, blank=0, reduction="none", zero_infinity=True)  # (B,)
        return loss / lengths.clamp(min=1)

    def preprocess(self, images: torch.Tensor, bboxes: torch.Tensor) -> torch.Tensor:
        """Differentiable word crops: (B, 3, H, W) in [-1, 1] + (B, 4) boxes (top, bottom, left, right) in
        pixels (bottom/right exclusive) -> (B, 1, h, w) grayscale in [0, 1], each box resized to the input size.

        Bilinear RoIAlign with adaptive sampling (averages several samples per output pixel when shrinking),
        so gradients reach the image pixels, as L_ocr needs.
        """
        from torchvision.ops import roi_align

        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
        if bboxes.shape != (images.shape[0], 4):
            raise ValueError(f"bboxes must have shape ({images.shape[0]}, 4), got {tuple(bboxes.shape)}")
        weights = images.new_tensor(GRAY_WEIGHTS).view(1, 3, 1, 1)
        gray = ((images + 1.0) / 2.0 * weights).sum(dim=1, keepdim=True)  # (B, 1, H, W)
        top, bottom, left, right = bboxes.to(gray.dtype).unbind(dim=1)  # (B,) each
        batch_index = torch.arange(images.shape[0], device=images.device, dtype=gray.dtype)
        rois = torch.stack([batch_index, left, top, right, bottom], dim=1)  # (B, 5)
        size = (self.cfg.img_height, self.cfg.img_width)
        crops = roi_align(gray, rois, output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        return crops.clamp(0.0, 1.0)  # (B, 1, h, w)

    @torch.no_grad()
    def read(self, crops: torch.Tensor) -> list[str]:
        """Greedy reading of a batch of crops (see `decode`)."""
        return self.decode(self(crops))


def upstream_vitstr_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map an upstream ViTSTR .pth state dict onto our key layout and class order (module docstring)."""
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    mapped = {}
    for key, value in state.items():
        for prefix in ("module.", "vitstr."):
            key = key.removeprefix(prefix)
        if key.startswith("head."):
            # rows: [GO], [s], characters -> ours: end (= [s]), characters
            value = torch.cat([value[1:2], value[UPSTREAM_SPECIALS:]], dim=0)
        mapped[f"vit.{key}"] = value
    return mapped


def widen_ctc_head(state: Mapping[str, torch.Tensor], model: ViTSTR) -> dict[str, torch.Tensor]:
    """A one-frame CTC head's weights, copied to every frame of `model`'s ``ctc_frames``-frame head.

    Each token's k frames then read the same class; CTC collapses the repeats, so the widened recognizer reads
    exactly what the one-frame one did, and training can go on from there. Any other state is returned as is.
    """
    state = dict(state)
    frames = model.cfg.ctc_frames
    for key in ("vit.head.weight", "vit.head.bias"):
        if frames > 1 and key in state and state[key].shape[0] == model.num_classes:
            state[key] = state[key].repeat(frames, *([1] * (state[key].ndim - 1)))  # frame j: rows j*C .. (j+1)*C
    return state


def append_identity_blocks(state: Mapping[str, torch.Tensor], model: ViTSTR) -> dict[str, torch.Tensor]:
    """A shallower recognizer's weights, extended to `model`'s depth by blocks that start as the identity.

    Every block is ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``; with the attention's output projection and
    the MLP's second layer zeroed, a new block passes its input through unchanged, so the deeper model reads
    exactly what the checkpoint did and training adds capacity from there (zero-initialised residual branches,
    as in Goyal et al. 2017). The new blocks' other weights are `model`'s own random initialisation.
    """
    state = dict(state)
    present = {int(key.split(".")[2]) for key in state if key.startswith("vit.blocks.")}
    if not present or len(present) >= model.cfg.depth:
        return state
    if present != set(range(len(present))):
        raise ValueError(f"recognizer weights hold blocks {sorted(present)}: expected blocks 0..n-1 to grow from")
    fresh = model.state_dict()
    for index in range(len(present), model.cfg.depth):
        prefix = f"vit.blocks.{index}."
        for key, value in fresh.items():
            if key.startswith(prefix):
                zero = key.removeprefix(prefix).startswith(RESIDUAL_OUTPUTS)
                state[key] = torch.zeros_like(value) if zero else value.clone()
    return state


def add_identity_stem_blocks(state: Mapping[str, torch.Tensor], model: ViTSTR) -> dict[str, torch.Tensor]:
    """A recognizer's weights with the conv stem's residual blocks (``recognizer.stem_blocks``) that it lacks
    taken from `model`'s own initialisation, where each starts as the identity (`ResidualConvBlock`): the model
    with a deeper stem reads exactly what the checkpoint did, and training adds capacity from there."""
    state = dict(state)
    for name, module in model.named_modules():
        if isinstance(module, ResidualConvBlock):
            for key, value in module.state_dict(prefix=f"{name}.").items():
                state.setdefault(key, value.clone())
    return state


def resample_positions(state: Mapping[str, torch.Tensor], model: ViTSTR) -> dict[str, torch.Tensor]:
    """A recognizer's weights for `model`'s patch grid: the position embeddings of the checkpoint's grid (the
    same number of patch rows, any number of columns) are interpolated to `model`'s, the CLS position kept.

    Every other weight (the conv stem, the blocks, the per-token head) does not depend on the grid, so a model
    trained on 32 x 128 crops reads 32 x 256 ones at once nearly as well (docs/encoder.md), and training on the
    wider crops starts from there.
    """
    from timm.layers import resample_abs_pos_embed

    state = dict(state)
    key = "vit.pos_embed"
    rows, columns = model.vit.patch_embed.grid_size
    patches = state[key].shape[1] - 1  # CLS first
    if patches % rows:
        raise ValueError(f"recognizer weights hold {patches} patch positions, not {rows} rows of columns")
    state[key] = resample_abs_pos_embed(state[key], [rows, columns], [rows, patches // rows], num_prefix_tokens=1)
    return state


def share_folded_rows(state: Mapping[str, torch.Tensor], model: ViTSTR) -> dict[str, torch.Tensor]:
    """A recognizer's weights for `model`'s ``fold_rows`` input channels: the first layer's one-channel kernel is
    repeated over the folded rows and divided by their number.

    The first layer then sees the mean of each group of folded rows, which is the crop shrunk to the
    checkpoint's height by area averaging: the taller model starts by reading as the checkpoint did, and
    training can teach the rows apart.
    """
    state = dict(state)
    k = model.cfg.fold_rows
    for key, value in model.state_dict().items():
        old = state.get(key)
        if key.startswith(STEM_PREFIX) and old is not None and old.ndim == 4 and old.shape[1] == 1 < k:
            if old.shape[0] != value.shape[0] or old.shape[2:] != value.shape[2:]:
                raise ValueError(f"recognizer weights' {key} {tuple(old.shape)} does not fold to {tuple(value.shape)}")
            state[key] = old.repeat(1, k, 1, 1) / k
    return state


def keep_fresh_stem(state: Mapping[str, torch.Tensor], model: ViTSTR) -> dict[str, torch.Tensor]:
    """A recognizer's weights with its patch embedding (the linear projection or the conv stem) replaced by
    `model`'s own random one: the blocks, position embeddings and head come from the checkpoint.

    The stem is the only part that depends on the crop height and patch size; the blocks only see tokens, so
    a model on taller crops keeps what the checkpoint learned about reading and learns a new stem.
    """
    state = {key: value for key, value in state.items() if not key.startswith(STEM_PREFIX)}
    state.update({key: value.clone() for key, value in model.state_dict().items() if key.startswith(STEM_PREFIX)})
    return state


def load_recognizer(cfg: RecognizerConfig) -> ViTSTR:
    """Build the recognizer and load `cfg.weights` strictly: our exported .safetensors, or an upstream
    ViTSTR .pth/.pt (mapped by `upstream_vitstr_state_dict`). "" = random initialisation. With
    ``cfg.grow_depth`` a shallower checkpoint is extended by identity blocks (`append_identity_blocks`,
    `add_identity_stem_blocks`); with
    ``cfg.resample_positions`` one of another crop width gets its position embeddings resampled; with
    ``cfg.share_folded_rows`` one of fewer folded rows gets its first layer shared by them (`share_folded_rows`);
    with ``cfg.fresh_stem`` its patch embedding is left out (`keep_fresh_stem`)."""
    model = ViTSTR(cfg)
    if cfg.weights:
        what = "ViTSTR recognizer weights (.safetensors from train_encoder.py, or an upstream ViTSTR .pth)"
        state = load_state_dict(cfg.weights, what, WEIGHTS_SOURCE)
        if Path(cfg.weights).suffix != ".safetensors":
            if cfg.stem != "patch" or cfg.decoder != "positions":
                raise ValueError(
                    "an upstream ViTSTR .pth needs recognizer.stem=patch and recognizer.decoder=positions, "
                    f"got '{cfg.stem}' and '{cfg.decoder}'"
                )
            state = upstream_vitstr_state_dict(state)
        if cfg.grow_depth:
            state = add_identity_stem_blocks(append_identity_blocks(state, model), model)
        if cfg.resample_positions:
            state = resample_positions(state, model)
        if cfg.share_folded_rows:
            state = share_folded_rows(state, model)
        if cfg.fresh_stem:
            state = keep_fresh_stem(state, model)
        load_strict(model, widen_ctc_head(state, model), what=what)
    return model

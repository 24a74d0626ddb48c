"""Typed experiment configs: one dataclass per component, grouped per stage.

A stage config is built from its dataclass schema (the defaults), then the YAML file, then dotted
command-line overrides (``optim.lr=1e-4``), in that order. A YAML file may name another as its ``_base_``
(a path relative to the file): the base is applied first, so a stage that continues another lists only what it
changes. Unknown keys and values of the wrong type are errors that name the key, the file and the valid keys, so a
typo fails at load time, not hours into a run.

This module imports only the standard library and omegaconf: scripts load configs before torch.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

# Upstream's alphabet: digits, lower, upper, punctuation (94 characters), case-sensitive.
DEFAULT_ALPHABET = string.printable[:-6]
# The plain font of the glyph channel in training (`unet.glyph_ink_prob` < 1) and, by default, in sampling.
GLYPH_FONT = "data/fonts/dejavu/DejaVuSans.ttf"

T = TypeVar("T")
BASE_KEY = "_base_"  # a YAML config's parent file, relative to it (`config_chain`)


class ConfigError(ValueError):
    """A config file or override that does not match its schema."""


# --------------------------------------------------------------------------- components


@dataclass
class TextEncoderConfig:
    """Character-level text encoder (paper Sec. 3.2; upstream ``LabelEncoder``)."""

    alphabet: str = DEFAULT_ALPHABET
    max_len: int = 12  # characters per text; every text is padded to this many tokens
    width: int = 2048  # token width = the UNet's cross-attention context width
    layers: int = 12
    heads: int = 8
    ff_dim: int = 2048  # feed-forward width of each layer (PyTorch's default, as upstream)
    dropout: float = 0.1
    weights: str = ""  # exported encoder safetensors; "" = random initialisation

    def exported(self) -> TextEncoderConfig:
        """The config saved beside exported weights: the same, without a weights path."""
        return replace(self, weights="")


@dataclass
class RecognizerConfig:
    """ViTSTR recognizer: a timm ViT on grayscale word crops, one class per character position."""

    alphabet: str = DEFAULT_ALPHABET
    max_len: int = 12
    img_height: int = 32
    img_width: int = 128
    patch_size: int = 16  # patch height in pixels (and width, unless patch_width is set)
    patch_width: int = 0  # 0 = patch_size (square); patch_size 32 + patch_width 8 = one row of column tokens
    embed_dim: int = 192  # ViT-Tiny; ViTSTR-Base (upstream) is 768 / 12 / 12 at 224x224
    depth: int = 12
    heads: int = 3
    mlp_ratio: float = 4.0
    first_token: int = 0  # output token of the first character; 1 for upstream ViTSTR .pth (token 0 = [GO])
    stem: str = "patch"  # patch: ViTSTR's linear patch embedding | conv: stride-2 3x3 convs (faster from scratch)
    # stem conv: residual 3x3 blocks after each of its stride convs, one count per stride conv ([] = none); more
    # convolution where the crop is still fine, before the tokens
    stem_blocks: list[int] = field(default_factory=list)
    # positions: ViTSTR, output token first_token + k classifies character k (0 = end) | ctc: every patch token
    # classifies what lies under it (0 = blank), read by CTC (Graves et al. 2006), for one row of column tokens
    decoder: str = "positions"
    # CTC frames per column token: the head gives each token this many frames (left to right), so a word needs
    # no more than tokens x frames, counting a blank between repeated letters; 1 = one frame per token
    ctc_frames: int = 1
    # true: `weights` may hold fewer blocks than `depth`, or lack stem_blocks; the missing ones start as identity
    # blocks (zero output projections / last norm scales), so the deeper model starts reading as the checkpoint did
    grow_depth: bool = False
    # true: `weights` may come from a recognizer with another patch grid (e.g. img_width 128 -> 256, same patch
    # height); its position embeddings are resampled along the grid, so wider crops start from its reading
    resample_positions: bool = False
    # crop rows folded into input channels before the stem: 2 reads a 64-row crop as two 32-row channels (even and
    # odd rows), so the stem and every token keep the shape they have at 32 rows while the crop has twice the rows
    fold_rows: int = 1
    # true: `weights` of a recognizer with fold_rows 1 load into one with more, the first layer's kernel shared by
    # the folded rows (divided by fold_rows): it reads a tall crop as the checkpoint read it averaged down
    share_folded_rows: bool = False
    # true: `weights`' patch embedding (stem) is left out and `model`'s own random one kept, so a checkpoint of
    # another crop height or patch size lends its blocks and head to a model whose stem learns afresh
    fresh_stem: bool = False
    weights: str = ""  # our exported safetensors or an upstream ViTSTR .pth; "" = random

    def exported(self) -> RecognizerConfig:
        """The config saved beside exported weights: no weights path, and none of the adapters (`grow_depth`,
        `resample_positions`, `share_folded_rows`, `fresh_stem`) that loaded the checkpoint it started from, since
        the weights now fit the model."""
        adapters = dict(grow_depth=False, resample_positions=False, share_folded_rows=False, fresh_stem=False)
        return replace(self, weights="", **adapters)


@dataclass
class ContrastiveConfig:
    """CLIP-style pretraining heads of the char encoder (upstream ``LabelEncoder`` heads)."""

    embed_dim: int = 1024  # shared text/image embedding width
    lambda_cls: float = 0.1  # weight of the per-position character classifier CE
    lambda_pos: float = 0.1  # weight of the per-position index classifier CE
    init_temperature: float = 0.07


@dataclass
class DataConfig:
    """Where batches come from; see ``udifftext/data/datasets.py`` for the batch contract."""

    source: str = "synthetic"  # synthetic | folder | synthtext | laion_ocr | icdar13 | textseg
    root: str = ""  # dataset folder for every source but `synthetic`
    split: str = "train"  # train | heldout (synthetic) / the dataset's own split names
    resolution: int = 512  # model resolution: the crop's height, and its width unless crop_width is set
    alphabet: str = DEFAULT_ALPHABET
    min_len: int = 1
    max_len: int = 12
    max_word_len: int = 0  # real datasets: skip longer words (0 = max_len); upstream ICDAR13 evaluation: 8
    length: int = 100_000  # samples per epoch for procedurally generated data
    fonts_dir: str = "data/fonts"
    # more font folders whose files join fonts_dir's (held-out names apply to all): data/fonts_extra (75 fonts),
    # data/fonts_extra2 (94) and data/fonts_extra3 (735), added after the default model was trained on data/fonts alone
    extra_fonts_dirs: list[str] = field(default_factory=list)
    word_list: str = "data/words/words.txt"
    backgrounds_dir: str = "data/backgrounds"  # folder of photos; "" = procedural backgrounds only
    photo_background_prob: float = 0.5  # share of synthetic backgrounds cut from those photos
    random_string_prob: float = 0.3  # share of texts drawn as random strings over the alphabet
    heldout_word_fraction: float = 0.1  # share of the word list reserved for the held-out split
    # Font file names never used in training: one serif, one geometric sans, one mono, one handwriting family.
    heldout_fonts: list[str] = field(
        default_factory=lambda: [
            "Caladea-Regular.ttf",
            "URWGothic-Demi.otf",
            "NimbusMonoPS-Bold.otf",
            "ComicNeue-Regular.otf",
            "ComicNeue-Bold.otf",
        ]
    )
    words_per_image: list[int] = field(default_factory=lambda: [1, 3])  # inclusive range
    crop_min_area_ratio: float = 0.04  # crop around boxes smaller than this share of the image
    crop_width: int = 0  # 0: square crops (upstream); > 0: rectified crops, `resolution` high, this wide
    crop_margin: float = 0.25  # rectified crops: context on every side, in units of the text box's height
    min_box_ratio: float = 0.0  # skip samples whose box is smaller than this share of the image
    seg_min_ratio: float = 0.001  # skip samples whose mean character area is below this share (upstream)
    word_crop_height: int = 32
    word_crop_width: int = 128
    # word crops: redraw background and colour (up to CONTRAST_TRIES times) while some character's ink differs from
    # the background under it by less than this mean luminance (0 = never: busy backgrounds may hide letters)
    min_char_contrast: float = 0.0
    # word crops: the same while some character has less than this share of its ink visible against the background
    # under it (0 = never: an object or clutter of the text's colour may cover part of a letter)
    min_char_visibility: float = 0.0
    strict: bool = False  # unreadable files raise instead of being skipped and counted
    seed: int = 0


@dataclass
class OptimConfig:
    lr: float = 5e-5
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    lr_decay: float = 1.0  # lr multiplied by this once per epoch (upstream: 0.95)
    warmup_steps: int = 0


@dataclass
class TrainConfig:
    seed: int = 0
    batch_size: int = 16
    max_steps: int = 1000
    steps_per_epoch: int = 1000  # an "epoch" of the lr decay for procedurally generated data
    accumulate_grad_batches: int = 1
    grad_clip: float = 1.0  # 0 disables clipping
    precision: str = "32-true"  # Lightning precision: 32-true | bf16-mixed | 16-mixed
    strategy: str = "auto"  # Lightning strategy: auto | ddp | fsdp
    gradient_checkpointing: bool = False
    num_workers: int = 0
    out_dir: str = "runs/default"
    log_every: int = 10
    val_every: int = 500
    ckpt_every: int = 500
    keep_every: int = 0  # also keep every checkpoint of this step multiple in OUT/curve/ (0 = off)
    val_samples: int = 8


GLYPH_CONTENTS = ("text", "position")  # UNetConfig.glyph_content
GLYPH_SHAPES = ("quad", "rect")  # SampleConfig.glyph_shape: what the glyph is warped into


@dataclass
class UNetConfig:
    """diffusers ``UNet2DConditionModel`` layout; defaults are SD-2-inpainting's."""

    in_channels: int = 9  # [noisy latent, mask, masked-image latent] (+ glyph when enabled)
    out_channels: int = 4
    sample_size: int = 64  # latent size at the model resolution
    block_out_channels: list[int] = field(default_factory=lambda: [320, 640, 1280, 1280])
    down_block_types: list[str] = field(default_factory=lambda: ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"])
    up_block_types: list[str] = field(default_factory=lambda: ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3)
    layers_per_block: int = 2
    head_dim: int = 64  # channels per attention head (SD-2 stores this as head counts 5/10/20/20)
    base_cross_attention_dim: int = 1024  # SD-2's OpenCLIP context width, used only to load base weights
    use_linear_projection: bool = True
    stem: str = "none"  # none | pixel_unshuffle (pixel-space models: run the UNet at 1/stem_factor size)
    stem_factor: int = 2
    glyph_channel: bool = False  # add the target text rendered in a plain font as an input channel
    glyph_content: str = "text"  # text | position: a ramp along the word, where but not which letter
    glyph_ink_prob: float = 0.0  # losses only (never sampling): share of glyphs that are the target's own ink
    glyph_drop_prob: float = 0.0  # losses only: share of samples with an empty glyph (1: a token-only twin)
    glyph_margin: float = 0.0  # training/validation renders: blank border x the region's height (sample.glyph_margin)
    mask_padding: bool = False  # the char cross-attention reads only the word's characters, never the padding
    base_weights: str = ""  # diffusers folder or 512-inpainting-ema.ckpt; "" = random initialisation
    mode: str = "udifftext"  # udifftext: new char cross-attention | base: text-free inpainting

    @property
    def samples_with_glyph(self) -> bool:
        """Whether sampling draws the glyph; a model trained only on empty glyphs (drop 1) is sampled on one too."""
        return self.glyph_channel and self.glyph_drop_prob < 1


@dataclass
class FirstStageConfig:
    """Maps images to the space the UNet denoises (SD-2 VAE, or identity for pixel space)."""

    kind: str = "vae"  # vae | identity
    weights: str = ""  # diffusers AutoencoderKL folder or a .safetensors/.ckpt file
    scale_factor: float = 0.18215
    block_out_channels: list[int] = field(default_factory=lambda: [128, 256, 512, 512])
    latent_channels: int = 4


@dataclass
class DiffusionConfig:
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"  # SD's; squaredcos_cap_v2 for the small pixel model
    prediction_type: str = "epsilon"  # epsilon | v_prediction | sample (x0)
    uncond_prob: float = 0.1  # share of samples trained with the zero context (for CFG)
    mask_loss_weight: float = 1.0  # per-pixel weight inside the text region
    outside_loss_weight: float = 1.0  # per-pixel weight outside it


@dataclass
class LossConfig:
    """Weights of the paper's losses (Eq. 7): L = L_DSM + lambda_local L_loc + lambda_ocr L_ocr."""

    lambda_local: float = 0.01
    lambda_ocr: float = 0.001
    local_enabled: bool = True
    ocr_enabled: bool = False  # off in the upstream release config; see ../docs
    blur_kernel: int = 3
    blur_sigma: float = 1.0
    min_attn_size: int = 16  # attention maps smaller than this (side, in positions) are not used
    local_mask_resize: str = "nearest"  # nearest (upstream) | cover: a character owns every map cell it touches
    ocr_ce_clamp: float = 1.0


@dataclass
class NoiseSelectionConfig:
    enabled: bool = True
    candidates: int = 10
    steps: int = 2
    chunk_size: int = 10  # candidates per UNet batch


@dataclass
class ReadSelectionConfig:
    """Best of `candidates` finished samples, kept by a recognizer's loss on the asked text: an extension beside the
    paper's noise selection (which ranks noises by attention after two steps), at `candidates` x the cost."""

    enabled: bool = False
    candidates: int = 4
    recognizer: str = ""  # exported recognizer .safetensors with its .yaml beside it; "" = the model folder's own


@dataclass
class RefinementConfig:
    """Attention-guided latent refinement (Attend-and-Excite style, paper Sec. 3.4)."""

    enabled: bool = False
    step_size: float = 20.0  # alpha_i = step_size * sqrt(1 - i / steps)
    iterative_steps: list[int] = field(default_factory=lambda: [5, 9, 13, 17, 21, 25])
    thresholds: list[float] = field(default_factory=lambda: [-0.5, -0.56, -0.62, -0.68, -0.74, -0.8])
    max_iters: int = 20


# --------------------------------------------------------------------------- stages


@dataclass
class EncoderStageConfig:
    """`scripts/train_encoder.py`: recognizer training or contrastive char-encoder pretraining."""

    task: str = "contrastive"  # contrastive | recognizer
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    recognizer: RecognizerConfig = field(default_factory=RecognizerConfig)
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4))
    train: TrainConfig = field(default_factory=TrainConfig)
    eval_samples: int = 1024  # held-out crops for validation and the final figures
    # a CTC recognizer's final held-out figures are also read with the training texts' prior at this weight
    # ("with_prior" in eval.json's "heldout"; udifftext.recognizer.prior); 0 = greedy only
    eval_prior_weight: float = 0.7
    # ... and in shifted views that vote (the crop moved by these px to either side; "with_prior_views"); [] = not
    eval_view_shifts: list[int] = field(default_factory=lambda: [2])
    retrieval_pool: int = 256  # text->image retrieval top-1 is measured among this many held-out crops


@dataclass
class UNetStageConfig:
    """`scripts/train_unet.py`: diffusion fine-tuning (or text-free base pretraining)."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    first_stage: FirstStageConfig = field(default_factory=FirstStageConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    recognizer: RecognizerConfig = field(default_factory=RecognizerConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    trainable: str = "cross_attention"  # cross_attention | full
    init_from: str = ""  # trainable-weights safetensors (or pipeline folder) to start from
    # keep the char cross-attention (attn2, norm2) freshly initialised rather than init_from's: a glyph model's
    # has collapsed onto the padding tokens, where its saturated softmax passes almost no gradient
    init_fresh_cross_attention: bool = False
    val_steps: int = 20  # DDIM steps of the periodic validation samples (a short schedule)
    val_guidance_scale: float = 5.0  # classifier-free guidance of the validation samples (upstream test: 5.0)
    ema_decay: float = 0.0  # EMA of the trained weights, used for validation and the export; 0 = off (upstream)


@dataclass
class SampleConfig:
    """`scripts/sample.py`: inpaint text into images with a trained pipeline folder."""

    model: str = "checkpoints/default"  # pipeline folder written by save_pretrained / training export
    scheduler: str = "euler"  # euler | ddim | dpmpp
    steps: int = 50
    guidance_scale: float = 5.0
    seed: int = 0
    blend_width: int = 3  # pixels of soft blend inside the mask edge when pasting back
    resolution: int = 0  # side of the region crop the UNet works on; 0 = the model's training resolution
    glyph_margin: float = 0.0  # blank border around the glyph, x the region's height (training words have ~0.15)
    glyph_font: str = GLYPH_FONT  # font file the glyph is drawn in (a model trained on the target's ink takes any)
    glyph_shape: str = "quad"  # quad: the glyph fills the region's quadrilateral, rect: its min-area rectangle
    attention_heatmaps: bool = True  # capture the middle step's attention for per-character heatmaps
    ablate: str = ""  # diagnostics: "text" samples with the null context, "glyph" with an empty glyph channel
    noise_selection: NoiseSelectionConfig = field(default_factory=NoiseSelectionConfig)
    refinement: RefinementConfig = field(default_factory=RefinementConfig)
    read_selection: ReadSelectionConfig = field(default_factory=ReadSelectionConfig)


@dataclass
class EvalVariantConfig:
    """A baseline / ablation row sampled on the same cases: another model folder and/or sample overrides."""

    name: str = ""
    model: str = ""  # pipeline folder; "" = the main model (sample.model)
    overrides: list[str] = field(default_factory=list)  # dotted SampleConfig overrides: noise_selection.enabled=false


@dataclass
class EvalConfig:
    """`scripts/evaluate.py`: SeqAcc / NED / FID / LPIPS under the reconstruction and editing protocols."""

    sample: SampleConfig = field(default_factory=SampleConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(split="heldout"))
    protocols: list[str] = field(default_factory=lambda: ["reconstruction", "editing"])
    cases: str = ""  # a cases.jsonl (sample.py manifest) to sample instead of data/protocols/num_cases/seed
    num_cases: int = 100
    seed: int = 0  # picks the cases and the editing words
    judge: str = "rapidocr"
    second_judge: bool = True  # also read with our ViTSTR when the model folder has recognizer.safetensors
    # our recognizer export (.safetensors, its .yaml beside) as that second judge instead of the model folder's:
    # checkpoints/encoders/recognizer_ctc_fonts3.safetensors reads 0.80 of held-out crops, the folders' v3 0.53
    second_judge_weights: str = ""
    variants: list[EvalVariantConfig] = field(default_factory=list)  # rows beside the main model
    score_originals: bool = True  # an "originals" row: the judge on the unchanged images (its ceiling)
    inception_weights: str = ""  # pt_inception-2015-12-05 .pth; "" = stand-in feature net, labelled
    lpips_weights: str = ""  # torchvision alexnet .pth; "" = skip LPIPS with a note
    grid_cases: int = 4  # best and worst cases per protocol shown in the grid
    out_dir: str = "runs/eval"


# --------------------------------------------------------------------------- loading


def _valid_keys(schema: Any, dotted: str) -> list[str]:
    node = OmegaConf.structured(schema)
    for part in [p for p in dotted.split(".")[:-1] if p]:
        if part not in node:
            break
        node = node[part]
    return sorted(node.keys()) if OmegaConf.is_dict(node) else []


def _merge(base, other, schema: type, source: str):
    try:
        return OmegaConf.merge(base, other)
    except (ConfigKeyError, ConfigAttributeError) as err:
        key = err.full_key or str(err.key)
        valid = ", ".join(_valid_keys(schema, key))
        raise ConfigError(f"unknown config key '{key}' in {source}; valid keys here: {valid}") from None
    except ValidationError as err:
        raise ConfigError(f"bad value for config key '{err.full_key}' in {source}: {err.msg}") from None


def config_chain(path: str | Path) -> list[tuple[Path, Any]]:
    """The YAML file at `path` and the files it inherits from through `_base_`, base-most first, each as
    (path, its keys without `_base_`)."""
    chain: list[tuple[Path, Any]] = []
    path, child = Path(path), None
    while True:
        if not path.is_file():
            named_by = f" (the {BASE_KEY} of {child})" if child else ""
            raise ConfigError(f"config file not found: {path}{named_by}")
        if any(path.resolve() == seen.resolve() for seen, _ in chain):
            cycle = " -> ".join(str(p) for p, _ in reversed(chain))
            raise ConfigError(f"config files inherit in a cycle: {cycle} -> {path}")
        node = OmegaConf.load(path)
        base = node.pop(BASE_KEY, None) if OmegaConf.is_dict(node) else None
        chain.insert(0, (path, node))
        if base is None:
            return chain
        if not isinstance(base, str) or not base:
            raise ConfigError(f"{BASE_KEY} in {path} must be a path to another YAML config, got {base!r}")
        path, child = path.parent / base, path


def load_config(schema: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Build a `schema` instance from its defaults, a YAML file (after the files it inherits from) and dotted
    `key=value` overrides."""
    cfg = OmegaConf.structured(schema)
    if path is not None:
        for source, node in config_chain(path):
            cfg = _merge(cfg, node, schema, str(source))
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override must look like key=value, got '{item}'")
        cfg = _merge(cfg, OmegaConf.from_dotlist([item]), schema, f"override '{item}'")
    return OmegaConf.to_object(cfg)


def config_to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: Any, folder: str | Path, name: str = "config.yaml") -> Path:
    """Write the resolved config beside an output so it can be reproduced."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(config_to_yaml(cfg))
    return path

"""Lightning glue for the diffusion stage (paper Sec. 3.3, upstream `DiffusionEngine` + `FullLoss`).

`LitUDiffText` builds the parts from one `UNetStageConfig`: the UNet (base weights loaded, new
cross-attention), the frozen char encoder, the frozen first stage and, when L_ocr is on or its weights
are given, the frozen recognizer. `training_step` computes L_DSM (+ lambda_loc L_loc + lambda_ocr L_ocr),
logs every term, and returns the weighted sum. Checkpoints hold only the trained weights: the frozen
parts are rebuilt from the config's weight paths on resume.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader

from udifftext.checkpoint import PART_FILES, PipelineParts, save_pipeline_folder
from udifftext.config import UNetStageConfig
from udifftext.diffusion import build_train_scheduler, predict_x0, training_target
from udifftext.first_stage import build_first_stage
from udifftext.io import atomic_save_image, atomic_write_json, load_state_dict, load_strict, save_state_dict
from udifftext.lit.trainer import (
    CHECKPOINT_DIR,
    build_optimizer,
    build_trainer,
    resolve_resume,
    save_run_config,
    seed_launch,
)
from udifftext.losses import MASK_RESIZES, dsm_loss, local_attention_loss, ocr_loss
from udifftext.text.encoder import load_text_encoder
from udifftext.unet import AttentionStore, build_unet, install_attention_capture, set_trainable

TRAINABLE_FILE = "unet_trainable.safetensors"
INIT_SOURCE = "an earlier scripts/train_unet.py run (checkpoints/unet_trainable.safetensors or pipeline/)"


def load_init_weights(unet: torch.nn.Module, path: str, trainable: list[str], fresh: list[str] = ()) -> None:
    """Start from earlier weights: a pipeline folder (the whole UNet) or a trainable-weights safetensors.

    A trainable-weights file must hold exactly the parameters being trained (`trainable` names). `fresh` names
    keep their present (freshly initialised) values: they are not taken from the file.
    """
    what = "UNet weights to start from (init_from)"
    fresh = set(fresh)
    if Path(path).is_dir():
        state = load_state_dict(Path(path) / PART_FILES["unet"], what, INIT_SOURCE)
        missing = fresh
    else:
        state = load_state_dict(path, what, INIT_SOURCE)
        missing = fresh | {k for k in unet.state_dict() if k not in set(trainable)}
    state = {k: v for k, v in state.items() if k not in fresh}
    load_strict(unet, state, expected_missing=missing, what=what)


class EmaWeights(torch.nn.Module):
    """Exponential moving average of the trained UNet parameters, saved and resumed with the checkpoint.

    Buffers are named after the parameters with "." -> "__" (buffer names cannot hold dots).
    """

    def __init__(self, params: dict[str, torch.nn.Parameter], decay: float):
        super().__init__()
        if not 0 < decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1) when EMA is on, got {decay}")
        self.decay = decay
        self.names = list(params)
        for name, p in params.items():
            self.register_buffer(name.replace(".", "__"), p.detach().clone())

    def _pairs(self, params: dict[str, torch.nn.Parameter]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(params[n], getattr(self, n.replace(".", "__"))) for n in self.names]

    @torch.no_grad()
    def update(self, params: dict[str, torch.nn.Parameter]) -> None:
        for p, e in self._pairs(params):
            e.lerp_(p.detach().to(e.dtype), 1 - self.decay)

    @torch.no_grad()
    def swap(self, params: dict[str, torch.nn.Parameter]) -> None:
        """Exchange the live weights with the averaged ones (call again to swap back)."""
        for p, e in self._pairs(params):
            live = p.detach().clone()
            p.copy_(e)
            e.copy_(live)


class LitUDiffText(pl.LightningModule):
    """Diffusion fine-tuning of `TextUNet` on inpainting batches (see `udifftext/data/datasets.py`)."""

    def __init__(self, cfg: UNetStageConfig):
        super().__init__()
        ink = cfg.unet.glyph_ink_prob
        if not 0 <= ink <= 1 or (ink > 0 and not cfg.unet.glyph_channel):
            raise ValueError(f"unet.glyph_ink_prob must be in [0, 1] and needs unet.glyph_channel, got {ink}")
        if ink > 0 and cfg.unet.glyph_content != "text":
            raise ValueError(f"unet.glyph_ink_prob={ink} draws the text's ink; it needs unet.glyph_content='text'")
        drop = cfg.unet.glyph_drop_prob
        if not 0 <= drop <= 1 or (drop > 0 and not cfg.unet.glyph_channel):
            raise ValueError(f"unet.glyph_drop_prob must be in [0, 1] and needs unet.glyph_channel, got {drop}")
        from udifftext.pipeline import check_glyph_margin

        check_glyph_margin(cfg.unet.glyph_margin, "unet.glyph_margin")
        if cfg.unet.glyph_margin > 0 and not cfg.unet.glyph_channel:
            raise ValueError(f"unet.glyph_margin={cfg.unet.glyph_margin} draws a glyph; it needs unet.glyph_channel")
        resize = cfg.loss.local_mask_resize
        if resize not in MASK_RESIZES:
            raise ValueError(f"loss.local_mask_resize must be one of {MASK_RESIZES}, got '{resize}'")
        self.cfg = cfg
        self.text_mode = cfg.unet.mode == "udifftext"
        self.unet = build_unet(cfg)
        trainable = cfg.trainable if self.text_mode else "full"
        self.report = set_trainable(self.unet, trainable)
        if cfg.init_from:
            trained = [n for n, p in self.unet.named_parameters() if p.requires_grad]
            fresh = self.unet.cross_attention_parameter_names() if cfg.init_fresh_cross_attention else []
            load_init_weights(self.unet, cfg.init_from, trained, fresh)
        frozen = load_text_encoder(cfg.text_encoder, init_seed=cfg.train.seed)  # never trained here
        self.text_encoder = frozen.eval().requires_grad_(False)
        self.first_stage = build_first_stage(cfg.first_stage)
        self.recognizer = None
        if cfg.loss.ocr_enabled or cfg.recognizer.weights:
            from udifftext.recognizer.vitstr import load_recognizer

            self.recognizer = load_recognizer(cfg.recognizer).eval().requires_grad_(False)
        self.scheduler = build_train_scheduler(cfg.diffusion)
        self.register_buffer("alphas_cumprod", self.scheduler.alphas_cumprod.clone(), persistent=False)
        self.store = AttentionStore(cfg.text_encoder.max_len, cfg.loss.min_attn_size)
        self.store.enabled = False
        if self.text_mode:
            install_attention_capture(self.unet, self.store)
        self.ema = EmaWeights(self._trained_params(), cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.strict_loading = False  # checkpoints hold the trained weights only; on_load_checkpoint checks them
        self._val: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ parts

    def train(self, mode: bool = True) -> LitUDiffText:
        super().train(mode)
        for frozen in (self.text_encoder, self.first_stage, self.recognizer):
            if frozen is not None:
                frozen.eval()  # no dropout in frozen parts, whatever Lightning asks
        return self

    def _trained_params(self) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in self.unet.named_parameters() if p.requires_grad}

    def _trained_keys(self) -> list[str]:
        """State-dict keys a checkpoint holds: the trained UNet weights (and their EMA)."""
        keys = [f"unet.{n}" for n in self._trained_params()]
        if self.ema is not None:
            keys += [f"ema.{k}" for k in self.ema.state_dict()]
        return keys

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update(self._trained_params())

    def use_ema_weights(self) -> None:
        """Put the averaged weights into the UNet for good (before the export); no-op without EMA."""
        if self.ema is not None:
            self.ema.swap(self._trained_params())
            self.ema = None

    def _condition(self, batch: dict) -> dict[str, torch.Tensor | None]:
        """Images -> the UNet's space: x0, masked, working-size mask and glyph (no gradients: all frozen)."""
        with torch.no_grad():
            cond = {
                "x0": self.first_stage.encode(batch["image"]),  # (B, C, h, w)
                "masked": self.first_stage.encode(batch["masked_image"]),  # (B, C, h, w)
                "mask": self.first_stage.resize_mask(batch["mask"]),  # (B, 1, h, w)
                "glyph": None,
                "context_mask": batch["char_seg_mask"],  # (B, L): tokens a padding-masked cross-attention reads
            }
            if self.cfg.unet.glyph_channel:  # a model trained on empty glyphs only gets an empty one
                glyphs = self._glyphs(batch) if self.cfg.unet.samples_with_glyph else torch.zeros_like(batch["mask"])
                cond["glyph"] = self.first_stage.resize_mask(glyphs)  # (B, 1, h, w)
        return cond

    def _glyphs(self, batch: dict) -> torch.Tensor:
        """The text (or position ramp) drawn into its mask's box, as the sampler draws it (`pipeline.glyph_canvas`).

        `unet.glyph_margin` leaves the blank border the sampler leaves with `sample.glyph_margin`, so that renders
        in training lie on the word the way they do in sampling.
        """
        from udifftext.pipeline import glyph_canvas

        masks = batch["mask"][:, 0].cpu().numpy() > 0.5  # (B, R, R)
        unet = self.cfg.unet
        glyphs = [
            glyph_canvas(t, m, unet.glyph_content, unet.glyph_margin) for t, m in zip(batch["text"], masks, strict=True)
        ]
        return torch.from_numpy(np.stack(glyphs))[:, None].to(self.device)  # (B, 1, R, R)

    def _ink_glyphs(self, batch: dict, glyph: torch.Tensor, use: torch.Tensor) -> torch.Tensor:
        """The glyph channel with the target's own ink (union of `char_seg`) for the samples in `use`.

        The ink lies exactly on the text to draw, so the UNet learns to paint where the glyph is instead of
        guessing how the plain font maps to the scene's font; samples without character masks keep `glyph`.
        """
        ink = self.first_stage.resize_mask(batch["char_seg"].amax(dim=1, keepdim=True).to(glyph))  # (B, 1, h, w)
        use = use & (ink.flatten(1).amax(dim=1) > 0)  # (B,)
        return torch.where(use[:, None, None, None], ink, glyph)

    def _context(self, texts: list[str], drop: torch.Tensor | None) -> torch.Tensor | None:
        """(B, L, W) char-encoder tokens, zero for the samples in `drop` (unconditional, for CFG)."""
        if not self.text_mode:
            return None
        with torch.no_grad():
            context = self.text_encoder.encode_text(texts)  # (B, L, W)
        if drop is not None:
            context = torch.where(drop[:, None, None], torch.zeros_like(context), context)
        return context

    # ------------------------------------------------------------------ training

    def predict(
        self, noisy: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None, cond: dict, capture: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The UNet's prediction on `_condition`'s inputs and, when `capture`, its char cross-attention maps."""
        self.store.clear()
        self.store.enabled = capture
        try:
            pred = self.unet(
                noisy, t, context, cond["mask"], cond["masked"], cond["glyph"], cond["context_mask"]
            )  # (B, C, h, w)
            return pred, dict(zip(self.store.names(), self.store.maps(), strict=True))
        finally:
            self.store.enabled = False

    def local_loss(self, maps: list[torch.Tensor], char_seg: torch.Tensor, char_mask: torch.Tensor) -> torch.Tensor:
        """L_loc with this config's blur and character-mask resizing."""
        cfg = self.cfg.loss
        return local_attention_loss(maps, char_seg, char_mask, cfg.blur_kernel, cfg.blur_sigma, cfg.local_mask_resize)

    def losses(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Every loss term of one batch; `loss` is their weighted sum (paper Eq. 7)."""
        cfg, B = self.cfg, len(batch["text"])
        cond = self._condition(batch)
        x0 = cond["x0"]
        rand = dict(device=x0.device, generator=generator)
        if cond["glyph"] is not None and cfg.unet.glyph_ink_prob > 0:
            cond["glyph"] = self._ink_glyphs(batch, cond["glyph"], torch.rand(B, **rand) < cfg.unet.glyph_ink_prob)
        if cond["glyph"] is not None and cfg.unet.glyph_drop_prob > 0:
            keep = torch.rand(B, **rand) >= cfg.unet.glyph_drop_prob  # (B,)
            cond["glyph"] = cond["glyph"] * keep[:, None, None, None]
        drop = torch.rand(B, **rand) < cfg.diffusion.uncond_prob  # (B,)
        context = self._context(batch["text"], drop)
        noise = torch.randn(x0.shape, dtype=x0.dtype, **rand)  # (B, C, h, w)
        t = torch.randint(0, cfg.diffusion.num_train_timesteps, (B,), **rand)  # (B,)
        noisy = self.scheduler.add_noise(x0, noise, t)  # (B, C, h, w)
        local = self.text_mode and cfg.loss.local_enabled and cfg.loss.lambda_local > 0
        pred, maps = self.predict(noisy, t, context, cond, capture=local)  # (B, C, h, w)
        target = training_target(x0, noise, t, self.alphas_cumprod, cfg.diffusion.prediction_type)
        terms = {"loss/dsm": dsm_loss(pred, target, cond["mask"], cfg.diffusion)}
        total = terms["loss/dsm"]
        if local:
            char_mask = batch["char_seg_mask"] * (~drop)[:, None]  # (B, L): no text, no attention target
            terms["loss/local"] = self.local_loss(list(maps.values()), batch["char_seg"], char_mask)
            total = total + cfg.loss.lambda_local * terms["loss/local"]
        keep = ~drop  # (B,) samples with text: only they can be read
        if self.text_mode and cfg.loss.ocr_enabled and cfg.loss.lambda_ocr > 0 and keep.any():
            x0_pred = predict_x0(pred[keep], noisy[keep], t[keep], self.alphas_cumprod, cfg.diffusion.prediction_type)
            images = self.first_stage.decode(x0_pred)  # (B', 3, H, W), gradients flow to the UNet
            ids = self.recognizer.tokenizer.encode([s for s, k in zip(batch["text"], keep, strict=True) if k])
            bbox = batch["bbox"][keep]  # (B', 4)
            terms["loss/ocr"] = ocr_loss(self.recognizer, images, bbox, ids.to(x0.device), cfg.loss.ocr_ce_clamp)
            total = total + cfg.loss.lambda_ocr * terms["loss/ocr"]
        terms["loss"] = total
        return terms

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms = self.losses(batch)
        self.log_dict(terms, prog_bar=True, batch_size=len(batch["text"]))
        return terms["loss"]

    def configure_optimizers(self):
        params = [p for p in self.unet.parameters() if p.requires_grad]
        return build_optimizer(params, self.cfg.optim, self.cfg.train.steps_per_epoch)

    # ------------------------------------------------------------------ checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep only the trained weights in the Lightning checkpoint; also write them as safetensors."""
        keys = set(self._trained_keys())
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keys}
        if self.trainer.is_global_zero:
            state = {k.removeprefix("unet."): v for k, v in checkpoint["state_dict"].items() if k.startswith("unet.")}
            path = Path(self.cfg.train.out_dir) / CHECKPOINT_DIR / TRAINABLE_FILE
            save_state_dict(state, path, metadata={"global_step": str(self.global_step)})

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A resumed checkpoint must hold exactly the weights this config trains (frozen ones come from config).

        The EMA alone may differ: switched on at resume it starts from the resumed weights; switched off, it
        is dropped.
        """
        state = checkpoint["state_dict"]
        if self.ema is None:
            checkpoint["state_dict"] = state = {k: v for k, v in state.items() if not k.startswith("ema.")}
        elif not any(k.startswith("ema.") for k in state):
            for name in self.ema.names:
                if f"unet.{name}" in state:
                    state[f"ema.{name.replace('.', '__')}"] = state[f"unet.{name}"].clone()
        got, want = set(state), set(self._trained_keys())
        if got != want:
            raise ValueError(
                f"checkpoint does not match the trainable weights of this config ({self.cfg.trainable}): "
                f"{len(want - got)} missing e.g. {sorted(want - got)[:3]}, "
                f"{len(got - want)} extra e.g. {sorted(got - want)[:3]}"
            )

    # ------------------------------------------------------------------ validation

    def on_validation_epoch_start(self) -> None:
        if self.ema is not None:
            self.ema.swap(self._trained_params())  # validate the averaged weights

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Fixed-noise DSM on held-out crops, then short-schedule samples read by the recognizer."""
        generator = torch.Generator(self.device).manual_seed(self.cfg.train.seed + batch_idx)
        with torch.no_grad():
            dsm = self.losses(batch, generator)["loss/dsm"]
        self.log("val/dsm", dsm, batch_size=len(batch["text"]), sync_dist=True)
        images, heat = self.sample(batch, generator)
        row = {"image": batch["image"], "masked": batch["masked_image"], "sample": images, "heat": heat}
        if self.recognizer is not None:
            reads = self.recognizer.read(self.recognizer.preprocess(images, batch["bbox"]))
            right = [r.lower() == t.lower() for r, t in zip(reads, batch["text"], strict=True)]
            self.log("val/seq_acc", float(np.mean(right)), batch_size=len(right), sync_dist=True)
            row["reads"] = reads
        row["text"] = batch["text"]
        self._val.append(row)

    @torch.no_grad()
    def sample(self, batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """DDIM with `val_steps` steps and CFG; returns images (B, 3, H, W) in [-1, 1] and the middle step's maps."""
        from udifftext.sampling.guidance import Conditioning, GuidedDenoiser
        from udifftext.sampling.schedulers import build_scheduler

        cfg = self.cfg
        cond = self._condition(batch)
        B = len(batch["text"])
        context = self._context(batch["text"], None)
        null = self.text_encoder.null_context(B) if self.text_mode else None
        conditioning = Conditioning(
            context, null, cond["mask"], cond["masked"], cond["glyph"], batch["mask"], batch["char_seg_mask"]
        )
        scale = cfg.val_guidance_scale if self.text_mode else 1.0
        denoiser = GuidedDenoiser(self.unet, self.store, scale, cfg.loss)
        scheduler = build_scheduler("ddim", cfg.diffusion, cfg.val_steps, self.device)
        z = torch.randn(cond["x0"].shape, generator=generator, device=self.device) * scheduler.init_noise_sigma
        heat = None
        for i, t in enumerate(scheduler.timesteps):
            capture = self.text_mode and i == len(scheduler.timesteps) // 2
            out, maps = denoiser(scheduler, z, t, conditioning, capture=capture)  # (B, C, h, w)
            heat = maps if capture else heat
            z = scheduler.step(out, t, z).prev_sample  # (B, C, h, w)
        return self.first_stage.decode(z).clamp(-1, 1), heat

    def on_validation_epoch_end(self) -> None:
        if self.ema is not None:
            self.ema.swap(self._trained_params())  # back to the live weights
        rows, self._val = self._val, []
        if rows and self.trainer.is_global_zero:
            folder = Path(self.cfg.train.out_dir) / "val"
            atomic_save_image(folder / f"step={self.global_step}.png", sample_grid(rows))
            if rows[0]["heat"] is not None:
                atomic_save_image(folder / f"step={self.global_step}_attn.png", attention_grid(rows[0]))


def _to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) in [-1, 1] -> RGB image."""
    array = ((image.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


def sample_grid(rows: list[dict[str, Any]]) -> Image.Image:
    """One row per held-out sample: original | masked input | generated."""
    tiles = [[_to_pil(r[k][i]) for k in ("image", "masked", "sample")] for r in rows for i in range(len(r["text"]))]
    w, h = tiles[0][0].size
    grid = Image.new("RGB", (3 * w, len(tiles) * h))
    for y, row in enumerate(tiles):
        for x, tile in enumerate(row):
            grid.paste(tile, (x * w, y * h))
    return grid


def attention_grid(row: dict[str, Any]) -> Image.Image:
    """Per sample of one batch: the generated image, then each character's cross-attention heatmap."""
    from udifftext.sampling.heatmaps import character_heatmaps, heatmap_strip

    strips = []
    for i, text in enumerate(row["text"]):
        crop = _to_pil(row["sample"][i])
        heat = character_heatmaps([m[i : i + 1] for m in row["heat"]], len(text), crop.size[::-1])
        strips.append(heatmap_strip(crop, heat))
    grid = Image.new("RGB", (max(s.width for s in strips), sum(s.height for s in strips)))
    for y, strip in enumerate(strips):
        grid.paste(strip, (0, y * strips[0].height))
    return grid


# ---------------------------------------------------------------------- the stage


def unet_loaders(cfg: UNetStageConfig) -> tuple[DataLoader, DataLoader]:
    """Shuffled training batches and the fixed held-out batches (`train.val_samples` of the heldout split)."""
    from udifftext.data.datasets import build_dataset, collate_batch

    train = build_dataset(cfg.data)
    heldout = build_dataset(replace(cfg.data, split="heldout", length=cfg.train.val_samples))
    workers = dict(num_workers=cfg.train.num_workers, persistent_workers=cfg.train.num_workers > 0)
    return (
        DataLoader(train, cfg.train.batch_size, shuffle=True, drop_last=True, collate_fn=collate_batch, **workers),
        DataLoader(heldout, min(cfg.train.batch_size, cfg.train.val_samples), shuffle=False, collate_fn=collate_batch),
    )


def export_pipeline(module: LitUDiffText, folder: str | Path) -> Path:
    """The pipeline folder sampling loads (`UDiffTextPipeline.from_pretrained`)."""
    parts = PipelineParts(module.cfg, module.unet, module.text_encoder, module.first_stage, module.recognizer)
    return save_pipeline_folder(folder, parts)


def run_unet_stage(
    cfg: UNetStageConfig, accelerator: str, devices: int | str, resume: str | None = None
) -> dict[str, Any]:
    """Train (resuming from last.ckpt when present), then export OUT/pipeline/ and write OUT/train.json.

    Also writes OUT/config.yaml, OUT/checkpoints/{last,step=N}.ckpt + unet_trainable.safetensors,
    OUT/logs/ and OUT/val/step=N.png (+ _attn.png) at each validation.
    """
    out_dir = Path(cfg.train.out_dir)
    ckpt = resolve_resume(out_dir, resume)
    step0 = seed_launch(cfg.train.seed, ckpt)
    module = LitUDiffText(cfg)
    train_loader, heldout_loader = unet_loaders(cfg)
    trainer = build_trainer(cfg.train, out_dir, accelerator, devices)
    if trainer.is_global_zero:
        save_run_config(cfg, out_dir)
        r = module.report
        print(f"unet ({cfg.unet.mode}): {r['trainable']:,} of {r['total']:,} parameters trainable ({r['share']:.2%})")
    start = time.perf_counter()
    trainer.fit(module, train_loader, heldout_loader, ckpt_path=ckpt)
    seconds = time.perf_counter() - start
    summary = {
        "mode": cfg.unet.mode,
        "trainable": module.report,
        "global_step": trainer.global_step,
        "steps_this_launch": trainer.global_step - step0,
        "fit_seconds_this_launch": round(seconds, 1),
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
    }
    if trainer.is_global_zero:
        module.use_ema_weights()
        summary["pipeline"] = str(export_pipeline(module, out_dir / "pipeline"))
        atomic_write_json(out_dir / "train.json", summary)
    return summary

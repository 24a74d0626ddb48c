"""Lightning glue for char-encoder pretraining, and the encoder stage runner (train -> export -> evaluate).

Contrastive pretraining (paper Sec. 3.2, upstream ``LabelEncoder.training_step``): the trained recognizer's
ViT is the frozen visual encoder; the text encoder and the pretraining heads learn.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from udifftext.config import EncoderStageConfig, config_to_yaml
from udifftext.io import atomic_write_json, atomic_write_text, save_state_dict
from udifftext.lit.recognizer_module import LitRecognizer
from udifftext.lit.trainer import build_optimizer, build_trainer, resolve_resume, save_run_config, seed_launch
from udifftext.recognizer.vitstr import load_recognizer
from udifftext.text.encoder import CharTextEncoder, load_text_encoder
from udifftext.text.metrics import position_accuracy, retrieval_top1
from udifftext.text.pretraining import PretrainingHeads, contrastive_loss

TASKS = ("recognizer", "contrastive")
EXPORT_NAMES = {"recognizer": "recognizer", "contrastive": "char_encoder"}


class LitCharEncoder(pl.LightningModule):
    """Trains `CharTextEncoder(cfg.text_encoder)` + heads against the frozen `cfg.recognizer`."""

    def __init__(self, cfg: EncoderStageConfig):
        super().__init__()
        self.cfg = cfg
        self.text_encoder: CharTextEncoder = load_text_encoder(cfg.text_encoder)
        self.recognizer = load_recognizer(cfg.recognizer).eval().requires_grad_(False)
        if self.text_encoder.max_len != self.recognizer.cfg.max_len:
            raise ValueError(
                f"text_encoder.max_len={self.text_encoder.max_len} != recognizer.max_len={self.recognizer.cfg.max_len}"
            )
        self.heads = PretrainingHeads(
            width=cfg.text_encoder.width,
            max_len=cfg.text_encoder.max_len,
            num_classes=self.text_encoder.tokenizer.num_classes,
            visual_tokens=self.recognizer.num_tokens,
            visual_dim=self.recognizer.embed_dim,
            cfg=cfg.contrastive,
        )
        self._val: list[dict[str, torch.Tensor]] = []

    @property
    def exported(self) -> torch.nn.Module:
        """The module whose weights the stage exports (heads and recognizer dropped)."""
        return self.text_encoder

    def train(self, mode: bool = True) -> LitCharEncoder:
        super().train(mode)
        self.recognizer.eval()  # frozen: no dropout, whatever Lightning asks
        return self

    def _tokens(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids = self.text_encoder.tokenizer.encode(batch["text"]).to(self.device)  # (B, L)
        with torch.no_grad():
            visual = self.recognizer.features(batch["word_crop"].to(self.device))  # (B, N, D)
        return ids, self.text_encoder(ids), visual  # (B, L), (B, L, W), (B, N, D)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        ids, text, visual = self._tokens(batch)
        terms = contrastive_loss(self.heads, text, visual, ids, self.cfg.contrastive)
        self.log_dict(terms, prog_bar=True, batch_size=len(ids))
        return terms["loss"]

    @torch.no_grad()
    def embed_batch(self, batch: dict) -> dict[str, torch.Tensor]:
        ids, text, visual = self._tokens(batch)
        return {
            "ids": ids,
            "text": self.heads.embed_text(text),  # (B, E)
            "image": self.heads.embed_image(visual),  # (B, E)
            "cls_logits": self.heads.cls_head(text),  # (B, L, C)
            "pos_logits": self.heads.pos_head(text),  # (B, L, L)
        }

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._val.append(self.embed_batch(batch))

    def on_validation_epoch_end(self) -> None:
        metrics = self.summarize(self._val, self.cfg.retrieval_pool)
        self._val = []
        self.log_dict({f"val/{k}": v for k, v in metrics.items()}, prog_bar=True)

    @staticmethod
    def summarize(batches: list[dict[str, torch.Tensor]], pool: int) -> dict[str, float]:
        out = {k: torch.cat([b[k] for b in batches]) for k in batches[0]}
        if len(out["ids"]) < pool:
            raise ValueError(f"retrieval needs {pool} held-out crops (retrieval_pool), got {len(out['ids'])}")
        positions = torch.arange(out["ids"].shape[1]).expand_as(out["ids"])  # (N, L)
        return {
            "retrieval_top1": retrieval_top1(out["text"][:pool], out["image"][:pool]),
            "cls_acc": position_accuracy(out["cls_logits"], out["ids"]),
            "cls_acc_chars": position_accuracy(out["cls_logits"], out["ids"], text_only=True),
            "pos_acc": position_accuracy(out["pos_logits"], positions),
            "samples": float(len(out["ids"])),
        }

    @torch.no_grad()
    def evaluate(self, loader: Iterable[dict]) -> dict[str, float]:
        """Held-out figures: text->image top-1 among `retrieval_pool` crops and the char classifier accuracy
        (all positions, as upstream logs it, and text positions only)."""
        self.eval()
        return self.summarize([self.embed_batch(batch) for batch in loader], self.cfg.retrieval_pool)

    def configure_optimizers(self):
        params = [*self.text_encoder.parameters(), *self.heads.parameters()]
        return build_optimizer(params, self.cfg.optim, self.cfg.train.steps_per_epoch)


def build_module(cfg: EncoderStageConfig) -> LitRecognizer | LitCharEncoder:
    if cfg.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got '{cfg.task}'")
    return LitRecognizer(cfg) if cfg.task == "recognizer" else LitCharEncoder(cfg)


def export_weights(module: LitRecognizer | LitCharEncoder, path: str | Path) -> Path:
    """Write the inference weights as ``path`` (.safetensors) and its component config as the same stem
    + ``.yaml`` (the ``recognizer:`` / ``text_encoder:`` node a stage config needs, weights path empty)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"export path must end in .safetensors, got {path}")
    model = module.exported
    save_state_dict(model.state_dict(), path)
    atomic_write_text(path.with_suffix(".yaml"), config_to_yaml(model.cfg.exported()))
    return path


def word_crop_loaders(cfg: EncoderStageConfig) -> tuple[DataLoader, DataLoader]:
    """Shuffled training crops and the fixed held-out crops (`eval_samples` of the heldout split)."""
    from udifftext.data.synth import WordCropDataset, heldout_word_crops

    train = WordCropDataset(cfg.data)
    heldout = heldout_word_crops(cfg.data, cfg.eval_samples)
    workers = dict(num_workers=cfg.train.num_workers, persistent_workers=cfg.train.num_workers > 0)
    return (
        DataLoader(train, batch_size=cfg.train.batch_size, shuffle=True, drop_last=True, **workers),
        DataLoader(heldout, batch_size=max(cfg.train.batch_size, 64), shuffle=False),
    )


def run_encoder_stage(
    cfg: EncoderStageConfig, accelerator: str, devices: int | str, resume: str | None = None
) -> dict[str, Any]:
    """Train (resuming from last.ckpt when present), export, evaluate on the held-out split.

    Writes OUT/config.yaml, OUT/checkpoints/, OUT/logs/, OUT/export/<name>.{safetensors,yaml} and
    OUT/eval.json; returns the figures written to eval.json.
    """
    out_dir = Path(cfg.train.out_dir)
    ckpt = resolve_resume(out_dir, resume)
    step0 = seed_launch(cfg.train.seed, ckpt)
    save_run_config(cfg, out_dir)
    module = build_module(cfg)
    train_loader, heldout_loader = word_crop_loaders(cfg)
    trainer = build_trainer(cfg.train, out_dir, accelerator, devices)
    start = time.perf_counter()
    trainer.fit(module, train_loader, heldout_loader, ckpt_path=ckpt)
    seconds = time.perf_counter() - start
    samples = (trainer.global_step - step0) * cfg.train.batch_size * cfg.train.accumulate_grad_batches
    export = export_weights(module, out_dir / "export" / f"{EXPORT_NAMES[cfg.task]}.safetensors")
    metrics = {
        "task": cfg.task,
        "heldout": module.evaluate(heldout_loader),
        "global_step": trainer.global_step,
        "steps_this_launch": trainer.global_step - step0,
        "fit_seconds_this_launch": round(seconds, 1),  # validation included
        "samples_per_s_this_launch": round(samples / max(seconds, 1e-9), 1),
        "export": str(export),
    }
    atomic_write_json(out_dir / "eval.json", metrics)
    return metrics

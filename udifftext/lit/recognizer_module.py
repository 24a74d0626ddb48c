"""Lightning glue for ViTSTR training on synthetic word crops: per-position cross-entropy, or CTC."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl
import torch

from udifftext.config import EncoderStageConfig
from udifftext.lit.trainer import build_optimizer
from udifftext.recognizer.prior import TextPrior, read_log_probs, symmetric_shifts, view_log_probs
from udifftext.recognizer.vitstr import ViTSTR, load_recognizer
from udifftext.text.metrics import char_accuracy, word_accuracy


class LitRecognizer(pl.LightningModule):
    """Trains `ViTSTR(cfg.recognizer)`; validation reads held-out crops (word and char accuracy)."""

    def __init__(self, cfg: EncoderStageConfig):
        super().__init__()
        self.cfg = cfg
        self.recognizer: ViTSTR = load_recognizer(cfg.recognizer)  # cfg.recognizer.weights = fine-tune from
        self._val: list[tuple[list[str], list[str]]] = []

    @property
    def exported(self) -> torch.nn.Module:
        """The module whose weights the stage exports."""
        return self.recognizer

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        ids = self.recognizer.tokenizer.encode(batch["text"]).to(self.device)  # (B, L)
        logits = self.recognizer(batch["word_crop"])  # (B, T, C)
        loss = self.recognizer.sequence_loss(logits, ids).mean()
        word_acc = word_accuracy(self.recognizer.decode(logits.detach()), list(batch["text"]))
        self.log_dict({"loss": loss, "train/word_acc": word_acc}, prog_bar=True, batch_size=len(ids))
        return loss

    def read_batch(self, batch: dict) -> tuple[list[str], list[str]]:
        return self.recognizer.read(batch["word_crop"].to(self.device)), list(batch["text"])

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._val.append(self.read_batch(batch))

    def on_validation_epoch_end(self) -> None:
        metrics = self.summarize(self._val)
        self._val = []
        self.log_dict({f"val/{k}": v for k, v in metrics.items()}, prog_bar=True)

    @staticmethod
    def summarize(reads: list[tuple[list[str], list[str]]]) -> dict[str, float]:
        predicted = [p for batch, _ in reads for p in batch]
        target = [t for _, batch in reads for t in batch]
        return {
            "word_acc": word_accuracy(predicted, target),
            "word_acc_nocase": word_accuracy(predicted, target, ignore_case=True),
            "char_acc": char_accuracy(predicted, target),
            "samples": float(len(target)),
        }

    @torch.no_grad()
    def evaluate(self, loader: Iterable[dict]) -> dict[str, Any]:
        """Held-out figures: exact word accuracy and character accuracy, read greedily; for a CTC recognizer with
        ``eval_prior_weight`` also read by beam search with the training texts' prior (``with_prior``), and with
        ``eval_view_shifts`` in shifted views that vote as well (``with_prior_views``)."""
        self.recognizer.eval()
        ctc = self.cfg.eval_prior_weight and self.recognizer.cfg.decoder == "ctc"
        views = symmetric_shifts(self.cfg.eval_view_shifts) if ctc else (0,)
        greedy, frames = [], []
        for batch in loader:
            log_probs = view_log_probs(self.recognizer, batch["word_crop"].to(self.device), views)  # (V, B, T, C)
            greedy.append((self.recognizer.decode(log_probs[views.index(0)]), list(batch["text"])))
            frames.append((log_probs.cpu(), list(batch["text"])))
        figures: dict[str, Any] = self.summarize(greedy)
        if ctc:
            weight, alphabet = self.cfg.eval_prior_weight, self.recognizer.cfg.alphabet
            prior = TextPrior.from_config(self.cfg.data)
            alone = [(read_log_probs([f[[views.index(0)]]], alphabet, prior, weight), texts) for f, texts in frames]
            figures["with_prior"] = {**self.summarize(alone), "weight": weight}
            if len(views) > 1:
                voted = [(read_log_probs([f], alphabet, prior, weight), texts) for f, texts in frames]
                figures["with_prior_views"] = {**self.summarize(voted), "weight": weight, "shifts": list(views)}
        return figures

    def configure_optimizers(self):
        return build_optimizer(self.recognizer.parameters(), self.cfg.optim, self.cfg.train.steps_per_epoch)

"""The shared trainer: checkpoints every N steps + last.ckpt, CSV logs, automatic resume."""

import pytest
import torch

from udifftext.config import OptimConfig, TrainConfig
from udifftext.io import MissingWeightsError


def _toy_module():
    import pytorch_lightning as pl

    from udifftext.lit.trainer import build_optimizer

    class Toy(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.layer(x), y)
            self.log("loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1]))

        def configure_optimizers(self):
            return build_optimizer(self.parameters(), OptimConfig(lr=1e-2, warmup_steps=2), steps_per_epoch=4)

    return Toy()


def _loader():
    torch.manual_seed(0)
    x = torch.randn(32, 4)
    y = x.sum(dim=1, keepdim=True)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)


def test_trainer_checkpoints_logs_and_resumes(tmp_path):
    from udifftext.lit.trainer import build_trainer, resolve_resume, save_run_config

    cfg = TrainConfig(max_steps=6, ckpt_every=3, keep_every=2, val_every=3, log_every=1)
    assert resolve_resume(tmp_path, None) is None
    save_run_config(cfg, tmp_path)
    assert (tmp_path / "config.yaml").is_file()

    torch.manual_seed(0)
    build_trainer(cfg, tmp_path, accelerator="cpu", devices=1).fit(_toy_module(), _loader(), _loader())
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.is_file() and (tmp_path / "checkpoints" / "step=6.ckpt").is_file()
    assert not (tmp_path / "checkpoints" / "step=3.ckpt").exists()  # the periodic one keeps only the newest
    assert sorted(p.name for p in (tmp_path / "curve").iterdir()) == ["step=2.ckpt", "step=4.ckpt", "step=6.ckpt"]
    assert (tmp_path / "logs" / "version_0" / "metrics.csv").read_text().count("\n") > 3
    assert resolve_resume(tmp_path, None) == str(last)

    cfg.max_steps = 8
    trainer = build_trainer(cfg, tmp_path, accelerator="cpu", devices=1)
    trainer.fit(_toy_module(), _loader(), _loader(), ckpt_path=resolve_resume(tmp_path, None))
    assert trainer.global_step == 8
    assert (tmp_path / "logs" / "version_0" / "metrics.csv").is_file()  # earlier logs kept
    assert (tmp_path / "logs" / "version_1" / "metrics.csv").is_file()
    assert torch.load(last, weights_only=False)["global_step"] == 8


def test_explicit_resume_must_exist(tmp_path):
    from udifftext.lit.trainer import resolve_resume

    with pytest.raises(MissingWeightsError, match="nope.ckpt"):
        resolve_resume(tmp_path, str(tmp_path / "nope.ckpt"))

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


def _recording_module(seen: list):
    """A toy module that records the sample indices of each batch and the first noise value it draws."""
    module = _toy_module()

    def training_step(batch, batch_idx):
        index, x = batch
        seen.append((index.tolist(), float(torch.randn(()))))
        return module.layer(x).pow(2).mean()

    module.training_step = training_step
    return module


def _launch(out_dir, max_steps: int) -> list:
    """One launch as the training stages run it: seed from the checkpoint to resume, then fit."""
    from udifftext.lit.trainer import build_trainer, resolve_resume, seed_launch

    ckpt = resolve_resume(out_dir, None)
    seed_launch(0, ckpt)
    data = torch.utils.data.TensorDataset(
        torch.arange(64), torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    )
    loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True)
    cfg = TrainConfig(max_steps=max_steps, ckpt_every=3, val_every=100, log_every=1)
    seen = []
    build_trainer(cfg, out_dir, accelerator="cpu", devices=1).fit(_recording_module(seen), loader, ckpt_path=ckpt)
    return seen


def test_a_resumed_launch_draws_new_batches_and_noise_and_a_fresh_one_repeats(tmp_path):
    first = _launch(tmp_path / "run", 3)
    resumed = _launch(tmp_path / "run", 6)  # steps 4-6 from last.ckpt
    assert len(first) == len(resumed) == 3
    assert [b for b, _ in resumed] != [b for b, _ in first]  # not the first launch's batches again
    assert all(r != f for (_, r), (_, f) in zip(resumed, first, strict=True))  # nor its noise
    assert _launch(tmp_path / "again", 3) == first  # a fresh run with the same seed is reproducible


def test_each_ddp_rank_draws_its_own_noise():
    from types import SimpleNamespace

    from udifftext.lit.trainer import RankStreams

    def first_draw(rank: int, step: int = 0) -> torch.Tensor:
        RankStreams(seed=0).on_train_start(SimpleNamespace(global_step=step, global_rank=rank), None)
        return torch.randn(8)

    assert torch.equal(first_draw(1), first_draw(1))
    assert not torch.equal(first_draw(0), first_draw(1))
    assert not torch.equal(first_draw(1), first_draw(1, step=500))


def test_a_run_that_stops_between_periodic_checkpoints_resumes_from_its_last_step(tmp_path):
    from udifftext.lit.trainer import build_trainer, resolve_resume

    cfg = TrainConfig(max_steps=5, ckpt_every=3, val_every=100, log_every=1)
    build_trainer(cfg, tmp_path, accelerator="cpu", devices=1).fit(_toy_module(), _loader())
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 5  # not 3, the last periodic one

    cfg.max_steps = 7
    trainer = build_trainer(cfg, tmp_path, accelerator="cpu", devices=1)
    trainer.fit(_toy_module(), _loader(), ckpt_path=resolve_resume(tmp_path, None))
    assert trainer.global_step == 7
    assert torch.load(last, weights_only=False)["global_step"] == 7

    cfg = TrainConfig(max_steps=2, ckpt_every=0, val_every=100, log_every=1)  # no periodic checkpoints at all
    build_trainer(cfg, tmp_path / "unperiodic", accelerator="cpu", devices=1).fit(_toy_module(), _loader())
    assert torch.load(tmp_path / "unperiodic/checkpoints/last.ckpt", weights_only=False)["global_step"] == 2

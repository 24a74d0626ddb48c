"""Two-process DDP on CPU (gloo): both ranks end the tiny UDiffText stage with identical trained weights.

The test runs this file as a script; Lightning's DDP launcher starts rank 1 by running it again. Each rank
writes its trained weights after `fit`, and the test compares them (and checks they moved).
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3


def run_rank(out_dir: str) -> None:
    """What each DDP process runs: 3 steps of the tiny stage, then save this rank's trained weights."""
    import pytorch_lightning as pl
    import torch

    from udifftext.config import UNetStageConfig, load_config
    from udifftext.io import save_state_dict
    from udifftext.lit.trainer import build_trainer
    from udifftext.lit.unet_module import LitUDiffText, unet_loaders
    from udifftext.unet import trainable_state_dict

    torch.set_num_threads(1)
    overrides = ["data.resolution=32", "unet.sample_size=32", "train.batch_size=2", "train.strategy=ddp"]
    overrides += [f"train.max_steps={STEPS}", "train.val_every=1000", "train.ckpt_every=1000"]
    overrides.append(f"train.out_dir={out_dir}")
    cfg = load_config(UNetStageConfig, ROOT / "configs/unet/tiny.yaml", overrides)
    pl.seed_everything(0)
    module = LitUDiffText(cfg)
    initial = {k: v.clone() for k, v in trainable_state_dict(module.unet).items()}
    train_loader, _ = unet_loaders(cfg)
    trainer = build_trainer(cfg.train, out_dir, accelerator="cpu", devices=2)
    trainer.fit(module, train_loader)
    final = trainable_state_dict(module.unet)
    save_state_dict(final, Path(out_dir) / f"rank{trainer.global_rank}.safetensors")
    if trainer.global_rank == 0:
        save_state_dict(initial, Path(out_dir) / "initial.safetensors")


def test_two_process_ddp_ranks_end_identical(tmp_path):
    from safetensors.torch import load_file

    done = subprocess.run(
        [sys.executable, __file__, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1)]
    initial = load_file(tmp_path / "initial.safetensors")
    assert ranks[0].keys() == ranks[1].keys() == initial.keys() and ranks[0]
    for key in ranks[0]:
        assert ranks[0][key].equal(ranks[1][key]), key
    assert any(not ranks[0][k].equal(initial[k]) for k in initial)


if __name__ == "__main__":
    run_rank(sys.argv[1])

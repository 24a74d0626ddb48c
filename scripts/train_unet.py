"""Diffusion fine-tuning of the UNet with character cross-attention (or text-free base pretraining).

usage: python scripts/train_unet.py --config configs/unet/small.yaml [--resume PATH]
           [--accelerator cpu --devices 1] [--threads 1] [key=value ...]

Resumes from OUT/checkpoints/last.ckpt when present (OUT = train.out_dir). Checkpoints hold only the
trained weights (also as OUT/checkpoints/unet_trainable.safetensors); validation writes OUT/val/*.png.
At the end it exports the pipeline folder OUT/pipeline/ (for scripts/sample.py) and OUT/train.json.
"""

from __future__ import annotations

import json

from udifftext.cli import load_or_exit, run_training, training_parser
from udifftext.config import UNetStageConfig


def parse_args(argv: list[str] | None = None):
    return training_parser(__doc__).parse_args(argv)


def main(args) -> None:
    cfg = load_or_exit(UNetStageConfig, args.config, args.overrides, print_config=args.print_config)
    from udifftext.lit.unet_module import run_unet_stage

    summary = run_training(run_unet_stage, cfg, args)
    if "pipeline" in summary:
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main(parse_args())

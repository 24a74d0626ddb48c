"""Diffusion fine-tuning of the UNet with character cross-attention (or text-free base pretraining).

usage: python scripts/train_unet.py --config configs/unet/small.yaml [--resume PATH]
           [--accelerator cpu --devices 1] [--threads 1] [key=value ...]

Resumes from OUT/checkpoints/last.ckpt when present (OUT = train.out_dir). Checkpoints hold only the
trained weights (also as OUT/checkpoints/unet_trainable.safetensors); validation writes OUT/val/*.png.
At the end it exports the pipeline folder OUT/pipeline/ (for scripts/sample.py) and OUT/train.json.
"""

from __future__ import annotations

import json
import sys

from udifftext.cli import config_parser, load_or_exit
from udifftext.config import UNetStageConfig


def parse_args(argv: list[str] | None = None):
    parser = config_parser(__doc__)
    parser.add_argument("--resume", default=None, help="Lightning checkpoint to resume from (default: last.ckpt)")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator: cpu | gpu | auto")
    parser.add_argument("--devices", default="auto", help="device count or 'auto'")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (0 = torch's default)")
    return parser.parse_args(argv)


def main(args) -> None:
    cfg = load_or_exit(UNetStageConfig, args.config, args.overrides)
    import torch

    from udifftext.io import MissingWeightsError
    from udifftext.lit.unet_module import run_unet_stage

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    devices = int(args.devices) if args.devices.isdigit() else args.devices
    try:
        summary = run_unet_stage(cfg, args.accelerator, devices, args.resume)
    except (ValueError, MissingWeightsError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if "pipeline" in summary:
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main(parse_args())

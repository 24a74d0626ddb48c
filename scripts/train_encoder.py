"""Train the ViTSTR recognizer (task: recognizer) or pretrain the char text encoder against it (task: contrastive).

usage: python scripts/train_encoder.py --config configs/encoder/recognizer_small.yaml [--resume PATH]
           [--accelerator cpu --devices 1] [--threads 1] [key=value ...]

Resumes from OUT/checkpoints/last.ckpt when present (OUT = train.out_dir). At the end it exports the
inference weights (heads dropped) to OUT/export/, evaluates on held-out synthetic crops, prints the figures
and writes them to OUT/eval.json.
"""

from __future__ import annotations

import json
import sys

from udifftext.cli import config_parser, load_or_exit
from udifftext.config import EncoderStageConfig


def parse_args(argv: list[str] | None = None):
    parser = config_parser(__doc__)
    parser.add_argument("--resume", default=None, help="Lightning checkpoint to resume from (default: last.ckpt)")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator: cpu | gpu | auto")
    parser.add_argument("--devices", default="auto", help="device count or 'auto'")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    return parser.parse_args(argv)


def main(args) -> None:
    cfg = load_or_exit(EncoderStageConfig, args.config, args.overrides)
    import torch

    from udifftext.io import MissingWeightsError
    from udifftext.lit.encoder_module import run_encoder_stage

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    devices = int(args.devices) if args.devices.isdigit() else args.devices
    try:
        metrics = run_encoder_stage(cfg, args.accelerator, devices, args.resume)
    except (ValueError, MissingWeightsError) as err:
        sys.exit(f"error: {err}")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main(parse_args())

"""Train the ViTSTR recognizer (task: recognizer) or pretrain the char text encoder against it (task: contrastive).

usage: python scripts/train_encoder.py --config configs/encoder/recognizer_small.yaml [--resume PATH]
           [--accelerator cpu --devices 1] [--threads 1] [key=value ...]

Resumes from OUT/checkpoints/last.ckpt when present (OUT = train.out_dir). At the end it exports the
inference weights (heads dropped) to OUT/export/, evaluates on held-out synthetic crops, prints the figures
and writes them to OUT/eval.json.
"""

from __future__ import annotations

import json

from udifftext.cli import load_or_exit, run_training, training_parser
from udifftext.config import EncoderStageConfig


def parse_args(argv: list[str] | None = None):
    return training_parser(__doc__).parse_args(argv)


def main(args) -> None:
    cfg = load_or_exit(EncoderStageConfig, args.config, args.overrides, print_config=args.print_config)
    from udifftext.lit.encoder_module import run_encoder_stage

    metrics = run_training(run_encoder_stage, cfg, args)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main(parse_args())

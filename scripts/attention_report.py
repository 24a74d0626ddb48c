r"""Where a UNet's char cross-attention looks: the share on the word's characters vs its padding, per layer.

    python scripts/attention_report.py --config configs/unet/small_rect_ink.yaml init_from=checkpoints/default
    python scripts/attention_report.py --config configs/unet/small_rect_ink.yaml init_from=checkpoints/default \
        init_fresh_cross_attention=true

Builds the training module of the config (init_from: the weights to inspect, a pipeline folder or a trained
checkpoint's safetensors), draws --samples training samples and runs the UNet once at --timestep. Prints, per
captured layer, the attention share on the characters (a uniform softmax gives the value in brackets), the mean
peak probability of a character token, L_loc and the norm of its gradient on the layer's query/key weights.
A share near 0 with a gradient near 0 is a text path parked on the padding tokens, which training cannot revive.
"""

from __future__ import annotations

from udifftext.cli import add_threads_flag, config_parser, load_or_exit, set_threads
from udifftext.config import UNetStageConfig


def parse_args(argv: list[str] | None = None):
    parser = config_parser(__doc__)
    parser.add_argument("--samples", type=int, default=8, help="training samples to average over")
    parser.add_argument("--timestep", type=int, default=500, help="diffusion timestep of the noisy input")
    parser.add_argument("--seed", type=int, default=0, help="torch seed (fresh weights, sample drawing)")
    add_threads_flag(parser)
    return parser.parse_args(argv)


def main(args) -> None:
    from udifftext.lit.attention_report import markdown, report_for_config

    set_threads(args.threads)
    cfg = load_or_exit(UNetStageConfig, args.config, args.overrides, print_config=args.print_config)
    rows = report_for_config(cfg, args.samples, args.timestep, args.seed)
    print(f"{cfg.init_from or 'random weights'}, {args.samples} samples, t={args.timestep}")
    print(markdown(rows))


if __name__ == "__main__":
    main(parse_args())

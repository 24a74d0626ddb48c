r"""Choose the text prior's order and weight for a CTC recognizer, on training crops only.

    python scripts/tune_text_prior.py --config configs/encoder/recognizer_ctc_wide.yaml --threads 1 \
        recognizer.resample_positions=false recognizer.weights=checkpoints/encoders/recognizer_ctc_wide.safetensors \
        eval_samples=4096

The prior (udifftext.recognizer.prior) is fitted on the training words outside a tuning fold (one word in five)
and scored on `eval_samples` crops of the training split whose text is a random string or one of the fold's words,
so neither the held-out split nor a word the prior has seen decides the choice. Prints one row per order and
weight, greedy reading first; `scripts/compare_recognizers.py --prior-weight W` then reads the held-out split.
`--view-shifts 2,4` also tries reading each crop moved by 2 (then 2 and 4) px to either side, the views voting
(`compare_recognizers.py --view-shifts`).
"""

from __future__ import annotations

import sys

from udifftext.cli import add_threads_flag, comma_separated, config_parser, load_or_exit, set_threads
from udifftext.config import EncoderStageConfig


def parse_args(argv: list[str] | None = None):
    parser = config_parser(__doc__)
    add_threads_flag(parser)
    parser.add_argument(
        "--orders", type=comma_separated(int), default=[4, 5, 6, 7], help="n-gram orders (comma-separated)"
    )
    parser.add_argument(
        "--weights", type=comma_separated(float), default=[0.3, 0.5, 0.7, 1.0], help="prior weights (comma-separated)"
    )
    parser.add_argument("--folds", type=int, default=5, help="one training word in FOLDS is kept out of the prior")
    parser.add_argument(
        "--view-shifts",
        type=comma_separated(int),
        default=[],
        help="also read each crop moved by these px to either side (comma-separated; each prefix is tried: 2,4 tries "
        "no views, +-2, and +-2 +-4)",
    )
    args = parser.parse_args(argv)
    if min(args.orders) < 1 or min(args.weights) < 0 or args.folds < 2 or min(args.view_shifts, default=1) < 1:
        parser.error("orders must be >= 1, weights >= 0, --folds >= 2 and --view-shifts >= 1")
    return args


def main(args) -> None:
    from udifftext.data.words import TextSampler
    from udifftext.judge import RecognizerJudge
    from udifftext.recognizer.compare import training_crops
    from udifftext.recognizer.prior import symmetric_shifts, tune_prior
    from udifftext.recognizer.vitstr import load_recognizer

    set_threads(args.threads)
    cfg = load_or_exit(EncoderStageConfig, args.config, args.overrides, print_config=args.print_config)
    if not cfg.recognizer.weights:
        sys.exit("error: set recognizer.weights=PATH (our exported recognizer .safetensors) to tune its prior")
    if cfg.recognizer.decoder != "ctc":
        sys.exit(f"error: a text prior reads CTC outputs: recognizer.decoder is '{cfg.recognizer.decoder}'")
    rec = cfg.recognizer
    judge = RecognizerJudge(load_recognizer(rec), rec.img_height, rec.img_width, rec.weights)
    sampler = TextSampler.from_config(cfg.data, "train")
    shift_sets = [symmetric_shifts(args.view_shifts[:n]) for n in range(len(args.view_shifts) + 1)]
    rows = tune_prior(judge, training_crops(cfg), sampler, args.orders, args.weights, args.folds, shift_sets)
    words, random = f"fold words (n={rows[0]['n words']})", f"random strings (n={rows[0]['n random']})"
    print(f"| order | weight | views (px) | {words} | {random} | mix |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        scores = " | ".join(f"{row[key]:.3f}" for key in ("fold words", "random strings", "mix"))
        views = ", ".join(f"{dx:+d}" if dx else "0" for dx in row["shifts"])
        print(f"| {row['order'] or 'greedy'} | {row['weight']} | {views} | {scores} |")


if __name__ == "__main__":
    main(parse_args())

r"""The best any reader can do on the recognizer's held-out word crops: texts that give the same picture.

    python scripts/reading_ceiling.py --config configs/encoder/recognizer_ctc_wide.yaml --tolerance 0.02,0.05,0.1

For every held-out crop, each text of the same length that would change no grey level of the crop by more than a
tolerance (udifftext.data.ambiguity: 'l' and 'I' drawn alike, a letter over a patch of its own colour); a reader
that knows the split's true prior (held-out words included) reads the likeliest of them. Prints, per tolerance, the
crops with a look-alike and that reader's word accuracy on all crops, list words and random strings: a ceiling on
any reader's. `--out FILE.json` keeps every crop's look-alikes (an existing file is never overwritten).
"""

from __future__ import annotations

import sys
from pathlib import Path

from udifftext.cli import comma_separated, config_parser, load_or_exit
from udifftext.config import EncoderStageConfig


def parse_args(argv: list[str] | None = None):
    parser = config_parser(__doc__)
    parser.add_argument(
        "--tolerance",
        type=comma_separated(float),
        default=[0.02, 0.05, 0.1],
        help="grey-level changes (0..1, comma-separated) a look-alike may make at any pixel; one ceiling for each",
    )
    parser.add_argument("--out", default="", help="write each crop's look-alikes to this JSON file")
    args = parser.parse_args(argv)
    args.tolerance = sorted(args.tolerance)
    if not 0 <= args.tolerance[0] <= args.tolerance[-1] <= 1:
        parser.error(f"--tolerance takes grey levels between 0 and 1, got {args.tolerance}")
    if args.out and Path(args.out).exists():
        parser.error(f"--out {args.out} exists: choose another file")
    return args


def main(args) -> None:
    from tqdm import tqdm

    from udifftext.data.ambiguity import CropLookAlikes, reading_ceiling
    from udifftext.data.synth import heldout_word_crops
    from udifftext.data.words import TextSampler
    from udifftext.io import atomic_write_json

    cfg = load_or_exit(EncoderStageConfig, args.config, args.overrides, print_config=args.print_config)
    try:
        dataset = heldout_word_crops(cfg.data, cfg.eval_samples)
        sampler = TextSampler.from_config(cfg.data, "heldout")
    except ValueError as error:
        sys.exit(f"error: {error}")
    words = {w.lower() for w in sampler.words}
    crops = [CropLookAlikes(dataset, index) for index in range(len(dataset))]
    for crop in tqdm(crops, desc="drawing every substitution", unit="crop"):
        crop.within(args.tolerance[-1])  # draws each one once; the ceilings below reuse the differences
    is_list_word = [crop.text.lower() in words for crop in crops]
    print(f"{len(crops)} held-out crops, {cfg.data.word_crop_height} x {cfg.data.word_crop_width} px\n")
    print("| tolerance | crops with a look-alike | best reader: all | list words | random strings |")
    print("|---|---|---|---|---|")
    results, look_alikes = [], {}
    for tolerance in args.tolerance:
        ceiling, found = reading_ceiling(crops, is_list_word, sampler.probability, tolerance)
        print(
            f"| {tolerance:g} | {ceiling.with_look_alikes} | {ceiling.score:.3f} | {ceiling.list_word_score:.3f} "
            f"| {ceiling.random_string_score:.3f} |"
        )
        results.append(vars(ceiling))
        for crop, texts in zip(crops, found, strict=True):
            if texts:
                look_alikes.setdefault(crop.index, {"text": crop.text})[f"{tolerance:g}"] = texts
    if args.out:
        atomic_write_json(args.out, {"ceilings": results, "look_alikes": look_alikes})
        print(f"\nlook-alikes of {len(look_alikes)} crops in {args.out}")


if __name__ == "__main__":
    main(parse_args())

r"""Our ViTSTR beside the independent OCR judge (PP-OCRv4) on the same held-out synthetic word crops.

    python scripts/compare_recognizers.py --config configs/encoder/recognizer_small.yaml \
        recognizer.weights=checkpoints/encoders/recognizer_small.safetensors

Prints word accuracy (case-sensitive and not) and character accuracy for all crops, list words, random strings
and text lengths 1-4, 5-8, 9-12: how far our recognizer is from its target, and how hard the split is for a
production OCR. `--split train` reads crops of the training split instead (training words and fonts): a recognizer
that reads those no better than the held-out ones underfits. `--squeeze 24x256` first shrinks every crop to 24 x 256
px and stretches it back: how much of the crop's height or width the readers need.

`--prior-weight 0.7` adds a row for our recognizer read with the engine's text prior (a character 6-gram of the
training words mixed with random strings, udifftext.recognizer.prior; CTC recognizers only). With `--view-shifts 2`
that reader also reads each crop moved 2 px to either side, and the three views vote with their likelihoods.
`--ensemble A.safetensors,B.safetensors` adds more exported CTC recognizers (their .yaml beside them, any crop
width) whose views vote with ours.

A person as a third reader: `--sheets DIR` draws `--sheet-crops` random crops as numbered sheets without their texts
(no weights needed) and an empty DIR/transcription.txt; fill in what you read (`position: text`, nothing where
nothing can be read) without looking at the texts, then `--transcription DIR` (same config and overrides) scores
the transcription beside ours and the judge on those crops.
"""

from __future__ import annotations

import sys

from udifftext.cli import add_threads_flag, comma_separated, config_parser, load_or_exit, set_threads
from udifftext.config import EncoderStageConfig


def parse_args(argv: list[str] | None = None):
    parser = config_parser(__doc__)
    add_threads_flag(parser)
    parser.add_argument(
        "--length-bucket",
        type=int,
        default=4,  # udifftext.recognizer.compare.LENGTH_BUCKET, not imported here so that --help stays fast
        help="characters per text-length group (1: one row per length)",
    )
    parser.add_argument(
        "--split",
        choices=("heldout", "train"),  # udifftext.recognizer.compare.heldout_crops / training_crops
        default="heldout",
        help="read the held-out crops the stage evaluates on, or as many crops of the training split",
    )
    parser.add_argument(
        "--squeeze",
        metavar="HxW",
        default="",
        help="shrink each crop to H x W px and stretch it back before reading (udifftext.recognizer.compare."
        "squeeze_crops)",
    )
    parser.add_argument(
        "--prior-weight",
        type=float,
        default=0.0,
        help="also read ours by beam search with the training texts' prior at this weight (0: not; 0.7 was chosen "
        "on a fold of the training words)",
    )
    parser.add_argument(
        "--view-shifts",
        type=comma_separated(int),
        default=[],
        help="with --prior-weight: also read each crop moved by these px to either side (comma-separated, e.g. 2,4) "
        "and let the views vote (udifftext.recognizer.prior.read_views)",
    )
    parser.add_argument(
        "--ensemble",
        type=comma_separated(str),
        default=[],
        help="with --prior-weight: more exported recognizers (.safetensors, comma-separated) whose views vote too",
    )
    parser.add_argument("--sheets", metavar="DIR", default="", help="write blind reading sheets to DIR and exit")
    parser.add_argument("--sheet-crops", type=int, default=160, help="crops on the sheets (a random sample)")
    parser.add_argument("--sheet-seed", type=int, default=0, help="seed of the sheets' sample")
    parser.add_argument(
        "--transcription", metavar="DIR", default="", help="score DIR/transcription.txt (from --sheets DIR) too"
    )
    args = parser.parse_args(argv)
    if args.prior_weight < 0:
        parser.error(f"--prior-weight must be >= 0, got {args.prior_weight}")
    if args.view_shifts and (not args.prior_weight or min(args.view_shifts) < 1):
        parser.error("--view-shifts takes positive pixel counts and reads with the prior: give --prior-weight too")
    if args.ensemble and not args.prior_weight:
        parser.error("--ensemble reads with the prior: give --prior-weight too")
    if args.sheets and args.transcription:
        parser.error("--sheets writes a reading, --transcription scores one: give one of them")
    if args.length_bucket < 1:
        parser.error(f"--length-bucket must be at least 1, got {args.length_bucket}")
    if args.squeeze:
        height, _, width = args.squeeze.partition("x")
        if not (height.isdigit() and width.isdigit() and int(height) > 0 and int(width) > 0):
            parser.error(f"--squeeze takes HxW in pixels, e.g. 24x256, got '{args.squeeze}'")
        args.squeeze = (int(height), int(width))
    return args


def main(args) -> None:
    from udifftext.judge import OcrJudge, RecognizerJudge, recognizer_judge_from_export
    from udifftext.recognizer.compare import compare_readers, heldout_crops, markdown, squeeze_crops, training_crops
    from udifftext.recognizer.prior import PriorReader, TextPrior, symmetric_shifts
    from udifftext.recognizer.transcribe import read_transcription, sample_positions, subset, write_sheets
    from udifftext.recognizer.vitstr import load_recognizer

    set_threads(args.threads)
    cfg = load_or_exit(EncoderStageConfig, args.config, args.overrides, print_config=args.print_config)
    if not (args.sheets or cfg.recognizer.weights):
        sys.exit("error: set recognizer.weights=PATH (our exported recognizer .safetensors) to compare it")
    probe = heldout_crops(cfg) if args.split == "heldout" else training_crops(cfg)
    if args.squeeze:
        probe = squeeze_crops(probe, *args.squeeze)
    if args.sheets:
        try:
            indices = sample_positions(len(probe.texts), args.sheet_crops, args.sheet_seed)
            sheets = write_sheets(probe, indices, args.sheets)
        except (FileExistsError, ValueError) as error:
            sys.exit(f"error: {error}")
        print(f"{len(sheets)} sheets in {args.sheets}: fill in {args.sheets}/transcription.txt, then --transcription")
        return
    readers = {}
    if args.transcription:
        try:
            indices, transcribed = read_transcription(args.transcription, probe)
        except (FileNotFoundError, ValueError) as error:
            sys.exit(f"error: {error}")
        probe = subset(probe, indices)
        readers["person (transcription)"] = lambda _: transcribed
    ours = RecognizerJudge(
        load_recognizer(cfg.recognizer), cfg.recognizer.img_height, cfg.recognizer.img_width, cfg.recognizer.weights
    )
    readers = {"ours (ViTSTR)": ours.read, "PP-OCRv4 (judge)": OcrJudge().read, **readers}
    if args.prior_weight:
        try:
            shifts = symmetric_shifts(args.view_shifts)
            ensemble = [recognizer_judge_from_export(path) for path in args.ensemble]
            with_prior = PriorReader(ours, TextPrior.from_config(cfg.data), args.prior_weight, shifts, ensemble)
        except (FileNotFoundError, ValueError) as error:
            sys.exit(f"error: {error}")
        name = f"ours + text prior, views {shifts[0]}..{shifts[-1]} px" if args.view_shifts else "ours + text prior"
        name += f" + {len(ensemble)} more recognizers" if ensemble else ""
        readers = {name: with_prior.read, **readers}
    rows = compare_readers(probe, readers, args.length_bucket)
    print(markdown(rows))


if __name__ == "__main__":
    main(parse_args())

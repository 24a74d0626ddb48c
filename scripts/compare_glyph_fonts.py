r"""Which font the judge reads best when texts are drawn in it as the sampler draws the glyph.

    python scripts/compare_glyph_fonts.py --config configs/eval/default.yaml --samples 300 --seed 2026 \
        --fonts data/fonts/dejavu/DejaVuSans.ttf data/fonts/liberation/LiberationMono-Regular.ttf

Draws `--samples` held-out texts (the config's data: list words in random case and random strings over the
alphabet) with their own seed, not the evaluation's cases, renders each cleanly in every font and prints the
judge's (PP-OCRv4) SeqAcc per font, for list words and random strings apart: how legible a glyph in that font can
make a glyph model's writing (`sample.glyph_font`).
"""

from __future__ import annotations

from udifftext.cli import config_parser, load_or_exit
from udifftext.config import EvalConfig


def parse_args(argv: list[str] | None = None):
    parser = config_parser(__doc__, config_required=False)
    parser.add_argument("--fonts", nargs="+", required=True, help="font files (.ttf/.otf) to compare")
    parser.add_argument("--samples", type=int, default=300, help="held-out texts drawn per font")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the texts (keep it off the eval seeds)")
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error(f"--samples must be at least 1, got {args.samples}")
    return args


def main(args) -> None:
    import numpy as np

    from udifftext.data.words import TextSampler, resolve_data_path
    from udifftext.glyph_fonts import glyph_font_legibility, markdown
    from udifftext.judge import OcrJudge

    cfg = load_or_exit(EvalConfig, args.config, args.overrides, print_config=args.print_config)
    missing = [f for f in args.fonts if not resolve_data_path(f).is_file()]
    if missing:
        raise SystemExit(f"error: font files not found: {missing}")
    sampler = TextSampler.from_config(cfg.data, "heldout")
    rng = np.random.default_rng(args.seed)
    texts = [sampler.sample(rng) for _ in range(args.samples)]
    list_words = {w.lower() for w in sampler.words}
    rows = glyph_font_legibility(args.fonts, texts, list_words, OcrJudge().read)
    print(markdown(rows))


if __name__ == "__main__":
    main(parse_args())

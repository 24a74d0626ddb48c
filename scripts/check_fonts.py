"""Screen fonts before adding them to a training folder: each must show every character's label.

    python scripts/check_fonts.py data/fonts_extra2 /usr/share/fonts/truetype/some-font.ttf
    python scripts/check_fonts.py NEW_FOLDER --compare-to data/fonts data/fonts_extra data/fonts_extra2

Prints one line per font with what keeps it out (missing glyphs, I/l/| drawn alike, old-style figures,
lowercase without ascenders) and exits with status 1 when any font fails. With --compare-to it also names
each font's most alike font in those folders (mean IoU of letters and figures) and fails fonts at or above
--max-likeness: a near clone of a training font adds nothing, one of a held-out font leaks the split.
See udifftext/data/font_check.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from udifftext.data.font_check import font_problems, glyph_likeness, glyph_shapes
from udifftext.data.words import FONT_SUFFIXES, list_fonts


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="font files or folders searched for .ttf / .otf / .woff")
    parser.add_argument(
        "--compare-to", nargs="+", type=Path, default=[], metavar="FOLDER", help="fonts to compare with"
    )
    parser.add_argument("--max-likeness", type=float, default=0.88, help="fail at this glyph IoU or above (0.88)")
    return parser.parse_args(argv)


def font_files(paths: list[Path]) -> list[Path]:
    fonts = []
    for path in paths:
        if path.is_dir():
            fonts += list_fonts(path)
        elif path.suffix.lower() in FONT_SUFFIXES and path.is_file():
            fonts.append(path)
        else:
            sys.exit(f"error: {path} is neither a folder nor a .ttf / .otf / .woff file")
    return fonts


def main(args) -> None:
    fonts = font_files(args.paths)
    known = {p: glyph_shapes(p) for p in font_files(args.compare_to)}
    failed = 0
    for font in fonts:
        problems = font_problems(font)
        note = ""
        if known and not problems:
            shapes = glyph_shapes(font)
            likeness, nearest = max((glyph_likeness(shapes, other), p.name) for p, other in known.items() if p != font)
            note = f" (most alike: {nearest}, {likeness:.2f})"
            if likeness >= args.max_likeness:
                problems.append(f"glyphs like {nearest}'s (IoU {likeness:.2f})")
        failed += bool(problems)
        print(f"{'FAIL' if problems else 'ok  '} {font}{note}" + (f": {'; '.join(problems)}" if problems else ""))
    print(f"{len(fonts) - failed} of {len(fonts)} fonts pass")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main(parse_args())

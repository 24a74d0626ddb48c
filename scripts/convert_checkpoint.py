r"""Convert the paper's weights into a udifftext pipeline folder (model.yaml + safetensors), once.

usage:
  python scripts/convert_checkpoint.py --from upstream --in checkpoints/udifftext.ckpt --out checkpoints/paper \
      [--vae AE_inpainting_2.safetensors] [--encoder epoch=19-step=7820.ckpt] [--recognizer vitstr_base_patch16_224.pth]
  python scripts/convert_checkpoint.py --from sd2 --in stable-diffusion-2-inpainting/ --out checkpoints/sd2_base \
      [--encoder epoch=19-step=7820.ckpt] [--recognizer ...]      # --in may also be 512-inpainting-ema.ckpt

The model layout comes from --config (default configs/unet/paper.yaml) and dotted overrides. --out must
be empty or absent unless --overwrite; it may never contain an input. Load the result with
`UDiffTextPipeline.from_pretrained(OUT)` or `scripts/sample.py --model OUT`; for `--from sd2` it is the
`unet.base_weights` of a training run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from udifftext.cli import config_parser, load_or_exit
from udifftext.config import UNetStageConfig

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs/unet/paper.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = config_parser(__doc__, config_required=False)
    parser.add_argument("--from", dest="source", required=True, choices=("sd2", "upstream"), help="input format")
    parser.add_argument("--in", dest="inp", required=True, help="UDiffText .ckpt, or SD-2-inpainting folder / .ckpt")
    parser.add_argument("--out", required=True, help="pipeline folder to write")
    parser.add_argument("--vae", help="AE_inpainting_2.safetensors (default: the VAE inside --in)")
    parser.add_argument("--encoder", help="LabelEncoder epoch=19-step=7820.ckpt (upstream default: inside --in)")
    parser.add_argument("--recognizer", help="ViTSTR-Base vitstr_base_patch16_224.pth (optional)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    return parser.parse_args(argv)


def check_output(out: Path, inputs: list[str], overwrite: bool) -> None:
    """Refuse a non-empty `out` without `overwrite`, and any `out` holding (or being) an input."""
    out = out.resolve()
    for item in inputs:
        path = Path(item).resolve()
        if path == out or out in path.parents:
            raise ValueError(f"--out {out} contains the input {item}: choose another output folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ValueError(f"--out {out} exists and is not empty: pass --overwrite or choose another folder")


def main(args: argparse.Namespace) -> int:
    cfg = load_or_exit(
        UNetStageConfig, args.config or str(DEFAULT_CONFIG), args.overrides, print_config=args.print_config
    )
    from udifftext.checkpoint import MODEL_CONFIG, PART_FILES, save_pipeline_folder
    from udifftext.convert.build import convert_sd2, convert_upstream
    from udifftext.io import MissingWeightsError

    out = Path(args.out)
    extra = {"vae": args.vae, "encoder": args.encoder, "recognizer": args.recognizer}
    try:
        check_output(out, [args.inp, *[v for v in extra.values() if v]], args.overwrite)
        convert = convert_sd2 if args.source == "sd2" else convert_upstream
        parts, report = convert(args.inp, cfg, **extra)
    except (ValueError, MissingWeightsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name in [MODEL_CONFIG, *PART_FILES.values()]:  # no stale part (e.g. an old recognizer) survives
        (out / name).unlink(missing_ok=True)
    save_pipeline_folder(out, parts)
    for part, source in report.items():
        print(f"{part}: {source}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))

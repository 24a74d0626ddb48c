"""Write text into images with a UDiffText pipeline folder (noise selection on, refinement optional).

usage:
  python scripts/sample.py --image IMG --box x0,y0,x1,y1 --text Hello --out out.png [--mask M.png --text ...]
  python scripts/sample.py --manifest cases.jsonl --out DIR [--model FOLDER] [--device cpu] [key=value ...]
  python scripts/sample.py          # the bundled example in data/examples/ -> outputs/

Regions (--box, --quad, --mask; repeatable) pair with the --text flags in order. Sampling settings come
from --config (default configs/sample/default.yaml) and dotted overrides: steps=20 seed=1
refinement.enabled=true. A manifest has one JSON object per line: id, image, box|quad|mask, text; the
run resumes from DIR/results.jsonl. Outputs: OUT.png, OUT_r<i>_crop.png, OUT_r<i>_attn.png (+ OUT.json).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from udifftext.cli import load_sample_config, sampling_parser

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs/sample/default.yaml"
EXAMPLE_MANIFEST = ROOT / "data/examples/cases.jsonl"


class RegionAction(argparse.Action):
    """Collect --box/--quad/--mask in command-line order as (kind, value) pairs."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.regions = [*namespace.regions, (option_string.lstrip("-"), values)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = sampling_parser(__doc__)
    parser.add_argument("--image", help="input image (any size and mode)")
    for kind, form in (("box", "x0,y0,x1,y1"), ("quad", "x0,y0,...,x3,y3"), ("mask", "MASK.png")):
        parser.add_argument(f"--{kind}", dest="regions", action=RegionAction, default=[], metavar=form)
    parser.add_argument("--text", action="append", default=[], help="text for the region given in the same order")
    parser.add_argument("--manifest", help="JSONL file of items (id, image, box|quad|mask, text)")
    parser.add_argument("--out", help="output image (with --image) or output folder (with --manifest)")
    return parser.parse_args(argv)


def plan(args: argparse.Namespace):
    """Jobs, the manifest output folder (None for one image) and whether this is the bundled example."""
    from udifftext.sampling.regions import parse_region
    from udifftext.sampling.runner import Job, check_no_overwrite, check_out_path, read_manifest

    if args.image and args.manifest:
        raise ValueError("give --image or --manifest, not both")
    if not args.image and (args.regions or args.text):
        raise ValueError("--box/--quad/--mask/--text need --image")
    if args.image:
        if not args.out or not args.regions:
            raise ValueError("--image needs --out OUT.png and at least one --box/--quad/--mask with its --text")
        check_out_path(Path(args.out))
        job = Job("out", Path(args.image), [parse_region(k, v) for k, v in args.regions], args.text, Path(args.out))
        check_no_overwrite([job], with_record=True)
        return [job], None, False
    manifest = Path(args.manifest) if args.manifest else EXAMPLE_MANIFEST
    if args.manifest and not args.out:
        raise ValueError("--manifest needs --out DIR")
    out_dir = Path(args.out or "outputs")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out must be a folder with --manifest, got the file '{out_dir}'")
    jobs = read_manifest(manifest, out_dir)
    check_no_overwrite(jobs, with_record=False, extra_inputs=[manifest])
    return jobs, out_dir, not args.manifest


def main(args: argparse.Namespace) -> int:
    cfg = load_sample_config(args, DEFAULT_CONFIG)
    from udifftext.io import MissingWeightsError

    try:
        jobs, out_dir, example = plan(args)
        import torch

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {device} asked for, but no CUDA device is available")
        try:
            from udifftext.pipeline import load_pipeline_or_random

            pipe, note = load_pipeline_or_random(cfg.model, device, allow_random=example and not args.model)
            if note:
                print(f"note: {note}", file=sys.stderr)
        except KeyError as err:
            raise ValueError(f"pipeline folder {cfg.model} does not match model.yaml: {err}") from None
        from udifftext.sampling.runner import run_jobs

        run = run_jobs(pipe, jobs, cfg, out_dir, log=lambda msg: print(msg, file=sys.stderr))
    except (ValueError, MissingWeightsError) as err:
        print("error: " + " ".join(str(err).splitlines()), file=sys.stderr)
        return 2
    if run == 0:
        print(f"nothing to do: every item is already in {out_dir / 'results.jsonl'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))

r"""Evaluate text inpainting: SeqAcc (independent OCR judge), NED, FID, LPIPS; reconstruction and editing.

Sample with the pipeline and score (the main model plus every variant in the config):
    python scripts/evaluate.py --config configs/eval/default.yaml [key=value ...] [--device cuda]
Sample a committed set of cases instead of a dataset draw (`cases:` in the config), e.g. unseen photographs:
    python scripts/evaluate.py --config configs/eval/photos.yaml
Write the chosen cases for `sample.py`, then score its outputs (one row group per --pred folder):
    python scripts/evaluate.py --config configs/eval/default.yaml --write-manifest runs/eval_cases
    python scripts/sample.py --manifest runs/eval_cases/cases.jsonl --out runs/eval_pred
    python scripts/evaluate.py --config configs/eval/default.yaml --manifest runs/eval_cases/cases.jsonl \
        --pred runs/eval_pred
Writes OUT/metrics.json, OUT/metrics.md, OUT/cases.jsonl and OUT/grid_<variant>.png (out_dir in the config).
"""

from __future__ import annotations

import sys

from udifftext.cli import config_parser, load_or_exit
from udifftext.config import EvalConfig


def parse_args(argv: list[str] | None = None):
    parser = config_parser(__doc__)
    parser.add_argument("--write-manifest", metavar="DIR", help="write the cases (images, masks, cases.jsonl) and stop")
    parser.add_argument("--manifest", help="cases.jsonl of the predictions to score (with --pred)")
    parser.add_argument("--pred", nargs="+", metavar="DIR", help="folders of DIR/<id>.png written by sample.py")
    parser.add_argument("--inception-weights", help="FID Inception weights (pt_inception-2015-12-05-6726825d.pth)")
    parser.add_argument("--lpips-weights", help="torchvision AlexNet weights for LPIPS (alexnet-owt-7be5be79.pth)")
    parser.add_argument("--out", help="output folder (overrides out_dir)")
    parser.add_argument("--device", default="cpu", help="device for sampling, e.g. cuda")
    args = parser.parse_args(argv)
    if args.pred and not args.manifest:
        parser.error("--pred needs --manifest (the cases the predictions were made from)")
    if args.write_manifest and args.manifest:
        parser.error("--write-manifest and --manifest are exclusive")
    return args


def main(args) -> None:
    flags = {"inception_weights": args.inception_weights, "lpips_weights": args.lpips_weights, "out_dir": args.out}
    overrides = list(args.overrides) + [f"{k}={v}" for k, v in flags.items() if v is not None]
    cfg = load_or_exit(EvalConfig, args.config, overrides, print_config=args.print_config)

    from udifftext.evaluation import config_cases, evaluate, markdown_table, write_manifest
    from udifftext.io import MissingWeightsError

    try:
        if args.write_manifest:
            path = write_manifest(config_cases(cfg), args.write_manifest)
            print(f"wrote {path}: run `python scripts/sample.py --manifest {path} --out DIR`, then --manifest/--pred")
            return
        metrics = evaluate(cfg, args.manifest, args.pred, args.device)
    except (ValueError, MissingWeightsError) as err:  # ConfigError is a ValueError
        sys.exit(f"error: {err}")
    print(markdown_table(metrics["results"], metrics))
    print(f"report written to {cfg.out_dir}")


if __name__ == "__main__":
    main(parse_args())

"""Web demo: paint regions or type boxes on an image, one text per region, see the result in the browser.

usage:
  python scripts/demo.py                          # checkpoints/default (a tiny random model when it is missing)
  python scripts/demo.py --model FOLDER --port 7860 [--host 127.0.0.1] [--config configs/sample/default.yaml] [steps=20]

Needs the `demo` extra (pip install -e ".[demo]"). Binds to 127.0.0.1 unless --host says otherwise; the page is
served from the installed gradio frontend, without analytics or external assets. See docs/demo.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from udifftext.cli import load_sample_config, sampling_parser

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs/sample/default.yaml"


def parse_args(argv: list[str] | None = None):
    parser = sampling_parser(__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, help="port (default: gradio's, 7860 or the next free one)")
    return parser.parse_args(argv)


def main(args) -> int:
    cfg = load_sample_config(args, DEFAULT_CONFIG)
    try:
        import gradio  # noqa: F401
    except ImportError:
        print('error: the demo needs gradio: pip install -e ".[demo]"', file=sys.stderr)
        return 2
    import torch

    from udifftext.demo import build_demo, launch_demo, load_demo_pipeline
    from udifftext.io import MissingWeightsError
    from udifftext.pipeline import check_sample_config

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {device} asked for, but no CUDA device is available")
        check_sample_config(cfg)
        pipe, note = load_demo_pipeline(cfg.model, device, explicit=bool(args.model))
    except (ValueError, KeyError, MissingWeightsError) as err:
        print("error: " + " ".join(str(err).splitlines()), file=sys.stderr)
        return 2
    launch_demo(build_demo(pipe, cfg, note), args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))

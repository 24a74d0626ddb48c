"""Seconds per image for plain sampling, + noise selection, + refinement: same UNet, steps and device, one process.

usage:
  python scripts/benchmark_sampling.py --random configs/unet/tiny.yaml [--config configs/sample/default.yaml]
  python scripts/benchmark_sampling.py --model checkpoints/default --device cuda --repeats 5 steps=50

Plain is the same loop with no attention capture, no noise selection and no refinement. The input is the
bundled example (data/examples/storefront.png, the sign's box). With random weights L_aae never reaches the
refinement thresholds, so every listed step runs `max_iters` updates: the worst case for refinement. With
`read_selection.enabled=true` (and `read_selection.recognizer=...` for a model folder without a recognizer) a
"+ read selection" row (noise selection and the best of `read_selection.candidates` finished samples) is added.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from udifftext.cli import config_parser, load_or_exit
from udifftext.config import SampleConfig

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "data/examples/storefront.png"
BOX = "52,38,268,79"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = config_parser(__doc__, config_required=False)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="pipeline folder")
    source.add_argument("--random", help="UNet stage config: build that model with random weights")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=3, help="timed images per setting, after one warm-up")
    parser.add_argument("--text", default="COFFEE")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def settings(cfg: SampleConfig) -> dict[str, SampleConfig]:
    """The settings compared: plain, + noise selection, then each of read selection (when the config enables it)
    and refinement added to noise selection alone."""
    plain = replace(
        cfg,
        attention_heatmaps=False,
        noise_selection=replace(cfg.noise_selection, enabled=False),
        read_selection=replace(cfg.read_selection, enabled=False),
        refinement=replace(cfg.refinement, enabled=False),
    )
    selection = replace(plain, noise_selection=replace(cfg.noise_selection, enabled=True))
    rows = {"plain": plain, "+ noise selection": selection}
    if cfg.read_selection.enabled:
        rows["+ read selection"] = replace(selection, read_selection=cfg.read_selection)
    rows["+ refinement"] = replace(selection, refinement=replace(cfg.refinement, enabled=True))
    return rows


def main(args: argparse.Namespace) -> int:
    cfg = load_or_exit(SampleConfig, args.config, args.overrides, print_config=args.print_config)
    import torch

    from udifftext.config import UNetStageConfig
    from udifftext.pipeline import UDiffTextPipeline
    from udifftext.sampling.regions import load_image, parse_box

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.model:
        pipe = UDiffTextPipeline.from_pretrained(args.model, device)
    else:
        pipe = UDiffTextPipeline.from_config(load_or_exit(UNetStageConfig, args.random, [])).to(device)
    image, region = load_image(IMAGE), parse_box(BOX)
    rows = {}
    for name, setting in settings(cfg).items():
        pipe(image, [region], [args.text], setting)  # warm-up: kernels, allocator, lazy imports
        times, calls = [], []
        for i in range(args.repeats):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = pipe(image, [region], [args.text], replace(setting, seed=i))
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            losses = out.record["regions"][0]["refinement"].get("losses", {})
            calls.append(sum(len(v) for v in losses.values()))
        rows[name] = {"s_per_image": statistics.median(times), "refinement_updates": statistics.mean(calls)}
    plain = rows["plain"]["s_per_image"]
    for row in rows.values():
        row["ratio_to_plain"] = row["s_per_image"] / plain
    threads = torch.get_num_threads()
    print(f"model: {pipe.source} | device: {device} | threads: {threads} | resolution: {pipe.sampling_resolution(cfg)}")
    print(
        f"scheduler {cfg.scheduler}, {cfg.steps} steps, CFG {cfg.guidance_scale}, candidates "
        f"{cfg.noise_selection.candidates} x {cfg.noise_selection.steps} steps, read selection "
        f"{cfg.read_selection.candidates if cfg.read_selection.enabled else 'off'}, median of {args.repeats}"
    )
    print(f"{'setting':<20}{'s/image':>10}{'x plain':>10}{'refine updates':>16}")
    for name, row in rows.items():
        print(f"{name:<20}{row['s_per_image']:>10.3f}{row['ratio_to_plain']:>10.2f}{row['refinement_updates']:>16.1f}")
    if args.json:
        from udifftext.io import atomic_write_json

        atomic_write_json(args.json, {"model": pipe.source, "device": device, "config": asdict(cfg), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))

r"""Write a fixed synthetic dataset in the LAION-OCR folder layout (read back with `data.source=folder`).

    python scripts/make_synthetic.py --num 1000 --out runs/synth_tiny [--config DATA.yaml] \
        [--preview PNG] [--workers 2] resolution=64 crop_min_area_ratio=0.2 [split=heldout ...]

--config and the dotted overrides are DataConfig fields (top level, no `data.` prefix).

Samples go to OUT/<split>/<index:07d>/ (image.png, ocr.txt, charseg.npy, charpos.npy); sample i is the
same as `SyntheticTextDataset(cfg)[i]`. Re-running with the same config resumes: finished samples are
kept, interrupted ones are redone. OUT/config.yaml records the config; a different one is refused.
"""

from __future__ import annotations

import sys
from pathlib import Path

from udifftext.cli import config_parser, load_or_exit
from udifftext.config import DataConfig, config_to_yaml, save_config

_DATASET = None


def parse_args(argv=None):
    parser = config_parser(__doc__, config_required=False)
    parser.add_argument("--num", type=int, required=True, help="number of samples")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--preview", help="also write a preview grid of the first samples to this PNG")
    parser.add_argument("--preview-count", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="processes rendering samples")
    return parser.parse_args(argv)


def _init(cfg: DataConfig) -> None:
    global _DATASET
    from udifftext.data.synth import SyntheticTextDataset

    _DATASET = SyntheticTextDataset(cfg)


def _write(job: tuple[int, str]) -> int:
    from udifftext.data.laion_ocr import write_folder_sample

    index, folder = job
    scene = _DATASET.render(index)
    write_folder_sample(Path(folder), scene.image, scene.char_seg, scene.text, scene.polygon, _DATASET.cfg.alphabet)
    return index


def main(args) -> None:
    cfg = load_or_exit(DataConfig, args.config, args.overrides, print_config=args.print_config)
    if cfg.source != "synthetic":
        sys.exit(f"error: make_synthetic.py renders data.source=synthetic, got '{cfg.source}'")
    out = Path(args.out)
    recorded = out / "config.yaml"
    if recorded.exists() and recorded.read_text() != config_to_yaml(cfg):
        sys.exit(f"error: {recorded} holds a different config; resume with the same config or use a new --out")
    save_config(cfg, out)
    split_dir = out / cfg.split
    jobs = [(i, str(split_dir / f"{i:07d}")) for i in range(args.num) if not (split_dir / f"{i:07d}").is_dir()]

    from multiprocessing import Pool

    from tqdm import tqdm

    bar = tqdm(total=args.num, initial=args.num - len(jobs), unit="sample", desc=f"{split_dir}")
    if args.workers > 1:
        with Pool(args.workers, initializer=_init, initargs=(cfg,)) as pool:
            for _ in pool.imap_unordered(_write, jobs, chunksize=4):
                bar.update()
    else:
        _init(cfg)
        for job in jobs:
            _write(job)
            bar.update()
    bar.close()

    if args.preview:
        from PIL import Image

        from udifftext.data.datasets import build_dataset
        from udifftext.data.preview import preview_grid
        from udifftext.io import atomic_save_image

        folder_cfg = DataConfig(**{**vars(cfg), "source": "folder", "root": str(out)})
        dataset = build_dataset(folder_cfg)
        grid = preview_grid([dataset[i] for i in range(min(args.preview_count, len(dataset)))])
        atomic_save_image(args.preview, Image.fromarray(grid))
        print(f"preview: {args.preview}")


if __name__ == "__main__":
    main(parse_args())

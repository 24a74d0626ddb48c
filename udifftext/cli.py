"""Shared command-line plumbing for `scripts/*.py`: `--config FILE key=value ...` parsing."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from udifftext.config import ConfigError, SampleConfig, config_to_yaml, load_config

T = TypeVar("T")


def config_parser(doc: str | None, config_required: bool = True) -> argparse.ArgumentParser:
    """An ArgumentParser with `--config` and trailing dotted overrides, usage taken from `doc`."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=config_required, help="YAML config file")
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (schema defaults, the YAML file after its _base_ files, overrides) and exit",
    )
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=1e-4 train.seed=1")
    return parser


def comma_separated(kind: Callable[[str], T]) -> Callable[[str], list[T]]:
    """An argparse `type` for "2,4"-style lists of numbers: `comma_separated(int)("2,4") == [2, 4]`."""

    def parse(text: str) -> list[T]:
        try:
            return [kind(part) for part in text.split(",")]
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from error

    return parse


def add_threads_flag(parser: argparse.ArgumentParser) -> None:
    """`--threads N`: torch CPU threads for a one-process script (0 = torch's default)."""
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")


def set_threads(threads: int) -> None:
    """Apply `--threads` (0 leaves torch's default); torch is imported only here, after argument parsing."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def load_or_exit(
    schema: type[T], path: str | None, overrides: list[str], print_config: bool = False, flags: dict | None = None
) -> T:
    """Load a config; on a schema error print one line and exit with status 2. `flags` are fields set by the
    script's own options (`--model`); those that are not None win over the file and the overrides. With
    `print_config` (`--print-config`), print the resolved config as YAML and exit with status 0."""
    try:
        cfg = load_config(schema, path, overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    for name, value in (flags or {}).items():
        if value is not None:
            setattr(cfg, name, value)
    if print_config:
        print(config_to_yaml(cfg), end="")
        sys.exit(0)
    return cfg


def sampling_parser(doc: str | None) -> argparse.ArgumentParser:
    """`config_parser` (the config optional) plus the flags of the scripts that run a pipeline: --model, --device."""
    parser = config_parser(doc, config_required=False)
    parser.add_argument("--model", help="pipeline folder (default: the config's `model`, checkpoints/default)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    return parser


def load_sample_config(args: argparse.Namespace, default_config: Path) -> SampleConfig:
    """`load_or_exit` for a `sampling_parser`'s arguments: `default_config` unless --config, --model on top."""
    config = args.config or str(default_config)
    return load_or_exit(SampleConfig, config, args.overrides, args.print_config, flags={"model": args.model or None})


def training_parser(doc: str | None) -> argparse.ArgumentParser:
    """`config_parser` plus the flags every training script takes (resume, devices, CPU threads)."""
    parser = config_parser(doc)
    parser.add_argument("--resume", default=None, help="Lightning checkpoint to resume from (default: last.ckpt)")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator: cpu | gpu | auto")
    parser.add_argument("--devices", default="auto", help="device count or 'auto'")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (0 = torch's default)")
    return parser


def run_training(run: Callable[..., T], cfg: Any, args: argparse.Namespace) -> T:
    """Call `run(cfg, accelerator, devices, resume)` with the parsed flags; bad input or missing weights
    print one line on stderr and exit 2."""
    import torch

    from udifftext.io import MissingWeightsError

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    devices = int(args.devices) if args.devices.isdigit() else args.devices
    try:
        return run(cfg, args.accelerator, devices, args.resume)
    except (ValueError, MissingWeightsError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)

"""Shared command-line plumbing for `scripts/*.py`: `--config FILE key=value ...` parsing."""

from __future__ import annotations

import argparse
import sys
from typing import TypeVar

from udifftext.config import ConfigError, load_config

T = TypeVar("T")


def config_parser(doc: str | None, config_required: bool = True) -> argparse.ArgumentParser:
    """An ArgumentParser with `--config` and trailing dotted overrides, usage taken from `doc`."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=config_required, help="YAML config file")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=1e-4 train.seed=1")
    return parser


def load_or_exit(schema: type[T], path: str | None, overrides: list[str]) -> T:
    """Load a config; on a schema error print one line and exit with status 2."""
    try:
        return load_config(schema, path, overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)

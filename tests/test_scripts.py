"""Every command-line script answers --help quickly: heavy libraries are imported after argument parsing."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "scripts").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_help_is_fast_and_prints_usage(script):
    """--help answers within 5 s, and a shell continuation in the usage text prints as `\\` + newline instead of
    joining two lines of an example command into one."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - start
    assert out.returncode == 0, out.stderr
    assert "usage" in out.stdout.lower()
    assert elapsed < 5.0, f"{script.name} --help took {elapsed:.1f} s"
    source_lines = script.read_text().splitlines()
    continued = [line.strip() for line in source_lines if line.rstrip().endswith("\\") and "python scripts/" in line]
    for line in continued:
        assert line in out.stdout, f"{script.name}: {line!r} is not printed as written"

import os

import pytest

from udifftext.io import MissingWeightsError, atomic_write_text, require_path


def test_atomic_write_replaces_whole_file_with_default_permissions(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    out = atomic_write_text(tmp_path / "out.txt", "new")
    assert out.read_text() == "new"
    assert os.stat(out).st_mode & 0o777 == os.stat(plain).st_mode & 0o777
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "plain.txt"]  # no temp file left


def test_failed_write_leaves_no_partial_output(tmp_path):
    def boom(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("disk full")

    from udifftext.io import atomic_write

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "out.bin", boom)
    assert list(tmp_path.iterdir()) == []


def test_require_path_names_file_and_source(tmp_path):
    with pytest.raises(MissingWeightsError, match=r"nope\.ckpt.*SD-2 UNet.*stabilityai"):
        require_path(tmp_path / "nope.ckpt", "SD-2 UNet", "stabilityai/stable-diffusion-2-inpainting")
    with pytest.raises(MissingWeightsError, match="no path given"):
        require_path("", "SD-2 UNet", "stabilityai")

import subprocess
import sys
from pathlib import Path

import pytest

from udifftext.config import (
    ConfigError,
    DataConfig,
    EncoderStageConfig,
    EvalConfig,
    SampleConfig,
    UNetStageConfig,
    load_config,
    save_config,
)

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = {
    "data": DataConfig,
    "encoder": EncoderStageConfig,
    "unet": UNetStageConfig,
    "sample": SampleConfig,
    "eval": EvalConfig,
}


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_loads(path):
    cfg = load_config(SCHEMAS[path.parent.name], path)
    assert isinstance(cfg, SCHEMAS[path.parent.name])


def test_yaml_then_overrides_take_precedence():
    cfg = load_config(UNetStageConfig, ROOT / "configs/unet/tiny.yaml", ["optim.lr=0.001", "train.seed=7"])
    assert cfg.optim.lr == 0.001
    assert cfg.train.seed == 7
    assert cfg.unet.block_out_channels == [32, 64]  # from the YAML
    assert cfg.diffusion.num_train_timesteps == 1000  # from the schema default


def test_base_presets_are_paper_scale():
    enc = load_config(EncoderStageConfig, ROOT / "configs/encoder/base.yaml")
    assert (enc.text_encoder.width, enc.text_encoder.layers, enc.text_encoder.heads) == (2048, 12, 8)
    assert len(enc.text_encoder.alphabet) == 94 and enc.text_encoder.max_len == 12
    unet = load_config(UNetStageConfig, ROOT / "configs/unet/base.yaml")
    assert unet.unet.block_out_channels == [320, 640, 1280, 1280]
    assert unet.unet.in_channels == 9 and unet.data.resolution == 512


def test_unknown_key_names_it_and_lists_valid_ones():
    with pytest.raises(ConfigError) as err:
        load_config(UNetStageConfig, None, ["optim.lrr=1"])
    assert "optim.lrr" in str(err.value)
    assert "lr" in str(err.value) and "weight_decay" in str(err.value)


def test_unknown_key_in_yaml_is_an_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  batch_sise: 4\n")
    with pytest.raises(ConfigError, match=r"train\.batch_sise.*bad\.yaml.*batch_size"):
        load_config(UNetStageConfig, bad)


def test_wrong_type_is_an_error():
    with pytest.raises(ConfigError, match="train.max_steps"):
        load_config(UNetStageConfig, None, ["train.max_steps=many"])


def test_malformed_override_and_missing_file():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(SampleConfig, None, ["steps"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(SampleConfig, "no/such/file.yaml")


def test_saved_config_reloads_identically(tmp_path):
    cfg = load_config(UNetStageConfig, ROOT / "configs/unet/tiny.yaml", ["loss.lambda_local=0.5"])
    path = save_config(cfg, tmp_path / "run")
    assert load_config(UNetStageConfig, path) == cfg


def test_import_is_light():
    code = (
        "import sys, udifftext, udifftext.config, udifftext.cli\n"
        "heavy = [m for m in ('torch', 'diffusers', 'lightning', 'pytorch_lightning', 'timm') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_config_error_is_one_line_and_exit_2(tmp_path):
    code = (
        "from udifftext.cli import load_or_exit\n"
        "from udifftext.config import SampleConfig\n"
        "load_or_exit(SampleConfig, None, ['stepz=3'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "stepz" in out.stderr

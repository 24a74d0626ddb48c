import subprocess
import sys
from pathlib import Path

import pytest

from udifftext.config import (
    ConfigError,
    DataConfig,
    EncoderStageConfig,
    EvalConfig,
    OptimConfig,
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


def test_base_file_applies_first_then_the_file_then_overrides(tmp_path):
    (tmp_path / "parent").mkdir()
    (tmp_path / "parent/root.yaml").write_text("optim: {lr: 0.1, warmup_steps: 7}\ntrain: {max_steps: 11}\n")
    (tmp_path / "parent/middle.yaml").write_text("_base_: root.yaml\noptim: {lr: 0.2}\ntrain: {seed: 5}\n")
    (tmp_path / "child.yaml").write_text("_base_: parent/middle.yaml\ntrain: {max_steps: 13}\n")
    cfg = load_config(UNetStageConfig, tmp_path / "child.yaml", ["train.seed=9"])
    assert cfg.optim.lr == 0.2  # middle over root
    assert cfg.optim.warmup_steps == 7  # root, untouched by the others
    assert cfg.train.max_steps == 13  # child over root
    assert cfg.train.seed == 9  # override over middle
    assert cfg.optim.weight_decay == OptimConfig().weight_decay  # schema default


def test_inherited_stage_config_resolves_to_its_parent_plus_its_changes():
    parent = load_config(UNetStageConfig, ROOT / "configs/unet/small_rect_ink.yaml")
    child = load_config(UNetStageConfig, ROOT / "configs/unet/small_rect_ink_ocr.yaml")
    assert child.unet == parent.unet and child.diffusion == parent.diffusion and child.data == parent.data
    assert (parent.loss.ocr_enabled, child.loss.ocr_enabled, child.loss.lambda_ocr) == (False, True, 0.005)
    assert child.recognizer.decoder == "ctc" and child.recognizer.depth == parent.recognizer.depth == 6


def test_base_errors_name_the_files(tmp_path):
    (tmp_path / "orphan.yaml").write_text("_base_: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"not found: .*missing\.yaml \(the _base_ of .*orphan\.yaml\)"):
        load_config(UNetStageConfig, tmp_path / "orphan.yaml")
    (tmp_path / "a.yaml").write_text("_base_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_base_: a.yaml\n")
    with pytest.raises(ConfigError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_config(UNetStageConfig, tmp_path / "a.yaml")
    (tmp_path / "listed.yaml").write_text("_base_: [a.yaml]\n")
    with pytest.raises(ConfigError, match="_base_ in .*listed.yaml must be a path"):
        load_config(UNetStageConfig, tmp_path / "listed.yaml")
    (tmp_path / "typo_base.yaml").write_text("train: {batch_sise: 4}\n")
    (tmp_path / "typo_child.yaml").write_text("_base_: typo_base.yaml\n")
    with pytest.raises(ConfigError, match=r"train\.batch_sise.*typo_base\.yaml"):
        load_config(UNetStageConfig, tmp_path / "typo_child.yaml")
    with pytest.raises(ConfigError, match="_base_"):
        load_config(UNetStageConfig, None, ["_base_=x.yaml"])  # not an override: only YAML files inherit


def test_print_config_prints_what_loads_and_exits_0(tmp_path):
    script = ROOT / "scripts/train_unet.py"
    args = ["--config", str(ROOT / "configs/unet/small_rect_ink_ocr.yaml"), "--print-config", "optim.lr=0.003"]
    out = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    printed = tmp_path / "printed.yaml"
    printed.write_text(out.stdout)
    expected = load_config(UNetStageConfig, ROOT / "configs/unet/small_rect_ink_ocr.yaml", ["optim.lr=0.003"])
    assert load_config(UNetStageConfig, printed) == expected


def test_print_config_of_sample_shows_the_model_flag(tmp_path):
    """`--model` is part of what sample.py resolves, so --print-config shows it (a later override does not undo it)."""
    args = ["--model", "runs/some_pipeline", "--print-config", "model=checkpoints/other", "steps=7"]
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/sample.py"), *args], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    printed = tmp_path / "printed.yaml"
    printed.write_text(out.stdout)
    cfg = load_config(SampleConfig, printed)
    assert (cfg.model, cfg.steps) == ("runs/some_pipeline", 7)


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

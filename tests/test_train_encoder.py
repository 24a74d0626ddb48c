"""scripts/train_encoder.py end to end on the tiny presets: recognizer, then the char encoder against it."""

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from udifftext.config import RecognizerConfig, TextEncoderConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train_encoder.py"


pytestmark = pytest.mark.usefixtures("one_thread")


def _script():
    spec = importlib.util.spec_from_file_location("train_encoder", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(config: str, out: Path, *overrides: str) -> dict:
    script = _script()
    argv = ["--config", str(ROOT / "configs/encoder" / config), "--accelerator", "cpu", "--devices", "1"]
    script.main(script.parse_args([*argv, f"train.out_dir={out}", *overrides]))
    return json.loads((out / "eval.json").read_text())


def _losses(out: Path, version: int = 0) -> list[float]:
    rows = csv.DictReader((out / "logs" / f"version_{version}" / "metrics.csv").open())
    return [float(r["loss"]) for r in rows if r.get("loss")]


@pytest.fixture(scope="module")
def recognizer_run(tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("recognizer")
    return out, _run("recognizer_tiny.yaml", out)


def test_help_is_fast():
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=5)
    assert result.returncode == 0 and "--resume" in result.stdout


def test_recognizer_run_learns_exports_and_evaluates(recognizer_run):
    out, metrics = recognizer_run
    losses = _losses(out)
    assert len(losses) == 20
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.2
    assert metrics["task"] == "recognizer" and metrics["global_step"] == 20
    assert set(metrics["heldout"]) >= {"word_acc", "word_acc_nocase", "char_acc"}
    assert metrics["heldout"]["samples"] == 16 and "with_prior" not in metrics["heldout"]  # positions: greedy only
    assert (out / "config.yaml").is_file() and (out / "checkpoints" / "last.ckpt").is_file()

    from udifftext.lit.encoder_module import build_module
    from udifftext.recognizer.vitstr import load_recognizer

    export = out / "export" / "recognizer.safetensors"
    rec_cfg = load_config(RecognizerConfig, export.with_suffix(".yaml"), [f"weights={export}"])
    loaded = load_recognizer(rec_cfg).eval()
    module = build_module(load_config(type(_stage()), out / "config.yaml"))
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    module.load_state_dict(state)
    crops = torch.rand(2, 1, 16, 64)
    assert torch.equal(loaded(crops), module.recognizer.eval()(crops))


def test_resume_continues_from_last_checkpoint(recognizer_run):
    out, _ = recognizer_run
    metrics = _run("recognizer_tiny.yaml", out, "train.max_steps=24")
    assert metrics["global_step"] == 24 and metrics["steps_this_launch"] == 4
    assert len(_losses(out, version=1)) == 4  # the first launch's log is kept in version_0
    assert len(_losses(out, version=0)) == 20


def test_contrastive_run_against_the_recognizer(recognizer_run, tmp_path):
    rec_out, _ = recognizer_run
    export = rec_out / "export" / "recognizer.safetensors"
    torch.manual_seed(0)
    metrics = _run("tiny.yaml", tmp_path, f"recognizer.weights={export}")
    losses = _losses(tmp_path)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    heldout = metrics["heldout"]
    assert set(heldout) >= {"retrieval_top1", "cls_acc", "cls_acc_chars", "pos_acc"}
    assert 0.0 <= heldout["retrieval_top1"] <= 1.0

    from udifftext.text.encoder import load_text_encoder

    enc_export = tmp_path / "export" / "char_encoder.safetensors"
    enc_cfg = load_config(TextEncoderConfig, enc_export.with_suffix(".yaml"), [f"weights={enc_export}"])
    assert enc_cfg.width == 32
    encoder = load_text_encoder(enc_cfg).eval()
    from safetensors.torch import load_file

    assert not any(k.startswith(("heads.", "recognizer.")) for k in load_file(str(enc_export)))
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    trained = {k.removeprefix("text_encoder."): v for k, v in state.items() if k.startswith("text_encoder.")}
    reference = load_text_encoder(TextEncoderConfig(**{**enc_cfg.__dict__, "weights": ""}))
    reference.load_state_dict(trained)
    assert torch.equal(encoder.encode_text(["abc", "Q!"]), reference.eval().encode_text(["abc", "Q!"]))


def test_missing_recognizer_weights_exit_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        _run("tiny.yaml", tmp_path, f"recognizer.weights={tmp_path / 'nothere.safetensors'}")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nothere.safetensors" in err and err.strip().count("\n") == 0


def _stage():
    from udifftext.config import EncoderStageConfig

    return EncoderStageConfig()


def test_a_ctc_recognizer_run_learns_and_exports_its_decoder(tmp_path):
    torch.manual_seed(0)
    out = tmp_path / "ctc"
    columns = ["recognizer.patch_size=16", "recognizer.patch_width=4"]  # one row of 16 column tokens
    steps = ["train.max_steps=40", "optim.lr=3e-3"]  # CTC first learns blanks: a few more steps than positions
    metrics = _run("recognizer_tiny.yaml", out, "recognizer.decoder=ctc", *columns, *steps)
    losses = _losses(out)
    assert len(losses) == 40 and sum(losses[-10:]) < 0.75 * sum(losses[:10])
    assert metrics["global_step"] == 40 and metrics["heldout"]["samples"] == 16
    with_prior = metrics["heldout"]["with_prior"]  # the same crops read with the training texts' prior
    assert with_prior["samples"] == 16 and with_prior["weight"] == 0.7 and 0 <= with_prior["char_acc"] <= 1
    voted = metrics["heldout"]["with_prior_views"]  # ... and in views moved 2 px to either side (eval_view_shifts)
    assert voted["samples"] == 16 and voted["shifts"] == [-2, 0, 2] and 0 <= voted["char_acc"] <= 1
    from udifftext.recognizer.vitstr import load_recognizer

    export = out / "export" / "recognizer.safetensors"
    rec_cfg = load_config(RecognizerConfig, export.with_suffix(".yaml"), [f"weights={export}"])
    assert rec_cfg.decoder == "ctc"
    assert load_recognizer(rec_cfg).eval()(torch.rand(2, 1, 16, 64)).shape == (2, 16, 95)  # every column token


def test_bf16_mixed_precision_trains_on_the_cpu_and_exports_float32(tmp_path):
    """train.precision=bf16-mixed (autocast on CPUs with bf16 instructions): the loss still falls and the exported
    weights stay float32, so they load anywhere as the default precision's do."""
    from safetensors.torch import load_file

    torch.manual_seed(0)
    out = tmp_path / "bf16"
    metrics = _run("recognizer_tiny.yaml", out, "train.precision=bf16-mixed")
    losses = _losses(out)
    assert len(losses) == 20 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.2
    assert metrics["global_step"] == 20
    weights = load_file(out / "export" / "recognizer.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.float32}

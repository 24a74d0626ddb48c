import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from udifftext.config import EvalConfig, load_config
from udifftext.evaluation import edit_text, read_manifest, select_indices, seq_acc_by_length, words_by_length
from udifftext.io import MissingWeightsError

ROOT = Path(__file__).resolve().parents[1]
FONT = next(
    p
    for p in (ROOT / "data/fonts/dejavu/DejaVuSans.ttf", Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"))
    if p.is_file()
)
SCENES = [("Paper", (20, 30, 140, 70)), ("river", (40, 10, 150, 50)), ("Hotel", (10, 40, 130, 86))]
EDITS = {"Paper": "Water", "river": "house", "Hotel": "Music"}


def load_script():
    spec = importlib.util.spec_from_file_location("evaluate_script", ROOT / "scripts/evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scene(index: int, text: str | None) -> Image.Image:
    """A 160x96 gradient background with `text` drawn into scene `index`'s box (None: the box left empty)."""
    x = np.linspace(0, 1, 160)[None, :, None]
    base = np.array([[230, 220, 200], [200, 225, 240], [235, 235, 210]][index], float)
    image = Image.fromarray((base * (0.85 + 0.15 * x) * np.ones((96, 1, 1))).astype(np.uint8))
    if text is not None:
        x0, y0, x1, y1 = SCENES[index][1]
        font = ImageFont.truetype(str(FONT), 28)
        left, top, right, bottom = font.getbbox(text)
        at = (x0 + (x1 - x0 - right + left) // 2 - left, y0 + (y1 - y0 - bottom + top) // 2 - top)
        ImageDraw.Draw(image).text(at, text, font=font, fill=(30, 30, 60))
    return image


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    """A manifest (boxes and a mask) with reconstruction and editing cases, and two prediction folders."""
    root = tmp_path_factory.mktemp("eval")
    lines = []
    for i, (word, box) in enumerate(SCENES):
        scene(i, word).save(root / f"scene{i}.png")
        region = {"box": ",".join(map(str, box))} if i != 1 else {"mask": f"mask{i}.png"}
        if i == 1:
            mask = np.zeros((96, 160), np.uint8)
            mask[box[1] : box[3], box[0] : box[2]] = 255
            Image.fromarray(mask).save(root / f"mask{i}.png")
        for protocol, text in (("reconstruction", word), ("editing", EDITS[word])):
            case = {"id": f"{protocol}-{i}", "image": f"scene{i}.png", **region, "text": text, "protocol": protocol}
            lines.append(json.dumps({**case, "source_text": word}))
            for folder, drawn in (("perfect", text), ("blank", None)):
                (root / folder).mkdir(exist_ok=True)
                scene(i, drawn).save(root / folder / f"{protocol}-{i}.png")
    (root / "cases.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_score_predictions_end_to_end(fixture_dir, tmp_path):
    script = load_script()
    out = tmp_path / "report"
    args = script.parse_args(
        ["--config", str(ROOT / "configs/eval/tiny.yaml"), "--manifest", str(fixture_dir / "cases.jsonl")]
        + ["--pred", str(fixture_dir / "perfect"), str(fixture_dir / "blank"), "--out", str(out)]
    )
    script.main(args)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["judge"]["name"] == "rapidocr_onnxruntime" and metrics["judge"]["version"]
    assert metrics["mode"] == "predictions" and metrics["seed"] == 0
    assert "not comparable" in metrics["fid_features"] and metrics["lpips"].startswith("skipped")
    assert metrics["versions"]["torchmetrics"] and metrics["cases"] == 6 and metrics["config"]["num_cases"] == 4
    results = {(r["variant"], r["protocol"]): r for r in metrics["results"]}
    assert set(results) == {(v, p) for v in ("perfect", "blank") for p in ("reconstruction", "editing")}
    for protocol in ("reconstruction", "editing"):
        perfect, blank = results["perfect", protocol], results["blank", protocol]
        assert perfect["n"] == 3
        assert perfect["seq_acc"] == 1.0 and perfect["seq_acc_cs"] == 1.0 and perfect["ned"] == 0.0
        assert blank["seq_acc"] == 0.0 and blank["ned"] > 0.8
        assert perfect["fid_crop"] < blank["fid_crop"]
    assert abs(results["perfect", "reconstruction"]["fid"]) < 1e-6  # identical to the originals
    rows = [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {r["judged"] for r in rows if r["variant"] == "perfect"} == {
        *EDITS,
        *EDITS.values(),
    }
    table = (out / "metrics.md").read_text()
    assert "rapidocr_onnxruntime" in table and "| perfect | editing | 3 | 1.000 |" in table
    for variant, acc in (("perfect", 1.0), ("blank", 0.0)):  # every target has 5 characters
        by_length = results[variant, "editing"]["by_length"]
        assert by_length == {
            "1-4": {"n": 0, "seq_acc": None},
            "5-8": {"n": 3, "seq_acc": acc},
            "9+": {"n": 0, "seq_acc": None},
        }
    assert "| perfect | editing | - (0) | 1.000 (3) | - (0) |" in table
    for variant in ("perfect", "blank"):
        grid = Image.open(out / f"grid_{variant}.png")
        assert grid.height == 22 + 56 * 2 * (2 + 1)  # header + 2 protocols x (2 best + the 1 other case)


def test_report_with_lpips_and_our_recognizer_as_second_judge(fixture_dir, tmp_path):
    import torch
    import torchvision

    from udifftext.checkpoint import MODEL_CONFIG, PART_FILES
    from udifftext.config import UNetStageConfig, save_config
    from udifftext.evaluation import evaluate
    from udifftext.io import save_state_dict
    from udifftext.recognizer.vitstr import ViTSTR

    torch.manual_seed(0)
    weights = tmp_path / "alexnet.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), weights)  # random backbone, real key layout
    model = tmp_path / "model"  # a folder holding only what the second judge needs
    model_cfg = load_config(UNetStageConfig, ROOT / "configs/unet/tiny.yaml")
    save_config(model_cfg, model, MODEL_CONFIG)
    save_state_dict(ViTSTR(model_cfg.recognizer).state_dict(), model / PART_FILES["recognizer"])
    overrides = [f"lpips_weights={weights}", f"out_dir={tmp_path}", f"sample.model={model}"]
    cfg = load_config(EvalConfig, ROOT / "configs/eval/tiny.yaml", overrides)
    metrics = evaluate(cfg, str(fixture_dir / "cases.jsonl"), [str(fixture_dir / "perfect")])
    lpips = {r["protocol"]: r["lpips"] for r in metrics["results"]}
    assert lpips["reconstruction"] == 0.0 and lpips["editing"] > 0.0
    assert metrics["second_judge"]["name"] == "vitstr"
    assert all(0.0 <= r["vitstr_seq_acc"] <= 1.0 and "vitstr_ned" in r for r in metrics["results"])
    assert metrics["results"][0]["seq_acc"] == 1.0  # the main judge's columns are unchanged
    assert "SeqAcc vitstr" in (tmp_path / "metrics.md").read_text()


def test_missing_weights_and_bad_inputs_are_one_line_errors(fixture_dir, tmp_path):
    script = load_script()
    config = str(ROOT / "configs/eval/tiny.yaml")
    manifest = ["--manifest", str(fixture_dir / "cases.jsonl"), "--pred", str(fixture_dir / "perfect")]
    missing = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    with pytest.raises(SystemExit, match=r"error: .*pt_inception.*does not exist.*pytorch-fid"):
        script.main(script.parse_args(["--config", config, *manifest, "--inception-weights", str(missing)]))
    with pytest.raises(SystemExit, match=r"error: .*alexnet-owt-7be5be79\.pth"):
        script.main(script.parse_args(["--config", config, *manifest, "--lpips-weights", str(tmp_path / "a.pth")]))
    twin = tmp_path / "other" / "perfect"
    with pytest.raises(SystemExit, match=r"error: --pred folders name the table rows"):
        script.main(script.parse_args(["--config", config, *manifest, str(twin)]))
    with pytest.raises(SystemExit, match=r"error: --pred .*2 of 6 predictions missing"):
        partial = tmp_path / "partial"
        partial.mkdir()
        for path in sorted((fixture_dir / "perfect").glob("*.png"))[2:]:
            (partial / path.name).write_bytes(path.read_bytes())
        script.main(script.parse_args(["--config", config, "--manifest", manifest[1], "--pred", str(partial)]))


def test_manifest_errors_name_the_line(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"id": "a", "image": "x.png", "box": "0,0,4,4"}\n')
    with pytest.raises(ValueError, match=r"m\.jsonl:1: missing field\(s\) \['text'\]"):
        read_manifest(tmp_path / "m.jsonl")
    (tmp_path / "m.jsonl").write_text('{"id": "a", "image": "x.png", "box": "0,0,4,4", "text": "hi"}\n')
    with pytest.raises(ValueError, match="image not found"):
        read_manifest(tmp_path / "m.jsonl")


def test_seq_acc_by_length_buckets():
    rows = [{"target": t, "correct": c} for t, c in (("ab", True), ("abcd", False), ("abcde", True), ("a" * 12, False))]
    by_length = seq_acc_by_length(rows)
    assert by_length["1-4"] == {"n": 2, "seq_acc": 0.5}
    assert by_length["5-8"] == {"n": 1, "seq_acc": 1.0} and by_length["9+"] == {"n": 1, "seq_acc": 0.0}
    assert sum(b["n"] for b in by_length.values()) == len(rows)


def test_case_subset_and_editing_words_are_seeded():
    assert select_indices(1000, 5, 0) == select_indices(1000, 5, 0)
    assert select_indices(1000, 5, 0) != select_indices(1000, 5, 1)
    assert select_indices(3, 10, 0) == [0, 1, 2]
    table = words_by_length(["cat", "dog", "bird", "fish", "a"])
    draws = [edit_text("cow", table, np.random.default_rng(0), "abc") for _ in range(3)]
    assert all(d in ("cat", "dog") for d in draws)
    assert edit_text("cat", table, np.random.default_rng(0), "abc") == "dog"  # never the source word
    fallback = edit_text("zebras", table, np.random.default_rng(0), "abcXYZ")  # no 6-letter word in the list
    assert len(fallback) == 6 and set(fallback) <= set("abc")


def _tiny_eval(tmp_path, *overrides: str) -> EvalConfig:
    return load_config(EvalConfig, ROOT / "configs/eval/tiny.yaml", [f"out_dir={tmp_path / 'report'}", *overrides])


def test_written_manifest_is_read_back_identically_and_sample_py_accepts_it(tmp_path):
    from udifftext.evaluation import dataset_cases, write_manifest
    from udifftext.sampling.runner import read_manifest as sample_py_manifest

    cases = dataset_cases(_tiny_eval(tmp_path, "num_cases=3"))
    assert [c.protocol for c in cases] == ["reconstruction", "editing"] * 3
    for recon, edit in zip(cases[::2], cases[1::2], strict=True):
        assert recon.text == recon.source_text == edit.source_text
        assert len(edit.text) == len(recon.text) and edit.text != recon.text
    path = write_manifest(cases, tmp_path / "cases")
    assert len(list((tmp_path / "cases/images").glob("*.png"))) == 3  # originals shared by both protocols
    jobs = sample_py_manifest(path, tmp_path / "pred")
    assert [j.id for j in jobs] == [c.id for c in cases]
    again = read_manifest(path)
    for a, b in zip(cases, again, strict=True):
        assert (a.id, a.protocol, a.text, a.source_text) == (b.id, b.protocol, b.text, b.source_text)
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.mask, b.mask)
    assert dataset_cases(_tiny_eval(tmp_path, "num_cases=3"))[1].text == cases[1].text  # seeded editing words


class StubPipeline:
    """Writes the text in dark DejaVu on a light box over the region when noise selection is on, else blanks it."""

    def __init__(self) -> None:
        self.configs = []

    def __call__(self, image, regions, texts, cfg):
        from types import SimpleNamespace

        self.configs.append(cfg)
        mask = np.asarray(regions[0].value) > 127
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        out = image.copy()
        draw = ImageDraw.Draw(out)
        draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=(240, 240, 240))
        if cfg.noise_selection.enabled:
            font = ImageFont.truetype(str(FONT), max(box[3] - box[1] - 4, 6))
            left, top, right, bottom = font.getbbox(texts[0])
            word = Image.new("RGB", (right - left + 4, bottom - top + 4), (240, 240, 240))
            ImageDraw.Draw(word).text((2 - left, 2 - top), texts[0], font=font, fill=(10, 10, 10))
            out.paste(word.resize((box[2] - box[0], box[3] - box[1]), Image.BICUBIC), box[:2])
        choices = {"noise_selection": {"enabled": cfg.noise_selection.enabled}, "read_selection": {"enabled": False}}
        return SimpleNamespace(image=out, record={"regions": [{**choices, "refinement": None, "timings": {}}]})


def test_sampling_mode_runs_every_variant_on_the_same_cases(tmp_path, monkeypatch):
    import udifftext.evaluation as evaluation

    stub = StubPipeline()
    loaded = []
    monkeypatch.setattr(evaluation, "load_pipeline", lambda folder, device: loaded.append(folder) or stub)
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.yaml").write_text("{}\n")  # the stub stands in for the folder's weights
    cfg = _tiny_eval(tmp_path, "data.resolution=128", f"sample.model={model}")
    metrics = evaluation.evaluate(cfg)
    assert loaded == [str(model)]  # the variant shares the main model's folder: loaded once
    assert [c.noise_selection.enabled for c in stub.configs] == [True] * 8 + [False] * 8
    assert {c.steps for c in stub.configs} == {4}  # the tiny sample settings reach every variant
    results = {(r["variant"], r["protocol"]): r for r in metrics["results"]}
    variants = ("originals", "udifftext", "no_noise_selection")
    assert set(results) == {(v, p) for v in variants for p in ("reconstruction", "editing")}
    assert results["originals", "reconstruction"]["seq_acc"] >= 0.75  # the judge's ceiling on these cases
    assert results["originals", "editing"]["seq_acc"] == 0.0  # an unchanged image never shows the new word
    for protocol in ("reconstruction", "editing"):
        assert results["udifftext", protocol]["seq_acc"] >= 0.75  # the judge reads the stub's text
        assert results["no_noise_selection", protocol]["seq_acc"] == 0.0
    assert metrics["mode"] == "sampling" and metrics["config"]["variants"][0]["name"] == "no_noise_selection"
    assert (tmp_path / "report/grid_no_noise_selection.png").is_file()
    rows = [json.loads(line) for line in (tmp_path / "report/cases.jsonl").read_text().splitlines()]
    chosen = {r["variant"]: r.get("sampler") for r in rows}  # what the sampler chose, per case, kept in the report
    assert chosen["originals"] is None
    assert chosen["udifftext"]["noise_selection"] == {"enabled": True}
    assert chosen["no_noise_selection"]["noise_selection"] == {"enabled": False}
    assert set(chosen["udifftext"]) == {"noise_selection", "read_selection", "refinement"}  # no timings


def test_a_missing_variant_model_fails_before_sampling(tmp_path, monkeypatch):
    import udifftext.evaluation as evaluation

    monkeypatch.setattr(evaluation, "dataset_cases", lambda cfg: pytest.fail("cases built before the check"))
    cfg = _tiny_eval(tmp_path, f"sample.model={tmp_path / 'nowhere'}")
    with pytest.raises(MissingWeightsError, match=r"nowhere/model\.yaml does not exist"):
        evaluation.evaluate(cfg)


def test_sampling_mode_with_a_tiny_random_pipeline(tmp_path):
    from udifftext.config import UNetStageConfig
    from udifftext.evaluation import evaluate
    from udifftext.pipeline import UDiffTextPipeline

    model = tmp_path / "model"
    UDiffTextPipeline.from_config(load_config(UNetStageConfig, ROOT / "configs/unet/tiny.yaml")).save_pretrained(model)
    cfg = _tiny_eval(tmp_path, f"sample.model={model}", "sample.steps=1", "num_cases=1", "protocols=[editing]")
    metrics = evaluate(cfg)
    summaries = [(r["variant"], r["n"]) for r in metrics["results"]]
    assert summaries == [("originals", 1), ("udifftext", 1), ("no_noise_selection", 1)]
    assert metrics["results"][0]["fid"] is None  # FID needs two images per set: reported as missing, not faked
    rows = [json.loads(line) for line in (tmp_path / "report/cases.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(isinstance(r["judged"], str) for r in rows)
    assert rows[1]["sampler"]["noise_selection"]["enabled"] and not rows[2]["sampler"]["noise_selection"]["enabled"]


def test_sampling_mode_on_the_cases_a_config_names(fixture_dir, tmp_path, monkeypatch):
    import udifftext.evaluation as evaluation

    monkeypatch.setattr(evaluation, "dataset_cases", lambda cfg: pytest.fail("a dataset draw instead of the manifest"))
    monkeypatch.setattr(evaluation, "load_pipeline", lambda folder, device: StubPipeline())
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.yaml").write_text("{}\n")
    cfg = _tiny_eval(tmp_path, f"cases={fixture_dir / 'cases.jsonl'}", f"sample.model={model}", "variants=[]")
    metrics = evaluation.evaluate(cfg)
    results = {(r["variant"], r["protocol"]): r for r in metrics["results"]}
    assert results["udifftext", "editing"]["n"] == len(SCENES)
    assert results["udifftext", "editing"]["seq_acc"] >= 0.6  # the stub writes the manifest's editing words
    assert results["originals", "editing"]["seq_acc"] == 0.0
    with pytest.raises(ValueError, match="manifest not found"):
        evaluation.evaluate(_tiny_eval(tmp_path, f"cases={tmp_path / 'missing.jsonl'}", f"sample.model={model}"))

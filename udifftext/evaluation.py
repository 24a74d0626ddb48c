"""Evaluation protocols (reconstruction, editing), scoring of generated images, and the report files.

A *case* is one image, one text region (a mask) and the text to write there. Cases come from a fixed
random subset of a dataset split (`dataset_cases`) or from a manifest (`read_manifest`, the format of
`scripts/sample.py --manifest`; a config's `cases` names one to sample, see `config_cases`). Two protocols, as
upstream:
- reconstruction: the region's own text is written back into it;
- editing: a random word of the same length from the word list (seeded) replaces it.
Generated images come from sampling with the pipeline (`sample_cases`) or from a folder written by
`sample.py --manifest cases.jsonl --out DIR` (`read_predictions`). `Scorer` reads each generated region
with the judges and computes SeqAcc, NED, FID (full image and text crop) and LPIPS; `write_report`
writes metrics.json, metrics.md, cases.jsonl and a best/worst grid per variant.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from udifftext.config import ConfigError, EvalConfig, SampleConfig
from udifftext.io import atomic_save_image, atomic_write_json, atomic_write_text
from udifftext.judge import Judge, crop_quad, mask_to_quad, order_quad
from udifftext.metrics import normalized_edit_distance

PROTOCOLS = ("reconstruction", "editing")
MAIN_VARIANT = "udifftext"
ORIGINALS = "originals"  # the row that scores the unchanged images
VERSIONED_PACKAGES = (
    "udifftext",
    "torch",
    "torchvision",
    "torchmetrics",
    "torch-fidelity",
    "lpips",
    "rapidocr_onnxruntime",
    "onnxruntime",
    "diffusers",
    "numpy",
    "pillow",
    "opencv-python-headless",
)


@dataclass
class Case:
    """One evaluation case: an original image, the region to write (mask) and the target text."""

    id: str
    protocol: str
    image: np.ndarray  # (H, W, 3) uint8, the original
    mask: np.ndarray  # (H, W) bool, True where text is generated
    text: str  # the target text
    source_text: str = ""  # the text the region held originally ("" when unknown)
    quad: np.ndarray | None = None  # (4, 2) the region read by the judges; None = the mask's tightest rectangle

    def __post_init__(self) -> None:
        if self.image.shape[:2] != self.mask.shape:
            raise ValueError(f"case {self.id}: mask {self.mask.shape} differs from image {self.image.shape[:2]}")
        if self.quad is None:
            self.quad = mask_to_quad(self.mask)


@dataclass
class Variant:
    """One row group of the table: a model folder and the sampling settings used with it."""

    name: str
    model: str
    sample: SampleConfig


# --------------------------------------------------------------------------- cases


def select_indices(total: int, num_cases: int, seed: int) -> list[int]:
    """A fixed random subset of `num_cases` indices out of `total` (all of them when fewer), sorted."""
    if num_cases < 1:
        raise ValueError(f"num_cases must be >= 1, got {num_cases}")
    if total < 1:
        raise ValueError("the dataset split is empty: expected at least one sample")
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(total, size=min(num_cases, total), replace=False))


def words_by_length(words: list[str]) -> dict[int, list[str]]:
    table: dict[int, list[str]] = defaultdict(list)
    for word in words:
        table[len(word)].append(word)
    return table


def edit_text(source: str, table: dict[int, list[str]], rng: np.random.Generator, alphabet: str) -> str:
    """A random word of the same length as `source` (different from it when the list allows).

    Lengths the word list lacks get a random lowercase string of that length over the alphabet.
    """
    candidates = [w for w in table.get(len(source), []) if w != source]
    if candidates:
        return candidates[int(rng.integers(len(candidates)))]
    letters = [c for c in alphabet if c.islower()] or list(alphabet)
    return "".join(letters[int(i)] for i in rng.integers(len(letters), size=len(source)))


def to_uint8_image(image: Any) -> np.ndarray:
    """A (3, H, W) tensor in [-1, 1] -> (H, W, 3) uint8."""
    array = image.detach().cpu().float().numpy() if hasattr(image, "detach") else np.asarray(image, dtype=np.float32)
    return np.clip(np.round((array.transpose(1, 2, 0) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def dataset_cases(cfg: EvalConfig) -> list[Case]:
    """The evaluation cases: `cfg.num_cases` samples of `build_dataset(cfg.data)` (seeded), per protocol."""
    from tqdm import tqdm

    from udifftext.data.datasets import build_dataset
    from udifftext.data.words import load_words

    for protocol in cfg.protocols:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocols must be drawn from {PROTOCOLS}, got {protocol!r}")
    dataset = build_dataset(cfg.data)
    table = words_by_length(load_words(cfg.data, "heldout")) if "editing" in cfg.protocols else {}
    rng = np.random.default_rng(cfg.seed)
    cases = []
    for index in tqdm(select_indices(len(dataset), cfg.num_cases, cfg.seed), desc="cases", unit="case"):
        sample = dataset[index]
        image = to_uint8_image(sample["image"])
        mask = np.asarray(sample["mask"]).reshape(image.shape[:2]) > 0.5
        source = sample["text"]
        for protocol in cfg.protocols:
            text = source if protocol == "reconstruction" else edit_text(source, table, rng, cfg.data.alphabet)
            cases.append(Case(f"{protocol}-{index:06d}", protocol, image, mask, text, source))
    return cases


def config_cases(cfg: EvalConfig) -> list[Case]:
    """The cases the config names: its `cases` manifest when set (resolved like data paths), else `dataset_cases`."""
    if not cfg.cases:
        return dataset_cases(cfg)
    from udifftext.data.words import resolve_data_path

    return read_manifest(resolve_data_path(cfg.cases))


def write_manifest(cases: list[Case], folder: str | Path) -> Path:
    """Write the cases as `sample.py --manifest` input: images/, masks/ and cases.jsonl (paths relative to it)."""
    folder = Path(folder)
    lines = []
    written: set[str] = set()  # an original shared by both protocols is written once, named by its content
    for case in cases:
        stem = hashlib.sha1(case.image.tobytes() + np.packbits(case.mask).tobytes()).hexdigest()[:16]
        if stem not in written:
            atomic_save_image(folder / "images" / f"{stem}.png", Image.fromarray(case.image))
            atomic_save_image(folder / "masks" / f"{stem}.png", Image.fromarray(case.mask.astype(np.uint8) * 255))
            written.add(stem)
        line = {"id": case.id, "image": f"images/{stem}.png", "mask": f"masks/{stem}.png", "text": case.text}
        lines.append(json.dumps({**line, "protocol": case.protocol, "source_text": case.source_text}))
    return atomic_write_text(folder / "cases.jsonl", "\n".join(lines) + "\n")


def read_manifest(path: str | Path) -> list[Case]:
    """Cases from a `sample.py` manifest (read by the sampler's own `manifest_entries`).

    Optional keys: protocol (default "manifest"), source_text. Paths are relative to the manifest's folder.
    """
    from udifftext.sampling.regions import region_mask
    from udifftext.sampling.runner import entry_region, manifest_entries

    path = Path(path)
    cases = []
    for where, entry in manifest_entries(path):
        image = _read_rgb(path.parent / entry["image"], f"{where} image")
        region = entry_region(entry, where, path.parent)
        try:
            mask = region_mask(region, (image.shape[1], image.shape[0]))
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        quad = order_quad(np.asarray(region.value)) if region.kind == "quad" else None
        protocol = str(entry.get("protocol", "manifest"))
        cases.append(
            Case(str(entry["id"]), protocol, image, mask, str(entry["text"]), entry.get("source_text", ""), quad)
        )
    return cases


def _read_rgb(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise ValueError(f"{what} not found: '{path}'")
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def read_predictions(folder: str | Path, cases: list[Case]) -> list[np.ndarray]:
    """The generated images DIR/<id>.png written by `sample.py --manifest`, one per case, same size as its original."""
    folder = Path(folder)
    missing = [c.id for c in cases if not (folder / f"{c.id}.png").is_file()]
    if missing:
        raise ValueError(f"--pred {folder}: {len(missing)} of {len(cases)} predictions missing, e.g. {missing[:3]}")
    images = []
    for case in cases:
        image = _read_rgb(folder / f"{case.id}.png", "prediction")
        if image.shape != case.image.shape:
            raise ValueError(f"prediction {case.id}.png is {image.shape}, its original is {case.image.shape}")
        images.append(image)
    return images


# --------------------------------------------------------------------------- sampling


def build_variants(cfg: EvalConfig) -> list[Variant]:
    """The main model plus every config-listed variant, each with its own SampleConfig (validated now)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    variants = [Variant(MAIN_VARIANT, cfg.sample.model, cfg.sample)]
    for spec in cfg.variants:
        if not spec.name or spec.name in {v.name for v in variants} | {ORIGINALS}:
            raise ConfigError(f"variants need unique non-empty names other than {ORIGINALS!r}, got {spec.name!r}")
        try:
            merged = OmegaConf.merge(OmegaConf.structured(cfg.sample), OmegaConf.from_dotlist(list(spec.overrides)))
        except OmegaConfBaseException as err:
            raise ConfigError(f"variant {spec.name!r}: bad sample override in {spec.overrides}: {err}") from None
        sample = OmegaConf.to_object(merged)
        variants.append(Variant(spec.name, spec.model or sample.model, sample))
    return variants


SAMPLER_CHOICES = ("noise_selection", "read_selection", "refinement")  # per-region record keys a report keeps


def sample_cases(
    pipeline: Any, cases: list[Case], sample_cfg: SampleConfig, desc: str
) -> tuple[list[np.ndarray], list[dict]]:
    """Generate every case with `pipeline(image, [mask region], [text], cfg)`: (H, W, 3) uint8 images, and per
    case what the sampler chose (noise and read selection, refinement) so a report can say why a case read as it did."""
    from tqdm import tqdm

    from udifftext.sampling.regions import Region

    outputs, choices = [], []
    for case in tqdm(cases, desc=desc, unit="case"):
        mask = Image.fromarray(case.mask.astype(np.uint8) * 255)
        result = pipeline(Image.fromarray(case.image), [Region("mask", mask)], [case.text], sample_cfg)
        outputs.append(np.asarray(result.image.convert("RGB")))
        (region,) = result.record["regions"]
        choices.append({key: region[key] for key in SAMPLER_CHOICES})
    return outputs, choices


# --------------------------------------------------------------------------- scoring


def _batch(images: list[np.ndarray]) -> Any:
    import torch

    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # (B, 3, H, W) uint8


LENGTH_BUCKETS = ((1, 4), (5, 8), (9, None))  # characters in the target; None = no upper bound


def _bucket_name(low: int, high: int | None) -> str:
    return f"{low}-{high}" if high is not None else f"{low}+"


def seq_acc_by_length(rows: list[dict]) -> dict[str, dict]:
    """SeqAcc (main judge, case-insensitive) of the rows in each target-length bucket: where a model fails
    (long words get few pixels per character) is not visible in one mean."""
    out = {}
    for low, high in LENGTH_BUCKETS:
        chosen = [r for r in rows if low <= len(r["target"]) and (high is None or len(r["target"]) <= high)]
        seq_acc = float(np.mean([r["correct"] for r in chosen])) if chosen else None
        out[_bucket_name(low, high)] = {"n": len(chosen), "seq_acc": seq_acc}
    return out


class Scorer:
    """Scores generated images of fixed cases: judges, FID (full and crop) against the originals, LPIPS."""

    def __init__(
        self,
        cases: list[Case],
        judge: Judge,
        second_judge: Judge | None,
        fid_features: Any,
        lpips_model: Any,
        device: str = "cpu",
    ) -> None:
        from udifftext.metrics import FidMeter

        self.cases = cases
        self.judges = [j for j in (judge, second_judge) if j is not None]
        self.lpips = lpips_model.to(device) if lpips_model is not None else None
        self.protocols = list(dict.fromkeys(c.protocol for c in cases))
        self.fid: dict[tuple[str, str], FidMeter] = {}
        for protocol in self.protocols:
            chosen = [c for c in cases if c.protocol == protocol]
            for kind in ("full", "crop"):
                meter = FidMeter(fid_features, device)
                meter.add_images([c.image if kind == "full" else crop_quad(c.image, c.quad) for c in chosen], real=True)
                self.fid[protocol, kind] = meter

    def score(
        self, variant: str, generated: list[np.ndarray], choices: list[dict] | None = None
    ) -> tuple[list[dict], list[dict]]:
        """Per-case rows and per-protocol summaries of one variant's generated images; `choices` (one dict per
        case, from `sample_cases`) is copied into each row as "sampler"."""
        from tqdm import tqdm

        if len(generated) != len(self.cases):
            raise ValueError(f"generated must hold one image per case ({len(self.cases)}), got {len(generated)}")
        if choices is not None and len(choices) != len(self.cases):
            raise ValueError(f"choices must hold one record per case ({len(self.cases)}), got {len(choices)}")
        crops = [crop_quad(image, case.quad) for image, case in zip(generated, self.cases, strict=True)]
        rows = []
        for i, case in enumerate(tqdm(self.cases, desc=f"judge {variant}", unit="case")):
            row = {"variant": variant, "id": case.id, "protocol": case.protocol, "target": case.text}
            row["source_text"] = case.source_text
            for judge in self.judges:
                prefix = self._prefix(judge)
                (text,) = judge.read([crops[i]])
                row[f"{prefix}judged"] = text
                row[f"{prefix}correct"] = text.lower() == case.text.lower()
                row[f"{prefix}correct_cs"] = text == case.text
                row[f"{prefix}ned"] = normalized_edit_distance(text, case.text)
            if choices is not None:
                row["sampler"] = choices[i]
            if self.lpips is not None:
                pair = _batch([generated[i], case.image]).float() / 127.5 - 1.0  # (2, 3, H, W) in [-1, 1]
                row["lpips"] = float(self._lpips(pair[:1], pair[1:]))
            rows.append(row)
        summaries = {p: {"variant": variant, "protocol": p} for p in self.protocols}
        for protocol, kind in tqdm(list(self.fid), desc=f"FID {variant}", unit="set"):
            index = [i for i, c in enumerate(self.cases) if c.protocol == protocol]
            meter = self.fid[protocol, kind]
            meter.reset_generated()
            meter.add_images([(generated if kind == "full" else crops)[i] for i in index], real=False)
            summaries[protocol]["fid" if kind == "full" else "fid_crop"] = meter.compute() if len(index) > 1 else None
        for protocol, summary in summaries.items():
            chosen = [r for r in rows if r["protocol"] == protocol]
            summary["n"] = len(chosen)
            for judge in self.judges:
                prefix = self._prefix(judge)
                summary[f"{prefix}seq_acc"] = float(np.mean([r[f"{prefix}correct"] for r in chosen]))
                summary[f"{prefix}seq_acc_cs"] = float(np.mean([r[f"{prefix}correct_cs"] for r in chosen]))
                summary[f"{prefix}ned"] = float(np.mean([r[f"{prefix}ned"] for r in chosen]))
            summary["lpips"] = float(np.mean([r["lpips"] for r in chosen])) if self.lpips is not None else None
            summary["by_length"] = seq_acc_by_length(chosen)
        return rows, list(summaries.values())

    def _prefix(self, judge: Judge) -> str:
        """Column prefix: none for the main judge, `<name>_` for the second."""
        return "" if judge is self.judges[0] else f"{judge.name}_"

    def _lpips(self, generated: Any, reference: Any) -> float:
        from udifftext.metrics import lpips_distance

        return float(lpips_distance(self.lpips, generated, reference)[0])


# --------------------------------------------------------------------------- report


def package_versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _fmt(value: Any, digits: int = 3, significant: bool = False) -> str:
    if value is None:
        return "-"
    if not isinstance(value, float):
        return str(value)
    return f"{value:.{digits}g}" if significant else f"{value:.{digits}f}"


def markdown_table(summaries: list[dict], meta: dict) -> str:
    """The results table with the judge, FID features and LPIPS source stated above it."""
    second = meta.get("second_judge")
    header = ["variant", "protocol", "n", "SeqAcc", "SeqAcc (case)", "NED"]
    if second:
        header += [f"SeqAcc {second['name']}", f"NED {second['name']}"]
    header += ["FID", "FID crop", "LPIPS"]
    judge = meta["judge"]
    lines = [
        f"Judge: {judge['name']} {judge['version']} ({judge['model']}, {judge['mode']}).",
        f"FID features: {meta['fid_features']}. LPIPS: {meta['lpips']}.",
        "SeqAcc is case-insensitive (as upstream); NED is the mean normalised edit distance (lower is better).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for s in summaries:
        cells = [s["variant"], s["protocol"], s["n"], s["seq_acc"], s["seq_acc_cs"], s["ned"]]
        if second:
            cells += [s[f"{second['name']}_seq_acc"], s[f"{second['name']}_ned"]]
        cells += [_fmt(s["fid"], 4, True), _fmt(s["fid_crop"], 4, True), _fmt(s["lpips"], 4)]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    buckets = [_bucket_name(low, high) for low, high in LENGTH_BUCKETS]
    lines += ["", "SeqAcc by target length (characters), n in brackets:", ""]
    lines += ["| variant | protocol | " + " | ".join(buckets) + " |", "|" + "---|" * (2 + len(buckets))]
    for s in summaries:
        cells = [f"{_fmt(s['by_length'][b]['seq_acc'])} ({s['by_length'][b]['n']})" for b in buckets]
        lines.append(f"| {s['variant']} | {s['protocol']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def case_grid(cases: list[Case], generated: list[np.ndarray], rows: list[dict], per_side: int) -> Image.Image:
    """Best and worst cases per protocol (by the judge's NED): original crop, generated crop, target vs judged."""
    height, width, label_w, header = 56, 224, 320, 22
    font = ImageFont.load_default(size=14)
    entries = []
    for protocol in dict.fromkeys(c.protocol for c in cases):
        order = sorted((i for i, c in enumerate(cases) if c.protocol == protocol), key=lambda i: rows[i]["ned"])
        best = order[:per_side]
        worst = [i for i in reversed(order) if i not in best][:per_side]
        entries += [("best", protocol, i) for i in best] + [("worst", protocol, i) for i in worst]
    grid = Image.new("RGB", (2 * width + label_w, header + height * len(entries)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for x, title in ((4, "original"), (width + 4, "generated"), (2 * width + 6, "target -> judged")):
        draw.text((x, 3), title, fill=(0, 0, 0), font=font)
    for row, (tag, protocol, i) in enumerate(entries):
        y = header + row * height
        for col, image in enumerate((cases[i].image, generated[i])):
            crop = Image.fromarray(crop_quad(image, cases[i].quad))
            scale = min((width - 6) / crop.width, (height - 6) / crop.height)  # up- or down-scale to the cell
            crop = crop.resize((max(round(crop.width * scale), 1), max(round(crop.height * scale), 1)), Image.BICUBIC)
            grid.paste(crop, (col * width + 3, y + 3))
        judged, mark = rows[i]["judged"], "ok" if rows[i]["correct"] else "x"
        draw.text((2 * width + 6, y + 6), f"{protocol} {tag} [{mark}]", fill=(90, 90, 90), font=font)
        draw.text((2 * width + 6, y + 28), f"{cases[i].text!r} -> {judged!r}", fill=(0, 0, 0), font=font)
    return grid


def write_report(
    out_dir: str | Path,
    meta: dict,
    rows: list[dict],
    summaries: list[dict],
    grids: dict[str, Image.Image],
) -> Path:
    """metrics.json (every figure + meta), metrics.md, cases.jsonl (per case), grid_<variant>.png."""
    out = Path(out_dir)
    atomic_write_json(out / "metrics.json", {**meta, "results": summaries})
    atomic_write_text(out / "metrics.md", markdown_table(summaries, meta))
    atomic_write_text(out / "cases.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    for name, grid in grids.items():
        atomic_save_image(out / f"grid_{name}.png", grid)
    return out


def report_meta(
    cfg: EvalConfig, mode: str, cases: int, judge: Judge, second: Judge | None, fid_label: str, lpips: str
) -> dict:
    """Everything a reader needs to trust or reproduce the figures: judges, feature nets, versions, config."""
    return {
        "mode": mode,
        "judge": judge.describe(),
        "second_judge": second.describe() if second is not None else None,
        "fid_features": fid_label,
        "lpips": lpips,
        "seed": cfg.seed,
        "cases": cases,  # all protocols together
        "versions": package_versions(),
        "config": asdict(cfg),
    }


# --------------------------------------------------------------------------- the whole run


def build_second_judge(cfg: EvalConfig) -> Judge | None:
    """Our recognizer beside the main judge, when `second_judge`: `second_judge_weights` when given, else the model
    folder's (if it has one)."""
    from udifftext.judge import recognizer_judge_from_export, recognizer_judge_from_folder

    if cfg.second_judge_weights:
        if not cfg.second_judge:
            raise ConfigError("second_judge_weights names a second judge but second_judge is false")
        return recognizer_judge_from_export(cfg.second_judge_weights)
    return recognizer_judge_from_folder(cfg.sample.model) if cfg.second_judge else None


def evaluate(
    cfg: EvalConfig, manifest: str | None = None, predictions: list[str] | None = None, device: str = "cpu"
) -> dict:
    """Score predictions already on disk (`manifest` + `predictions` folders, one row group each) or sample
    every variant with the pipeline on the dataset cases; write the report to `cfg.out_dir`, return metrics."""
    from udifftext.checkpoint import FOLDER_SOURCE, MODEL_CONFIG
    from udifftext.io import require_path
    from udifftext.judge import build_judge
    from udifftext.metrics import build_fid_features, build_lpips

    judge = build_judge(cfg.judge)
    fid_features, fid_label = build_fid_features(cfg.inception_weights)
    lpips_model = build_lpips(cfg.lpips_weights) if cfg.lpips_weights else None
    lpips_label = f"AlexNet v0.1 ({Path(cfg.lpips_weights).name})" if lpips_model else "skipped (no lpips_weights)"
    second = build_second_judge(cfg)
    if manifest is not None:
        if not predictions:
            raise ValueError("--manifest needs at least one --pred folder of generated images")
        names = [Path(folder).name for folder in predictions]
        if len(set(names)) != len(names):
            raise ValueError(f"--pred folders name the table rows, so their names must differ, got {names}")
        cases = read_manifest(manifest)
        runs = [
            (Path(folder).name, lambda folder=folder: (read_predictions(folder, cases), None)) for folder in predictions
        ]
        mode = "predictions"
    else:
        variants = build_variants(cfg)
        for folder in dict.fromkeys(v.model for v in variants):  # fail before hours of sampling, not after
            require_path(Path(folder) / MODEL_CONFIG, "a pipeline folder (model.yaml + weights)", FOLDER_SOURCE)
        cases = config_cases(cfg)
        loaded: dict[str, Any] = {}  # one pipeline in memory at a time; variants sharing a folder reuse it

        def sample_variant(variant: Variant) -> tuple[list[np.ndarray], list[dict]]:
            if variant.model not in loaded:
                loaded.clear()
                loaded[variant.model] = load_pipeline(variant.model, device)
            return sample_cases(loaded[variant.model], cases, variant.sample, desc=f"sample {variant.name}")

        runs = [(v.name, lambda v=v: sample_variant(v)) for v in variants]
        if cfg.score_originals:  # reconstruction: the best any model can score; editing: the unchanged image
            runs.insert(0, (ORIGINALS, lambda: ([case.image for case in cases], None)))
        mode = "sampling"
    scorer = Scorer(cases, judge, second, fid_features, lpips_model, device)
    all_rows, summaries, grids = [], [], {}
    for name, generate in runs:
        generated, choices = generate()
        rows, summary = scorer.score(name, generated, choices)
        all_rows += rows
        summaries += summary
        grids[name] = case_grid(cases, generated, rows, cfg.grid_cases)
    meta = report_meta(cfg, mode, len(cases), judge, second, fid_label, lpips_label)
    write_report(cfg.out_dir, meta, all_rows, summaries, grids)
    return {**meta, "results": summaries}


def load_pipeline(folder: str, device: str) -> Any:
    from udifftext.pipeline import UDiffTextPipeline

    return UDiffTextPipeline.from_pretrained(folder, device=device)

"""What `scripts/sample.py` runs: jobs from flags or a manifest, checked up front, outputs written atomically.

A job is one image with its regions and texts. Every job is checked (readable image, valid regions,
texts in the alphabet, outputs not overwriting inputs) before the first one runs, so bad input stops the
program before anything is written. Each output file is written to a temp file and renamed; the main
image is written last, and in manifest mode the `results.jsonl` line that marks a job finished after it.

Outputs of a job whose main image is `OUT.png`: `OUT.png`, `OUT_r<i>_crop.png` (the generated crop of
region i at model resolution) and `OUT_r<i>_attn.png` (the crop, then each character's attention
heatmap); single-image mode also writes the record as `OUT.json`, manifest mode appends it to
`DIR/results.jsonl`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from udifftext.io import atomic_save_image, atomic_write_json, atomic_write_text
from udifftext.sampling.regions import REGION_KINDS, Region, parse_region

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
RESULTS = "results.jsonl"


@dataclass
class Job:
    id: str
    image: Path
    regions: list[Region]
    texts: list[str]
    out: Path  # the main output image

    def inputs(self) -> list[Path]:
        masks = [Path(r.value) for r in self.regions if r.kind == "mask" and isinstance(r.value, str | Path)]
        return [self.image, *masks]

    def outputs(self, with_record: bool) -> list[Path]:
        stem = self.out.with_suffix("")
        parts = [Path(f"{stem}_r{i}_{kind}.png") for i in range(len(self.regions)) for kind in ("crop", "attn")]
        return [*parts, *([self.out.with_suffix(".json")] if with_record else []), self.out]


def check_out_path(out: Path) -> None:
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"--out must end with one of {IMAGE_SUFFIXES}, got '{out}'")


def check_no_overwrite(jobs: list[Job], with_record: bool, extra_inputs: list[Path] = ()) -> None:
    """Refuse any output path that equals an input path (image, mask, manifest)."""
    inputs = {p.resolve() for job in jobs for p in job.inputs()} | {p.resolve() for p in extra_inputs}
    for job in jobs:
        for path in job.outputs(with_record):
            if path.resolve() in inputs:
                raise ValueError(f"output path '{path}' is also an input path: choose another --out")


def manifest_entries(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(where, entry) for each line of a manifest, checked: a JSON object with a unique `id` (a plain file
    name), `image`, `text` and exactly one of `box`/`quad`/`mask`. `where` is "path:line" for messages.

    `sample.py --manifest` and `evaluate.py --manifest` both read manifests through this.
    """
    try:
        lines = path.read_text().splitlines()
    except (FileNotFoundError, IsADirectoryError):
        raise ValueError(f"manifest not found: '{path}'") from None
    entries, seen = [], set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not valid JSON ({err.msg})") from None
        if not isinstance(item, dict):
            raise ValueError(f"{where}: each line must be a JSON object, got {type(item).__name__}")
        _check_entry(item, where)
        if str(item["id"]) in seen:
            raise ValueError(f"{where}: duplicate id '{item['id']}'")
        seen.add(str(item["id"]))
        entries.append((where, item))
    if not entries:
        raise ValueError(f"manifest '{path}' has no items")
    return entries


def _check_entry(item: dict[str, Any], where: str) -> None:
    missing = [k for k in ("id", "image", "text") if k not in item]
    kinds = [k for k in REGION_KINDS if k in item]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}; each item needs id, image, text and a box/quad/mask")
    if len(kinds) != 1:
        raise ValueError(f"{where}: give exactly one of box, quad, mask; got {kinds or 'none'}")
    job_id = str(item["id"])
    if not job_id or "/" in job_id or "\\" in job_id or job_id.startswith("."):
        raise ValueError(f"{where}: id must be a plain file name (no '/', not starting with '.'), got '{job_id}'")


def entry_region(item: dict[str, Any], where: str, base: Path) -> Region:
    """The region of a checked manifest entry; a mask path is relative to the manifest's folder `base`."""
    kind = next(k for k in REGION_KINDS if k in item)
    value = str(base / item[kind]) if kind == "mask" else item[kind]
    try:
        return parse_region(kind, value)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def read_manifest(path: Path, out_dir: Path) -> list[Job]:
    """Jobs of a manifest (see `manifest_entries`); relative image and mask paths are resolved against its folder."""
    jobs = []
    for where, item in manifest_entries(path):
        job_id = str(item["id"])
        region = entry_region(item, where, path.parent)
        jobs.append(Job(job_id, path.parent / item["image"], [region], [str(item["text"])], out_dir / f"{job_id}.png"))
    return jobs


def finished_ids(out_dir: Path) -> set[str]:
    """Ids already recorded in `out_dir/results.jsonl` (resume skips them)."""
    path = out_dir / RESULTS
    if not path.exists():
        return set()
    ids = set()
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            ids.add(json.loads(line)["id"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"{path}:{number} is not a result line with an id: fix or delete it to resume") from None
    return ids


def write_job_outputs(job: Job, output: Any, with_record: bool) -> None:
    """Write crops, heatmap strips, (the record,) and last the main image, each atomically."""
    from udifftext.sampling.heatmaps import heatmap_strip

    stem = job.out.with_suffix("")
    for i, (crop, heat) in enumerate(zip(output.crops, output.heatmaps, strict=True)):
        atomic_save_image(f"{stem}_r{i}_crop.png", crop)
        if heat is not None:
            atomic_save_image(f"{stem}_r{i}_attn.png", heatmap_strip(crop, heat))
    if with_record:
        atomic_write_json(job.out.with_suffix(".json"), output.record)
    atomic_save_image(job.out, output.image)


def append_result(out_dir: Path, job: Job, record: dict[str, Any]) -> None:
    """Add the job's line to results.jsonl (rewritten atomically: never a half line)."""
    path = out_dir / RESULTS
    old = path.read_text() if path.exists() else ""
    line = json.dumps({"id": job.id, "output": str(job.out), **record}, sort_keys=True)
    atomic_write_text(path, old + line + "\n")


def run_jobs(
    pipe: Any,
    jobs: list[Job],
    cfg: Any,
    manifest_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> int:
    """Check every job, then run them with progress bars; returns the number of jobs run.

    With `manifest_dir` set, finished ids are skipped and each record is appended to its results.jsonl.
    """
    from tqdm.auto import tqdm

    with_record = manifest_dir is None
    done = finished_ids(manifest_dir) if manifest_dir else set()
    todo = [job for job in jobs if job.id not in done]
    if done:
        log(f"resuming: {len(jobs) - len(todo)} of {len(jobs)} items already in {manifest_dir / RESULTS}")
    for job in todo:
        try:
            pipe.check_inputs(job.image, job.regions, job.texts, cfg)
        except ValueError as err:
            raise ValueError(f"item '{job.id}': {err}" if manifest_dir else str(err)) from None
    for job in tqdm(todo, desc="items", disable=len(todo) < 2):
        output = pipe(job.image, job.regions, job.texts, cfg, progress=True)
        write_job_outputs(job, output, with_record)
        if manifest_dir:
            append_result(manifest_dir, job, output.record)
        log(f"wrote {job.out} ({output.record['seconds']:.1f} s)")
    return len(todo)

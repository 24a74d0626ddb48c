"""Web demo: paint regions (or type boxes) on an image, give one text per region, get the inpainted image.

`build_demo(pipe, cfg)` returns the gradio Blocks, so tests can launch it on a loopback port;
`scripts/demo.py` is the command line. Regions come from the ImageEditor's layers (each painted layer is
one region: alpha > 0) followed by the boxes typed one per line as `x0,y0,x1,y1`; texts are one per line
and pair with the regions in that order. Input problems end up as a sentence in the status box, never a
bare "error". gradio is imported inside functions only, so `import udifftext.demo` stays cheap.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from udifftext.config import SampleConfig
from udifftext.sampling.regions import Region, parse_box

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = ROOT / "data/examples"
BRUSH_COLOUR = "#ff40a0"
REGION_COLOURS = [(255, 64, 160), (64, 160, 255), (255, 200, 0), (0, 200, 120), (160, 96, 255)]

# Keep gradio, huggingface_hub and the browser page offline: no analytics, no version check, no hub calls.
OFFLINE_ENV = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
    "GRADIO_SSR_MODE": "False",  # client-side rendering from the bundled frontend, no Node server
}


@dataclass
class DemoInputs:
    """The checked page inputs: RGB image, regions in pairing order, their labels and the texts."""

    image: Image.Image
    regions: list[Region]
    labels: list[str]  # "layer 1", "box 1", ... as shown in the status line
    texts: list[str]


def set_offline_env() -> None:
    """Set `OFFLINE_ENV` (before gradio is imported, where its defaults are read)."""
    os.environ.update(OFFLINE_ENV)


def parse_texts(text: str | None) -> list[str]:
    """One text per non-empty line, surrounding spaces removed (the alphabets have no space)."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def parse_boxes(text: str | None) -> list[Region]:
    """One `x0,y0,x1,y1` box per non-empty line (pixels, x1/y1 exclusive)."""
    boxes = []
    for number, line in enumerate((text or "").splitlines(), 1):
        if not line.strip():
            continue
        try:
            boxes.append(parse_box(line))
        except ValueError:
            raise ValueError(f"box line {number} must be x0,y0,x1,y1 (four numbers), got '{line.strip()}'") from None
    return boxes


def layer_masks(layers: list[Any] | None, size: tuple[int, int]) -> list[tuple[int, np.ndarray]]:
    """(layer number, (H, W) bool mask) for each layer with painted pixels; `size` = image (W, H)."""
    masks = []
    for number, layer in enumerate(layers or [], 1):
        if layer is None:
            continue
        array = np.asarray(layer)
        if array.ndim == 3 and array.shape[2] == 4:
            painted = array[..., 3] > 0  # (H, W) alpha: the brush leaves opaque pixels on a transparent layer
        else:
            painted = np.asarray(Image.fromarray(array).convert("L")) > 127  # an opaque mask image
        if painted.shape[::-1] != tuple(size):
            resized = Image.fromarray(painted.astype(np.uint8) * 255).resize(size, Image.NEAREST)
            painted = np.asarray(resized) > 127
        if painted.any():
            masks.append((number, painted))
    return masks


def collect_inputs(editor: dict[str, Any] | None, boxes: str | None, texts: str | None) -> DemoInputs:
    """Turn the page's editor value, box lines and text lines into regions and texts, or a readable ValueError."""
    background = (editor or {}).get("background")
    if background is None:
        raise ValueError("no image: upload one in the editor (or click an example below)")
    image = Image.fromarray(np.asarray(background)).convert("RGB")
    regions, labels = [], []
    for number, mask in layer_masks(editor.get("layers"), image.size):
        regions.append(Region("mask", mask))
        labels.append(f"layer {number}")
    for number, box in enumerate(parse_boxes(boxes), 1):
        regions.append(box)
        labels.append(f"box {number}")
    words = parse_texts(texts)
    if not regions:
        raise ValueError(
            "no region drawn: paint over the place for the text with the brush (one layer per region) "
            "or type a box x0,y0,x1,y1"
        )
    if len(words) != len(regions):
        raise ValueError(
            f"{len(regions)} region(s) ({', '.join(labels)}) but {len(words)} text(s): "
            "give one text per line, one per region, painted layers first, then boxes"
        )
    return DemoInputs(image, regions, labels, words)


def sample_config(
    base: SampleConfig, seed: float, steps: float, guidance: float, candidates: float, refine: bool
) -> SampleConfig:
    """The page's settings applied on top of the loaded config; 1 candidate turns noise selection off."""
    if seed is None:
        raise ValueError("seed must be a whole number, got an empty field")
    selection = replace(base.noise_selection, enabled=int(candidates) > 1, candidates=max(1, int(candidates)))
    return replace(
        base,
        seed=int(seed),
        steps=int(steps),
        guidance_scale=float(guidance),
        noise_selection=selection,
        refinement=replace(base.refinement, enabled=bool(refine)),
    )


def region_preview(image: Image.Image, masks: list[np.ndarray], labels: list[str]) -> Image.Image:
    """The input with each region tinted in its own colour and numbered, to show what was sent."""
    canvas = np.asarray(image, dtype=np.float32).copy()  # (H, W, 3)
    for i, mask in enumerate(masks):
        canvas[mask] = 0.5 * canvas[mask] + 0.5 * np.array(REGION_COLOURS[i % len(REGION_COLOURS)])
    preview = Image.fromarray(canvas.round().astype(np.uint8))
    draw = ImageDraw.Draw(preview)
    for i, (mask, label) in enumerate(zip(masks, labels, strict=True)):
        ys, xs = np.nonzero(mask)
        draw.text((int(xs.min()) + 2, int(ys.min()) + 1), f"{i + 1}: {label}", fill=(255, 255, 255))
    return preview


def run_demo(
    pipe: Any,
    base: SampleConfig,
    editor: Any,
    boxes: str,
    texts: str,
    seed: float,
    steps: float,
    guidance: float,
    candidates: float,
    refine: bool,
) -> tuple[Image.Image | None, list, Image.Image | None, Image.Image | None, str]:
    """One click of Run: (result, captioned crops, attention panel, region preview, status Markdown)."""
    from udifftext.sampling.heatmaps import heatmap_strip

    try:
        inputs = collect_inputs(editor, boxes, texts)
        cfg = sample_config(base, seed, steps, guidance, candidates, refine)
        image, masks = pipe.check_inputs(inputs.image, inputs.regions, inputs.texts, cfg)
    except ValueError as err:
        return None, [], None, None, f"**Cannot run:** {err}"
    out = pipe(image, inputs.regions, inputs.texts, cfg, progress=True)
    crops = [(crop, f"{i + 1}: '{text}'") for i, (crop, text) in enumerate(zip(out.crops, inputs.texts, strict=True))]
    strips = [
        (heatmap_strip(crop, heat), f"{i + 1}: '{text}': the crop, then one map per character")
        for i, (crop, heat, text) in enumerate(zip(out.crops, out.heatmaps, inputs.texts, strict=True))
        if heat is not None
    ]
    pairs = ", ".join(f"{label} → '{text}'" for label, text in zip(inputs.labels, inputs.texts, strict=True))
    status = f"**Done** in {out.record['seconds']:.1f} s: {pairs} (seed {cfg.seed}, {cfg.steps} steps)."
    panel = stack_captioned(strips) if strips else None
    return out.image, crops, panel, region_preview(image, masks, inputs.labels), status


def stack_captioned(images: list[tuple[Image.Image, str]], band: int = 16) -> Image.Image:
    """Images one under the other, each under a dark band with its caption (wide strips stay readable)."""
    width = max(image.width for image, _ in images)
    panel = Image.new("RGB", (width, sum(image.height + band for image, _ in images)), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    top = 0
    for image, caption in images:
        draw.rectangle([0, top, width, top + band - 1], fill=(40, 40, 40))
        draw.text((3, top + 2), caption, fill=(255, 255, 255))
        panel.paste(image.convert("RGB"), (0, top + band))
        top += band + image.height
    return panel


def example_rows(examples_dir: Path = EXAMPLES_DIR) -> list[list[Any]]:
    """Bundled examples as [editor value, boxes, texts] rows: a box, a painted layer, and both at once.

    The composite is the plain image (the editor shows it as the background); the box-only example carries an
    empty layer so that it replaces a painted layer left by another example.
    """
    background = str(examples_dir / "storefront.png")
    layer = str(examples_dir / "demo/storefront_layer_open.png")
    empty = str(examples_dir / "demo/storefront_layer_empty.png")  # replaces layers left by another example
    painted = {"background": background, "layers": [layer], "composite": background}
    return [
        [{"background": background, "layers": [empty], "composite": background}, "52,38,268,79", "COFFEE"],
        [painted, "", "open"],
        [painted, "52,38,268,79", "open\nCOFFEE"],
    ]


def build_demo(pipe: Any, cfg: SampleConfig, note: str = "", examples_dir: Path = EXAMPLES_DIR) -> Any:
    """The gradio Blocks around `pipe`; `cfg` gives the settings' initial values, `note` a line under the title."""
    set_offline_env()
    import gradio as gr

    tokenizer = pipe.text_encoder.tokenizer

    def run(editor, boxes, texts, seed, steps, guidance, candidates, refine, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        progress(0, desc="checking inputs")
        result = run_demo(pipe, cfg, editor, boxes, texts, seed, steps, guidance, candidates, refine)
        if result[0] is None:
            gr.Warning(result[-1].replace("**", ""))
        return result

    with gr.Blocks(title="UDiffText demo", analytics_enabled=False) as demo:
        gr.Markdown(
            "# UDiffText: write text into an image\n"
            f"Model: `{pipe.source}`{' — ' + note if note else ''}. Paint over each place for text with the brush "
            "(one layer per region: add a layer for the next one) or type boxes, then give one text per line, "
            "painted layers first, then boxes."
        )
        with gr.Row():
            with gr.Column():
                editor = gr.ImageEditor(
                    label="Image and regions",
                    type="numpy",
                    image_mode="RGBA",
                    format="png",
                    sources=["upload", "clipboard"],
                    transforms=[],
                    brush=gr.Brush(colors=[BRUSH_COLOUR], color_mode="fixed"),
                    layers=True,
                    elem_id="editor",
                )
                boxes = gr.Textbox(label="Boxes (x0,y0,x1,y1, one per line; optional)", lines=2, elem_id="boxes")
                texts = gr.Textbox(
                    label="Texts (one per line, one per region)",
                    lines=2,
                    info=f"At most {tokenizer.max_len} characters each, from: {tokenizer.alphabet}",
                    elem_id="texts",
                )
                with gr.Accordion("Settings", open=False):
                    seed = gr.Number(label="Seed", value=cfg.seed, precision=0)
                    steps = gr.Slider(1, 100, value=cfg.steps, step=1, label="Denoising steps")
                    guidance = gr.Slider(1, 15, value=cfg.guidance_scale, step=0.5, label="Guidance scale (CFG)")
                    selection = cfg.noise_selection
                    candidates = gr.Slider(
                        1,
                        32,
                        value=selection.candidates if selection.enabled else 1,
                        step=1,
                        label="Noise candidates (1 = no noise selection)",
                    )
                    refine = gr.Checkbox(label="Attention-guided refinement (slower)", value=cfg.refinement.enabled)
                button = gr.Button("Run", variant="primary", elem_id="run")
            with gr.Column():
                status = gr.Markdown("Click an example below or draw your own, then **Run**.", elem_id="status")
                result = gr.Image(label="Result", type="pil", format="png", interactive=False, elem_id="result")
                crops = gr.Gallery(
                    label="Generated crops (sampling resolution)",
                    columns=4,
                    height=180,
                    object_fit="contain",
                    elem_id="crops",
                )
                heatmaps = gr.Image(
                    label="Per-character attention (middle denoising step)",
                    type="pil",
                    format="png",
                    interactive=False,
                    elem_id="heatmaps",
                )
                preview = gr.Image(label="Regions used", type="pil", format="png", interactive=False, elem_id="regions")
        gr.Examples(example_rows(examples_dir), inputs=[editor, boxes, texts], label="Examples (click, then Run)")
        button.click(
            run,
            inputs=[editor, boxes, texts, seed, steps, guidance, candidates, refine],
            outputs=[result, crops, heatmaps, preview, status],
        )
    return demo


def launch_demo(demo: Any, host: str = "127.0.0.1", port: int | None = None, block: bool = True, **kwargs: Any) -> Any:
    """Serve `demo` from the bundled frontend on `host:port`; `block=False` returns at once (tests)."""
    set_offline_env()
    import gradio as gr

    return demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        show_error=True,
        prevent_thread_lock=not block,
        allowed_paths=[str(EXAMPLES_DIR)],
        theme=gr.themes.Default(),
        quiet=not block,
        **kwargs,
    )


def load_demo_pipeline(folder: str, device: str, explicit: bool) -> tuple[Any, str]:
    """(pipeline, note for the page): `load_pipeline_or_random`, falling back only for the default folder."""
    from udifftext.pipeline import load_pipeline_or_random

    pipe, note = load_pipeline_or_random(folder, device, allow_random=not explicit)
    if not note:
        return pipe, ""
    print(f"note: {note}", file=sys.stderr)
    return pipe, "**" + note + "**"

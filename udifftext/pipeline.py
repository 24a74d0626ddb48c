"""`UDiffTextPipeline`: write text into regions of any image with a trained pipeline folder (diffusers conventions).

`__call__` runs these steps for every region, one after another on the updated image:

1. check inputs (image to RGB, regions to masks, texts against the alphabet, the sampling config);
2. crop a square around the region (upstream's ROI crop), or a rotated window along the text for models
   trained on rectified crops (`data.crop_width`), and resize it to the sampling size
   (`SampleConfig.resolution`, by default the model's own);
3. encode the text, the masked crop and the mask (+ the rendered glyph for glyph-channel models);
4. choose the initial noise: the best of K candidates by L_aae after a short guided run (noise selection);
5. denoise with classifier-free guidance (zero context as unconditional), optionally refining the latent
   with grad L_aae before each step, capturing the attention at the middle step for the heatmaps;
6. decode; with read selection on (an extension beside the paper), steps 4-6 run K times and the sample a
   recognizer reads best as the text is kept;
7. paste the crop back with a soft blend inside the mask edge; pixels outside stay bit-identical.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from udifftext.checkpoint import PipelineParts, load_pipeline_folder, save_pipeline_folder
from udifftext.config import GLYPH_CONTENTS, GLYPH_FONT, GLYPH_SHAPES, SampleConfig, UNetStageConfig
from udifftext.data.words import resolve_data_path
from udifftext.io import require_path
from udifftext.sampling.guidance import Conditioning, GuidedDenoiser
from udifftext.sampling.heatmaps import character_heatmaps
from udifftext.sampling.noise_selection import choose_initial_noise
from udifftext.sampling.refinement import check_refinement, refine_latent
from udifftext.sampling.regions import Region, load_image, region_mask
from udifftext.sampling.schedulers import SCHEDULERS, build_scheduler

ABLATIONS = ("", "text", "glyph")  # SampleConfig.ablate: which conditioning input to take away


@dataclass
class SampleOutput:
    """What one `__call__` returns; `record` is JSON-serialisable."""

    image: Image.Image  # the full image with every region inpainted
    crops: list[Image.Image]  # per region: the generated crop at the sampling size
    heatmaps: list[np.ndarray | None]  # per region: (len(text), h, w) in [0, 1], None when not captured
    record: dict[str, Any] = field(default_factory=dict)


def check_glyph_margin(margin: float, name: str) -> None:
    """The glyph's blank border on every side, x the region's height: half of it on both sides leaves no room."""
    if not 0 <= margin < 0.5:
        raise ValueError(f"{name} must be in [0, 0.5) of the region's height, got {margin}")


def check_sample_config(cfg: SampleConfig) -> None:
    """Reject sampling settings the loop cannot run, naming the key."""
    if cfg.scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {SCHEDULERS}, got '{cfg.scheduler}'")
    if cfg.steps < 1:
        raise ValueError(f"steps must be >= 1, got {cfg.steps}")
    if cfg.blend_width < 0:
        raise ValueError(f"blend_width must be >= 0, got {cfg.blend_width}")
    check_glyph_margin(cfg.glyph_margin, "glyph_margin")
    if cfg.glyph_shape not in GLYPH_SHAPES:
        raise ValueError(f"glyph_shape must be one of {GLYPH_SHAPES}, got '{cfg.glyph_shape}'")
    if not resolve_data_path(cfg.glyph_font).is_file():
        raise FileNotFoundError(
            f"glyph_font {cfg.glyph_font} does not exist: expected a font file (.ttf/.otf) to draw the glyph in; "
            "data/fonts/ holds the shipped ones"
        )
    ns = cfg.noise_selection
    if ns.enabled and (ns.candidates < 1 or ns.steps < 1 or ns.chunk_size < 1):
        raise ValueError(
            f"noise_selection.candidates/steps/chunk_size must be >= 1, got {ns.candidates}/{ns.steps}/{ns.chunk_size}"
        )
    if cfg.ablate not in ABLATIONS:
        raise ValueError(f"ablate must be one of {ABLATIONS}, got '{cfg.ablate}'")
    if cfg.read_selection.enabled:
        if cfg.read_selection.candidates < 1:
            raise ValueError(f"read_selection.candidates must be >= 1, got {cfg.read_selection.candidates}")
        if cfg.read_selection.recognizer:
            require_path(
                cfg.read_selection.recognizer,
                "an exported recognizer .safetensors (its .yaml beside it) for read_selection",
                "scripts/train_encoder.py or checkpoints/encoders/",
            )
    if cfg.refinement.enabled:
        check_refinement(cfg.refinement)


def region_corners(mask: np.ndarray, shape: str = "quad") -> np.ndarray:
    """(4, 2) xy corners of the region `mask` (h, w), pixel edges: top-left, top-right, bottom-right, bottom-left.

    "quad": the quadrilateral the mask was drawn from (a perspective-warped word box), fitted to its convex
    outline; a mask that is no quadrilateral (no 4-vertex fit within 3 px) gets its minimum-area rectangle.
    "rect": always the minimum-area rectangle. The glyph drawn into the rectangle of a quadrilateral region
    overhangs it at the region's narrower end, where the first or last letter's ascender or descender lies
    outside the mask and is not drawn. The baseline is the rectangle's side nearer to horizontal, pointing
    right: text is never read at more than 45 degrees here.
    """
    import cv2

    if shape not in GLYPH_SHAPES:
        raise ValueError(f"glyph shape must be one of {GLYPH_SHAPES}, got '{shape}'")
    ys, xs = np.nonzero(mask)
    centres = np.stack([xs, ys], axis=1).astype(np.float32) + 0.5  # pixel centres, xy
    corners = cv2.boxPoints(cv2.minAreaRect(centres))  # (4, 2), consecutive corners
    edges = [corners[1] - corners[0], corners[2] - corners[1]]
    along, across = sorted(edges, key=lambda e: abs(e[1]) - abs(e[0]))  # the flatter edge is the baseline
    along = along if along[0] >= 0 else -along
    across = across if across[1] >= 0 else -across
    unit_along, unit_across = _unit(along, [1.0, 0.0]), _unit(across, [0.0, 1.0])  # a one-pixel mask: axis-aligned
    if shape == "quad":
        corners = _fitted_quad(mask, corners)
    by_across = corners[np.argsort(corners @ unit_across)]  # two top corners, then two bottom ones
    top, bottom = (pair[np.argsort(pair @ unit_along)] for pair in (by_across[:2], by_across[2:]))
    ordered = np.stack([top[0], top[1], bottom[1], bottom[0]])  # centres of the corner pixels
    outward = np.array([-1, 1, 1, -1])[:, None] * unit_along + np.array([-1, -1, 1, 1])[:, None] * unit_across
    return (ordered + 0.5 * outward).astype(np.float64)  # centres -> pixel edges


def _unit(vector: np.ndarray, degenerate: list[float]) -> np.ndarray:
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else np.array(degenerate)


def _fitted_quad(mask: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """The 4 vertices (xy, pixel centres) of a polygon fit to the mask's convex outline, or `fallback`."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    hull = cv2.convexHull(np.concatenate(contours))
    for tolerance in (0.75, 1.0, 1.5, 2.0, 3.0):  # px: a rasterised straight edge stays within one pixel
        poly = cv2.approxPolyDP(hull, tolerance, True)
        if len(poly) == 4:
            return poly[:, 0].astype(np.float32) + 0.5
        if len(poly) < 4:
            break
    return fallback


def glyph_canvas(
    text: str,
    mask: np.ndarray,
    content: str = "text",
    margin: float = 0.0,
    font: str = GLYPH_FONT,
    shape: str = "quad",
) -> np.ndarray:
    """The glyph channel for `text` in the region `mask` (h, w): zeros outside the region's quadrilateral.

    `content` "text": the text rendered (`render_glyph`) and warped into the region's quadrilateral
    (`region_corners`, `shape` "quad") or minimum-area rectangle ("rect"); "position": a ramp along the word,
    (i + 0.5) / width at column i, which says where along the word a pixel lies but not which letter is there
    (`unet.glyph_content`). A tilted word gets a tilted glyph and a word in perspective a glyph in the same
    perspective, as the training words lie in their boxes. `margin` leaves that fraction of the region's
    height blank on every side (`SampleConfig.glyph_margin`); `font` is the font file the text is drawn in
    (`SampleConfig.glyph_font`).
    """
    import cv2

    from udifftext.data.synth import pixel_warp, render_glyph

    if content not in GLYPH_CONTENTS:
        raise ValueError(f"glyph content must be one of {GLYPH_CONTENTS}, got '{content}'")
    check_glyph_margin(margin, "glyph margin")
    corners = region_corners(mask, shape)  # (4, 2) pixel edges
    top, right, bottom, left = (np.linalg.norm(corners[(i + 1) % 4] - corners[i]) for i in range(4))
    width, height = (top + bottom) / 2, (left + right) / 2
    h, w = max(round(height), 1), max(round(width), 1)
    pad = min(round(margin * h), (h - 1) // 2, (w - 1) // 2)
    inner_h, inner_w = h - 2 * pad, w - 2 * pad
    if content == "text":
        glyph = render_glyph(text, inner_h, inner_w, font)
    else:
        glyph = np.broadcast_to((np.arange(inner_w, dtype=np.float32) + 0.5) / inner_w, (inner_h, inner_w))
    glyph = np.pad(glyph, pad)  # (h, w)
    source = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)  # the glyph's own pixel edges
    homography = cv2.getPerspectiveTransform(source, corners.astype(np.float32))
    size = mask.shape[::-1]
    return cv2.warpPerspective(glyph, pixel_warp(homography), size, flags=cv2.INTER_LINEAR).astype(np.float32)


class UDiffTextPipeline:
    """UNet, char text encoder, first stage (and optional recognizer) with the model config they were built from.

    Schedulers keep per-run state, so each call builds its own from the model's training discretisation
    (`cfg.diffusion`) and the sampling config; see `udifftext/sampling/schedulers.py`.
    """

    def __init__(self, cfg: UNetStageConfig, unet: Any, text_encoder: Any, first_stage: Any, recognizer: Any = None):
        from udifftext.unet.attention import AttentionStore, install_attention_capture

        self.cfg = cfg
        self.unet = unet.eval().requires_grad_(False)
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.first_stage = first_stage.eval().requires_grad_(False)
        self.recognizer = None if recognizer is None else recognizer.eval().requires_grad_(False)
        self.store = AttentionStore(cfg.text_encoder.max_len, cfg.loss.min_attn_size)
        self.store.enabled = False  # capture only on the forwards that need maps; otherwise SDPA
        self._selection_readers: dict[str, Any] = {}  # read_selection recognizers by weights path
        install_attention_capture(self.unet, self.store)
        self.source = ""  # the folder the weights came from, for the record

    # ------------------------------------------------------------------ construction and storage

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu") -> UDiffTextPipeline:
        """Load a pipeline folder (udifftext/checkpoint.py) strictly; MissingWeightsError names a missing file."""
        parts = load_pipeline_folder(folder)
        pipe = cls(parts.cfg, parts.unet, parts.text_encoder, parts.first_stage, parts.recognizer).to(device)
        pipe.source = str(folder)
        return pipe

    @classmethod
    def from_config(cls, cfg: UNetStageConfig, seed: int = 0) -> UDiffTextPipeline:
        """Random-weight pipeline built from a model config (tests, smoke runs, the no-checkpoint fallback)."""
        from udifftext.first_stage import build_first_stage
        from udifftext.text.encoder import CharTextEncoder
        from udifftext.unet.model import build_unet

        torch.manual_seed(seed)
        unet = build_unet(cfg)
        torch.manual_seed(seed)
        text_encoder = CharTextEncoder(cfg.text_encoder)
        torch.manual_seed(seed)
        first_stage = build_first_stage(cfg.first_stage)
        pipe = cls(cfg, unet, text_encoder, first_stage)
        pipe.source = f"random weights (seed {seed})"
        return pipe

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write the pipeline folder that `from_pretrained` reads back to identical outputs."""
        parts = PipelineParts(self.cfg, self.unet, self.text_encoder, self.first_stage, self.recognizer)
        return save_pipeline_folder(folder, parts)

    def to(self, device: str | torch.device) -> UDiffTextPipeline:
        for module in (self.unet, self.text_encoder, self.first_stage, self.recognizer):
            if module is not None:
                module.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def resolution(self) -> int:
        """Model (training) resolution: the crop's height (and width, unless the model is rectified)."""
        return self.cfg.data.resolution

    @property
    def size_multiple(self) -> int:
        """A sampling resolution must be a multiple of this (first-stage and UNet downsampling)."""
        return self.first_stage.factor * self.unet.size_multiple

    def sampling_resolution(self, cfg: SampleConfig) -> int:
        """`cfg.resolution`, or the model's own when 0. The UNet is convolutional, so a larger crop gives each
        character more pixels at the cost of (R / model R)^2 per step; it is checked against the downsampling."""
        resolution = cfg.resolution or self.resolution
        if resolution < 0 or resolution % self.size_multiple:
            raise ValueError(
                f"resolution must be 0 (the model's {self.resolution}) or a positive multiple of "
                f"{self.size_multiple} for this model, got {cfg.resolution}"
            )
        return resolution

    def sampling_shape(self, cfg: SampleConfig) -> tuple[int, int]:
        """(h, w) of the sampling crop: the resolution squared, or for a rectified model the resolution high and
        as wide as the training crop's aspect makes it."""
        resolution = self.sampling_resolution(cfg)
        if not self.cfg.data.crop_width:
            return resolution, resolution
        width = resolution * self.cfg.data.crop_width / self.resolution
        if width % self.size_multiple:
            raise ValueError(
                f"resolution {resolution} gives a crop width of {width:g} for this {self.resolution}x"
                f"{self.cfg.data.crop_width} model, not a multiple of {self.size_multiple}"
            )
        return resolution, int(width)

    # ------------------------------------------------------------------ step 1

    def check_inputs(
        self, image: Image.Image | str | Path, regions: list[Region], texts: list[str], cfg: SampleConfig
    ) -> tuple[Image.Image, list[np.ndarray]]:
        """Validate everything before any work; returns the RGB image and one (H, W) bool mask per region."""
        check_sample_config(cfg)
        if cfg.read_selection.enabled and not cfg.read_selection.recognizer and self.recognizer is None:
            raise ValueError(
                "read_selection needs a recognizer: this model folder has none; set read_selection.recognizer to an "
                "exported recognizer .safetensors (checkpoints/encoders/)"
            )
        if cfg.ablate == "glyph" and not self.cfg.unet.glyph_channel:
            raise ValueError("ablate='glyph' needs a glyph-channel model; this one has no glyph input")
        if isinstance(image, str | Path):
            image = load_image(image)
        elif isinstance(image, Image.Image):
            image = image.convert("RGB")
        else:
            raise ValueError(f"image must be a PIL image or a path, got {type(image).__name__}")
        if isinstance(texts, str):
            raise ValueError(f"texts must be a list with one text per region, got the string {texts!r}")
        if len(regions) == 0:
            raise ValueError("regions must hold at least one region (box, quad or mask)")
        if len(texts) != len(regions):
            raise ValueError(f"got {len(texts)} texts for {len(regions)} regions: give exactly one text per region")
        for text in texts:
            if not text:
                raise ValueError("text must have at least one character, got ''")
            self.text_encoder.tokenizer.validate(text)
        shape = self.sampling_shape(cfg)
        masks = [region_mask(region, image.size, i) for i, region in enumerate(regions)]
        for i, mask in enumerate(masks):
            if not self._roi(mask, shape).apply_mask(mask).any():
                raise ValueError(f"region {i} is too thin: nothing of it is left at sampling size {shape}")
        return image, masks

    def _roi(self, mask: np.ndarray, shape: tuple[int, int]) -> Any:
        """The crop the model was trained on (udifftext/data/transforms.py), fitted to the mask.

        Square models get upstream's crop around the mask's bounding box, zoomed with the model's own
        `data.crop_min_area_ratio` (a model trained on crops where the word fills a quarter of the window must be
        shown such crops, not upstream's 4 % windows); rectified models the rotated window around the mask's
        pixels with the model's `data.crop_margin`.
        """
        import cv2

        from udifftext.data.transforms import compute_rectified_crop, compute_roi_crop

        if self.cfg.data.crop_width:
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            pixels = np.concatenate([c.reshape(-1, 2) for c in contours])  # (N, 2) xy of the boundary pixels
            corners = (pixels[:, None] + np.array([[0, 0], [1, 0], [0, 1], [1, 1]])).reshape(-1, 2)  # pixel edges
            return compute_rectified_crop(mask.shape, corners, shape, self.cfg.data.crop_margin)
        ys, xs = np.nonzero(mask)
        box = (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
        return compute_roi_crop(mask.shape, box, shape[0], self.cfg.data.crop_min_area_ratio)

    # ------------------------------------------------------------------ steps 2-7

    def __call__(
        self,
        image: Image.Image | str | Path,
        regions: list[Region],
        texts: list[str],
        cfg: SampleConfig | None = None,
        progress: bool = False,
    ) -> SampleOutput:
        """Inpaint `texts[i]` into `regions[i]` of `image`, region after region; see the module docstring."""
        cfg = cfg or SampleConfig()
        start = time.perf_counter()
        path = str(image) if isinstance(image, str | Path) else None
        image, masks = self.check_inputs(image, regions, texts, cfg)
        canvas = np.asarray(image).copy()  # (H, W, 3) uint8
        crops, heatmaps, records = [], [], []
        for i, (mask, text) in enumerate(zip(masks, texts, strict=True)):
            canvas, crop, heat, rec = self._inpaint_region(canvas, mask, text, cfg, cfg.seed + i, progress)
            crops.append(crop)
            heatmaps.append(heat)
            records.append({"index": i, "region": regions[i].describe(), "text": text, "seed": cfg.seed + i, **rec})
        record = {
            "model": self.source,
            "image": path,
            "image_size": list(image.size),
            "texts": list(texts),
            "seed": cfg.seed,
            "config": asdict(cfg),
            "device": str(self.device),
            "regions": records,
            "seconds": round(time.perf_counter() - start, 4),
        }
        return SampleOutput(Image.fromarray(canvas), crops, heatmaps, record)

    @torch.no_grad()
    def _inpaint_region(
        self, canvas: np.ndarray, mask: np.ndarray, text: str, cfg: SampleConfig, seed: int, progress: bool
    ) -> tuple[np.ndarray, Image.Image, np.ndarray | None, dict[str, Any]]:
        timings = {}
        tick = time.perf_counter()
        # 2. crop around the region
        crop_hw = self.sampling_shape(cfg)
        roi = self._roi(mask, crop_hw)
        crop_mask = roi.apply_mask(mask)  # (h, w) uint8
        crop = roi.apply_image(canvas)  # (h, w, 3) uint8
        # 3. encode
        cond = ablate(self._condition(crop, crop_mask, text, cfg), cfg.ablate)
        timings["prepare_s"] = time.perf_counter() - tick
        denoiser = GuidedDenoiser(self.unet, self.store, cfg.guidance_scale, self.cfg.loss)
        generator = torch.Generator().manual_seed(seed)
        shape = tuple(cond.masked.shape[1:])  # (C, h, w)
        timings.update(noise_selection_s=0.0, denoise_s=0.0, decode_s=0.0)
        samples = []  # one per read-selection candidate; the first is what a run without it gives
        for _ in range(cfg.read_selection.candidates if cfg.read_selection.enabled else 1):
            # 4. initial noise
            tick = time.perf_counter()
            noise, selection = choose_initial_noise(
                denoiser, cfg.scheduler, self.cfg.diffusion, cfg.noise_selection, shape, cond, generator, self.device
            )
            timings["noise_selection_s"] += time.perf_counter() - tick
            # 5. denoise
            tick = time.perf_counter()
            z, heat_maps, refinement = self._denoise(denoiser, noise, cond, cfg, progress, text)
            timings["denoise_s"] += time.perf_counter() - tick
            # 6. decode
            tick = time.perf_counter()
            decoded = self.first_stage.decode(z).clamp(-1, 1)[0]  # (3, h, w)
            generated = ((decoded.permute(1, 2, 0).float().cpu().numpy() + 1) * 127.5).round().astype(np.uint8)
            samples.append((generated, heat_maps, selection, refinement))
            timings["decode_s"] += time.perf_counter() - tick
        tick = time.perf_counter()
        reading = {"enabled": False}
        if cfg.read_selection.enabled:
            reading = self._read_selection(samples, crop_mask, text, cfg)
        generated, heat_maps, selection, refinement = samples[reading.get("chosen", 0)]
        timings["read_selection_s"] = time.perf_counter() - tick
        # 7. paste back
        tick = time.perf_counter()
        canvas = roi.paste_back(canvas, generated, mask, cfg.blend_width)  # (H, W, 3) uint8
        heat = None
        if heat_maps is not None:
            heat = character_heatmaps(heat_maps, len(text), crop_hw)
        timings["decode_s"] += time.perf_counter() - tick
        record = {
            "crop_window": roi.describe(),
            "noise_selection": selection,
            "read_selection": reading,
            "refinement": refinement,
            "timings": {k: round(v, 4) for k, v in timings.items()},
        }
        return canvas, Image.fromarray(generated), heat, record

    def _read_selection(self, samples: list[tuple], crop_mask: np.ndarray, text: str, cfg: SampleConfig) -> dict:
        """Which finished sample reads best as `text`: the selection recognizer's loss on each one's region."""
        from udifftext.judge import crop_quad, mask_to_quad

        reader = self._selection_reader(cfg.read_selection.recognizer)
        quad = mask_to_quad(crop_mask)
        losses = reader.losses([crop_quad(sample[0], quad) for sample in samples], [text] * len(samples))
        chosen = int(np.argmin(losses))
        return {"enabled": True, "recognizer": reader.source, "losses": [round(v, 6) for v in losses], "chosen": chosen}

    def _selection_reader(self, weights: str) -> Any:
        """The read-selection recognizer: an exported one from `weights`, else the model folder's; loaded once."""
        from udifftext.judge import RecognizerJudge, recognizer_judge_from_export

        if weights not in self._selection_readers:
            if weights:
                self._selection_readers[weights] = recognizer_judge_from_export(weights)
            else:
                rec = self.cfg.recognizer
                self._selection_readers[weights] = RecognizerJudge(
                    self.recognizer, rec.img_height, rec.img_width, f"{self.source} (its recognizer)"
                )
        return self._selection_readers[weights]

    def _condition(
        self, crop: np.ndarray, crop_mask: np.ndarray, text: str, cfg: SampleConfig | None = None
    ) -> Conditioning:
        """Step 3: context, masked-image latent, working-size mask and glyph (drawn as `cfg` says) for one crop."""
        cfg = cfg or SampleConfig()
        device = self.device
        image = torch.from_numpy(crop).permute(2, 0, 1)[None].float().div(127.5).sub(1).to(device)  # (1, 3, h, w)
        mask = torch.from_numpy(crop_mask)[None, None].float().to(device)  # (1, 1, h, w)
        masked = self.first_stage.encode(image * (1 - mask))  # (1, C, h, w)
        glyph = None
        if self.cfg.unet.glyph_channel:
            canvas = (
                glyph_canvas(
                    text, crop_mask, self.cfg.unet.glyph_content, cfg.glyph_margin, cfg.glyph_font, cfg.glyph_shape
                )
                if self.cfg.unet.samples_with_glyph
                else np.zeros_like(crop_mask, np.float32)
            )
            glyph = self.first_stage.resize_mask(torch.from_numpy(canvas)[None, None].to(device))  # (1, 1, h, w)
        context = self.text_encoder.encode_text([text])  # (1, L, W)
        char_mask = torch.zeros(1, self.cfg.text_encoder.max_len, device=device)  # (1, L)
        char_mask[0, : len(text)] = 1
        return Conditioning(
            context=context,
            null_context=self.text_encoder.null_context(1),
            mask=self.first_stage.resize_mask(mask),  # (1, 1, h, w)
            masked=masked,
            glyph=glyph,
            region_mask=mask,
            char_mask=char_mask,
        )

    def _denoise(
        self,
        denoiser: GuidedDenoiser,
        noise: torch.Tensor,
        cond: Conditioning,
        cfg: SampleConfig,
        progress: bool,
        text: str,
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None, dict[str, Any]]:
        """Step 5: the full schedule from `noise` (1, C, h, w); returns z0, the middle step's maps, refinement log."""
        from tqdm.auto import tqdm

        scheduler = build_scheduler(cfg.scheduler, self.cfg.diffusion, cfg.steps, self.device)
        z = noise * scheduler.init_noise_sigma  # (1, C, h, w)
        timesteps = scheduler.timesteps
        heat_step = len(timesteps) // 2 if cfg.attention_heatmaps else -1
        heat_maps = None
        losses: dict[int, list[float]] = {}
        for i, t in enumerate(tqdm(timesteps, desc=f"steps '{text}'", leave=False, disable=not progress)):
            if cfg.refinement.enabled:
                z, losses[i] = refine_latent(denoiser, scheduler, z, t, cond, i, len(timesteps), cfg.refinement)
            out, maps = denoiser(scheduler, z, t, cond, capture=i == heat_step)  # (1, C, h, w)
            heat_maps = maps if maps is not None else heat_maps
            z = scheduler.step(out, t, z).prev_sample  # (1, C, h, w)
        refinement = {"enabled": cfg.refinement.enabled}
        if cfg.refinement.enabled:
            refinement["losses"] = {str(i): [round(v, 6) for v in vals] for i, vals in losses.items()}
        return z, heat_maps, refinement


def ablate(cond: Conditioning, what: str) -> Conditioning:
    """`cond` without one input, to measure what each path contributes: "text" puts the null context in place of
    the char encoder's (the unconditional branch of CFG, which training sees at `uncond_prob`), "glyph" empties
    the glyph channel (unseen in training unless `unet.glyph_drop_prob` > 0: a model that ignores the glyph is
    unchanged by it)."""
    if what == "text":
        return replace(cond, context=cond.null_context)
    if what == "glyph":
        return replace(cond, glyph=torch.zeros_like(cond.glyph))
    return cond


RANDOM_FALLBACK_CONFIG = Path(__file__).resolve().parents[1] / "configs/unet/tiny.yaml"


def load_pipeline_or_random(folder: str, device: str, allow_random: bool) -> tuple[UDiffTextPipeline, str]:
    """(pipeline, note): the trained pipeline folder, or, when `allow_random` and the folder has no model.yaml,
    the tiny model of configs/unet/tiny.yaml with random weights and a note that says so.

    The fallback keeps the quickstart (`python scripts/sample.py`, the demo) working before a trained default
    model is shipped; an explicitly given folder never falls back.
    """
    if not allow_random or (Path(folder) / "model.yaml").exists():
        return UDiffTextPipeline.from_pretrained(folder, device), ""
    from udifftext.config import load_config

    note = (
        f"{folder}/model.yaml not found, so this run uses a tiny model with RANDOM weights "
        f"(configs/unet/tiny.yaml): the output shows the pipeline working, not readable text"
    )
    return UDiffTextPipeline.from_config(load_config(UNetStageConfig, RANDOM_FALLBACK_CONFIG)).to(device), note

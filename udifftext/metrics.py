"""Text and image metrics: SeqAcc, normalised edit distance, FID and LPIPS.

- SeqAcc: a reading is correct when it equals the target; case-insensitive as upstream (`pred.lower() ==
  gt.lower()`), with the case-sensitive figure beside it.
- NED: Levenshtein distance divided by the longer string's length, averaged over cases (0 = all exact,
  1 = nothing in common). Lower is better.
- FID: torchmetrics `FrechetInceptionDistance` with an explicit feature network: the standard FID
  Inception-v3 (pytorch-fid / torch-fidelity weights, TF 2015-12-05 graph) loaded from a local file, or,
  without that file, a small fixed random conv net through the same code path whose numbers are labelled
  as a stand-in and are not comparable to published FID.
- LPIPS: the `lpips` package, AlexNet variant; its linear calibration layers ship in the wheel, the AlexNet
  backbone comes from a local torchvision weights file.
Nothing here downloads.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_SOURCE = (
    "pytorch-fid's release https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    f"{INCEPTION_FILE} (torch-fidelity ships the same weights as weights-inception-2015-12-05-6726825d.pth)"
)
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_SOURCE = f"torchvision's ImageNet AlexNet weights, https://download.pytorch.org/models/{ALEXNET_FILE}"
STAND_IN_LABEL = "stand-in (small random feature net), not comparable to published FID"


# --------------------------------------------------------------------------- text


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def normalized_edit_distance(pred: str, target: str) -> float:
    """Edit distance over the longer length, in [0, 1]; two empty strings are 0."""
    longest = max(len(pred), len(target))
    return edit_distance(pred, target) / longest if longest else 0.0


def _check_pairs(preds: Sequence[str], targets: Sequence[str]) -> None:
    if len(preds) != len(targets):
        raise ValueError(f"preds and targets must have the same length, got {len(preds)} and {len(targets)}")
    if not targets:
        raise ValueError("targets is empty: expected at least one case")


def seq_accuracy(preds: Sequence[str], targets: Sequence[str], case_sensitive: bool = False) -> float:
    """Share of exact readings; case-insensitive by default, as upstream's SeqAcc."""
    _check_pairs(preds, targets)
    if case_sensitive:
        return sum(p == t for p, t in zip(preds, targets, strict=True)) / len(targets)
    return sum(p.lower() == t.lower() for p, t in zip(preds, targets, strict=True)) / len(targets)


def mean_ned(preds: Sequence[str], targets: Sequence[str]) -> float:
    """Mean normalised edit distance (case-sensitive)."""
    _check_pairs(preds, targets)
    return sum(normalized_edit_distance(p, t) for p, t in zip(preds, targets, strict=True)) / len(targets)


# --------------------------------------------------------------------------- FID


def _inception_class() -> type:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class FidInception(FeatureExtractorInceptionV3):
        """torch-fidelity's Inception-v3 returning the 2048-d pool features as one tensor."""

        num_features = 2048

        def forward(self, x):  # x (B, 3, H, W) uint8, resized to 299 inside
            return super().forward(x)[0]  # (B, 2048)

    return FidInception


def _stand_in_class() -> type:
    import torch
    from torch import nn

    class StandInFeatureNet(nn.Module):
        """A fixed random conv net (seed 0): same input contract as the Inception net, 64 features."""

        num_features = 64

        def __init__(self) -> None:
            super().__init__()
            with torch.random.fork_rng(devices=[]):  # fixed weights without touching the caller's RNG
                torch.manual_seed(0)
                self.net = nn.Sequential(
                    nn.Conv2d(3, 16, 4, stride=2, padding=1),
                    nn.ReLU(),
                    nn.Conv2d(16, 32, 4, stride=2, padding=1),
                    nn.ReLU(),
                    nn.Conv2d(32, 64, 4, stride=2, padding=1),
                    nn.ReLU(),
                    nn.AdaptiveAvgPool2d(1),
                )
            self.requires_grad_(False).eval()

        def forward(self, x):  # x (B, 3, H, W) uint8
            x = x.float() / 127.5 - 1.0
            x = nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)  # (B, 3, 64, 64)
            return self.net(x).flatten(1)  # (B, 64)

    return StandInFeatureNet


def build_fid_features(inception_weights: str | Path | None) -> tuple[Any, str]:
    """The FID feature network and its label.

    A path loads the standard FID Inception (strict) from that local file; a missing file is a
    MissingWeightsError naming it and its source. None or "" gives the labelled random stand-in.
    """
    if not inception_weights:
        return _stand_in_class()(), STAND_IN_LABEL
    from udifftext.io import require_path

    path = require_path(inception_weights, f"the FID Inception-v3 weights {INCEPTION_FILE}", INCEPTION_SOURCE)
    net = _inception_class()("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
    return net, f"Inception-v3 pool3 (FID standard weights: {path.name})"


class FidMeter:
    """FID of generated images against a fixed set of real images, reusable for several generated sets.

    Images are (B, 3, H, W) uint8 tensors; sizes may differ between calls (the feature net resizes).
    """

    def __init__(self, features: Any, device: str = "cpu") -> None:
        from torchmetrics.image.fid import FrechetInceptionDistance

        self.device = device
        self.metric = FrechetInceptionDistance(feature=features, reset_real_features=False).to(device)

    def add(self, images: Any, real: bool) -> None:
        import torch

        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be a (B, 3, H, W) uint8 tensor, got {getattr(images, 'shape', images)}")
        self.metric.update(images.to(self.device), real=real)

    def add_images(self, images: list[Any], real: bool, batch_size: int = 16) -> None:
        """Add (H, W, 3) uint8 arrays, batching runs of equal size (text crops differ, full images do not)."""
        import numpy as np
        import torch

        start = 0
        while start < len(images):
            end = start + 1
            while end < len(images) and end - start < batch_size and images[end].shape == images[start].shape:
                end += 1
            batch = torch.from_numpy(np.stack(images[start:end])).permute(0, 3, 1, 2).contiguous()  # (B, 3, H, W)
            self.add(batch, real=real)
            start = end

    def compute(self) -> float:
        """FID between everything added as real and as generated since the last `reset_generated`.

        Clamped at 0: FID is a squared distance, tiny negatives are rounding in the matrix square root.
        """
        return max(float(self.metric.compute()), 0.0)

    def reset_generated(self) -> None:
        """Forget the generated images, keep the real ones (next variant, same references)."""
        self.metric.reset()


# --------------------------------------------------------------------------- LPIPS


def build_lpips(alexnet_weights: str | Path) -> Any:
    """LPIPS (AlexNet, v0.1): calibrated linear layers from the lpips wheel, backbone from a local file."""
    import lpips
    import torch
    import torchvision

    from udifftext.io import require_path

    path = require_path(alexnet_weights, f"the torchvision AlexNet weights {ALEXNET_FILE}", ALEXNET_SOURCE)
    alexnet = torchvision.models.alexnet(weights=None)
    alexnet.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    copy_alexnet_backbone(model, alexnet.features)
    return model.eval()


def copy_alexnet_backbone(model: Any, features: Any) -> None:
    """Load torchvision `alexnet.features` layers into lpips' sliced backbone (slice k holds layers by index)."""
    for k in range(1, model.net.N_slices + 1):
        for index, layer in getattr(model.net, f"slice{k}").named_children():
            layer.load_state_dict(features[int(index)].state_dict(), strict=True)


def lpips_distance(model: Any, generated: Any, reference: Any) -> Any:
    """Per-pair LPIPS of images (B, 3, H, W) in [-1, 1] -> (B,)."""
    import torch

    if generated.shape != reference.shape or generated.ndim != 4 or generated.shape[1] != 3:
        raise ValueError(f"generated and reference must be equal (B, 3, H, W), got {generated.shape} {reference.shape}")
    device = next(model.parameters()).device
    with torch.no_grad():
        return model(generated.float().to(device), reference.float().to(device)).flatten().cpu()  # (B,)

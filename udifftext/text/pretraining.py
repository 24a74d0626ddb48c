"""CLIP-style pretraining of the char encoder against a frozen recognizer (upstream ``LabelEncoder`` heads).

Loss (paper Sec. 3.2, upstream ``get_loss``):
    L = InfoNCE(text, image) + lambda_cls * CE(char classifier) + lambda_pos * CE(position classifier)
with the symmetric InfoNCE of open_clip's ``ClipLoss`` and a learnable temperature. The heads exist only
for pretraining: exporting the encoder drops them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from udifftext.config import ContrastiveConfig

MAX_LOGIT_SCALE = math.log(100.0)  # open_clip clamps the learned temperature to <= 100 the same way


class TokenPool(nn.Module):
    """Learned weighted sum over tokens: a 1x1 Conv1d from N token "channels" to 1 (upstream pooling)."""

    def __init__(self, num_tokens: int):
        super().__init__()
        self.pool = nn.Conv1d(num_tokens, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x).squeeze(1)  # (B, N, E) -> (B, E)


class PretrainingHeads(nn.Module):
    """The four upstream heads plus the learnable logit scale.

    Every head starts with ``InstanceNorm1d(N)`` on (B, N, D): it normalises each token over its D features
    (no affine parameters), as upstream.
    """

    def __init__(
        self, width: int, max_len: int, num_classes: int, visual_tokens: int, visual_dim: int, cfg: ContrastiveConfig
    ):
        super().__init__()
        self.cls_head = nn.Sequential(
            nn.InstanceNorm1d(max_len), nn.Linear(width, width), nn.GELU(), nn.Linear(width, num_classes)
        )
        self.pos_head = nn.Sequential(nn.InstanceNorm1d(max_len), nn.Linear(width, max_len, bias=False))
        self.text_head = nn.Sequential(
            nn.InstanceNorm1d(max_len), nn.Linear(width, cfg.embed_dim, bias=False), TokenPool(max_len)
        )
        self.visual_head = nn.Sequential(
            nn.InstanceNorm1d(visual_tokens), nn.Linear(visual_dim, cfg.embed_dim, bias=False), TokenPool(visual_tokens)
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))

    def embed_text(self, text_tokens: torch.Tensor) -> torch.Tensor:
        """(B, L, W) encoder output -> (B, E) unit-norm text embedding."""
        return F.normalize(self.text_head(text_tokens), dim=-1)

    def embed_image(self, visual_tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, D) recognizer tokens -> (B, E) unit-norm image embedding."""
        return F.normalize(self.visual_head(visual_tokens), dim=-1)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()


def contrastive_loss(
    heads: PretrainingHeads,
    text_tokens: torch.Tensor,
    visual_tokens: torch.Tensor,
    ids: torch.Tensor,
    cfg: ContrastiveConfig,
) -> dict[str, torch.Tensor]:
    """Eq. of paper Sec. 3.2 (upstream ``LabelEncoder.get_loss``): (B, L, W) text tokens, (B, N, D) frozen
    visual tokens of the matching crops, (B, L) ids -> dict with ``loss`` (the weighted sum), each term,
    and the in-batch accuracies (``acc/clip``: text->image top-1; ``acc/cls``; ``acc/pos``)."""
    from open_clip.loss import ClipLoss

    text = heads.embed_text(text_tokens)  # (B, E)
    image = heads.embed_image(visual_tokens)  # (B, E)
    clip = ClipLoss()(image, text, heads.scale())
    cls_logits = heads.cls_head(text_tokens)  # (B, L, C)
    pos_logits = heads.pos_head(text_tokens)  # (B, L, L)
    positions = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)  # (B, L)
    cls = F.cross_entropy(cls_logits.transpose(1, 2), ids)
    pos = F.cross_entropy(pos_logits.transpose(1, 2), positions)
    with torch.no_grad():
        targets = torch.arange(ids.shape[0], device=ids.device)
        clip_acc = ((text @ image.T).argmax(dim=1) == targets).float().mean()
        cls_acc = (cls_logits.argmax(dim=-1) == ids).float().mean()
        pos_acc = (pos_logits.argmax(dim=-1) == positions).float().mean()
    return {
        "loss": clip + cfg.lambda_cls * cls + cfg.lambda_pos * pos,
        "loss/clip": clip,
        "loss/cls": cls,
        "loss/pos": pos,
        "acc/clip": clip_acc,
        "acc/cls": cls_acc,
        "acc/pos": pos_acc,
        "logit_scale": heads.scale().detach(),
    }

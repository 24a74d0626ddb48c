"""The denoising UNet with character cross-attention, and capture of its attention maps."""

from udifftext.unet.attention import AttentionStore, install_attention_capture
from udifftext.unet.model import TextUNet, build_unet, set_trainable, trainable_report, trainable_state_dict

__all__ = [
    "AttentionStore",
    "TextUNet",
    "build_unet",
    "install_attention_capture",
    "set_trainable",
    "trainable_report",
    "trainable_state_dict",
]

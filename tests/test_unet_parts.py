"""First stage (VAE / identity) and the diffusion parametrisation helpers."""

import pytest
import torch

from udifftext.config import DiffusionConfig, FirstStageConfig
from udifftext.diffusion import build_train_scheduler, predict_x0, training_target
from udifftext.first_stage import build_first_stage
from udifftext.io import MissingWeightsError, load_strict, save_state_dict

SMALL_VAE = FirstStageConfig(block_out_channels=[32, 32])


pytestmark = pytest.mark.usefixtures("one_thread")


def test_identity_first_stage_is_a_no_op():
    stage = build_first_stage(FirstStageConfig(kind="identity"))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert stage.factor == 1 and stage.channels == 3
    assert torch.equal(stage.decode(stage.encode(x)), x)
    assert torch.equal(stage.resize_mask(x[:, :1]), x[:, :1])


def test_small_vae_shapes_frozen_and_reloads_from_a_folder(tmp_path):
    torch.manual_seed(0)
    stage = build_first_stage(SMALL_VAE)
    assert stage.factor == 2 and stage.channels == 4
    assert not any(p.requires_grad for p in stage.parameters())
    stage.train()
    assert not stage.training
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        z = stage.encode(x)
        y = stage.decode(z)
    assert z.shape == (1, 4, 16, 16) and y.shape == x.shape
    assert stage.resize_mask(torch.ones(1, 1, 32, 32)).shape == (1, 1, 16, 16)
    stage.vae.save_pretrained(tmp_path / "sd2" / "vae", safe_serialization=True)
    reloaded = build_first_stage(FirstStageConfig(block_out_channels=[32, 32], weights=str(tmp_path / "sd2")))
    with torch.no_grad():
        assert torch.equal(reloaded.encode(x), z)
    save_state_dict(stage.state_dict(), tmp_path / "first_stage.safetensors")  # the pipeline-folder file
    from safetensors.torch import load_file

    load_strict(build_first_stage(SMALL_VAE), load_file(tmp_path / "first_stage.safetensors"))


def test_vae_folder_with_old_diffusers_attention_names_loads(tmp_path):
    """The SD-2 repos' vae/ was saved before diffusers 0.15: mid-block attention named query/key/value/proj_attn."""
    import re

    from safetensors.torch import save_file

    torch.manual_seed(0)
    stage = build_first_stage(SMALL_VAE)
    old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    state = {
        re.sub(r"(attentions\.0\.)(to_[qkv]|to_out\.0)\.", lambda m: f"{m[1]}{old[m[2]]}.", k): v.contiguous()
        for k, v in stage.vae.state_dict().items()
    }
    assert "decoder.mid_block.attentions.0.proj_attn.weight" in state
    (tmp_path / "sd2/vae").mkdir(parents=True)
    save_file(state, tmp_path / "sd2/vae/diffusion_pytorch_model.safetensors")
    reloaded = build_first_stage(FirstStageConfig(block_out_channels=[32, 32], weights=str(tmp_path / "sd2")))
    for key, value in reloaded.vae.state_dict().items():
        assert torch.equal(value, stage.vae.state_dict()[key]), key


def test_missing_vae_weights_name_the_source(tmp_path):
    with pytest.raises(MissingWeightsError, match="stable-diffusion-2-inpainting"):
        build_first_stage(FirstStageConfig(weights=str(tmp_path / "vae")))
    with pytest.raises(ValueError, match="first_stage.kind"):
        build_first_stage(FirstStageConfig(kind="vqgan"))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_predict_x0_inverts_the_forward_process(prediction_type):
    cfg = DiffusionConfig(prediction_type=prediction_type)
    scheduler = build_train_scheduler(cfg)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 3, 8, 8, generator=g)
    noise = torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    noisy = scheduler.add_noise(x0, noise, t)
    target = training_target(x0, noise, t, scheduler.alphas_cumprod, prediction_type)
    if prediction_type == "v_prediction":
        torch.testing.assert_close(target, scheduler.get_velocity(x0, noise, t))
    got = predict_x0(target, noisy, t, scheduler.alphas_cumprod, prediction_type)
    torch.testing.assert_close(got, x0, rtol=1e-3, atol=2e-3)


def test_unknown_prediction_type_is_rejected():
    with pytest.raises(ValueError, match="prediction_type"):
        build_train_scheduler(DiffusionConfig(prediction_type="x_start"))

"""ViTSTR recognizer: shapes, reading, differentiable crops, export/reload, upstream .pth mapping (issue 5)."""

import dataclasses

import pytest
import torch

from udifftext.config import RecognizerConfig
from udifftext.io import MissingWeightsError, save_state_dict
from udifftext.recognizer.vitstr import ViTSTR, load_recognizer, upstream_vitstr_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")


TINY = RecognizerConfig(img_height=16, img_width=64, patch_size=8, embed_dim=32, depth=2, heads=2)


def _tiny(**kw) -> RecognizerConfig:
    return RecognizerConfig(**{**TINY.__dict__, **kw})


def test_forward_shapes_and_read():
    torch.manual_seed(0)
    model = ViTSTR(TINY).eval()
    crops = torch.rand(3, 1, 16, 64)
    logits = model(crops)
    assert logits.shape == (3, 12, 95)
    assert model.features(crops).shape == (3, model.num_tokens, 32) and model.num_tokens == 17
    texts = model.read(crops)
    assert len(texts) == 3 and all(len(t) <= 12 for t in texts)
    with pytest.raises(ValueError, match=r"\(B, 1, 16, 64\)"):
        model(torch.rand(1, 1, 32, 128))


def test_too_few_tokens_is_a_config_error():
    with pytest.raises(ValueError, match="has 5 outputs, needs 12"):
        ViTSTR(_tiny(patch_size=16))  # 1 + 1x4 tokens < 12 positions


def test_read_decodes_argmax_up_to_end():
    torch.manual_seed(0)
    model = ViTSTR(TINY).eval()
    ids = model.tokenizer.encode(["Hi!", "ok"])  # (2, 12)
    with torch.no_grad():
        model.vit.head.weight.zero_()
        model.vit.head.bias.zero_()
    logits_for = torch.nn.functional.one_hot(ids, 95).float() * 10  # (2, 12, 95)
    model.forward = lambda crops: logits_for  # the decoding rule alone
    assert model.read(torch.zeros(2, 1, 16, 64)) == ["Hi!", "ok"]


@pytest.mark.parametrize("decoder", ["positions", "ctc"])
def test_sequence_loss_learns_a_fixed_batch(decoder):
    torch.manual_seed(0)
    model = ViTSTR(_tiny(decoder=decoder))
    crops = torch.rand(4, 1, 16, 64)
    ids = model.tokenizer.encode(["ab", "cde", "f", "ghij"])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = model.sequence_loss(model(crops), ids)
        assert loss.shape == (4,) and torch.isfinite(loss).all()
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
        losses.append(loss.mean().item())
    assert losses[-1] < 0.5 * losses[0]


def test_ctc_reads_every_patch_token_collapsing_repeats_and_blanks():
    model = ViTSTR(_tiny(decoder="ctc")).eval()
    crops = torch.rand(2, 1, 16, 64)
    assert model(crops).shape == (2, 16, 95)  # 2 x 8 patch tokens, CLS left out
    ids = model.tokenizer.encode(["Hi!", "oo"])[:, :3].tolist()  # H, i, !  and  o, o
    h, i, bang = ids[0]
    o = ids[1][0]
    paths = [[0, h, h, 0, i, bang, bang, bang] + [0] * 8, [o, o, 0, o] + [0] * 12]
    logits = torch.nn.functional.one_hot(torch.tensor(paths), 95).float() * 20  # (2, 16, 95)
    assert model.decode(logits) == ["Hi!", "oo"]  # a repeat needs a blank between its two tokens
    target = model.tokenizer.encode(["Hi!", "oo"])
    assert (model.sequence_loss(logits, target) < 1e-3).all()  # the paths spell the targets: loss near 0
    impossible = model.tokenizer.encode(["aaaaaaaaaaaa"])  # 12 a's need 23 tokens, there are 16
    assert model.sequence_loss(logits[:1], impossible).item() == 0.0  # zeroed, not inf
    with pytest.raises(ValueError, match="has 8 outputs, needs 12 for decoder 'ctc'"):
        ViTSTR(_tiny(decoder="ctc", patch_size=16, patch_width=8))  # 8 patch tokens < 12 characters
    with pytest.raises(ValueError, match="decoder must be one of"):
        ViTSTR(_tiny(decoder="attention"))


def test_ctc_frames_split_each_token_into_frames_and_widen_a_one_frame_head(tmp_path):
    torch.manual_seed(0)
    one = ViTSTR(_tiny(decoder="ctc")).eval()
    path = save_state_dict(one.state_dict(), tmp_path / "one_frame.safetensors")
    two = load_recognizer(_tiny(decoder="ctc", ctc_frames=2, weights=str(path))).eval()
    crops = torch.rand(3, 1, 16, 64)
    with torch.no_grad():
        before, after = one(crops), two(crops)  # (3, 16, 95), (3, 32, 95)
    assert after.shape == (3, 32, 95)
    assert torch.equal(after[:, 0::2], before) and torch.equal(after[:, 1::2], before)  # both frames of token t
    assert two.read(crops) == one.read(crops)
    with torch.no_grad():
        two.vit.head.bias[95:] += 100 * torch.nn.functional.one_hot(torch.tensor(5), 95)  # the second frame only
        assert (two(crops)[:, 1::2].argmax(-1) == 5).all() and torch.equal(two(crops)[:, 0::2], before)
    eight_tokens = dict(decoder="ctc", patch_size=16, patch_width=8)
    assert ViTSTR(_tiny(**eight_tokens, ctc_frames=2))(crops).shape == (3, 16, 95)  # 8 tokens x 2 frames >= 12
    with pytest.raises(ValueError, match="ctc_frames must be 1, or more with decoder 'ctc'"):
        ViTSTR(_tiny(ctc_frames=2))


def test_grow_depth_appends_identity_blocks_that_read_as_the_checkpoint_and_then_learn(tmp_path):
    torch.manual_seed(0)
    shallow = ViTSTR(_tiny(decoder="ctc", stem="conv")).eval()
    path = save_state_dict(shallow.state_dict(), tmp_path / "two_blocks.safetensors")
    deeper = _tiny(decoder="ctc", stem="conv", depth=4, weights=str(path))
    with pytest.raises(KeyError, match="missing keys .*blocks.2"):
        load_recognizer(deeper)  # without grow_depth a shallower checkpoint is an error
    grown = load_recognizer(dataclasses.replace(deeper, grow_depth=True)).eval()
    assert len(grown.vit.blocks) == 4
    crops = torch.rand(3, 1, 16, 64)
    with torch.no_grad():
        assert torch.allclose(grown(crops), shallow(crops), atol=1e-6)
    assert grown.vit.blocks[3].attn.qkv.weight.abs().sum() > 0  # only the residual outputs start at zero
    ids = grown.tokenizer.encode(["ab", "c"])
    loss = grown.train().sequence_loss(grown(crops[:2]), ids).mean()
    loss.backward()
    assert grown.vit.blocks[3].mlp.fc2.weight.grad.abs().sum() > 0  # the new blocks learn from the first step


def test_stem_blocks_grow_from_a_plain_stem_reading_as_it_did_and_then_learn(tmp_path):
    torch.manual_seed(0)
    plain = ViTSTR(_tiny(decoder="ctc", stem="conv", patch_width=4)).train()  # three stride convs
    crops = torch.rand(3, 1, 16, 64)
    plain(crops)  # one training step's batch statistics, so the running ones are not the identity
    plain.eval()
    path = save_state_dict(plain.state_dict(), tmp_path / "plain.safetensors")
    deeper = _tiny(decoder="ctc", stem="conv", patch_width=4, stem_blocks=[1, 2, 0], weights=str(path))
    with pytest.raises(KeyError, match="missing keys .*patch_embed.proj.2.1.body"):
        load_recognizer(deeper)  # without grow_depth a plain stem's checkpoint is an error
    grown = load_recognizer(dataclasses.replace(deeper, grow_depth=True)).eval()
    blocks = [key for key in grown.state_dict() if ".body." in key]
    assert {key.split(".body.")[0] for key in blocks} == {
        "vit.patch_embed.proj.2.1",
        "vit.patch_embed.proj.5.1",
        "vit.patch_embed.proj.5.2",
    }
    with torch.no_grad():
        assert torch.equal(grown(crops), plain(crops))  # the new blocks start as the identity, exactly
    ids = grown.tokenizer.encode(["ab", "c", "d"])
    grown.train().sequence_loss(grown(crops), ids).mean().backward()
    assert grown.vit.patch_embed.proj[5][2].body[-1].weight.grad.abs().sum() > 0  # and learn from the first step
    reloaded_path = save_state_dict(grown.state_dict(), tmp_path / "grown.safetensors")
    reloaded = load_recognizer(dataclasses.replace(grown.cfg.exported(), weights=str(reloaded_path))).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(crops), grown.eval()(crops))
    with pytest.raises(ValueError, match=r"one count per stride conv of the stem \(3 for patches 8 x 4\)"):
        ViTSTR(_tiny(decoder="ctc", stem="conv", patch_width=4, stem_blocks=[1, 1]))
    with pytest.raises(ValueError, match="stem_blocks needs stem 'conv'"):
        ViTSTR(_tiny(stem_blocks=[1, 1, 1]))


def test_resample_positions_loads_a_narrower_checkpoint_into_wider_crops(tmp_path):
    torch.manual_seed(0)
    columns = dict(decoder="ctc", stem="conv", patch_size=16, patch_width=4)  # one row of column tokens
    narrow = ViTSTR(_tiny(**columns))  # 16 x 64 crops: 16 columns
    with torch.no_grad():
        narrow.vit.pos_embed[0, 1:, 0] = torch.linspace(-1.0, 1.0, 16)  # a ramp along the row
        narrow.vit.pos_embed[0, 1:, 1] = 0.5  # and a constant
    path = save_state_dict(narrow.state_dict(), tmp_path / "narrow.safetensors")
    wide_cfg = _tiny(**columns, img_width=128, weights=str(path))  # 32 columns
    with pytest.raises(RuntimeError, match="size mismatch for vit.pos_embed"):
        load_recognizer(wide_cfg)
    wide = load_recognizer(dataclasses.replace(wide_cfg, resample_positions=True))
    positions = wide.vit.pos_embed[0].detach()
    assert positions.shape == (33, 32)
    assert torch.equal(positions[0], narrow.vit.pos_embed[0, 0].detach())  # the CLS position is kept
    assert torch.allclose(positions[1:, 1], torch.full((32,), 0.5), atol=1e-5)
    ramp = positions[1:, 0]
    assert (ramp.diff() > 0).all() and -1.05 < ramp[0] < -0.85 and 0.85 < ramp[-1] < 1.05
    for key, value in narrow.state_dict().items():
        if key != "vit.pos_embed":
            assert torch.equal(wide.state_dict()[key], value), key
    assert wide(torch.rand(2, 1, 16, 128)).shape == (2, 32, 95)
    exported = wide.cfg.exported()  # what an export writes beside the weights: they fit the model now
    assert not exported.resample_positions and exported.weights == "" and exported.img_width == 128
    wide_path = save_state_dict(wide.state_dict(), tmp_path / "wide.safetensors")
    reloaded = load_recognizer(dataclasses.replace(exported, weights=str(wide_path)))
    assert torch.equal(reloaded.vit.pos_embed, wide.vit.pos_embed)
    three_rows = _tiny(decoder="ctc", img_height=24, patch_size=8, patch_width=4, weights=str(path))
    with pytest.raises(ValueError, match="16 patch positions, not 3 rows of columns"):
        load_recognizer(dataclasses.replace(three_rows, resample_positions=True))


def test_preprocess_crops_the_box_and_passes_gradients():
    torch.manual_seed(0)
    model = ViTSTR(TINY)
    images = -torch.ones(2, 3, 64, 96)  # black
    images[0, :, 10:26, 20:84] = 0.0  # a mid-grey 16x64 box: exactly the crop size
    images[1, :, 0:32, 0:96] = 1.0
    bboxes = torch.tensor([[10, 26, 20, 84], [32, 64, 0, 96]])  # (top, bottom, left, right)
    images.requires_grad_(True)
    crops = model.preprocess(images, bboxes)
    assert crops.shape == (2, 1, 16, 64)
    assert torch.allclose(crops[0], torch.full_like(crops[0], 0.5), atol=1e-5)  # inside the grey box
    assert torch.allclose(crops[1], torch.zeros_like(crops[1]), atol=1e-5)  # the black lower half
    crops[0].sum().backward()
    grad = images.grad[0].abs().sum(dim=0)  # (H, W)
    assert grad[10:26, 20:84].sum() > 0 and grad[40:, :].sum() == 0 and images.grad[1].abs().sum() == 0
    with pytest.raises(ValueError, match="bboxes"):
        model.preprocess(images.detach(), bboxes[:1])


@pytest.mark.parametrize("decoder", ["positions", "ctc"])
def test_export_reload_identical(decoder, tmp_path):
    torch.manual_seed(0)
    model = ViTSTR(_tiny(decoder=decoder)).eval()
    path = save_state_dict(model.state_dict(), tmp_path / "rec.safetensors")
    torch.manual_seed(1)
    loaded = load_recognizer(_tiny(decoder=decoder, weights=str(path))).eval()
    crops = torch.rand(2, 1, 16, 64)
    assert torch.equal(model(crops), loaded(crops)) and model.read(crops) == loaded.read(crops)
    if decoder == "ctc":
        torch.save({}, tmp_path / "upstream.pth")
        with pytest.raises(ValueError, match="decoder=positions"):
            load_recognizer(_tiny(decoder="ctc", weights=str(tmp_path / "upstream.pth")))


def test_missing_weights(tmp_path):
    with pytest.raises(MissingWeightsError, match="vitstr.pth"):
        load_recognizer(_tiny(weights=str(tmp_path / "vitstr.pth")))


def test_upstream_vitstr_pth_mapping(tmp_path):
    """An upstream release layout: DataParallel 'module.vitstr.' keys and a [GO], [s], chars head."""
    torch.manual_seed(0)
    ours = ViTSTR(_tiny(first_token=1)).eval()
    upstream = {}
    for key, value in ours.state_dict().items():
        name = "module.vitstr." + key.removeprefix("vit.")
        if key == "vit.head.weight" or key == "vit.head.bias":
            go = torch.randn_like(value[:1])
            value = torch.cat([go, value[:1], value[1:]])  # [GO], [s] (= our end), characters
        upstream[name] = value
    path = tmp_path / "vitstr_tiny.pth"
    torch.save(upstream, path)
    assert upstream["module.vitstr.head.weight"].shape[0] == 96
    loaded = load_recognizer(_tiny(first_token=1, weights=str(path))).eval()
    crops = torch.rand(2, 1, 16, 64)
    assert torch.equal(ours(crops), loaded(crops))
    assert set(upstream_vitstr_state_dict(upstream)) == set(ours.state_dict())


def test_conv_stem_same_token_grid_and_reload(tmp_path):
    torch.manual_seed(0)
    model = ViTSTR(_tiny(stem="conv")).eval()
    crops = torch.rand(2, 1, 16, 64)
    assert model(crops).shape == (2, 12, 95) and model.num_tokens == 17
    assert any(k.startswith("vit.patch_embed.proj.1.running_mean") for k in model.state_dict())
    path = save_state_dict(model.state_dict(), tmp_path / "conv.safetensors")
    assert torch.equal(model(crops), load_recognizer(_tiny(stem="conv", weights=str(path))).eval()(crops))
    torch.save({}, tmp_path / "upstream.pth")
    with pytest.raises(ValueError, match="stem=patch"):
        load_recognizer(_tiny(stem="conv", weights=str(tmp_path / "upstream.pth")))
    with pytest.raises(ValueError, match="stem must be one of"):
        ViTSTR(_tiny(stem="cnn"))


@pytest.mark.parametrize("stem", ["patch", "conv"])
def test_column_tokens_span_the_height_and_see_their_own_columns(stem, tmp_path):
    torch.manual_seed(0)
    cfg = _tiny(stem=stem, patch_size=16, patch_width=4)  # 16 x 64 crop -> one row of 16 column tokens
    model = ViTSTR(cfg).eval()
    assert model.num_tokens == 17 and tuple(model.vit.patch_embed.grid_size) == (1, 16)
    crops = torch.rand(2, 1, 16, 64)
    changed = crops.clone()
    changed[..., 60:] = 1.0 - changed[..., 60:]  # the last four pixel columns only
    with torch.no_grad():
        diff = (model.vit.patch_embed(changed) - model.vit.patch_embed(crops)).abs().amax(dim=(0, 2))  # (16,)
    assert diff[-1] > 0 and torch.all(diff[:12] == 0)  # the conv stem's receptive field reaches a few tokens left
    path = save_state_dict(model.state_dict(), tmp_path / "columns.safetensors")
    assert torch.equal(model(crops), load_recognizer(dataclasses.replace(cfg, weights=str(path))).eval()(crops))
    with pytest.raises(ValueError, match="patch side 24"):
        ViTSTR(_tiny(stem=stem, patch_size=16, patch_width=24))


def test_fresh_stem_lends_a_checkpoint_of_shorter_crops_everything_but_its_stem(tmp_path):
    columns = dict(decoder="ctc", stem="conv", patch_width=4)  # one row of 16 column tokens at 64 px wide
    torch.manual_seed(0)
    short = ViTSTR(_tiny(**columns, patch_size=16))  # 16 x 64 crops
    path = save_state_dict(short.state_dict(), tmp_path / "short.safetensors")
    tall_cfg = _tiny(**columns, img_height=32, patch_size=32, weights=str(path))  # 32 x 64: one more halving
    with pytest.raises(RuntimeError, match="patch_embed"):
        load_recognizer(tall_cfg)
    torch.manual_seed(1)
    tall = load_recognizer(dataclasses.replace(tall_cfg, fresh_stem=True))
    torch.manual_seed(1)
    random_tall = ViTSTR(dataclasses.replace(tall_cfg, weights=""))
    loaded, fresh = tall.state_dict(), random_tall.state_dict()
    stem = [key for key in loaded if key.startswith("vit.patch_embed.")]
    assert len(stem) > len([key for key in short.state_dict() if key.startswith("vit.patch_embed.")])
    for key, value in loaded.items():
        expected = fresh[key] if key in stem else short.state_dict()[key]
        assert torch.equal(value, expected), key
    assert not torch.equal(loaded["vit.blocks.0.attn.qkv.weight"], fresh["vit.blocks.0.attn.qkv.weight"])
    assert tall(torch.rand(2, 1, 32, 64)).shape == (2, 16, 95)
    assert not tall.cfg.exported().fresh_stem


@pytest.mark.parametrize("stem", ["conv", "patch"])
def test_share_folded_rows_reads_a_tall_crop_as_the_checkpoint_read_it_averaged_down(tmp_path, stem):
    torch.manual_seed(0)
    columns = dict(decoder="ctc", stem=stem, patch_size=16, patch_width=4)
    short = ViTSTR(_tiny(**columns)).eval()  # 16 x 64 crops
    path = save_state_dict(short.state_dict(), tmp_path / "short.safetensors")
    tall_cfg = _tiny(**columns, img_height=32, fold_rows=2, weights=str(path))  # 32 rows, read as 2 x 16
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_recognizer(tall_cfg)
    tall = load_recognizer(dataclasses.replace(tall_cfg, share_folded_rows=True)).eval()
    crops = torch.rand(3, 1, 32, 64)
    averaged = crops.reshape(3, 1, 16, 2, 64).mean(dim=3)  # rows 2r and 2r + 1 -> row r
    with torch.no_grad():
        assert torch.allclose(tall(crops), short(averaged), atol=1e-5)
    first = next(p for n, p in tall.named_parameters() if n.startswith("vit.patch_embed.") and p.ndim == 4)
    assert torch.equal(first[:, 0], first[:, 1])  # shared at first
    tall.sequence_loss(tall(crops), tall.tokenizer.encode(["ab", "c", "d"])).mean().backward()
    assert not torch.allclose(first.grad[:, 0], first.grad[:, 1])  # but even and odd rows learn apart
    assert tall.num_tokens == short.num_tokens and not tall.cfg.exported().share_folded_rows
    with pytest.raises(ValueError, match="fold_rows=3 must be >= 1 and divide img_height 32"):
        ViTSTR(_tiny(**columns, img_height=32, fold_rows=3))
    if stem == "patch":  # a kernel of another patch height cannot be shared by the folded rows
        other_patch = dataclasses.replace(tall_cfg, patch_size=8, share_folded_rows=True)
        with pytest.raises(ValueError, match="vit.patch_embed.proj.weight .* does not fold to"):
            load_recognizer(other_patch)

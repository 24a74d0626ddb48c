"""Tokenizer, char text encoder, pretraining heads and the held-out metrics (issue 5)."""

import math

import pytest
import torch

from udifftext.config import ContrastiveConfig, TextEncoderConfig
from udifftext.io import MissingWeightsError, save_state_dict
from udifftext.text.encoder import CharTextEncoder, load_text_encoder
from udifftext.text.metrics import char_accuracy, position_accuracy, retrieval_top1, word_accuracy
from udifftext.text.pretraining import PretrainingHeads, contrastive_loss
from udifftext.text.tokenizer import CharTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


TINY = TextEncoderConfig(width=32, layers=2, heads=2, ff_dim=64)


def test_tokenizer_round_trip_and_ids():
    tok = CharTokenizer("abc", max_len=4)
    ids = tok.encode(["ab", "cab", ""])
    assert ids.dtype == torch.long and ids.shape == (3, 4)
    assert ids.tolist() == [[1, 2, 0, 0], [3, 1, 2, 0], [0, 0, 0, 0]]
    assert tok.decode(ids) == ["ab", "cab", ""]
    assert tok.num_classes == 4


def test_tokenizer_default_alphabet_round_trip():
    tok = CharTokenizer(TextEncoderConfig().alphabet, 12)
    texts = ["Hello,World!", "0~`{}|\\'\"", "x"]
    assert tok.decode(tok.encode(texts)) == texts
    assert tok.num_classes == 95


def test_tokenizer_errors_name_the_problem():
    tok = CharTokenizer("abc", max_len=4)
    with pytest.raises(ValueError, match=r"'abcab' \(5 chars\)"):
        tok.encode(["abcab"])
    with pytest.raises(ValueError, match=r"\['d', 'é'\]"):
        tok.validate("adé")
    with pytest.raises(ValueError, match="repeated"):
        CharTokenizer("aba", 4)
    with pytest.raises(ValueError, match="list of strings"):
        tok.encode("ab")


def test_encoder_shapes_and_null_context():
    torch.manual_seed(0)
    enc = CharTextEncoder(TINY).eval()
    out = enc.encode_text(["hello", "", "Z!"])
    assert out.shape == (3, 12, 32)
    assert torch.isfinite(out).all()
    null = enc.null_context(2)
    assert null.shape == (2, 12, 32) and not null.any()
    # no padding mask (upstream): padded positions carry position-dependent, non-zero features
    assert not torch.allclose(out[1, 0], out[1, 1])
    # every token sees the whole text: changing the last character changes the first token's output
    a, b = enc.encode_text(["hello", "hellp"])
    assert not torch.allclose(a[0], b[0])
    with pytest.raises(ValueError, match=r"\(B, 12\)"):
        enc(torch.zeros(1, 5, dtype=torch.long))


def test_encoder_state_dict_names_match_upstream_label_encoder():
    keys = set(CharTextEncoder(TINY).state_dict())
    assert {"label_embedding.weight", "pos_embedding.pe", "encoder.layers.1.self_attn.in_proj_weight"} <= keys
    assert "encoder.layers.0.linear2.bias" in keys and "encoder.layers.0.norm2.weight" in keys


def test_export_reload_identical(tmp_path):
    torch.manual_seed(0)
    enc = CharTextEncoder(TINY).eval()
    path = save_state_dict(enc.state_dict(), tmp_path / "enc.safetensors")
    torch.manual_seed(1)
    loaded = load_text_encoder(TextEncoderConfig(**{**TINY.__dict__, "weights": str(path)})).eval()
    texts = ["abc", "Word12"]
    assert torch.equal(enc.encode_text(texts), loaded.encode_text(texts))


def test_missing_weights_error_names_path(tmp_path):
    with pytest.raises(MissingWeightsError, match="nothere.safetensors"):
        load_text_encoder(TextEncoderConfig(**{**TINY.__dict__, "weights": str(tmp_path / "nothere.safetensors")}))


def test_contrastive_loss_terms_and_gradients():
    torch.manual_seed(0)
    enc = CharTextEncoder(TINY)
    heads = PretrainingHeads(32, 12, enc.tokenizer.num_classes, visual_tokens=9, visual_dim=16, cfg=ContrastiveConfig())
    ids = enc.tokenizer.encode(["ab", "cd", "ef", "gh"])
    visual = torch.randn(4, 9, 16)
    terms = contrastive_loss(heads, enc(ids), visual, ids, ContrastiveConfig(lambda_cls=0.1, lambda_pos=0.1))
    expected = terms["loss/clip"] + 0.1 * terms["loss/cls"] + 0.1 * terms["loss/pos"]
    assert torch.allclose(terms["loss"], expected)
    assert abs(terms["loss/cls"].item() - math.log(95)) < 1.0  # untrained: near uniform
    assert torch.allclose(terms["logit_scale"], torch.tensor(1 / 0.07))
    terms["loss"].backward()
    assert heads.logit_scale.grad is not None and enc.label_embedding.weight.grad.abs().sum() > 0


def test_retrieval_top1_hand_made():
    eye = torch.eye(4)
    assert retrieval_top1(eye, eye) == 1.0
    swapped = eye[[1, 0, 2, 3]]  # texts 0 and 1 match each other's image
    assert retrieval_top1(eye, swapped) == 0.5
    with pytest.raises(ValueError, match="equal shapes"):
        retrieval_top1(eye, eye[:3])


def test_accuracy_metrics_hand_made():
    assert word_accuracy(["abc", "Ab", "x"], ["abc", "ab", "y"]) == pytest.approx(1 / 3)
    assert word_accuracy(["abc", "Ab", "x"], ["abc", "ab", "y"], ignore_case=True) == pytest.approx(2 / 3)
    # 'abd' vs 'abc': 2 of 3; 'ab' vs 'abc': 2 of 3 (missing char); 'abcd' vs 'abc': 3 of 4 (extra char)
    assert char_accuracy(["abd", "ab", "abcd"], ["abc", "abc", "abc"]) == pytest.approx(7 / 10)
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 2] = logits[0, 1, 1] = logits[0, 2, 0] = 1.0  # predicts [2, 1, 0]
    ids = torch.tensor([[2, 3, 0]])
    assert position_accuracy(logits, ids) == pytest.approx(2 / 3)
    assert position_accuracy(logits, ids, text_only=True) == pytest.approx(1 / 2)

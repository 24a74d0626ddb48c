"""The engine's text prior and CTC beam search with it (udifftext/recognizer/prior.py)."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from udifftext.config import RecognizerConfig
from udifftext.data.words import CASE_PROBS, TextSampler, cased
from udifftext.judge import RecognizerJudge
from udifftext.recognizer.prior import (
    CharNgram,
    PriorReader,
    TextPrior,
    ctc_beam_search,
    ctc_log_likelihoods,
    in_tuning_fold,
    read_views,
    shifted,
    symmetric_shifts,
    tune_prior,
)
from udifftext.recognizer.vitstr import ViTSTR

pytestmark = pytest.mark.usefixtures("one_thread")

ALPHABET = "abcdefghijklmnopqrstuvwxyz"
TINY = Path(__file__).resolve().parents[1] / "configs" / "encoder" / "recognizer_tiny.yaml"
CTC = dict(decoder="ctc", patch_size=16, patch_width=4, stem="conv")  # one row of 16 column tokens at 16 x 64


def _sampler(words: list[str], random_string_prob: float = 0.3) -> TextSampler:
    return TextSampler(words, ALPHABET + ALPHABET.upper(), 1, 6, random_string_prob)


def _frames(*steps: dict[str, float], alphabet: str = ALPHABET + ALPHABET.upper()) -> np.ndarray:
    """(T, 1 + len(alphabet)) log-probabilities: each frame's listed characters ('' = blank), the rest tiny."""
    out = np.full((len(steps), 1 + len(alphabet)), 1e-6)
    for t, step in enumerate(steps):
        for char, p in step.items():
            out[t, 0 if char == "" else 1 + alphabet.index(char)] = p
    return np.log(out / out.sum(axis=1, keepdims=True))


def test_char_ngram_is_a_distribution_that_prefers_what_it_has_seen():
    model = CharNgram.fit(["the", "then", "than"], [1.0, 1.0, 0.5], ALPHABET, order=3)
    for history in ("", "t", "th", "the", "xq"):
        total = sum(math.exp(model.log_prob(history, s)) for s in [*ALPHABET, "\n"])
        assert total == pytest.approx(1.0)  # every history, seen or not, sums to one over the symbols and END
    assert model.log_prob("th", "e") > model.log_prob("th", "a") > model.log_prob("th", "z")  # weights count
    assert model.log_prob("the", "\n") > model.log_prob("the", "m")


def test_text_prior_is_the_engines_mixture_of_random_strings_and_cased_words():
    letters = len(ALPHABET) * 2
    only_random = TextPrior(_sampler(["the"], random_string_prob=1.0), order=3)
    assert only_random.text_log("xQ") == pytest.approx(2 * math.log(1 / letters) + math.log(1 / 6))
    assert only_random.text_log("") == only_random.text_log("toolong") == float("-inf")  # lengths 1..6 only
    prior = TextPrior(_sampler(["the", "then"]), order=3)
    assert prior.text_log("the") > prior.text_log("The") > prior.text_log("THE") > prior.text_log("tha")  # CASE_PROBS
    assert cased("tHen") == ("then", "Then", "THEN") and len(CASE_PROBS) == 3
    assert prior.prefix_log("th") > prior.prefix_log("xq")
    assert prior.prefix_log("the") > prior.text_log("the")  # texts that go on after "the" count for the prefix


def test_beam_search_reads_an_uncertain_letter_as_the_words_and_leaves_random_strings_alone():
    prior = TextPrior(_sampler(["the", "then", "there"]), order=4)
    alphabet = ALPHABET + ALPHABET.upper()
    uncertain = _frames({"t": 1.0}, {"": 1.0}, {"h": 1.0}, {"c": 0.55, "e": 0.45})
    assert ctc_beam_search(uncertain, alphabet, prior, weight=0.0) == "thc"  # what the frames say
    assert ctc_beam_search(uncertain, alphabet, prior, weight=0.7) == "the"  # the prior decides a close call
    crisp = _frames({"x": 0.95}, {"q": 0.95}, {"": 0.95}, {"z": 0.95})
    assert ctc_beam_search(crisp, alphabet, prior, weight=0.7) == "xqz"  # a clear random string stays
    held = _frames({"e": 0.9}, {"e": 0.9}, {"": 0.9}, {"e": 0.9})  # one e held over two frames, a blank, another e
    assert ctc_beam_search(held, alphabet, prior, weight=0.0) == "ee"


def test_prior_reader_reads_a_ctc_recognizer_and_refuses_positions():
    torch.manual_seed(0)
    tiny = dict(img_height=16, img_width=64, embed_dim=32, depth=1, heads=2)
    cfg = RecognizerConfig(**tiny, patch_size=16, patch_width=4, stem="conv", decoder="ctc")
    judge = RecognizerJudge(ViTSTR(cfg), 16, 64, "random")
    crops = [np.random.default_rng(i).integers(0, 255, (16, 64, 3), dtype=np.uint8) for i in range(3)]
    prior = TextPrior(TextSampler(["the"], cfg.alphabet, 1, 12, 0.3), order=3)
    reads = PriorReader(judge, prior, weight=0.7).read(crops)
    with torch.no_grad():
        log_probs = judge.recognizer(judge.inputs(crops)).log_softmax(dim=-1)  # (3, 16 tokens, 95)
        moved = [judge.recognizer(shifted(judge.inputs(crops), dx)).log_softmax(dim=-1) for dx in (-2, 0, 2)]
    assert reads == [ctc_beam_search(frames, cfg.alphabet, prior, 0.7) for frames in log_probs.numpy()]
    voted = PriorReader(judge, prior, weight=0.7, shifts=(-2, 0, 2)).read(crops)
    assert voted == [read_views(torch.stack(moved)[:, i], cfg.alphabet, prior, 0.7) for i in range(3)]
    positions = RecognizerJudge(ViTSTR(RecognizerConfig(**tiny, patch_size=8)), 16, 64, "random")
    with pytest.raises(ValueError, match="reads CTC outputs"):
        PriorReader(positions, prior, weight=0.7)


def test_an_ensemble_of_recognizers_of_other_widths_votes_with_every_view():
    torch.manual_seed(0)
    tiny = dict(img_height=16, embed_dim=32, depth=1, heads=2, patch_size=16, patch_width=4, stem="conv")
    judges = [
        RecognizerJudge(ViTSTR(RecognizerConfig(**tiny, img_width=w, decoder="ctc")), 16, w, f"w{w}") for w in (64, 96)
    ]
    crops = [np.random.default_rng(i).integers(0, 255, (16, 80, 3), dtype=np.uint8) for i in range(4)]
    prior = TextPrior(TextSampler(["the"], judges[0].recognizer.cfg.alphabet, 1, 12, 0.3), order=3)
    shifts = (-2, 0, 2)
    voted = PriorReader(judges[0], prior, weight=0.7, shifts=shifts, ensemble=judges[1:]).read(crops)
    with torch.no_grad():
        views = [
            [j.recognizer(shifted(j.inputs([c]), dx))[0].log_softmax(-1) for j in judges for dx in shifts]
            for c in crops
        ]
    assert [v.shape[0] for v in views[0]] == [16] * 3 + [24] * 3  # 16 and 24 column tokens
    assert voted == [read_views(v, judges[0].recognizer.cfg.alphabet, prior, 0.7) for v in views]
    digits = RecognizerJudge(
        ViTSTR(RecognizerConfig(**tiny, img_width=64, decoder="ctc", alphabet="0123456789")), 16, 64, "d"
    )
    with pytest.raises(ValueError, match="another alphabet"):
        PriorReader(judges[0], prior, weight=0.7, ensemble=[digits])


def test_tune_prior_scores_random_strings_and_words_the_prior_never_saw():
    from udifftext.config import EncoderStageConfig, load_config
    from udifftext.recognizer.compare import training_crops

    cfg = load_config(EncoderStageConfig, TINY, [*(f"recognizer.{k}={v}" for k, v in CTC.items()), "eval_samples=60"])
    torch.manual_seed(0)
    judge = RecognizerJudge(ViTSTR(cfg.recognizer), 16, 64, "random")
    sampler = TextSampler.from_config(cfg.data, "train")
    fold = [in_tuning_fold(w, 5) for w in sampler.words]
    assert 0.15 < np.mean(fold) < 0.25  # one word in five
    assert all(in_tuning_fold(w.upper(), 5) == f for w, f in zip(sampler.words[:200], fold[:200], strict=True))
    probe = training_crops(cfg)
    rows = tune_prior(judge, probe, sampler, orders=[3, 4], weights=[0.0, 0.7], shift_sets=[(0,), (-2, 0, 2)])
    settings = [(o, w, s) for o in (3, 4) for w in (0.0, 0.7) for s in ((0,), (-2, 0, 2))]
    assert [(r["order"], r["weight"], r["shifts"]) for r in rows] == [(0, 0.0, (0,)), *settings]
    words = [t for t, w in zip(probe.texts, probe.is_list_word, strict=True) if w]
    assert rows[0]["n words"] == sum(in_tuning_fold(t, 5) for t in words) < len(words)  # other words are left out
    assert rows[0]["n random"] == len(probe.texts) - len(words)
    p = sampler.random_string_prob
    assert all(r["mix"] == pytest.approx(p * r["random strings"] + (1 - p) * r["fold words"]) for r in rows)


def test_shifted_views_move_the_crop_and_repeat_its_edge():
    images = torch.arange(2 * 3 * 8, dtype=torch.float32).reshape(2, 1, 3, 8)
    right, left = shifted(images, 2), shifted(images, -3)
    assert right.shape == left.shape == images.shape and torch.equal(shifted(images, 0), images)
    assert torch.equal(right[..., 2:], images[..., :-2]) and torch.equal(
        right[..., :2], images[..., :1].expand(-1, -1, -1, 2)
    )
    assert torch.equal(left[..., :-3], images[..., 3:]) and torch.equal(
        left[..., -3:], images[..., -1:].expand(-1, -1, -1, 3)
    )
    assert symmetric_shifts([2, 4]) == (-4, -2, 0, 2, 4) and symmetric_shifts([]) == (0,)
    with pytest.raises(ValueError, match="positive"):
        symmetric_shifts([0])


def test_ctc_log_likelihood_sums_every_alignment():
    frames = np.log(np.array([[0.2, 0.7, 0.1], [0.5, 0.3, 0.2]]))  # classes: blank, a, b
    p = np.exp(frames)
    expected = {
        "a": p[0, 1] * p[1, 1] + p[0, 1] * p[1, 0] + p[0, 0] * p[1, 1],  # aa, a-, -a
        "ab": p[0, 1] * p[1, 2],
        "": p[0, 0] * p[1, 0],
    }
    got = ctc_log_likelihoods(torch.from_numpy(frames).float(), list(expected), "ab")
    assert np.exp(got) == pytest.approx(list(expected.values()), rel=1e-5)


def test_views_vote_with_their_likelihoods():
    """Two views of one crop read 'ab' and 'ac' alone; 'ab' is the likelier over both views, so it wins either way
    round, where reading either view alone gives its own reading."""
    prior = TextPrior(_sampler(["the"]), order=3)
    sure_b = _frames({"a": 0.9}, {"b": 0.5, "c": 0.4})
    unsure_c = _frames({"a": 0.9}, {"c": 0.5, "b": 0.45})
    alphabet = ALPHABET + ALPHABET.upper()
    assert [ctc_beam_search(f, alphabet, prior, 0.0) for f in (sure_b, unsure_c)] == ["ab", "ac"]
    for views in ((sure_b, unsure_c), (unsure_c, sure_b)):
        assert read_views(torch.from_numpy(np.stack(views)).float(), alphabet, prior, 0.0) == "ab"
    assert read_views(torch.from_numpy(unsure_c[None]).float(), alphabet, prior, 0.0) == "ac"

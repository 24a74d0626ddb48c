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
    in_tuning_fold,
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
        log_probs = judge.recognizer(judge.inputs(crops)).log_softmax(dim=-1).numpy()  # (3, 16 tokens, 95)
    assert reads == [ctc_beam_search(frames, cfg.alphabet, prior, 0.7) for frames in log_probs]
    positions = RecognizerJudge(ViTSTR(RecognizerConfig(**tiny, patch_size=8)), 16, 64, "random")
    with pytest.raises(ValueError, match="reads CTC outputs"):
        PriorReader(positions, prior, weight=0.7)


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
    rows = tune_prior(judge, probe, sampler, orders=[3, 4], weights=[0.0, 0.7])
    assert [(r["order"], r["weight"]) for r in rows] == [(0, 0.0), (3, 0.0), (3, 0.7), (4, 0.0), (4, 0.7)]
    words = [t for t, w in zip(probe.texts, probe.is_list_word, strict=True) if w]
    assert rows[0]["n words"] == sum(in_tuning_fold(t, 5) for t in words) < len(words)  # other words are left out
    assert rows[0]["n random"] == len(probe.texts) - len(words)
    p = sampler.random_string_prob
    assert all(r["mix"] == pytest.approx(p * r["random strings"] + (1 - p) * r["fold words"]) for r in rows)

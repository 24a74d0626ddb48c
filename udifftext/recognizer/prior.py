"""The engine's text distribution as a prior for reading CTC outputs (beam search with a language model).

The synthetic engine draws a random string over the alphabet with probability ``random_string_prob`` (uniform
length, uniform characters) and otherwise a list word in one of three cases. `TextPrior` is that mixture, with the
list words modelled by a character n-gram fitted on the *training* split's words only (interpolated Witten-Bell
smoothing), so it scores unseen held-out words by their spelling, never by looking them up. `ctc_beam_search`
reads (T, C) CTC log-probabilities with it (Hannun et al. 2014, "prefix beam search" with shallow fusion): each
prefix scores ``log P_ctc + weight * log P_prior`` (the prior relative to uniform characters). `ViTSTR.decode`
reads the likeliest frame by frame instead, without a prior. `read_views` reads a crop seen at several shifts (the
same crop moved by a fraction of a column token): each view's reading is a candidate, and the candidates are
rescored by their mean CTC likelihood over the views plus the prior. Several recognizers (`PriorReader`'s
``ensemble``) vote the same way, each with its views.
"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from udifftext.config import DataConfig
from udifftext.data.words import CASE_PROBS, TextSampler, cased

if TYPE_CHECKING:
    import torch

    from udifftext.judge import RecognizerJudge
    from udifftext.recognizer.compare import WordCrops

NEG_INF = float("-inf")
# characters of context + 1: with a weight of 0.7 the best on a fold of the training words (scripts/tune_text_prior.py)
DEFAULT_ORDER = 6
END = "\n"  # the n-gram's end-of-word symbol (outside the alphabet: it holds no whitespace)


@dataclass
class CharNgram:
    """Character n-gram over words (start padded, END terminated), interpolated Witten-Bell smoothing down to a
    uniform distribution over the alphabet and END."""

    order: int
    vocabulary: int  # alphabet size + 1 (END)
    counts: dict[str, dict[str, float]] = field(default_factory=dict)  # history -> next symbol -> weight
    totals: dict[str, tuple[float, int]] = field(default_factory=dict)  # history -> (weight, distinct symbols)

    @classmethod
    def fit(cls, words: list[str], weights: list[float], alphabet: str, order: int) -> CharNgram:
        model = cls(order, len(alphabet) + 1)
        counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for word, weight in zip(words, weights, strict=True):
            padded = "\0" * (order - 1) + word + END
            for i in range(order - 1, len(padded)):
                for n in range(order):  # every history length 0 .. order - 1
                    counts[padded[i - n : i]][padded[i]] += weight
        model.counts = {history: dict(nexts) for history, nexts in counts.items()}
        model.totals = {history: (sum(nexts.values()), len(nexts)) for history, nexts in counts.items()}
        return model

    def log_prob(self, history: str, symbol: str) -> float:
        """log P(symbol | the last order - 1 symbols of `history`), history start padded with NULs."""
        history = ("\0" * (self.order - 1) + history)[-(self.order - 1) :] if self.order > 1 else ""
        prob = 1.0 / self.vocabulary
        for n in range(len(history) + 1):  # from the empty history up to the longest
            context = history[len(history) - n :]
            if context not in self.counts:
                break  # a longer history is unseen too
            total, types = self.totals[context]
            prob = (self.counts[context].get(symbol, 0.0) + types * prob) / (total + types)
        return math.log(prob)


class TextPrior:
    """log P(text) under the engine's text distribution (module docstring), computed prefix by prefix."""

    def __init__(self, sampler: TextSampler, order: int = DEFAULT_ORDER):
        self.alphabet = sampler.alphabet
        self.min_len, self.max_len = sampler.min_len, sampler.max_len
        self.random_log = math.log(sampler.random_string_prob) if sampler.random_string_prob > 0 else NEG_INF
        self.word_log = math.log1p(-sampler.random_string_prob) if sampler.random_string_prob < 1 else NEG_INF
        self.char_log = -math.log(len(sampler.alphabet))
        self.length_log = -math.log(sampler.max_len - sampler.min_len + 1)
        words = [variant for word in sampler.words for variant in cased(word)]
        weights = [p for _ in sampler.words for p in CASE_PROBS]
        self.ngram = CharNgram.fit(words, weights, sampler.alphabet, order)
        self._word_prefix: dict[str, float] = {"": 0.0}

    @classmethod
    def from_config(cls, cfg: DataConfig, order: int = DEFAULT_ORDER) -> TextPrior:
        """The prior of the training split's texts: its words (never the held-out ones) and random strings."""
        return cls(TextSampler.from_config(cfg, "train"), order)

    def word_prefix_log(self, prefix: str) -> float:
        """log P(a list word starts with `prefix`), cached along the prefixes a beam search extends."""
        cached = self._word_prefix.get(prefix)
        if cached is None:
            cached = self.word_prefix_log(prefix[:-1]) + self.ngram.log_prob(prefix[:-1], prefix[-1])
            self._word_prefix[prefix] = cached
        return cached

    def prefix_log(self, prefix: str) -> float:
        """log P(a text starts with `prefix`): the mixture of both kinds of text, END not yet scored."""
        if len(prefix) > self.max_len:
            return NEG_INF
        random = self.random_log + len(prefix) * self.char_log
        return float(np.logaddexp(random, self.word_log + self.word_prefix_log(prefix)))

    def text_log(self, text: str) -> float:
        """log P(text): a whole text, its length (random strings) or END (words) scored."""
        if not self.min_len <= len(text) <= self.max_len:
            return NEG_INF
        random = self.random_log + len(text) * self.char_log + self.length_log
        word = self.word_log + self.word_prefix_log(text) + self.ngram.log_prob(text, END)
        return float(np.logaddexp(random, word))


def prior_bonus(prior: TextPrior, weight: float, prior_log: float, text: str) -> float:
    """The prior's part of a reading's score: `weight` times `prior_log` (log P of `text` or of a text starting with
    it) relative to uniform characters; none at weight 0, where a -inf prior must not turn a score into NaN."""
    return weight * (prior_log - len(text) * prior.char_log) if weight else 0.0


def ctc_beam_search(
    log_probs: np.ndarray,
    alphabet: str,
    prior: TextPrior,
    weight: float,
    beam: int = 8,
    candidates: int = 5,
) -> str:
    """The text maximising log P_ctc(text | frames) + weight * (log P_prior(text) - len(text) * log(1 / |alphabet|))
    among a prefix beam search's survivors. The prior is taken relative to uniform characters: a random string
    gains or loses nothing by its length (a plain prior costs ln 94 a character, and the search would drop
    uncertain ones), a text shaped like a word gains. `log_probs`: (T, 1 + len(alphabet)) log-softmax outputs,
    class 0 the blank, class k the alphabet's k-th character; at each frame only the `candidates` likeliest
    characters extend a prefix."""
    frames = log_probs.shape[0]
    beams: dict[str, tuple[float, float]] = {"": (0.0, NEG_INF)}  # prefix -> (log P ending in blank, in a char)
    top = np.argsort(-log_probs[:, 1:], axis=1)[:, :candidates] + 1  # (T, candidates) class ids
    for t in range(frames):
        row = log_probs[t]
        grown: dict[str, list[float]] = defaultdict(lambda: [NEG_INF, NEG_INF])
        for prefix, (blank, char) in beams.items():
            total = np.logaddexp(blank, char)
            grown[prefix][0] = np.logaddexp(grown[prefix][0], total + row[0])
            for k in top[t]:
                symbol, p = alphabet[k - 1], row[k]
                longer = prefix + symbol
                if prefix and symbol == prefix[-1]:
                    grown[prefix][1] = np.logaddexp(grown[prefix][1], char + p)  # the same letter, held
                    grown[longer][1] = np.logaddexp(grown[longer][1], blank + p)  # a repeat after a blank
                else:
                    grown[longer][1] = np.logaddexp(grown[longer][1], total + p)

        def score(item: tuple[str, list[float]]) -> float:
            prefix, (blank, char) = item
            return float(np.logaddexp(blank, char)) + prior_bonus(prior, weight, prior.prefix_log(prefix), prefix)

        beams = {prefix: (b, c) for prefix, (b, c) in sorted(grown.items(), key=score, reverse=True)[:beam]}
    finals = {
        p: float(np.logaddexp(b, c)) + prior_bonus(prior, weight, prior.text_log(p), p) for p, (b, c) in beams.items()
    }
    return max(finals, key=finals.get)


def symmetric_shifts(magnitudes: Sequence[int]) -> tuple[int, ...]:
    """The crop as it is and moved by each of `magnitudes` px to either side: (2, 4) -> (-4, -2, 0, 2, 4)."""
    if any(m <= 0 for m in magnitudes):
        raise ValueError(f"view shifts are positive pixel counts, got {list(magnitudes)}")
    return tuple(sorted({0, *magnitudes, *(-m for m in magnitudes)}))


def shifted(images: torch.Tensor, dx: int) -> torch.Tensor:
    """(B, C, h, w) images moved `dx` px to the right (to the left when negative), the edge column repeated into
    the gap: the same crop seen at another phase of the recognizer's column tokens."""
    import torch.nn.functional as F

    if dx == 0:
        return images
    width = images.shape[-1]
    padded = F.pad(images, (max(dx, 0), max(-dx, 0), 0, 0), mode="replicate")
    return padded[..., max(-dx, 0) : max(-dx, 0) + width]


def ctc_log_likelihoods(log_probs: torch.Tensor, texts: list[str], alphabet: str) -> np.ndarray:
    """log P_ctc(text | frames) of each of `texts` under (T, C) log-softmax outputs (class 0 the blank)."""
    import torch
    import torch.nn.functional as F

    frames = log_probs.shape[0]
    ids = {c: k + 1 for k, c in enumerate(alphabet)}
    targets = torch.tensor([ids[c] for text in texts for c in text], dtype=torch.long)
    lengths = torch.tensor([len(text) for text in texts], dtype=torch.long)
    repeated = log_probs[:, None, :].expand(frames, len(texts), log_probs.shape[1])  # (T, N, C)
    losses = F.ctc_loss(repeated, targets, torch.full_like(lengths, frames), lengths, reduction="none")
    return -losses.numpy()


def read_views(log_probs: Sequence[torch.Tensor], alphabet: str, prior: TextPrior, weight: float) -> str:
    """One crop seen in several views, each a (T, C) log-softmax output (T may differ between views read by
    recognizers of other widths): each view's `ctc_beam_search` reading is a candidate, and the candidate with the
    highest mean log P_ctc over the views plus the prior's bonus wins (views vote with their likelihoods, not with
    their readings)."""
    candidates = sorted({ctc_beam_search(frames.numpy(), alphabet, prior, weight) for frames in log_probs})
    if len(candidates) == 1:
        return candidates[0]
    likelihood = np.mean([ctc_log_likelihoods(view, candidates, alphabet) for view in log_probs], axis=0)
    scores = [
        ll + prior_bonus(prior, weight, prior.text_log(t), t) for ll, t in zip(likelihood, candidates, strict=True)
    ]
    return candidates[int(np.argmax(scores))]


class PriorReader:
    """A CTC recognizer (as a `RecognizerJudge`) whose outputs are read by `ctc_beam_search` with `prior`; with
    more than one of `shifts` (px), each crop is also read moved by each and the views vote (`read_views`). The
    recognizers of `ensemble` (same alphabet, any crop size) add their views of every shift to the vote."""

    def __init__(
        self,
        judge: RecognizerJudge,
        prior: TextPrior,
        weight: float,
        shifts: tuple[int, ...] = (0,),
        ensemble: Sequence[RecognizerJudge] = (),
    ) -> None:
        judges = (judge, *ensemble)
        for member in judges:
            cfg = member.recognizer.cfg
            if cfg.decoder != "ctc":
                raise ValueError(
                    f"a text prior reads CTC outputs: {member.source} has recognizer.decoder '{cfg.decoder}'"
                )
            if cfg.alphabet != judge.recognizer.cfg.alphabet:
                raise ValueError(f"{member.source} reads another alphabet than {judge.source}: they cannot vote")
        if not shifts:
            raise ValueError("shifts must name at least one view (0: the crop as it is)")
        self.judges, self.prior, self.weight, self.shifts = judges, prior, weight, tuple(shifts)

    def read(self, crops: list[np.ndarray]) -> list[str]:
        import torch

        with torch.no_grad():
            groups = [view_log_probs(j.recognizer, j.inputs(crops), self.shifts) for j in self.judges]
        return read_log_probs(groups, self.judges[0].recognizer.cfg.alphabet, self.prior, self.weight)


def view_log_probs(recognizer: torch.nn.Module, images: torch.Tensor, shifts: tuple[int, ...]) -> torch.Tensor:
    """(V, B, T, C) the recognizer's log-softmax outputs for (B, 1, h, w) `images` moved by each of `shifts` px."""
    import torch

    return torch.stack([recognizer(shifted(images, dx)).log_softmax(dim=-1) for dx in shifts])


def read_log_probs(groups: Sequence[torch.Tensor], alphabet: str, prior: TextPrior, weight: float) -> list[str]:
    """Readings of (V, B, T, C) view outputs, one group per recognizer (T and V may differ between groups): the beam
    search alone for one view in all, `read_views` over every group's views for more."""
    if sum(g.shape[0] for g in groups) == 1:
        return [ctc_beam_search(frames, alphabet, prior, weight) for frames in groups[0][0].numpy()]
    crops = groups[0].shape[1]
    return [
        read_views([g[v, i] for g in groups for v in range(g.shape[0])], alphabet, prior, weight) for i in range(crops)
    ]


def in_tuning_fold(word: str, folds: int) -> bool:
    """Whether a training word is in the tuning fold: one word in `folds`, by a hash of its lower case (so its
    three cases go together), independent of the held-out words' hash."""
    return zlib.crc32(f"tune:{word.lower()}".encode()) % folds == 0


def tune_prior(
    judge: RecognizerJudge,
    probe: WordCrops,
    sampler: TextSampler,
    orders: list[int],
    weights: list[float],
    folds: int = 5,
    shift_sets: Sequence[tuple[int, ...]] = ((0,),),
) -> list[dict]:
    """Choose the prior's order and weight, and the views a crop is read in, without the held-out split and without
    leaking words: the prior is fitted on the training words outside the tuning fold, and scored on the training
    crops (`probe`) of random strings and of the fold's words, which it has never seen. One row per (order, weight,
    shifts), greedy reading first (order 0, weight 0); ``mix`` weighs the two kinds of text as the engine draws
    them."""
    import torch

    fitted = replace(sampler, words=[w for w in sampler.words if not in_tuning_fold(w, folds)])
    keep = [
        i
        for i, (t, w) in enumerate(zip(probe.texts, probe.is_list_word, strict=True))
        if not w or in_tuning_fold(t, folds)
    ]
    texts, is_word = [probe.texts[i] for i in keep], [probe.is_list_word[i] for i in keep]
    every_shift = sorted({0, *(dx for shifts in shift_sets for dx in shifts)})
    with torch.no_grad():
        images = judge.inputs([probe.crops[i] for i in keep])
        log_probs = view_log_probs(judge.recognizer, images, tuple(every_shift))  # (V, N, T, C)
    alphabet = judge.recognizer.cfg.alphabet

    def row(order: int, weight: float, shifts: tuple[int, ...], reads: list[str]) -> dict:
        right = [r == t for r, t in zip(reads, texts, strict=True)]
        words = float(np.mean([r for r, w in zip(right, is_word, strict=True) if w])) if any(is_word) else 0.0
        random = float(np.mean([r for r, w in zip(right, is_word, strict=True) if not w])) if not all(is_word) else 0.0
        mix = sampler.random_string_prob * random + (1 - sampler.random_string_prob) * words
        return {
            "order": order,
            "weight": weight,
            "shifts": shifts,
            "fold words": words,
            "random strings": random,
            "mix": mix,
            "n words": sum(is_word),
            "n random": len(is_word) - sum(is_word),
        }

    rows = [row(0, 0.0, (0,), judge.recognizer.decode(log_probs[every_shift.index(0)]))]
    for order in orders:
        prior = TextPrior(fitted, order)
        for weight in weights:
            for shifts in shift_sets:
                views = log_probs[[every_shift.index(dx) for dx in shifts]]
                rows.append(row(order, weight, tuple(shifts), read_log_probs([views], alphabet, prior, weight)))
    return rows

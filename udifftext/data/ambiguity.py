"""Crops no reader can read: texts that the synthetic engine draws as the same picture, and the best any reader does.

A word crop is cut tightly around its ink and stretched to a fixed size, and its background can hide part of a
letter, so two texts can give (almost) the same crop: 'l' and 'I' in a font that draws both as the same bar, a
lone 'o' and 'O' stretched to the same box, an 'n' over a patch of its own colour. A look-alike of crop i is a text
of the same length which, drawn with every other random draw of crop i unchanged (font, size, spacing, angle,
margins), changes no pixel of the crop's grey levels by more than `tolerance`: its ink differs from the drawn
text's (`WordCropDataset.stretched_ink`) only where the text's colour is near the background's
(`WordCropDataset.stretched_contrast`). The best possible reader knows the split's true prior, held-out words
included (`TextSampler.probability`), and reads the most probable of a crop's look-alikes; its score over a split is
a ceiling on any reader's word accuracy there. An upper bound: look-alikes of another length ('rn' and 'm') are not
searched, substitutions are combined only up to `max_combinations`, and the blur, which can only hide differences,
is left out.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from udifftext.data.synth import WordCropDataset
from udifftext.data.words import cased

MAX_COMBINATIONS = 4096  # texts with two or more look-alike substitutions checked per crop and tolerance


class CropLookAlikes:
    """The texts that crop `index` of `dataset` would show almost unchanged; differences are cached."""

    def __init__(self, dataset: WordCropDataset, index: int) -> None:
        self.dataset, self.index = dataset, index
        self.text, self.ink = dataset.stretched_ink(index)
        self.contrast = np.abs(dataset.stretched_contrast(index))  # grey levels one unit of ink moves
        self._differences: dict[str, float] = {}

    def difference(self, text: str) -> float:
        """The most that drawing `text` instead would change one grey level of the crop (before the blur)."""
        if text not in self._differences:
            ink = self.dataset.stretched_ink(self.index, text)[1]
            self._differences[text] = float((self.contrast * np.abs(ink - self.ink)).max())
        return self._differences[text]

    def within(self, tolerance: float, max_combinations: int = MAX_COMBINATIONS) -> list[str]:
        """Texts other than the drawn one that change no grey level by more than `tolerance`: every single
        substitution over the alphabet, their combinations (each checked by drawing it, fewest changes first, at
        most `max_combinations`), and the text's case variants over the alphabet."""
        text, alphabet = self.text, self.dataset.cfg.alphabet
        choices = [
            [c for c in alphabet if c != char and self.difference(text[:i] + c + text[i + 1 :]) <= tolerance]
            for i, char in enumerate(text)
        ]
        found = {text[:i] + c + text[i + 1 :] for i, alternatives in enumerate(choices) for c in alternatives}
        combinations = itertools.islice(_combinations(text, choices), max_combinations)
        found |= {t for t in combinations if self.difference(t) <= tolerance}
        cases = {t for t in _case_variants(text) if t != text and set(t) <= set(alphabet)}
        found |= {t for t in cases if self.difference(t) <= tolerance}
        return sorted(found)


def _combinations(text: str, choices: list[list[str]]) -> Iterator[str]:
    """`text` with two or more of its per-position alternatives `choices` put in, fewest changes first."""
    positions = [i for i, alternatives in enumerate(choices) if alternatives]
    for count in range(2, len(positions) + 1):
        for chosen in itertools.combinations(positions, count):
            for picks in itertools.product(*(choices[i] for i in chosen)):
                chars = list(text)
                for i, c in zip(chosen, picks, strict=True):
                    chars[i] = c
                yield "".join(chars)


def _case_variants(text: str) -> set[str]:
    """The engine's three cases of `text` (`cased`) and its case swapped."""
    return {*cased(text), text.swapcase()}


def best_reading_score(text: str, look_alikes: list[str], probability: Callable[[str], float]) -> float:
    """The chance that a reader who sees only the shape reads `text`: it takes the most probable of `text` and its
    look-alikes under `probability` (ties broken at random), so 1 / ties when `text` is among the most probable."""
    chances = {t: probability(t) for t in [text, *look_alikes]}
    top = max(chances.values())
    ties = [t for t, p in chances.items() if p >= top * (1 - 1e-9)]
    return 1 / len(ties) if text in ties else 0.0


@dataclass
class Ceiling:
    """The best reader's word accuracy on a set of crops, with how many crops have a look-alike."""

    tolerance: float
    crops: int
    with_look_alikes: int
    score: float  # the best reader's expected word accuracy over all crops
    list_word_score: float
    random_string_score: float


def reading_ceiling(
    crops: list[CropLookAlikes], is_list_word: list[bool], probability: Callable[[str], float], tolerance: float
) -> tuple[Ceiling, list[list[str]]]:
    """The ceiling at `tolerance` and each crop's look-alikes."""
    found = [crop.within(tolerance) for crop in crops]
    scores = np.array([best_reading_score(c.text, f, probability) for c, f in zip(crops, found, strict=True)])
    listed = np.asarray(is_list_word, bool)
    ceiling = Ceiling(
        tolerance,
        len(crops),
        sum(bool(f) for f in found),
        float(scores.mean()),
        float(scores[listed].mean()) if listed.any() else float("nan"),
        float(scores[~listed].mean()) if (~listed).any() else float("nan"),
    )
    return ceiling, found

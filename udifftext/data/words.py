"""What the synthetic engine writes and with which font: word list, fonts, and the held-out split.

The held-out split is defined once, by the config: a word is held out when a stable hash of its lowercase
form falls below `heldout_word_fraction` (so "Paris", "paris" and "PARIS" fall on the same side), and a
font is held out when its file name is listed in `heldout_fonts`. `split="train"` never sees either.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from udifftext.config import DataConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC_SPLITS = ("train", "heldout")
FONT_SUFFIXES = (".ttf", ".otf", ".woff")  # FreeType reads WOFF (the web fonts npm packages ship)
# Case variants of list words: lower, Title, UPPER (the word list is mostly lowercase).
CASE_PROBS = (0.5, 0.3, 0.2)


def resolve_data_path(path: str | Path) -> Path:
    """A path as given if it exists (absolute or relative to the working directory), else under the repo root.

    Lets configs say `data/fonts` and still work when a script runs from another directory.
    """
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    return REPO_ROOT / path


def check_split(split: str) -> None:
    if split not in SYNTHETIC_SPLITS:
        raise ValueError(f"split must be one of {SYNTHETIC_SPLITS} for synthetic data, got '{split}'")


def is_heldout_word(word: str, fraction: float) -> bool:
    """Stable (process- and platform-independent) membership of `word` in the held-out share."""
    digest = hashlib.blake2b(word.lower().encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64 < fraction


@lru_cache(maxsize=8)
def _read_word_list(path: str) -> tuple[str, ...]:
    file = resolve_data_path(path)
    if not file.is_file():
        raise ValueError(f"word_list not found: {file} (expected one word per line, e.g. data/words/words.txt)")
    return tuple(line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip())


def load_words(cfg: DataConfig, split: str) -> list[str]:
    """Words of the list in `split`, restricted to the alphabet and to `min_len..max_len` characters."""
    check_split(split)
    alphabet = set(cfg.alphabet)
    want_heldout = split == "heldout"
    words = [
        w
        for w in _read_word_list(cfg.word_list)
        if cfg.min_len <= len(w) <= cfg.max_len
        and set(w) <= alphabet
        and is_heldout_word(w, cfg.heldout_word_fraction) == want_heldout
    ]
    if not words:
        raise ValueError(f"no words of {cfg.min_len}..{cfg.max_len} characters in the {split} split of {cfg.word_list}")
    return words


def list_fonts(fonts_dir: str | Path) -> list[Path]:
    """Every .ttf/.otf/.woff file under `fonts_dir` (recursively), sorted by file name for determinism."""
    root = resolve_data_path(fonts_dir)
    fonts = sorted((p for p in root.rglob("*") if p.suffix.lower() in FONT_SUFFIXES), key=lambda p: p.name)
    if not fonts:
        raise ValueError(f"fonts_dir has no .ttf/.otf/.woff files: {root}")
    return fonts


def font_folders(cfg: DataConfig) -> list[str]:
    """`fonts_dir`, then every `extra_fonts_dirs` folder."""
    return [cfg.fonts_dir, *cfg.extra_fonts_dirs]


def config_fonts(cfg: DataConfig) -> list[Path]:
    """The fonts of `fonts_dir` and every `extra_fonts_dirs` folder, sorted by file name (so one folder holding
    the same files gives the same list); a file name found twice is an error, since names pick the held-out fonts."""
    fonts = sorted((p for folder in font_folders(cfg) for p in list_fonts(folder)), key=lambda p: p.name)
    names = [p.name for p in fonts]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"font file names found twice in fonts_dir / extra_fonts_dirs: {repeated}")
    return fonts


def split_fonts(cfg: DataConfig, split: str) -> list[Path]:
    """The fonts of `split`; a held-out name that matches no file is an error (a typo would leak it)."""
    check_split(split)
    fonts = config_fonts(cfg)
    names = {p.name for p in fonts}
    unknown = sorted(set(cfg.heldout_fonts) - names)
    if unknown:
        raise ValueError(f"heldout_fonts not found in {font_folders(cfg)}: {unknown}; available: {sorted(names)}")
    chosen = [p for p in fonts if (p.name in cfg.heldout_fonts) == (split == "heldout")]
    if not chosen:
        raise ValueError(f"no fonts left for split '{split}' (heldout_fonts={cfg.heldout_fonts})")
    return chosen


@dataclass
class TextSampler:
    """Draws texts: list words in a random case, or random strings over the alphabet."""

    words: list[str]
    alphabet: str
    min_len: int
    max_len: int
    random_string_prob: float
    forbidden: frozenset[str] = frozenset()  # lowercase texts a random string must not equal (held-out words)

    @classmethod
    def from_config(cls, cfg: DataConfig, split: str) -> TextSampler:
        if not 1 <= cfg.min_len <= cfg.max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got min_len={cfg.min_len}, max_len={cfg.max_len}")
        forbidden = frozenset(w.lower() for w in load_words(cfg, "heldout")) if split == "train" else frozenset()
        return cls(load_words(cfg, split), cfg.alphabet, cfg.min_len, cfg.max_len, cfg.random_string_prob, forbidden)

    def sample(self, rng: np.random.Generator) -> str:
        if rng.random() < self.random_string_prob:
            while True:
                n = int(rng.integers(self.min_len, self.max_len + 1))
                text = "".join(self.alphabet[i] for i in rng.integers(0, len(self.alphabet), n))
                if text.lower() not in self.forbidden:
                    return text
        word = self.words[int(rng.integers(len(self.words)))]
        return cased(word)[rng.choice(3, p=CASE_PROBS)]

    def probability(self, text: str) -> float:
        """The chance that `sample` draws exactly `text`: the split's true prior, which the best possible reader of
        its crops would weigh look-alike texts by (udifftext.data.ambiguity)."""
        random_string = 0.0
        if self.min_len <= len(text) <= self.max_len and set(text) <= set(self.alphabet):
            if text.lower() not in self.forbidden:
                random_string = self._random_string_chance(len(text)) / self._random_string_acceptance
        return self.random_string_prob * random_string + (1 - self.random_string_prob) * self._list_word_chances[text]

    def _random_string_chance(self, length: int) -> float:
        """One draw's chance of one given string of `length` characters, before forbidden strings are redrawn."""
        return 1 / ((self.max_len - self.min_len + 1) * len(self.alphabet) ** length)

    @cached_property
    def _random_string_acceptance(self) -> float:
        """The chance that one random-string draw is not a forbidden word in any case (the rest are redrawn)."""
        spellings = Counter(c.lower() for c in self.alphabet)  # alphabet characters per lowercase form
        rejected = 0.0
        for word in self.forbidden:
            if self.min_len <= len(word) <= self.max_len:
                rejected += float(np.prod([spellings[c] for c in word])) * self._random_string_chance(len(word))
        return 1 - rejected

    @cached_property
    def _list_word_chances(self) -> Counter:
        """text -> chance that a list-word draw gives it (a word and its case together)."""
        chances = Counter()
        for word in self.words:
            for case_prob, variant in zip(CASE_PROBS, cased(word), strict=True):
                chances[variant] += case_prob / len(self.words)
        return chances


def cased(word: str) -> tuple[str, str, str]:
    """The three cases the engine draws a list word in (`TextSampler.sample`), in CASE_PROBS order."""
    lower = word.lower()
    return lower, lower[:1].upper() + lower[1:], word.upper()

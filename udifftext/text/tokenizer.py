"""Fixed-length character tokenizer shared by the text encoder and the recognizer (upstream ``get_index``).

Token id = position of the character in the alphabet + 1; id 0 is padding (and, for the recognizer,
"end of word"). Every text is padded to exactly `max_len` ids: no BOS/EOS/CLS tokens, as upstream.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class CharTokenizer:
    """Maps texts to (B, max_len) id tensors and back."""

    def __init__(self, alphabet: str, max_len: int):
        if not alphabet:
            raise ValueError("alphabet must not be empty")
        repeated = sorted({c for c in alphabet if alphabet.count(c) > 1})
        if repeated:
            raise ValueError(f"alphabet has repeated characters {repeated!r}; each character needs one id")
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        self.alphabet = alphabet
        self.max_len = max_len
        self._ids = {c: i + 1 for i, c in enumerate(alphabet)}

    @property
    def num_classes(self) -> int:
        """Alphabet size + 1 (the padding / end id 0)."""
        return len(self.alphabet) + 1

    def validate(self, text: str) -> None:
        """Raise ValueError if `text` is longer than max_len or uses characters outside the alphabet."""
        if len(text) > self.max_len:
            raise ValueError(f"text longer than max_len={self.max_len}: {text!r} ({len(text)} chars)")
        unknown = sorted({c for c in text if c not in self._ids})
        if unknown:
            raise ValueError(f"text {text!r} has characters outside the alphabet: {unknown!r}")

    def encode(self, texts: list[str]) -> torch.Tensor:
        """(B,) texts -> (B, max_len) long ids, 0-padded on the right."""
        if isinstance(texts, str):
            raise ValueError(f"texts must be a list of strings, got the string {texts!r}")
        ids = torch.zeros(len(texts), self.max_len, dtype=torch.long)  # (B, L)
        for row, text in enumerate(texts):
            self.validate(text)
            ids[row, : len(text)] = torch.tensor([self._ids[c] for c in text], dtype=torch.long)
        return ids

    def decode(self, ids: torch.Tensor | Iterable[Iterable[int]]) -> list[str]:
        """(B, L) ids -> texts; each text ends at its first 0 (padding / end)."""
        rows = ids.tolist() if isinstance(ids, torch.Tensor) else [list(r) for r in ids]
        texts = []
        for row in rows:
            chars = []
            for i in row:
                if i == 0:
                    break
                if not 0 < i <= len(self.alphabet):
                    raise ValueError(f"token id {i} outside 0..{len(self.alphabet)}")
                chars.append(self.alphabet[i - 1])
            texts.append("".join(chars))
        return texts

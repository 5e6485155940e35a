"""Tokenisation for text encoders: a picklable callable run inside DataLoader workers.

Empty (or whitespace-only, or non-string) texts never raise: they become a one-token
placeholder and ``valid=False``, so the encode job records them and writes a zero row.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase
from transformers.tokenization_utils_tokenizers import TokenizersBackend


def clean_texts(raws: list[Any]) -> tuple[list[str], list[bool]]:
    """Texts as strings plus a validity flag (False for None / non-strings / blank)."""
    texts, valid = [], []
    for raw in raws:
        ok = isinstance(raw, str) and raw.strip() != ""
        texts.append(raw if ok else "")
        valid.append(ok)
    return texts, valid


def truncating_backend(tokenizer: PreTrainedTokenizerBase, max_tokens: int) -> Any | None:
    """A copy of a fast tokenizer's Rust backend, set up as ``tokenizer(texts, truncation=True,
    max_length=max_tokens)`` sets it before it calls ``encode_batch``; None where a tokenizer is slow
    or customises that call. Calling it directly skips transformers' per-item conversion of each
    ``Encoding`` into Python lists (a third of the tokenising time, measured on 20k item texts)."""
    cls = type(tokenizer)
    if not (isinstance(tokenizer, TokenizersBackend) and cls.__call__ is PreTrainedTokenizerBase.__call__
            and cls._encode_plus is TokenizersBackend._encode_plus):
        return None
    backend = copy.deepcopy(tokenizer.backend_tokenizer)  # the tokenizer's own settings stay as they were
    backend.no_padding()
    backend.enable_truncation(max_tokens, stride=0, strategy="longest_first", direction=tokenizer.truncation_side)
    backend.encode_special_tokens = bool(tokenizer.split_special_tokens)
    return backend


@dataclass
class TextPreprocessor:
    """Tokenise a list of texts into a padded batch (reference) or a packed one (padding-free)."""

    tokenizer: PreTrainedTokenizerBase
    max_tokens: int
    packed: bool = False
    backend: Any = field(init=False, repr=False)  # truncating_backend(tokenizer), or None

    def __post_init__(self) -> None:
        self.backend = truncating_backend(self.tokenizer, self.max_tokens)

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else (self.tokenizer.eos_token_id or 0))

    def _encode(self, texts: list[str]) -> list[Any]:
        """Token ids per text (a backend ``Encoding`` or a list of ids: both have ``len``)."""
        if self.backend is not None:
            return self.backend.encode_batch(texts, add_special_tokens=True)
        return self.tokenizer(texts, truncation=True, max_length=self.max_tokens, add_special_tokens=True)["input_ids"]

    def token_ids(self, raws: list[Any]) -> tuple[list[list[int]], list[bool]]:
        texts, valid = clean_texts(raws)
        encoded = self._encode(texts)
        ids = [x.ids if self.backend is not None else list(x) for x in encoded]
        ids = [x if ok and len(x) > 0 else [self.pad_id] for x, ok in zip(ids, valid)]
        return ids, valid

    def lengths(self, raws: list[Any]) -> list[int]:
        texts, valid = clean_texts(raws)
        return [len(x) if ok and len(x) > 0 else 1 for x, ok in zip(self._encode(texts), valid)]

    def __call__(self, raws: list[Any]) -> dict[str, torch.Tensor]:
        ids, valid = self.token_ids(raws)
        out = self._packed(ids) if self.packed else self._padded(ids)
        out["valid"] = torch.tensor(valid, dtype=torch.bool)
        return out

    @staticmethod
    def _flat(ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        lens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        return np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(lens.sum())), lens

    def _padded(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        flat, lens = self._flat(ids)
        mask = np.arange(max(int(lens.max(initial=0)), 1)) < lens[:, None]
        input_ids = np.full(mask.shape, self.pad_id, dtype=np.int64)
        input_ids[mask] = flat  # row-major: row i's tokens in order, then row i + 1's
        return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask.astype(np.int64))}

    def _packed(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        flat, lens = self._flat(ids)
        cu = torch.zeros(len(ids) + 1, dtype=torch.int32)
        cu[1:] = torch.cumsum(torch.from_numpy(lens), 0)
        return {"input_ids": torch.from_numpy(flat), "cu_seqlens": cu}

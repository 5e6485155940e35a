"""Tokenisation for text encoders: a picklable callable run inside DataLoader workers.

Empty (or whitespace-only, or non-string) texts never raise: they become a one-token
placeholder and ``valid=False``, so the encode job records them and writes a zero row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase


def clean_texts(raws: list[Any]) -> tuple[list[str], list[bool]]:
    """Texts as strings plus a validity flag (False for None / non-strings / blank)."""
    texts, valid = [], []
    for raw in raws:
        ok = isinstance(raw, str) and raw.strip() != ""
        texts.append(raw if ok else "")
        valid.append(ok)
    return texts, valid


@dataclass
class TextPreprocessor:
    """Tokenise a list of texts into a padded batch (reference) or a packed one (padding-free)."""

    tokenizer: PreTrainedTokenizerBase
    max_tokens: int
    packed: bool = False

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else (self.tokenizer.eos_token_id or 0))

    def token_ids(self, raws: list[Any]) -> tuple[list[list[int]], list[bool]]:
        texts, valid = clean_texts(raws)
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_tokens, add_special_tokens=True)["input_ids"]
        ids = [list(x) if ok and len(x) > 0 else [self.pad_id] for x, ok in zip(ids, valid)]
        return ids, valid

    def lengths(self, raws: list[Any]) -> list[int]:
        return [len(x) for x in self.token_ids(raws)[0]]

    def __call__(self, raws: list[Any]) -> dict[str, torch.Tensor]:
        ids, valid = self.token_ids(raws)
        out = self._packed(ids) if self.packed else self._padded(ids)
        out["valid"] = torch.tensor(valid, dtype=torch.bool)
        return out

    def _padded(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        width = max((len(x) for x in ids), default=1)
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, x in enumerate(ids):
            input_ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
            mask[i, : len(x)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    def _packed(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        lens = torch.tensor([len(x) for x in ids], dtype=torch.long)
        cu = torch.zeros(len(ids) + 1, dtype=torch.int32)
        cu[1:] = torch.cumsum(lens, 0)
        flat = torch.tensor([t for x in ids for t in x], dtype=torch.long)
        return {"input_ids": flat, "cu_seqlens": cu}

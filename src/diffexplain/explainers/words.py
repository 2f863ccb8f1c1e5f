"""Prompt tokens → words: merge sub-word tokens (CLIP's ``</w>`` word ends, SentencePiece's ``▁`` word starts of T5),
skip special tokens, name repeated words uniquely."""

from __future__ import annotations

WORD_START = "\u2581"  # SentencePiece's word-boundary mark


def word_spans(tokenizer, prompt: str) -> list[tuple[str, list[int]]]:
    """``[(word, [token positions])]`` in prompt order, positions indexing the encoder's sequence.

    Sub-word tokens are merged up to the token that ends with ``</w>`` (CLIP) or from a token that starts with ``▁``
    (SentencePiece); BOS/EOS/padding are skipped. A repeated word gets a suffix (``a``, ``a#2``) so every word names
    one map.
    """
    ids = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids
    special = set(tokenizer.all_special_ids)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    sentencepiece = any(t.startswith(WORD_START) for t in tokens)
    spans, current, pieces, seen = [], [], [], {}
    for pos, (tid, tok) in enumerate(zip(ids, tokens)):
        if tid in special:
            continue
        if sentencepiece:
            if tok.startswith(WORD_START) and current:
                spans.append(("".join(pieces), current))
                current, pieces = [], []
            current.append(pos)
            pieces.append(tok.removeprefix(WORD_START))
            continue
        current.append(pos)
        pieces.append(tok.removesuffix("</w>"))
        if tok.endswith("</w>"):
            spans.append(("".join(pieces), current))
            current, pieces = [], []
    if current:
        spans.append(("".join(pieces), current))
    named = []
    for word, positions in spans:
        seen[word] = seen.get(word, 0) + 1
        named.append((word if seen[word] == 1 else f"{word}#{seen[word]}", positions))
    return named

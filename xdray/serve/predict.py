"""`xdray predict`: tag whitespace-tokenised text, one sentence per line, with an exported (or any
saved) student. Every word gets a tag: long sentences are tagged in windows (xdray.data.windows)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

from xdray.core.errors import XdrayError
from xdray.data.windows import tag_words, word_view
from xdray.distill.student import CONFIG_FILE, load_student


def read_sentences(lines: Iterable[str]) -> Iterator[list[str]]:
    """Whitespace-tokenised sentences, one per non-empty line."""
    for line in lines:
        words = line.split()
        if words:
            yield words


def tag(model_dir: Path, sentences: list[list[str]], batch_size: int = 64) -> list[list[str]]:
    """One tag per word."""
    if not (model_dir / CONFIG_FILE).exists():
        raise XdrayError(f"--model {model_dir}: not a saved student (no {CONFIG_FILE}); "
                         "use a directory written by `xdray export`")
    student, vocab, labels, tokenizer = load_student(model_dir)
    max_length = json.loads((model_dir / CONFIG_FILE).read_text()).get("max_length", 128)
    view = word_view(tokenizer, sentences, max_length)
    best, _ = tag_words(lambda ids, mask: student(vocab.map(ids), mask.sum(1))[1], view, batch_size)
    return [[labels[int(i)] for i in row] for row in best]


def format_conll(sentences: list[list[str]], tags: list[list[str]]) -> str:
    return "".join("".join(f"{w}\t{t}\n" for w, t in zip(words, ts)) + "\n" for words, ts in zip(sentences, tags))


def format_json(sentences: list[list[str]], tags: list[list[str]]) -> str:
    return "".join(json.dumps({"tokens": w, "tags": t}, ensure_ascii=False) + "\n" for w, t in zip(sentences, tags))

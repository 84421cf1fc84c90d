"""`xdray predict`: tag whitespace-tokenised text, one sentence per line, with an exported (or any
saved) student."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

import torch

from xdray.core.batching import pad_batch
from xdray.core.errors import XdrayError
from xdray.core.metrics import IGNORE_INDEX
from xdray.data.encode import encode_batch
from xdray.distill.student import CONFIG_FILE, load_student


def read_sentences(lines: Iterable[str]) -> Iterator[list[str]]:
    """Whitespace-tokenised sentences, one per non-empty line."""
    for line in lines:
        words = line.split()
        if words:
            yield words


def tag(model_dir: Path, sentences: list[list[str]], batch_size: int = 64) -> list[list[str]]:
    """One tag per word. Words past the model's max length (in sub-tokens) are tagged O."""
    if not (model_dir / CONFIG_FILE).exists():
        raise XdrayError(f"--model {model_dir}: not a saved student (no {CONFIG_FILE}); "
                         "use a directory written by `xdray export`")
    student, vocab, labels, tokenizer = load_student(model_dir)
    max_length = json.loads((model_dir / CONFIG_FILE).read_text()).get("max_length", 128)
    out: list[list[str]] = []
    for start in range(0, len(sentences), batch_size):
        chunk = sentences[start:start + batch_size]
        ids, firsts, _ = encode_batch(tokenizer, chunk, [[0] * len(s) for s in chunk], max_length)
        padded = pad_batch(ids, tokenizer.pad_token_id)
        lengths = torch.tensor([len(x) for x in ids])
        with torch.inference_mode():
            best = student(vocab.map(padded), lengths)[1].argmax(-1).numpy()
        for words, first, row in zip(chunk, firsts, best):
            tags = [labels[int(p)] for p in row[:len(first)][first != IGNORE_INDEX]]
            out.append(tags + ["O"] * (len(words) - len(tags)))
    return out


def format_conll(sentences: list[list[str]], tags: list[list[str]]) -> str:
    return "".join("".join(f"{w}\t{t}\n" for w, t in zip(words, ts)) + "\n" for words, ts in zip(sentences, tags))


def format_json(sentences: list[list[str]], tags: list[list[str]]) -> str:
    return "".join(json.dumps({"tokens": w, "tags": t}, ensure_ascii=False) + "\n" for w, t in zip(sentences, tags))


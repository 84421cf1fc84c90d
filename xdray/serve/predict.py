"""`xdray predict`: tag text with an exported (or any saved) student.

Raw text by default: one JSON line per input line, {"text", "entities": [{"text", "label",
"start", "end", "score"}]} with character offsets into that line. With --pretokenized, one
whitespace-tokenised sentence per line and a tag per word (CoNLL or JSON). Every word gets a tag:
long sentences are tagged in windows (xdray.data.windows), exactly as the evaluation does. Input
streams through in chunks, so memory stays bounded on any file size.
"""

from __future__ import annotations

import json
import logging
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator, TextIO

import numpy as np

from xdray.core.errors import XdrayError
from xdray.core.runtime import LogThrottle, progress_enabled
from xdray.data.windows import LogitsOf, tag_words, word_view
from xdray.distill.student import CONFIG_FILE, load_student
from xdray.distill.onnx import ONNX_FILE, ONNX_INT8_FILE, OnnxStudent
from xdray.serve.text import entities, split_words

log = logging.getLogger(__name__)
CHUNK_LINES = 2000


RUNTIMES = ("auto", "onnx", "onnx-int8", "torch")


def _logits_of(model_dir: Path, runtime: str, student, vocab) -> LogitsOf:
    """auto: the fp32 ONNX graph where the directory has one (an export), else eager PyTorch."""
    files = {"onnx": ONNX_FILE, "onnx-int8": ONNX_INT8_FILE}
    if runtime == "auto":
        runtime = "onnx" if (model_dir / ONNX_FILE).exists() else "torch"
    if runtime == "torch":
        return lambda ids, mask: student(vocab.map(ids), mask.sum(1))[1]
    if not (model_dir / files[runtime]).exists():
        raise XdrayError(f"--model {model_dir}: no {files[runtime]} for --runtime {runtime}; "
                         "`xdray export` writes it")
    return OnnxStudent(model_dir / files[runtime])


class Tagger:
    """A saved student with its tokenizer, ready to tag words or raw text, in eager PyTorch or
    ONNX Runtime (see RUNTIMES)."""

    def __init__(self, model_dir: Path, batch_size: int = 64, runtime: str = "auto"):
        if not (model_dir / CONFIG_FILE).exists():
            raise XdrayError(f"--model {model_dir}: not a saved student (no {CONFIG_FILE}); "
                             "use a directory written by `xdray export`")
        student, vocab, self.labels, self.tokenizer = load_student(model_dir)
        self.logits_of = _logits_of(model_dir, runtime, student, vocab)
        self.max_length = json.loads((model_dir / CONFIG_FILE).read_text()).get("max_length", 128)
        self.batch_size = batch_size

    def tag(self, sentences: list[list[str]]) -> tuple[list[list[str]], list[np.ndarray]]:
        """(tags, their probabilities), one per word of every sentence."""
        view = word_view(self.tokenizer, sentences, self.max_length)
        best, scores = tag_words(self.logits_of, view, self.batch_size)
        return [[self.labels[int(i)] for i in row] for row in best], scores

    def entities(self, lines: list[str]) -> list[dict]:
        """{"text": line, "entities": [...]} for every line of raw text (empty lines included)."""
        words = [split_words(line) for line in lines]
        tags, scores = self.tag([[w.text for w in ws] for ws in words])
        return [{"text": line, "entities": entities(line, ws, t, s)}
                for line, ws, t, s in zip(lines, words, tags, scores)]


def tag(model_dir: Path, sentences: list[list[str]], batch_size: int = 64, runtime: str = "auto") -> list[list[str]]:
    """One tag per word of pre-split sentences."""
    return Tagger(model_dir, batch_size, runtime).tag(sentences)[0]


def read_sentences(lines: Iterable[str]) -> Iterator[list[str]]:
    """Whitespace-tokenised sentences, one per non-empty line."""
    for line in lines:
        words = line.split()
        if words:
            yield words


def format_conll(sentences: list[list[str]], tags: list[list[str]]) -> str:
    return "".join("".join(f"{w}\t{t}\n" for w, t in zip(words, ts)) + "\n" for words, ts in zip(sentences, tags))


def format_json(sentences: list[list[str]], tags: list[list[str]]) -> str:
    return "".join(json.dumps({"tokens": w, "tags": t}, ensure_ascii=False) + "\n" for w, t in zip(sentences, tags))


def _chunks(lines: Iterable[str]) -> Iterator[list[str]]:
    it = iter(lines)
    while chunk := list(islice(it, CHUNK_LINES)):
        yield chunk


def predict_stream(tagger: Tagger, lines: Iterable[str], out: TextIO, pretokenized: bool = False,
                   output_format: str = "conll", progress: str = "auto") -> int:
    """Tag `lines` chunk by chunk into `out`; returns the number of lines read. A bar on a
    terminal, a log line a minute otherwise."""
    from tqdm import tqdm

    bar = tqdm(unit=" lines", desc="tagging", disable=not progress_enabled(progress))
    done, throttle = 0, LogThrottle()
    for chunk in _chunks(lines):
        if pretokenized:
            sentences = list(read_sentences(chunk))
            out.write((format_json if output_format == "json" else format_conll)(sentences, tagger.tag(sentences)[0]))
        else:
            texts = [line.rstrip("\r\n") for line in chunk]
            out.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in tagger.entities(texts)))
        done += len(chunk)
        bar.update(len(chunk))
        if bar.disable and throttle.due():
            log.info("predict: %d lines tagged", done)
    bar.close()
    return done

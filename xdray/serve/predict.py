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
from typing import Iterable, Iterator, TextIO

from xdray.core.runtime import LogThrottle, progress_enabled
from xdray.serve.tagger import Tagger

log = logging.getLogger(__name__)
CHUNK_LINES = 2000


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
            out.write((format_json if output_format == "json" else format_conll)(sentences, tagger.tag_sentences(sentences)[0]))
        else:
            texts = [line.rstrip("\r\n") for line in chunk]
            out.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in tagger.entities(texts)))
        done += len(chunk)
        bar.update(len(chunk))
        if bar.disable and throttle.due():
            log.info("predict: %d lines tagged", done)
    bar.close()
    return done

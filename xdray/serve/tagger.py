"""The student from Python: `xdray.load(path)` gives a `Tagger`.

    import xdray
    tagger = xdray.load("runs/quickstart")           # a run directory: its recommended student
    tagger("Angela Merkel visited Paris.")            # -> [{"text", "label", "start", "end", "score"}, ...]
    for entities in tagger.pipe(open("news.txt"), batch_size=64): ...
    tagger.tag_words(["Angela", "Merkel", "visited", "Paris"])   # -> ["B-PER", "I-PER", "O", "B-LOC"]
    tagger.card                                       # the export's model card: metadata and text

`xdray predict`, the Ray Data corpus tagger and the Ray Serve deployment all tag through this
class, so the three give the same entities for the same line.
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from xdray.core.errors import XdrayError
from xdray.core.records import read_recommendation
from xdray.data.windows import LogitsOf, tag_words, word_view
from xdray.distill.onnx import ONNX_FILE, ONNX_INT8_FILE, OnnxStudent
from xdray.distill.saved import CONFIG_FILE, WEIGHTS_FILE, load_student
from xdray.serve.card import CARD_FILE, ModelCard, read_card
from xdray.serve.text import entities, split_words

RUNTIMES = ("auto", "onnx", "onnx-int8", "torch")


def _logits_of(model_dir: Path, runtime: str, student, vocab, threads: int | None = None) -> LogitsOf:
    """auto: the fp32 ONNX graph where the directory has one (an export), else eager PyTorch."""
    files = {"onnx": ONNX_FILE, "onnx-int8": ONNX_INT8_FILE}
    if runtime not in RUNTIMES:
        raise XdrayError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    if runtime == "auto":
        runtime = "onnx" if (model_dir / ONNX_FILE).exists() else "torch"
    if runtime == "torch":
        return lambda ids, mask: student(vocab.map(ids), mask.sum(1))[1]
    if not (model_dir / files[runtime]).exists():
        raise XdrayError(f"{model_dir}: no {files[runtime]} for runtime {runtime}; `xdray export` writes it")
    return OnnxStudent(model_dir / files[runtime], threads)


def model_directory(path: str | Path) -> Path:
    """The student folder `path` names: an export (or any saved student), or a run directory,
    whose recommended student is loaded (its export where `xdray export` made one)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise XdrayError(f"{path}: does not exist (expected a folder written by `xdray export`, a run directory or "
                         "an experiment file)")
    if (path / CONFIG_FILE).exists() and (path / WEIGHTS_FILE).exists():
        return path
    recommended = path / "report" / "recommended.json"
    if (path / "config.yaml").exists() and recommended.exists():
        return _recommended_student(path, recommended)
    students = sorted(p.parent for p in path.glob(f"*/{CONFIG_FILE}") if (p.parent / WEIGHTS_FILE).exists())
    hint = (f"; it holds {len(students)} student folder(s): name one, e.g. --model {students[0]}" if students else
            "; a run directory needs report/recommended.json (run `xdray report`)" if (path / "config.yaml").exists()
            else "")
    raise XdrayError(f"{path}: not a saved student (no {CONFIG_FILE} with student weights){hint}")


def _recommended_student(run_dir: Path, recommended: Path) -> Path:
    trial = read_recommendation(recommended.parent).trial_id
    if not trial or Path(trial).name != trial or trial.startswith("."):
        raise XdrayError(f"{recommended}: no student is recommended (none met report.min_retention); load one "
                         f"from {run_dir / 'trials'} or {run_dir / 'export'} by its folder")
    for candidate in (run_dir / "export" / trial, run_dir / "trials" / trial / "student"):
        if (candidate / CONFIG_FILE).exists():
            return candidate
    raise XdrayError(f"{run_dir}: the recommended student {trial} is neither exported nor in trials/")


class Tagger:
    """A saved student with its tokenizer, tagging raw text or pre-split words, in eager
    PyTorch or ONNX Runtime (`runtime`: auto = the fp32 ONNX graph where the folder has one).
    `threads` caps ONNX Runtime's threads (None: its default, every core); eager PyTorch follows
    torch.set_num_threads."""

    def __init__(self, path: str | Path, batch_size: int = 64, runtime: str = "auto", threads: int | None = None):
        self.path = model_directory(path)
        student, vocab, labels, self.tokenizer = load_student(self.path)
        self.labels: list[str] = list(labels)
        self.logits_of = _logits_of(self.path, runtime, student, vocab, threads)
        self.max_length = json.loads((self.path / CONFIG_FILE).read_text()).get("max_length", 128)
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return f"Tagger({str(self.path)!r}, labels={self.labels})"

    @property
    def card(self) -> ModelCard | None:
        """The model card `xdray export` wrote (README.md: metadata and text), None without one."""
        return read_card(self.path / CARD_FILE) if (self.path / CARD_FILE).exists() else None

    def tag_sentences(self, sentences: list[list[str]]) -> tuple[list[list[str]], list[np.ndarray]]:
        """(tags, their probabilities), one per word of every sentence. Long sentences are tagged
        in windows (xdray.data.windows), as the evaluation does: every word gets a tag."""
        view = word_view(self.tokenizer, sentences, self.max_length)
        best, scores = tag_words(self.logits_of, view, self.batch_size)
        return [[self.labels[int(i)] for i in row] for row in best], scores

    def tag_words(self, words: list[str]) -> list[str]:
        """One IOB2 tag per word of one pre-split sentence."""
        return self.tag_sentences([list(words)])[0][0]

    def entities(self, lines: list[str]) -> list[dict]:
        """{"text": line, "entities": [...]} for every line of raw text (empty lines included):
        what `xdray predict` prints and the server answers."""
        words = [split_words(line) for line in lines]
        tags, scores = self.tag_sentences([[w.text for w in ws] for ws in words])
        return [{"text": line, "entities": entities(line, ws, t, s)}
                for line, ws, t, s in zip(lines, words, tags, scores)]

    def __call__(self, text: str) -> list[dict]:
        """The entities of one text: [{"text", "label", "start", "end", "score"}], character
        offsets into `text`."""
        return self.entities([text])[0]["entities"]

    def pipe(self, texts: Iterable[str], batch_size: int | None = None) -> Iterator[list[dict]]:
        """The entities of each text, in order, streaming: `batch_size` texts (default the
        tagger's) are read and tagged at a time, so any iterable (a file, a generator) works."""
        size = batch_size or self.batch_size
        it = (t.rstrip("\r\n") for t in texts)
        while chunk := list(islice(it, size)):
            for result in self.entities(chunk):
                yield result["entities"]

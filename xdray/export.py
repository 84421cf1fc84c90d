"""Export a trained student for serving, and tag text with it.

`xdray export RUN_DIR [--trial ID]` copies the recommended (or chosen) student to
RUN/export/<trial>/: safetensors weights, config (spec, labels, max length), the vocabulary map,
the teacher's tokenizer files, and `student.torchscript.pt`, a TorchScript module that maps
(teacher token ids, lengths) to label logits and runs without xdray. `xdray predict` tags
whitespace-tokenised text, one sentence per line, with an exported (or any saved) student.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable, Iterator

import torch

from xdray import storage
from xdray.data.encode import IGNORE_INDEX, encode_batch
from xdray.errors import XdrayError
from xdray.runtime import atomic_write_json, publish_directory
from xdray.student import CONFIG_FILE, BiLSTMStudent, load_student
from xdray.teacher import pad_batch

TORCHSCRIPT_FILE = "student.torchscript.pt"


class ServingModule(torch.nn.Module):
    """Teacher WordPiece ids (B, T) and lengths (B,) -> label logits (B, T, C): the vocabulary map
    and the student in one scriptable module."""

    def __init__(self, student: BiLSTMStudent, lookup: torch.Tensor):
        super().__init__()
        self.student = student
        self.register_buffer("lookup", lookup)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.student(self.lookup[input_ids], lengths)[1]


def choose_trial(run_dir: Path, trial: str | None) -> str:
    if trial:
        if Path(trial).name != trial or trial.startswith("."):
            raise XdrayError(f"--trial {trial}: expected a trial id such as E100-H200-1a2b3c4d, not a path")
        if not (run_dir / "trials" / trial / "student").is_dir():
            known = sorted(p.parent.name for p in (run_dir / "trials").glob("*/student"))
            raise XdrayError(f"--trial {trial}: no trained student in {run_dir / 'trials'}; "
                             f"trained: {', '.join(known) or 'none'}")
        return trial
    recommended = run_dir / "report" / "recommended.json"
    if not recommended.exists():
        raise XdrayError(f"{recommended}: not found; run `xdray report {run_dir}` first, or pass --trial")
    chosen = json.loads(recommended.read_text())["trial_id"]
    if chosen is None:
        raise XdrayError(f"{run_dir / 'report' / 'frontier.md'}: no student met report.min_retention, so none "
                         "is recommended; pick one with --trial ID (see frontier.csv)")
    return chosen


def export_student(run_dir: Path, trial: str | None = None) -> Path:
    """Write RUN/export/<trial>/ (built aside, then published whole); returns its path."""
    key = choose_trial(run_dir, trial)
    source = run_dir / "trials" / key / "student"
    final = run_dir / "export" / key
    staging = final.with_name(final.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    student, vocab, labels, _ = load_student(source)
    scripted = torch.jit.script(ServingModule(student, vocab.map(torch.arange(vocab.teacher_vocab_size))))
    scripted.save(str(staging / TORCHSCRIPT_FILE))
    metrics = run_dir / "trials" / key / "metrics.json"
    if metrics.exists():
        summary = json.loads(metrics.read_text())
        atomic_write_json(staging / "metrics.json", {k: summary[k] for k in ("dev", "test", "params") if k in summary})
    publish_directory(staging, final)
    storage.push(run_dir, f"export/{key}")
    return final


# ----------------------------------------------------------------------------- predict


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


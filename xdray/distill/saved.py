"""A student saved as a self-contained directory: config, safetensors weights, vocabulary map,
labels and the teacher's tokenizer files."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from xdray.distill.student import BiLSTMStudent, StudentSpec
from xdray.distill.vocab import Vocabulary

CONFIG_FILE, WEIGHTS_FILE, VOCAB_FILE = "config.json", "model.safetensors", "vocab.json"


def save_student(directory: Path, student: BiLSTMStudent, vocab: Vocabulary, labels: Sequence[str], tokenizer,
                 extra: dict | None = None) -> None:
    """A directory that loads without the run directory: config, safetensors weights, vocabulary
    map, labels, and the teacher's tokenizer files."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    config = {"spec": asdict(student.spec), "labels": list(labels), **(extra or {})}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    (directory / VOCAB_FILE).write_text(json.dumps(vocab.to_json()))
    save_file({k: v.contiguous() for k, v in student.state_dict().items()}, str(directory / WEIGHTS_FILE))
    tokenizer.save_pretrained(directory)


def load_student(directory: Path) -> tuple[BiLSTMStudent, Vocabulary, list[str], object]:
    """(model in eval mode, vocabulary, labels, tokenizer) from a saved student directory."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    config = json.loads((directory / CONFIG_FILE).read_text())
    vocab_json = json.loads((directory / VOCAB_FILE).read_text())
    student = BiLSTMStudent(StudentSpec(**config["spec"]))
    student.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    vocab = Vocabulary(vocab_json["teacher_ids"], vocab_json["teacher_vocab_size"])
    # fix_mistral_regex=False: tokenise as the teacher did (its default), without transformers 5
    # taking our config.json, which has no model_type, for an old Mistral one and warning so.
    tokenizer = AutoTokenizer.from_pretrained(directory, fix_mistral_regex=False)
    return student.eval(), vocab, config["labels"], tokenizer

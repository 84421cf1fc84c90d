"""The deployable forms of a trained student (xdray.core.records.Form), built once and scored in
one place.

At the end of a trial, `build_forms` writes the ONNX graphs beside the saved weights in
trials/<key>/student/, and `score_forms` scores every form but the eager one (which the trial
scores as it trains) on those very files. The latency stage times the same files through
`load_forms`, and `xdray export` ships them with these scores: a form's F1, size and latency in
the report and on the model card are all of the artifact that ships.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from xdray.core.errors import XdrayError
from xdray.core.records import Form
from xdray.data.windows import WordView, evaluate_words
from xdray.distill.onnx import ONNX_FILE, ONNX_INT8_FILE, OnnxStudent, export_onnx
from xdray.distill.quantize import quantize_int8, state_bytes
from xdray.distill.saved import load_student
from xdray.distill.student import BiLSTMStudent
from xdray.distill.vocab import Vocabulary

LogitsOf = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (ids, mask) -> logits
FORM_FILES = {Form.ONNX: ONNX_FILE, Form.ONNX_INT8: ONNX_INT8_FILE}
EVAL_BATCH = 256  # sentences a batch when scoring: the eager student's evaluation batch


def build_forms(student: BiLSTMStudent, vocab: Vocabulary, directory: Path) -> None:
    """The ONNX graphs (fp32 and dynamic int8) of a saved student, into its folder."""
    export_onnx(student, vocab, directory)


def eager_logits(student: BiLSTMStudent, vocab: Vocabulary) -> LogitsOf:
    """logits_of(ids, mask) of a torch student: teacher ids mapped into its vocabulary on the CPU."""
    return lambda ids, mask: student(vocab.map(ids.cpu()).to(ids.device), mask.sum(1))[1]


def load_forms(directory: Path, forms: Sequence[Form] = tuple(Form), threads: int | None = None,
               device: str = "cpu") -> tuple[dict[Form, LogitsOf], dict[Form, int], int]:
    """({form: logits_of(ids, mask)}, {form: bytes shipped}, parameters) of the saved student in
    `directory`. The eager form runs on `device`; the int8 and ONNX forms on the CPU."""
    from xdray.core.metrics import count_parameters

    missing = [FORM_FILES[f] for f in forms if f in FORM_FILES and not (directory / FORM_FILES[f]).is_file()]
    if missing:
        raise XdrayError(f"{directory}: no {', '.join(missing)}; a trial writes them when it finishes: run "
                         "`xdray tune` on the experiment again to complete its trials (trained sub-stages are kept)")
    student, vocab, _, _ = load_student(directory)
    models: dict[Form, LogitsOf] = {}
    sizes: dict[Form, int] = {}
    for form in forms:
        if form is Form.EAGER:
            models[form], sizes[form] = eager_logits(student.to(device), vocab), state_bytes(student)
        elif form is Form.INT8:
            quantized = quantize_int8(student)
            models[form], sizes[form] = eager_logits(quantized, vocab), state_bytes(quantized)
        else:
            path = directory / FORM_FILES[form]
            models[form], sizes[form] = OnnxStudent(path, threads), path.stat().st_size
    return models, sizes, count_parameters(student)


def score_forms(directory: Path, splits: Mapping[str, tuple[WordView, Sequence[str]]], labels: Sequence[str],
                threads: int | None = None) -> dict[str, dict]:
    """{form value: {split: F1 report, "size_bytes"}} of the int8 and ONNX forms of the saved
    student in `directory`, on each split's (words, languages)."""
    models, sizes, _ = load_forms(directory, (Form.INT8, Form.ONNX, Form.ONNX_INT8), threads)
    scores = {}
    with torch.inference_mode():
        for form, model in models.items():
            scores[form.value] = {split: evaluate_words(model, words, langs, labels, EVAL_BATCH)
                                  for split, (words, langs) in splits.items()}
            scores[form.value]["size_bytes"] = sizes[form]
    return scores

"""ONNX artifacts of a student: what users deploy. `student.onnx` (fp32) and `student.int8.onnx`
(ONNX Runtime dynamic int8) map teacher token ids (B, T) and lengths (B,) to label logits
(B, T, C), the vocabulary map inside the graph, batch and length dynamic.

Exported with torch.onnx's TorchScript-based exporter (`dynamo=False`): the torch.export-based one
fails on the packed BiLSTM forward (torch 2.13: "zeros(): argument 'size' ... got FakeTensor"), and
packing is what keeps the backward LSTM off the padding. The legacy exporter is deprecated upstream
but its graphs match eager within 1e-6 at every shape tested (tests/test_onnx.py).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from xdray.distill.student import BiLSTMStudent
from xdray.distill.vocab import Vocabulary

ONNX_FILE, ONNX_INT8_FILE = "student.onnx", "student.int8.onnx"
# suffixes of the ONNX variants' names in latency tables and the report (beside quantize.INT8)
ONNX, ONNX_INT8 = "+onnx", "+onnx-int8"
ONNX_VARIANTS = {ONNX: ONNX_FILE, ONNX_INT8: ONNX_INT8_FILE}
OPSET = 17


class ServingModule(torch.nn.Module):
    """Teacher token ids (B, T) and lengths (B,) -> label logits (B, T, C): the vocabulary map and
    the student in one module."""

    def __init__(self, student: BiLSTMStudent, vocab: Vocabulary):
        super().__init__()
        self.student = student
        self.register_buffer("lookup", vocab.map(torch.arange(vocab.teacher_vocab_size)))

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.student(self.lookup[input_ids], lengths)[1]


def export_onnx(student: BiLSTMStudent, vocab: Vocabulary, directory: Path) -> tuple[Path, Path]:
    """Write the fp32 graph and its dynamic-int8 quantisation into `directory`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    module = ServingModule(student.cpu().eval(), vocab).eval()
    ids = torch.full((2, 8), int(vocab.teacher_ids[-1]), dtype=torch.long)
    lengths = torch.tensor([8, 5])
    directory.mkdir(parents=True, exist_ok=True)
    fp32, int8 = directory / ONNX_FILE, directory / ONNX_INT8_FILE
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*legacy TorchScript-based ONNX")
        warnings.filterwarnings("ignore", category=UserWarning, message=".*LSTM can cause an error")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # pad_packed's length check
        torch.onnx.export(module, (ids, lengths), str(fp32), input_names=["input_ids", "lengths"],
                          output_names=["logits"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "length"}, "lengths": {0: "batch"},
                                        "logits": {0: "batch", 1: "length"}})
    with tempfile.TemporaryDirectory(prefix="xdray-onnx-") as tmp:
        # ONNX Runtime's pre-processing (shape inference, graph optimisation) before quantising:
        # measured on the e5 study's E50-H100, int8 at batch 32 took 6.6 ms instead of 7.4 ms with
        # the same argmax on 99.66% of tokens; it also answers quantize_dynamic's warning.
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared))
        quantize_dynamic(str(prepared), str(int8), weight_type=QuantType.QInt8)
    return fp32, int8


class OnnxStudent:
    """An ONNX student in ONNX Runtime on the CPU: logits_of(ids, mask) like the eager student."""

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(self, input_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input_ids": input_ids.astype(np.int64, copy=False),
                                       "lengths": lengths.astype(np.int64, copy=False)})[0]

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(ids.cpu().numpy(), mask.sum(1).cpu().numpy()))

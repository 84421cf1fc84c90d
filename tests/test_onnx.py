"""ONNX artifacts: the fp32 graph matches eager PyTorch (logits close, argmax identical) at batch
sizes and lengths other than the export's, with the vocabulary map inside the graph; the int8
graph is smaller and agrees on most tokens."""

import numpy as np
import pytest
import torch

from xdray.distill.student import BiLSTMStudent, StudentSpec
from xdray.distill.vocab import Vocabulary
from xdray.distill.onnx import ONNX_FILE, ONNX_INT8_FILE, OnnxStudent, ServingModule, export_onnx

TEACHER_VOCAB = 3000


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    vocab = Vocabulary([0, 1, 2, 3] + list(range(100, 1100)), TEACHER_VOCAB)  # pieces >= 1100 are unk
    student = BiLSTMStudent(StudentSpec(len(vocab), 24, 16, 32, 7)).eval()
    directory = tmp_path_factory.mktemp("onnx")
    export_onnx(student, vocab, directory)
    return ServingModule(student, vocab).eval(), directory


def batch(rng, size, length):
    ids = rng.integers(0, TEACHER_VOCAB, (size, length))
    lengths = rng.integers(1, length + 1, size)
    lengths[0] = length
    return ids, lengths


@pytest.mark.parametrize("size,length", [(1, 1), (1, 40), (3, 7), (32, 25), (64, 3)])
def test_fp32_graph_matches_eager(exported, size, length):
    module, directory = exported
    ids, lengths = batch(np.random.default_rng(size * 100 + length), size, length)
    with torch.inference_mode():
        expected = module(torch.from_numpy(ids), torch.from_numpy(lengths)).numpy()
    got = OnnxStudent(directory / ONNX_FILE).run(ids, lengths)
    valid = np.arange(length)[None] < lengths[:, None]
    assert got.shape == expected.shape
    assert np.abs(got - expected)[valid].max() < 1e-5
    assert (got.argmax(-1) == expected.argmax(-1))[valid].all()


def test_int8_graph_is_smaller_and_close(exported):
    module, directory = exported
    assert (directory / ONNX_INT8_FILE).stat().st_size < 0.6 * (directory / ONNX_FILE).stat().st_size
    ids, lengths = batch(np.random.default_rng(7), 32, 30)
    fp32 = OnnxStudent(directory / ONNX_FILE).run(ids, lengths)
    int8 = OnnxStudent(directory / ONNX_INT8_FILE, threads=1).run(ids, lengths)
    valid = np.arange(30)[None] < lengths[:, None]
    assert np.abs(int8 - fp32)[valid].max() < 0.5
    assert (int8.argmax(-1) == fp32.argmax(-1))[valid].mean() > 0.9


def test_logits_of_interface_matches_the_eager_student(exported):
    module, directory = exported
    ids = torch.tensor([[5, 120, 2000, 0], [7, 130, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    with torch.inference_mode():
        expected = module(ids, mask.sum(1))
    got = OnnxStudent(directory / ONNX_FILE)(ids, mask)
    assert torch.allclose(got[mask], expected[mask], atol=1e-5)

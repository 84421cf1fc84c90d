"""Dynamic int8 quantisation of a student, and the size of what a deployment ships."""

from __future__ import annotations

import copy
import io
import warnings

import torch

INT8 = "+int8"  # suffix of a quantised variant's name in latency tables and the report


def quantize_int8(module: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantisation of the LSTM and Linear layers (CPU inference), on a copy."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(module).cpu().eval(), {torch.nn.LSTM, torch.nn.Linear},
                                dtype=torch.qint8)


def state_bytes(module: torch.nn.Module) -> int:
    """Bytes of the serialised weights (what a deployment ships), int8 packing included."""
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.getbuffer().nbytes

"""What the benchmarks share: their sentences (real PAN-X text where present), a teacher, the
xdray transfer build, and the JSON-last output."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from xdray.config import config_from_dict
from xdray.data import synthetic
from xdray.data.iob import read_iob_file
from xdray.data.schema import WIKIANN_LABELS

# PAN-X files: --data, else $XDRAY_PANX, else ../shared/data/panx from where the command runs.
DEFAULT_PANX = "../shared/data/panx"
BENCH_LANGUAGES = ("en", "de", "es", "ru", "ar", "hi", "el", "zh")


def panx_dir(option: str | None) -> Path:
    return Path(option or os.environ.get("XDRAY_PANX") or DEFAULT_PANX).expanduser()


def bench_sentences(n: int, panx: Path) -> tuple[list[list[str]], list[str], str]:
    """n sentences spread over languages: PAN-X train text where present, else synthetic."""
    langs = [l for l in BENCH_LANGUAGES if (panx / f"train-{l}.tsv").exists()]
    per = -(-n // max(len(langs), 1))
    tokens, lang_of = [], []
    if langs:
        for lang in langs:
            parsed = read_iob_file(panx / f"train-{lang}.tsv", WIKIANN_LABELS, lang=lang)
            tokens += parsed.tokens[:per]
            lang_of += [lang] * len(parsed.tokens[:per])
        source = f"PAN-X train ({', '.join(langs)})"
    else:
        for lang in synthetic.LANGUAGES:
            for words, _ in synthetic.generate(lang, "train", -(-n // len(synthetic.LANGUAGES)), seed=7):
                tokens.append(words)
                lang_of.append(lang)
        source = "synthetic"
    return tokens[:n], lang_of[:n], source


def bench_teacher(directory: Path, sentences: list[list[str]], hidden: int, layers: int) -> Path:
    """A BERT token classifier (random weights time like trained ones) with a vocabulary learnt
    on the bench sentences."""
    import torch
    from transformers import BertConfig, BertForTokenClassification

    from xdray.teacher.load import label_kwargs
    from xdray.teacher.wordpiece import train_wordpiece

    tokenizer = train_wordpiece(sentences, 16000)
    torch.manual_seed(0)
    model = BertForTokenClassification(BertConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
        intermediate_size=4 * hidden, max_position_embeddings=128, **label_kwargs(WIKIANN_LABELS)))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def random_student(sentences: list[list[str]]):
    """(student, vocabulary, labels, tokenizer): a random-weight E100-H200 student over a WordPiece
    vocabulary learnt on `sentences` (random weights time like trained ones)."""
    import torch

    from xdray.distill.student import BiLSTMStudent, StudentSpec
    from xdray.distill.vocab import Vocabulary
    from xdray.teacher.wordpiece import train_wordpiece

    tokenizer = train_wordpiece(sentences, 16000)
    vocab = Vocabulary(list(range(len(tokenizer))), len(tokenizer))
    torch.manual_seed(0)
    student = BiLSTMStudent(StudentSpec(len(vocab), 100, 200, 384, len(WIKIANN_LABELS))).eval()
    return student, vocab, list(WIKIANN_LABELS), tokenizer


def xdray_transfer(teacher_dir: Path, sentences: list[list[str]], langs: list[str], run_dir: Path, layer: int,
                   max_length: int, cores: int) -> tuple[float, dict[str, Any], Path]:
    """xdray's pipeline on a local cluster of `cores` CPUs: (seconds, manifest, path)."""
    from xdray.core.runtime import init_ray
    from xdray.pipeline import transfer_settings
    from xdray.transfer.stage import build_from_rows

    cfg = config_from_dict({"name": "bench", "data": {"max_length": max_length},
                            "transfer": {"layer": layer}, "runtime": {"num_cpus": cores, "progress": "off"}})
    init_ray(cfg.runtime)  # cluster start-up is not part of the build
    rows = pa.table({"uid": pa.array(np.arange(len(sentences), dtype=np.int64)), "lang": langs,
                     "tokens": pa.array(sentences, type=pa.list_(pa.string()))})
    started = time.perf_counter()
    out = build_from_rows(transfer_settings(cfg), run_dir, teacher_dir, "bench", rows, f"bench-{len(sentences)}")
    return time.perf_counter() - started, out.manifest, out.path


def show(result: dict, json_only: bool) -> int:
    """A readable table for people (unless --json), then the JSON object as the last line."""
    if not json_only:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    print(json.dumps(result))
    return 0

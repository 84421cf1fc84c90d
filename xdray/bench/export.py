"""`xdray bench export`: the four ways to run a student, side by side on the same batches in one
process: eager PyTorch fp32 (xdray's packed forward), eager dynamic int8, ONNX Runtime fp32 and
ONNX Runtime dynamic int8. With --model (an exported or saved student), dev F1 of each on PAN-X
dev sentences of --langs, through the same windowed path as `xdray predict`; without it, a
random-weight E100-H200 student over a vocabulary learnt on the bench sentences (random weights
time like trained ones; F1 needs a trained student).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from xdray.bench.common import bench_sentences, panx_dir, random_student, show
from xdray.data.schema import WIKIANN_LABELS

VARIANTS = ("eager_fp32", "eager_int8", "onnx_fp32", "onnx_int8")


def _student(model: str | None, sentences: list[list[str]]):
    """(student, vocabulary, labels, tokenizer, max_length, trained?)."""
    import json

    from xdray.distill.saved import CONFIG_FILE, load_student

    if model:
        student, vocab, labels, tokenizer = load_student(Path(model))
        return student, vocab, labels, tokenizer, json.loads((Path(model) / CONFIG_FILE).read_text()).get(
            "max_length", 128), True
    return (*random_student(sentences), 64, False)


def _dev(panx: Path, langs: list[str], per_language: int) -> tuple[list, list, list]:
    """(words, IOB2 tags, language) of the first dev sentences of each language."""
    from xdray.data.iob import read_iob_file

    tokens, tags, lang_of = [], [], []
    for lang in langs:
        parsed = read_iob_file(panx / f"dev-{lang}.tsv", WIKIANN_LABELS, lang=lang)
        tokens += parsed.tokens[:per_language]
        tags += parsed.tags[:per_language]
        lang_of += [lang] * len(parsed.tokens[:per_language])
    return tokens, tags, lang_of


def bench_export(model: str | None, panx: Path, langs: list[str], per_language: int, batch_sizes: list[int],
                 threads: int, runs: int) -> dict:
    import numpy as np

    from xdray.core.batching import pad_batch
    from xdray.data.windows import evaluate_words, word_view
    from xdray.distill.onnx import ONNX_FILE, ONNX_INT8_FILE, OnnxStudent, export_onnx
    from xdray.distill.quantize import quantize_int8
    from xdray.frontier.latency import compare

    with tempfile.TemporaryDirectory(prefix="xdray-bench-") as tmp:
        tmp = Path(tmp)
        scored = model is not None and all((panx / f"dev-{lang}.tsv").exists() for lang in langs)
        if scored:
            sentences, tags, lang_of = _dev(panx, langs, per_language)
            source = f"PAN-X dev ({', '.join(langs)})"
        else:
            sentences, lang_of, source = bench_sentences(max(batch_sizes) * 8, panx)
        student, vocab, labels, tokenizer, max_length, trained = _student(model, sentences)
        export_onnx(student, vocab, tmp / "onnx")
        models = {"eager_fp32": lambda ids, mask: student(vocab.map(ids), mask.sum(1))[1],
                  "eager_int8": lambda ids, mask, q=quantize_int8(student): q(vocab.map(ids), mask.sum(1))[1],
                  "onnx_fp32": OnnxStudent(tmp / "onnx" / ONNX_FILE, threads),
                  "onnx_int8": OnnxStudent(tmp / "onnx" / ONNX_INT8_FILE, threads)}
        enc = tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=max_length)
        ids = [np.asarray(x) for x in enc["input_ids"]]
        result = {"n": len(sentences), "source": source, "student": "trained" if trained else "random weights",
                  "threads": threads, "max_length": max_length,
                  "onnx_fp32_mb": round((tmp / "onnx" / ONNX_FILE).stat().st_size / 2**20, 2),
                  "onnx_int8_mb": round((tmp / "onnx" / ONNX_INT8_FILE).stat().st_size / 2**20, 2)}
        for b in batch_sizes:  # the first b sentences, as a user's batch would come
            batch = pad_batch(ids[:b], tokenizer.pad_token_id)
            timings = compare({name: (lambda x, m=m: m(x, x != tokenizer.pad_token_id)) for name, m in models.items()},
                              [batch], runs=runs, threads=threads)
            for name in VARIANTS:
                result[f"{name}_ms_b{b}"] = round(timings[name].median_ms, 3)
            for name in VARIANTS[1:]:
                result[f"{name}_speedup_b{b}"] = round(timings["eager_fp32"].median_ms / timings[name].median_ms, 3)
        if scored:
            label_ids = [[labels.index(t) for t in s] for s in tags]
            view = word_view(tokenizer, sentences, max_length, label_ids)
            for name in VARIANTS:
                result[f"{name}_f1"] = round(evaluate_words(models[name], view, lang_of, labels)["f1_mean"], 4)
            for name in VARIANTS[1:]:
                result[f"{name}_f1_delta"] = round(result[f"{name}_f1"] - result["eager_fp32_f1"], 4)
    return result


def main(args) -> int:
    langs = [lang.strip() for lang in args.langs.split(",") if lang.strip()]
    return show(bench_export(args.model, panx_dir(args.data), langs, args.dev_per_language, args.batch_sizes,
                             args.threads, args.runs), args.json)

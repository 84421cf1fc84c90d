"""The benchmarks run and print their JSON contract (their figures are measured, not asserted)."""

import json

import pytest

from xdray.cli import main


@pytest.mark.parametrize("args, keys, rates", [
    (["transfer", "--n", "120", "--hidden", "32", "--layers", "1", "--layer", "-1"],
     {"naive_seq_per_s", "xdray_seq_per_s", "speedup", "naive_bytes_per_token", "xdray_bytes_per_token", "n"},
     ("naive_seq_per_s", "xdray_seq_per_s")),
    (["train", "--n", "120", "--embedding-dim", "8", "--hidden-size", "8"],
     {"naive_tokens_per_s", "xdray_tokens_per_s", "speedup"}, ("naive_tokens_per_s", "xdray_tokens_per_s")),
])
def test_bench_prints_its_json_last(args, keys, rates, ray_local, capsys):
    assert main(["bench", *args, "--json"]) == 0  # in this process: its Ray workers are warm
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert keys <= set(data) and data["n"] == 120
    naive, ours = (data[key] for key in rates)
    assert naive > 0 and ours > 0
    # The figures agree with each other: the speedup is the ratio of the two rates (to the rounding of
    # the rates and of the speedup's three decimals).
    assert data["speedup"] == pytest.approx(ours / naive, rel=0.01, abs=1e-3)


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_bench_export_times_four_runtimes_and_scores_a_saved_student(panx_dir, tmp_path, capsys):
    """Without --model: timings only; with a saved student: dev F1 of each runtime as well. (In
    this process, as the other benches: `xdray bench api` runs `xdray predict` as a user does.)"""
    import torch

    from xdray.data.schema import WIKIANN_LABELS
    from xdray.distill.saved import save_student
    from xdray.distill.student import BiLSTMStudent, StudentSpec
    from xdray.distill.vocab import Vocabulary
    from xdray.teacher.wordpiece import train_wordpiece

    def bench(*args):
        assert main(["bench", "export", "--batch-sizes", "1", "4", "--runs", "20", "--data", str(panx_dir),
                     *map(str, args), "--json"]) == 0
        return last_json(capsys)

    timed = bench()
    assert {"onnx_fp32_speedup_b4", "onnx_int8_speedup_b4", "eager_int8_speedup_b4", "eager_fp32_ms_b1"} <= set(timed)
    assert timed["onnx_int8_mb"] < timed["onnx_fp32_mb"] and "onnx_fp32_f1" not in timed

    tokenizer = train_wordpiece([["Berlin", "ist", "eine", "Stadt"]] * 5, vocab_size=120)
    vocab = Vocabulary(list(range(len(tokenizer))), len(tokenizer))
    torch.manual_seed(0)
    student = BiLSTMStudent(StudentSpec(len(vocab), 8, 8, 16, len(WIKIANN_LABELS)))
    save_student(tmp_path / "student", student, vocab, WIKIANN_LABELS, tokenizer, extra={"max_length": 16})
    scored = bench("--model", tmp_path / "student", "--langs", "en,de", "--dev-per-language", "30")
    text = tmp_path / "lines.txt"
    text.write_text("Berlin ist eine Stadt\n\nEine Stadt , Berlin .\n", encoding="utf-8")
    threads = torch.get_num_threads()
    assert main(["bench", "api", "--model", str(tmp_path / "student"), "--input", str(text), "--json"]) == 0
    compared = last_json(capsys)
    assert torch.get_num_threads() == threads, "the bench gives this process its torch threads back"
    assert compared["words"] == 9 and compared["lines"] == 3 and compared["same_entities"] is True
    assert compared["api_words_per_s"] > 0 and compared["predict_startup_s"] > 0
    assert scored["n"] == 60 and scored["source"] == "PAN-X dev (en, de)"
    for name in ("eager_fp32", "eager_int8", "onnx_fp32", "onnx_int8"):
        assert 0 <= scored[f"{name}_f1"] <= 1
    assert scored["onnx_fp32_f1_delta"] == 0, "the fp32 graph tags exactly as eager"


def test_bench_serve_compares_batching_on_and_off(ray_local, capsys):
    """In this process, on the session's cluster (Serve started and shut down by the bench)."""
    assert main(["bench", "serve", "--requests", "24", "--concurrency", "1", "4", "--json"]) == 0
    data = last_json(capsys)
    for c in (1, 4):
        assert data[f"batching_speedup_c{c}"] > 0
        for mode in ("batched", "unbatched"):
            assert data[f"{mode}_rps_c{c}"] > 0 and data[f"{mode}_p99_ms_c{c}"] >= data[f"{mode}_p50_ms_c{c}"] > 0
        assert data[f"echo_rps_c{c}"] > 0  # Serve's own ceiling, measured on the same cluster
        assert data[f"batched_share_of_ceiling_c{c}"] == pytest.approx(
            data[f"batched_rps_c{c}"] / data[f"echo_rps_c{c}"], abs=1e-3)

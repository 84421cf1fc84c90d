import pytest
import torch

from xdray.frontier.latency import compare, time_calls


def stack(depth: int, width: int = 256) -> torch.nn.Module:
    return torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(depth)]).eval()


def test_time_calls_needs_twenty_runs():
    with pytest.raises(ValueError, match="at least 20"):
        time_calls(lambda: None, runs=5)


def test_ordering_and_ratio_on_models_of_known_relative_cost():
    torch.manual_seed(0)
    small, large = stack(1), stack(16)
    batch = torch.randn(64, 256)
    before = torch.get_num_threads()
    calls = []
    timings = compare({"small": small, "large": large}, [batch, batch], runs=20, threads=1,
                      progress=lambda *call: calls.append(call))
    assert calls == [(1, 4, "small"), (2, 4, "large"), (3, 4, "small"), (4, 4, "large")]  # interleaved
    assert timings["small"].median_ms < timings["large"].median_ms
    ratio = timings["large"].median_ms / timings["small"].median_ms
    assert ratio > 4, f"16 layers should cost several times 1 layer, measured {ratio:.1f}x"
    assert torch.get_num_threads() == before, "the harness restores the thread count"


def test_long_timings_log_a_line_a_minute(monkeypatch, caplog):
    """mBERT-base takes minutes at batch 32 on a CPU: a nohup log still gets its line a minute."""
    import logging

    from xdray.core import runtime
    from xdray.frontier import latency

    monkeypatch.setattr(runtime, "LOG_SECONDS", 0)
    with caplog.at_level(logging.INFO, logger=latency.log.name):
        compare({"small": stack(1)}, [torch.randn(4, 256)] * 2, runs=20, threads=1,
                progress=latency._progress_lines("batch 4"))
    assert [r.getMessage() for r in caplog.records] == [f"latency: batch 4, {n} of 2 timings (last: small)"
                                                        for n in (1, 2)]

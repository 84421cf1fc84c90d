"""The benchmarks run and print their JSON contract (their figures are measured, not asserted)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.parametrize("args, keys", [
    (["transfer", "--n", "120", "--hidden", "32", "--layers", "1", "--layer", "-1"],
     {"naive_seq_per_s", "xdray_seq_per_s", "speedup", "naive_bytes_per_token", "xdray_bytes_per_token", "n"}),
    (["train", "--n", "120", "--embedding-dim", "8", "--hidden-size", "8"],
     {"naive_tokens_per_s", "xdray_tokens_per_s", "speedup"}),
])
def test_bench_prints_its_json_last(args, keys, ray_local):
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}
    result = subprocess.run([sys.executable, "-m", "xdray", "bench", *args, "--json"], capture_output=True,
                            text=True, env=env, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert keys <= set(data) and data["n"] == 120
    assert data["speedup"] > 0

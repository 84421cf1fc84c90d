"""`ray job submit` as a cluster user runs it, on the README's main command: a Ray head of its own
on 127.0.0.1 (free ports, a short temp dir, token authentication on, as Ray 2.60 sets it), the
repository uploaded with --working-dir, `xdray run experiments/quickstart.yaml` as the entrypoint,
outputs checked in storage. Only the processes this test started are stopped (`ray stop` would end
every Ray process of the user)."""

import csv
import json
import re
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, xdray

RAY = str(Path(sys.executable).with_name("ray"))
EXCLUDES = ["runs/", ".git/", ".venv/", ".venv-ci/", "tests/", "*.egg-info/", "__pycache__/"]


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def processes_using(marker: str) -> list[int]:
    """PIDs whose command line mentions `marker` (this test's temp dir): what it started."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def stop(head: subprocess.Popen, temp: str) -> None:
    """End the head this test started and every process under its temp dir, nothing else."""
    if head.poll() is None:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=1)  # `ray start --block` can take 30 s to wind down: the rest is killed below
        except subprocess.TimeoutExpired:
            pass
    for pid in processes_using(temp):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(temp, ignore_errors=True)


def wait_until_up(head: subprocess.Popen, url: str, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while True:
        assert head.poll() is None, head.stdout.read()[-3000:]
        try:
            urllib.request.urlopen(f"{url}/api/version", timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers (401 without the token): it is up
        except OSError:
            assert time.time() < deadline, "the Ray head did not come up"
            time.sleep(0.2)


@pytest.fixture
def ray_head():
    if not Path("/proc").is_dir():
        pytest.skip("needs /proc to find the processes this test starts")
    temp = tempfile.mkdtemp(prefix="xr", dir="/tmp")  # Unix socket paths must stay short
    gcs, dashboard, client, agent, agent_grpc, runtime_env, metrics = free_ports(7)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # The head's entrypoints find the interpreter the project is installed in, as on a cluster node.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
         f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
         f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}", f"--temp-dir={temp}",
         "--num-cpus=2", "--disable-usage-stats"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{dashboard}"
        wait_until_up(head, url)
        yield url, env
    finally:
        stop(head, temp)
        assert not processes_using(temp), "a process of this test's Ray head survived"


ANSI = re.compile(r"\x1b\[[0-9;]*m")
RAY_CLI_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+\w+ cli\.py:\d+ -- ")


def job_output(submitted: str) -> str:
    """What the job's entrypoint printed: the lines `ray job submit` tails, without its own."""
    lines = [ANSI.sub("", line) for line in submitted.splitlines()]
    start = next(i for i, line in enumerate(lines) if "Tailing logs until the job exits" in line) + 1
    return "\n".join(line for line in lines[start:] if not RAY_CLI_LINE.match(line))


def assert_quiet(output: str) -> None:
    """The quickstart prints what a user acts on: each stage's status and time, the recommendation
    and the next commands; no traceback, warning or C++ error line, at most 40 lines."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert 10 <= len(lines) <= 40, output
    assert "Traceback" not in output and "WARNING" not in output and "%|" not in output, output
    assert not any(re.search(r"\bE \d+ \d+\]|^E\d{4} ", line) for line in lines), output
    for needed in ("teacher ", "transfer ", "tune ", "report ", "recommended ", "export ", "xdray predict --model"):
        assert needed in output, f"no {needed!r} line in:\n{output}"


@pytest.mark.slow
def test_ray_job_submit_runs_the_quickstart(ray_head, tmp_path):
    """The README's main command, `xdray run experiments/quickstart.yaml`, as a cluster job: every
    stage, a recommended student, and its export tags raw text."""
    url, env = ray_head
    out = tmp_path / "storage" / "quickstart"
    submit = subprocess.run(
        [RAY, "job", "submit", "--address", url, "--working-dir", str(REPO),
         # Another Ray runs on this machine (the suite's): Ray Train's background monitors are told
         # which one is theirs, as a user with two clusters on one machine would.
         "--runtime-env-json", json.dumps({"excludes": EXCLUDES, "env_vars": {"RAY_API_SERVER_ADDRESS": url}}), "--",
         "xdray", "run", "experiments/quickstart.yaml", "--out", str(out)],
        capture_output=True, text=True, timeout=900, env={**env, "RAY_AUTH_MODE": "token"})
    assert submit.returncode == 0, (submit.stdout + submit.stderr)[-4000:]
    assert "succeeded" in submit.stdout and "4 trials, 4 done" in submit.stdout
    (tmp_path / "submit.log").write_text(submit.stdout)
    output = job_output(submit.stdout)
    (tmp_path / "quickstart.log").write_text(output)
    assert_quiet(output)
    assert (out / "teacher" / "metrics.json").exists()
    assert list((out / "transfer").glob("*/manifest.json"))
    index = json.loads((out / "trials" / "index.json").read_text())
    assert [t["status"] for t in index["trials"]] == ["done"] * 4
    report = out / "report"
    with (report / "frontier.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["embedding_dim"], r["hidden_size"]) for r in rows} == {("32", "32"), ("32", "64"), ("64", "32"),
                                                                     ("64", "64")}
    assert len(rows) == 16 and all(float(r["compression"]) > 1 for r in rows)
    for name in ("frontier.md", "f1_vs_compression.png", "f1_vs_speedup.png"):
        assert (report / name).stat().st_size > 0
    assert {p.name for p in (report / "tensorboard").iterdir()} == {r["trial_id"] for r in rows} | {"teacher",
                                                                                                "frontier"}
    chosen = json.loads((report / "recommended.json").read_text())["trial_id"]
    assert chosen, "the quickstart's students keep 95% of its teacher"
    tagged = xdray("predict", "--model", out / "export" / chosen, input_text="Anna Schmidt lebt in Berlin.\n")
    assert tagged.returncode == 0, tagged.stderr
    record = json.loads(tagged.stdout)
    assert record["text"] == "Anna Schmidt lebt in Berlin."
    assert all(record["text"][e["start"]:e["end"]] == e["text"] for e in record["entities"])

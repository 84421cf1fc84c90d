"""A two-node local cluster (ray.cluster_utils.Cluster): the transfer build is pinned to one node
and the Tune trials and the latency task to the other, through custom resources in the config,
and the stages meet only through the run directory. Runs in a subprocess: this test session's
own Ray cluster stays untouched."""

import json
import socket
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, tiny_raw

SCRIPT = r"""
import json, os, sys
from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "gcs_server_port": int(sys.argv[3])})
builder = cluster.add_node(num_cpus=2, resources={"builder": 2})
trainer = cluster.add_node(num_cpus=2, resources={"trainer": 2})
cluster.wait_for_nodes()
os.environ["RAY_ADDRESS"] = cluster.address
from xdray.cli import main

code = main(["run", sys.argv[1], "--out", sys.argv[2]])
import ray

ray.shutdown()
cluster.shutdown()
print("NODES " + json.dumps({"code": code, "builder": builder.node_id, "trainer": trainer.node_id}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_transfer_and_trials_run_on_different_nodes(tmp_path):
    raw = tiny_raw(teacher__finetune={"epochs": 0})
    raw["transfer"]["resources_per_actor"] = {"builder": 1}
    raw.update(student={"embedding_dim": 16, "hidden_size": 16},
               distill={"stages": [{"name": "logits", "loss": "logit", "unfreeze": "all", "max_epochs": 1},
                                   {"name": "labels", "loss": "ce", "unfreeze": "all", "max_epochs": 1}]},
               search={"space": "space.yaml", "cpus_per_trial": 1, "resources_per_trial": {"trainer": 1}})
    (tmp_path / "space.yaml").write_text("student.hidden_size: {grid_search: [8, 16]}\n")
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"
    env = {k: v for k, v in __import__("os").environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "exp.yaml"), str(run), str(free_port())],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=900)
    line = next((l for l in done.stdout.splitlines() if l.startswith("NODES ")), None)
    assert done.returncode == 0 and line, (done.stdout + done.stderr)[-4000:]
    nodes = json.loads(line.removeprefix("NODES "))
    assert nodes["code"] == 0
    trials = json.loads((run / "trials" / "index.json").read_text())["trials"]
    assert [t["status"] for t in trials] == ["done", "done"]
    assert {t["node_id"] for t in trials} == {nodes["trainer"]}, "trials ran outside the trainer node"
    assert list((run / "transfer").glob("*/manifest.json"))
    assert (run / "report" / "frontier.csv").exists()

"""A two-node local cluster (ray.cluster_utils.Cluster): the transfer build is pinned to one node
and the Tune trials and the latency task to the other, through custom resources in the config,
and the stages meet only through storage: the run directory lives in a file:// "bucket" reached
the way s3:// or gs:// is (XDRAY_STAGE_FILE_URIS=1), each node working in a local copy. Then
another machine with an empty cache reruns the experiment: everything comes from storage, nothing
is trained again. The cluster runs in a subprocess: this test session's own stays untouched."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, tiny_raw, xdray
from xdray.core import store as storage
from xdray.core.runtime import free_port

SCRIPT = r"""
import json, os, sys
from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "gcs_server_port": int(sys.argv[2])})
# Without an address an xdray command starts a cluster of its own beside this one (Ray's default
# would join the cluster found on the machine, and its trials die when the owner stops it). The
# head has written its address for Ray's default to find: the check runs from here on, beside the
# rest (its own cluster's start-up is mostly waiting).
import subprocess
code = ("import ray; from xdray.core.runtime import RuntimeConfig, init_ray; "
        "init_ray(RuntimeConfig(num_cpus=1, progress='off')); print(ray.get_runtime_context().gcs_address)")
alone = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
builder = cluster.add_node(num_cpus=2, resources={"builder": 2})
trainer = cluster.add_node(num_cpus=2, resources={"trainer": 2})
cluster.wait_for_nodes()
os.environ["RAY_ADDRESS"] = cluster.address  # after the Popen: the check's process has no address
from xdray.cli import main

code = main(["run", sys.argv[1]])
out, err = alone.communicate(timeout=300)
print("ALONE " + json.dumps({"found": cluster.address, "joined": out.strip(), "err": err[-2000:]}))
import ray

ray.shutdown()
cluster.shutdown()
print("NODES " + json.dumps({"code": code, "builder": builder.node_id, "trainer": trainer.node_id}))
"""


@pytest.mark.slow
def test_stages_on_two_nodes_meet_only_through_storage(tmp_path, ray_local):
    bucket = tmp_path / "bucket"
    raw = tiny_raw(teacher__finetune={"epochs": 0})
    raw["transfer"]["resources_per_actor"] = {"builder": 1}
    raw["runtime"]["storage_path"] = f"file://{bucket}"
    raw.update(student={"embedding_dim": 16, "hidden_size": 16},
               distill={"stages": [{"name": "logits", "loss": "logit", "unfreeze": "all", "max_epochs": 1},
                                   {"name": "labels", "loss": "ce", "unfreeze": "all", "max_epochs": 1}]},
               search={"space": "space.yaml", "cpus_per_trial": 1, "resources_per_trial": {"trainer": 1}},
               report={"min_retention": 0.01})
    (tmp_path / "space.yaml").write_text("student.hidden_size: {grid_search: [8, 16]}\n")
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(XDRAY_STAGE_FILE_URIS="1", XDRAY_CACHE=str(tmp_path / "cache-a"))
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "exp.yaml"), str(free_port())],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=900)
    line = next((l for l in done.stdout.splitlines() if l.startswith("NODES ")), None)
    assert done.returncode == 0 and line, (done.stdout + done.stderr)[-4000:]
    nodes = json.loads(line.removeprefix("NODES "))
    assert nodes["code"] == 0
    alone = json.loads(next(l for l in done.stdout.splitlines() if l.startswith("ALONE ")).removeprefix("ALONE "))
    assert alone["joined"] and alone["joined"] != alone["found"], alone

    remote = bucket / "tiny"
    for part in ("config.yaml", "teacher/model.safetensors", "trials/index.json", "eval/latency.json",
                 "report/frontier.csv", "tune"):
        assert (remote / part).exists(), part
    assert list(remote.glob("transfer/*/manifest.json"))
    trials = json.loads((remote / "trials" / "index.json").read_text())["trials"]
    assert [t["status"] for t in trials] == ["done", "done"]
    assert {t["node_id"] for t in trials} == {nodes["trainer"]}, "trials ran outside the trainer node"
    for trial in trials:
        assert (remote / "trials" / trial["key"] / "student" / "model.safetensors").exists()
        assert (remote / "trials" / trial["key"] / storage.COMPLETE).exists()
    finished = {t["key"]: (remote / "trials" / t["key"] / "metrics.json").read_bytes() for t in trials}

    # Another machine, an empty cache: everything comes from storage, nothing is trained again.
    shutil.rmtree(tmp_path / "cache-a")
    raw["transfer"]["resources_per_actor"], raw["search"]["resources_per_trial"] = {}, {}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(raw))  # this machine has no builder or trainer node
    second = xdray("run", tmp_path / "exp.yaml", env={"XDRAY_STAGE_FILE_URIS": "1", "XDRAY_CACHE": str(tmp_path / "cache-b"),
                                                     "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address})
    assert second.returncode == 0, second.stderr[-4000:]
    assert "teacher (cached)" in second.stdout and "transfer (cached)" in second.stdout
    local = tmp_path / "cache-b" / "runs" / "tiny"
    for key, metrics in finished.items():
        assert (remote / "trials" / key / "metrics.json").read_bytes() == metrics
        assert (local / "trials" / key / "metrics.json").read_bytes() == metrics

"""The files in cluster/: the `ray up` configs, the KubeRay RayJob, its image, and the guide.

Offline and fast: YAML parsing, Ray's own launcher schema, xdray's own command-line parser and
config loader. No cluster is started and nothing is fetched.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from xdray.cli import build_parser
from xdray.config import load_experiment
from xdray.core.loader import parse_override
from xdray.core.rundir import run_directory

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
LAUNCHERS = {"aws.yaml": "aws", "gcp.yaml": "gcp"}
RAYJOB = CLUSTER / "kuberay-rayjob.yaml"
DOCKERFILE = CLUSTER / "Dockerfile"
EXPERIMENT = "experiments/xtremedistil_wikiann.yaml"
SHARED_ROOT = "/mnt/xdray"
RAY_PORTS = (6379, 8265, 10001)


# --- helpers -------------------------------------------------------------------------------------

def pyproject() -> dict[str, Any]:
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:
        tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml needs tomllib (3.11+) or tomli")
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def readme_install() -> str:
    """The install step of the top-level README's first command (venv, activate, pip install -e .)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"python3 -m venv \.venv && \. \.venv/bin/activate && pip install -e \.(?= |$)", text, re.M)
    assert match, "README.md no longer shows `python3 -m venv .venv && . .venv/bin/activate && pip install -e .`"
    return match.group(0)


def launcher(name: str) -> dict[str, Any]:
    return yaml.safe_load((CLUSTER / name).read_text(encoding="utf-8"))


def rayjob_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(RAYJOB.read_text(encoding="utf-8")) if d is not None]


def rayjob() -> dict[str, Any]:
    jobs = [d for d in rayjob_docs() if d.get("kind") == "RayJob"]
    assert len(jobs) == 1, f"{RAYJOB.name}: expected one RayJob, found {len(jobs)}"
    return jobs[0]


def strings(node: Any) -> Iterator[str]:
    """Every string anywhere in a parsed YAML tree (keys and values)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def node_gpus(node_type: dict[str, Any]) -> int:
    """GPUs a launcher node type offers: its `resources` or its GCP guestAccelerators."""
    from_resources = int(node_type.get("resources", {}).get("GPU", 0))
    accelerators = node_type.get("node_config", {}).get("guestAccelerators", [])
    return max(from_resources, sum(int(a.get("acceleratorCount", 0)) for a in accelerators))


def gpu_worker_types(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: t for name, t in config["available_node_types"].items()
            if name != config["head_node_type"] and node_gpus(t) > 0}


def start_commands(config: dict[str, Any], key: str) -> list[str]:
    return [c for c in config[key] if re.search(r"\bray start\b", c)]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            pairs.append((instruction.upper(), args.strip()))
    return pairs


def dockerfile_base() -> re.Match:
    froms = [args for ins, args in dockerfile_instructions() if ins == "FROM"]
    assert len(froms) == 1, "cluster/Dockerfile: expected one FROM"
    match = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py(\d)(\d+)-gpu", froms[0])
    assert match, f"cluster/Dockerfile: FROM {froms[0]!r} is not a rayproject/ray:<version>-py3XX-gpu image"
    return match


def check_xdray_command(argv: list[str], where: str):
    """Parse an `xdray ...` command with xdray's own parser and load its experiment the way the CLI
    does; return the resolved config."""
    assert argv and argv[0] in pyproject()["project"]["scripts"], f"{where}: {argv[:1]} is not a project script"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and args.config == EXPERIMENT, f"{where}: not `xdray run {EXPERIMENT}`"
    cfg = load_experiment(REPO / args.config, dict(parse_override(o) for o in args.overrides))
    assert cfg.runtime.storage_path and cfg.runtime.storage_path.startswith(SHARED_ROOT + "/"), (
        f"{where}: runtime.storage_path must be on the shared volume {SHARED_ROOT}, "
        f"got {cfg.runtime.storage_path!r}")
    assert run_directory(cfg.name, cfg.runtime.storage_path, args.out).is_relative_to(SHARED_ROOT)
    return cfg


def paper_experiment():
    return load_experiment(REPO / EXPERIMENT)


# --- every file parses -----------------------------------------------------------------------------

def test_every_cluster_yaml_parses_with_safe_load():
    files = sorted(CLUSTER.glob("*.yaml"))
    assert {p.name for p in files} >= set(LAUNCHERS) | {RAYJOB.name}
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
        assert docs, f"{path.name}: no YAML document"
        assert all(isinstance(d, dict) for d in docs), f"{path.name}: a document is not a mapping"


# --- launcher configs ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_config_has_what_ray_up_needs(name):
    config = launcher(name)
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type", "setup_commands",
                "head_start_ray_commands", "worker_start_ray_commands", "file_mounts", "idle_timeout_minutes"):
        assert key in config, f"{name}: no `{key}`"
    assert config["cluster_name"] == pyproject()["project"]["name"]
    assert config["provider"]["type"] == LAUNCHERS[name]
    assert config["idle_timeout_minutes"] > 0

    head = config["available_node_types"][config["head_node_type"]]
    assert node_gpus(head) == 0, f"{name}: the head must offer no GPU (it does no GPU work)"
    workers = gpu_worker_types(config)
    assert workers, f"{name}: no GPU worker type"
    for worker_name, worker in workers.items():
        assert worker["min_workers"] == 0, f"{name}: {worker_name} should scale from zero"
        assert 1 <= worker["max_workers"] <= config.get("max_workers", worker["max_workers"])
        accelerators = worker["node_config"].get("guestAccelerators")
        if accelerators:  # GCE: GPU VMs cannot live-migrate
            assert worker["node_config"]["scheduling"]["onHostMaintenance"] == "TERMINATE"

    # One paper trial fits a GPU worker.
    search = paper_experiment().search
    assert any(w["resources"].get("CPU", 0) >= search.cpus_per_trial and node_gpus(w) >= search.gpus_per_trial
               for w in workers.values()), f"{name}: no worker type holds one trial of {EXPERIMENT}"


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_config_passes_rays_own_schema(name):
    pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = launcher(name)
    validate_config(config)
    prepared = prepare_config(copy.deepcopy(config))  # what `ray up` does before touching the cloud
    validate_config(prepared)
    assert set(prepared["available_node_types"]) == set(config["available_node_types"])


def test_provider_settings():
    aws, gcp = launcher("aws.yaml")["provider"], launcher("gcp.yaml")["provider"]
    assert aws["region"] == "us-west-2" and aws["cache_stopped_nodes"] is False
    assert gcp["region"] == "us-west1" and gcp["availability_zone"] == "us-west1-b"
    assert "project_id" in gcp, "gcp.yaml: the user sets provider.project_id"


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_starts_ray_from_the_venv_with_token_auth_and_a_loopback_dashboard(name):
    config = launcher(name)
    head_starts = start_commands(config, "head_start_ray_commands")
    worker_starts = start_commands(config, "worker_start_ray_commands")
    assert len(head_starts) == 1 and len(worker_starts) == 1
    head_start, worker_start = head_starts[0], worker_starts[0]

    assert "--head" in head_start and "--port=6379" in head_start
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head_start
    assert "--address=$RAY_HEAD_IP:6379" in worker_start

    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        # The venv's ray (activated, so job entrypoints also find the venv's `xdray`).
        assert re.search(r"(source|\.) ~/xdray/\.venv/bin/activate && (RAY_AUTH_MODE=token )?ray (start|stop)\b",
                         command), f"{name}: {command!r} does not run the venv's ray"
    for command in (head_start, worker_start):
        assert "RAY_AUTH_MODE=token" in command, f"{name}: {command!r} starts Ray without token auth"

    # The head makes the token before Ray starts; workers get the head's copy before theirs.
    assert any("ray get-auth-token --generate" in c for c in config["head_setup_commands"])
    assert "~/.ray/auth_token" in config["cluster_synced_files"]


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_opens_no_ray_port_to_the_outside(name):
    config = launcher(name)
    assert not any("0.0.0.0" in s for s in strings(config)), f"{name}: something binds or opens 0.0.0.0"
    rules = config["provider"].get("security_group", {}).get("IpPermissions", [])
    for rule in rules:
        for port in RAY_PORTS:
            assert not rule.get("FromPort", 0) <= port <= rule.get("ToPort", -1), (
                f"{name}: a security-group rule opens port {port}")


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_installs_the_project_as_the_readme_does(name):
    config = launcher(name)
    assert config["file_mounts"].get("~/xdray") == ".", f"{name}: the project directory is not synced to ~/xdray"
    assert f"cd ~/xdray && {readme_install()}" in config["setup_commands"], (
        f"{name}: setup_commands do not run the README's install in ~/xdray")

    # The sync leaves out virtualenvs, run directories and the git history.
    ignored = list(config.get("rsync_exclude", []))
    if ".gitignore" in config.get("rsync_filter", []):
        ignored += (REPO / ".gitignore").read_text(encoding="utf-8").split()
    assert any(p.startswith(".venv") for p in ignored), f"{name}: .venv is synced to the nodes"
    assert "runs/" in ignored, f"{name}: runs/ is synced to the nodes"
    assert any(".git" in p and ".gitignore" not in p for p in ignored), f"{name}: .git is synced"


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_shares_the_run_directory_between_nodes(name):
    config = launcher(name)
    head_setup, worker_setup = " ; ".join(config["head_setup_commands"]), " ; ".join(config["worker_setup_commands"])
    assert "/etc/exports" in head_setup and SHARED_ROOT in head_setup and "exportfs" in head_setup
    assert re.search(rf'mount -t nfs4 .*"?\$RAY_HEAD_IP"?:{SHARED_ROOT} {SHARED_ROOT}', worker_setup), (
        f"{name}: workers do not mount the head's {SHARED_ROOT}")
    assert any("nfs-common" in c for c in config["setup_commands"])


# --- the image -------------------------------------------------------------------------------------

def test_dockerfile_base_matches_the_project_python_and_ray():
    base = dockerfile_base()
    ray_version, python = base.group(1), f"{base.group(2)}.{base.group(3)}"
    project = pyproject()["project"]
    assert SpecifierSet(project["requires-python"]).contains(python), (
        f"the image's Python {python} is outside requires-python {project['requires-python']}")
    ray_requirement = next(Requirement(d) for d in project["dependencies"] if Requirement(d).name == "ray")
    assert ray_requirement.specifier.contains(ray_version), f"image Ray {ray_version} vs {ray_requirement}"
    assert {"data", "tune", "default"} <= ray_requirement.extras


def test_dockerfile_installs_like_the_readme_and_copies_what_the_install_needs():
    instructions = dockerfile_instructions()
    runs = [(i, args) for i, (ins, args) in enumerate(instructions) if ins == "RUN"]
    installs = [i for i, args in runs if re.search(r"(^|&& )pip install -e \.($| )", args)]
    assert installs, "cluster/Dockerfile: no `RUN pip install -e .`"
    assert readme_install().endswith("pip install -e .")

    copied: list[str] = []
    for i, (ins, args) in enumerate(instructions):
        if ins in ("COPY", "ADD") and i < installs[0]:
            sources = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
            copied += [s.rstrip("/") for s in sources]
    for source in copied:
        assert (REPO / source).exists(), f"cluster/Dockerfile copies {source}, which is not in the repository"
    project = pyproject()
    needed = {"pyproject.toml", project["project"]["readme"], "experiments"}
    needed |= {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert needed <= set(copied), f"cluster/Dockerfile does not copy {sorted(needed - set(copied))}"

    # The build context (cluster/Dockerfile.dockerignore: ignore all, then re-include) keeps them.
    ignore = (CLUSTER / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    if "*" in ignore or "**" in ignore:
        for source in copied:
            assert f"!{source}" in ignore, f"Dockerfile.dockerignore leaves {source} out of the build context"


# --- the RayJob ------------------------------------------------------------------------------------

def test_rayjob_runs_the_paper_experiment_and_cleans_up():
    job = rayjob()
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    entrypoint = spec["entrypoint"]
    assert f"xdray run {EXPERIMENT}" in entrypoint
    # KubeRay pastes the entrypoint into the submitter's shell command: no shell operators.
    assert not re.search(r"&&|\|\||[;|<>`$]", entrypoint), f"entrypoint {entrypoint!r} has shell syntax"
    check_xdray_command(shlex.split(entrypoint), "RayJob entrypoint")
    assert spec["shutdownAfterJobFinishes"] is True

    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    workdirs = [args for ins, args in dockerfile_instructions() if ins == "WORKDIR"]
    assert runtime_env["working_dir"] == workdirs[-1], "the job's working_dir is not the image's project directory"


def test_rayjob_cluster_autoscales_gpu_workers_with_token_auth():
    cluster = rayjob()["spec"]["rayClusterSpec"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["authOptions"]["mode"] == "token"
    assert cluster["rayVersion"] == dockerfile_base().group(1), "rayVersion differs from the image's Ray"

    head = cluster["headGroupSpec"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP", "the head Service must not leave the cluster"
    assert not head.get("enableIngress", False)
    for container in head["template"]["spec"]["containers"]:
        limits = container.get("resources", {}).get("limits", {})
        assert "nvidia.com/gpu" not in limits, "the head must not take a GPU"

    search = paper_experiment().search
    gpu_groups = []
    for group in cluster["workerGroupSpecs"]:
        for container in group["template"]["spec"]["containers"]:
            limits = container.get("resources", {}).get("limits", {})
            if int(limits.get("nvidia.com/gpu", 0)) >= 1:
                gpu_groups.append((group, limits))
    assert gpu_groups, "no worker group with an nvidia.com/gpu limit"
    for group, limits in gpu_groups:
        assert group["minReplicas"] == 0 and group["maxReplicas"] >= 1
        assert group.get("replicas", 0) <= group["maxReplicas"]
        assert float(limits["cpu"]) >= search.cpus_per_trial, "a GPU pod cannot hold one trial's CPUs"
        assert int(limits["nvidia.com/gpu"]) >= search.gpus_per_trial


def test_rayjob_pods_run_the_xdray_image_and_share_the_run_directory():
    docs = rayjob_docs()
    claims = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "PersistentVolumeClaim"}
    cluster = rayjob()["spec"]["rayClusterSpec"]
    storage_path = check_xdray_command(shlex.split(rayjob()["spec"]["entrypoint"]), "entrypoint").runtime.storage_path

    pod_specs = [cluster["headGroupSpec"]["template"]["spec"]]
    pod_specs += [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]
    images = {c["image"] for spec in pod_specs for c in spec["containers"]}
    assert len(images) == 1, f"head and workers run different images: {sorted(images)}"
    assert not next(iter(images)).startswith("rayproject/"), "pods must run the xdray image, not plain Ray"

    for spec in pod_specs:
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        shared = [m for c in spec["containers"] for m in c.get("volumeMounts", [])
                  if storage_path.startswith(m["mountPath"].rstrip("/") + "/")
                  and "persistentVolumeClaim" in volumes.get(m["name"], {})]
        assert shared, f"a pod does not mount a PVC under {storage_path}"
        claim = volumes[shared[0]["name"]]["persistentVolumeClaim"]["claimName"]
        assert claim in claims, f"PVC {claim} is not defined in {RAYJOB.name}"
        assert "ReadWriteMany" in claims[claim]["spec"]["accessModes"]


# --- the guide -------------------------------------------------------------------------------------

def cluster_readme() -> str:
    return (CLUSTER / "README.md").read_text(encoding="utf-8")


def test_readme_names_every_file_in_cluster():
    text = cluster_readme()
    files = [p.name for p in CLUSTER.iterdir() if p.is_file() and p.name != "README.md"]
    assert len(files) >= 4
    for name in files:
        assert f"`{name}`" in text or f"cluster/{name}" in text, f"cluster/README.md does not mention {name}"


def test_readme_commands():
    text = cluster_readme()
    for pattern in (r"ray up (-y )?cluster/aws\.yaml", r"ray down (-y )?cluster/aws\.yaml", r"ray dashboard cluster/aws\.yaml",
                    r"ray job logs .*--follow", r"ray job status", r"--port-forward 6006",
                    r"kubectl apply -f cluster/kuberay-rayjob\.yaml", r"kubectl get rayjobs",
                    r"kubectl port-forward .*8265:8265", r"RAY_AUTH_MODE=token", r"RAY_AUTH_TOKEN_PATH"):
        assert re.search(pattern, text), f"cluster/README.md: nothing matches {pattern!r}"


def test_readme_submit_command_runs_the_experiment_on_shared_storage():
    text = cluster_readme().replace("\\\n", " ")
    submits = [line.strip() for line in text.splitlines() if line.strip().startswith("ray job submit")]
    assert submits, "cluster/README.md shows no `ray job submit`"
    argv = shlex.split(submits[0])
    split = argv.index("--")
    options, entrypoint = argv[:split], argv[split + 1:]
    assert options[options.index("--address") + 1] == "http://127.0.0.1:8265"
    assert options[options.index("--working-dir") + 1] == "."
    runtime_env = json.loads(options[options.index("--runtime-env-json") + 1])
    assert {"runs/", ".git/", ".venv/"} <= set(runtime_env["excludes"])
    check_xdray_command(entrypoint, "cluster/README.md submit command")


# --- the RayService --------------------------------------------------------------------------------

RAYSERVICE = CLUSTER / "kuberay-rayservice.yaml"


def rayservice() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(RAYSERVICE.read_text(encoding="utf-8")) if d is not None]
    services = [d for d in docs if d.get("kind") == "RayService"]
    assert len(services) == 1, f"{RAYSERVICE.name}: expected one RayService, found {len(services)}"
    return services[0]


def test_rayservice_serves_an_export_through_xdrays_app_builder():
    import importlib

    from xdray.serve.deploy import ServeConfig

    spec = rayservice()["spec"]
    assert rayservice()["apiVersion"] == "ray.io/v1"
    serve_config = yaml.safe_load(spec["serveConfigV2"])
    (app,) = serve_config["applications"]
    module, _, name = app["import_path"].partition(":")
    builder = getattr(importlib.import_module(module), name)
    assert callable(builder)
    args = app["args"]
    ServeConfig(**args)  # every key is one `xdray serve` knows
    assert args["runtime"] in ("auto", "onnx", "onnx-int8", "torch")
    assert args["max_replicas"] >= args["replicas"] >= 1
    storage = check_xdray_command(shlex.split(rayjob()["spec"]["entrypoint"]), "entrypoint").runtime.storage_path
    assert args["model"].startswith(storage + "/") and "/export/" in args["model"], \
        "the model is an export in the RayJob's shared run directory"
    assert app["route_prefix"] == "/"


def test_rayservice_cluster_matches_the_job_image_and_stays_inside():
    cluster = rayservice()["spec"]["rayClusterSpec"]
    job_cluster = rayjob()["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] == dockerfile_base().group(1)
    assert cluster["authOptions"]["mode"] == "token"
    assert cluster["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP"
    pods = [cluster["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]
    job_images = {c["image"] for c in job_cluster["headGroupSpec"]["template"]["spec"]["containers"]}
    assert {c["image"] for spec in pods for c in spec["containers"]} == job_images
    claims = {v["persistentVolumeClaim"]["claimName"] for spec in pods for v in spec.get("volumes", [])
              if "persistentVolumeClaim" in v}
    job_claims = {d["metadata"]["name"] for d in rayjob_docs() if d.get("kind") == "PersistentVolumeClaim"}
    assert claims and claims <= job_claims, "it reads the RayJob's run directory"
    for spec in pods:
        for container in spec["containers"]:
            assert "nvidia.com/gpu" not in container.get("resources", {}).get("limits", {}), "serving needs no GPU"


def test_app_builder_rejects_unknown_args():
    from xdray.core.errors import XdrayError
    from xdray.serve.deploy import build_app

    with pytest.raises(XdrayError, match="unknown"):
        build_app({"model": "x", "replica": 2})
    with pytest.raises(XdrayError, match="model"):
        build_app({"runtime": "onnx"})

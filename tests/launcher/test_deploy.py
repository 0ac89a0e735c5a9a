"""deploy/'s Ray cluster config, KubeRay manifests and Dockerfile: they parse, Ray's own
cluster launcher accepts the config, every command they run is a ``shoal train`` that the
CLI's parser takes, and what they install is what pyproject.toml pins. No network."""

from __future__ import annotations

import argparse
import copy
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from shoal.launcher.cli import build_parser

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

REPOSITORY = Path(__file__).resolve().parents[2]
DEPLOY = REPOSITORY / "deploy"
CLUSTER_YAML = DEPLOY / "ray" / "cluster.yaml"
RAYCLUSTER_YAML = DEPLOY / "kuberay" / "raycluster.yaml"
RAYJOB_YAML = DEPLOY / "kuberay" / "rayjob.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
CLI_MAIN = "shoal.launcher.cli:main"  # whose build_parser() the commands are checked with
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

PYPROJECT: dict[str, Any] = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())


def pinned(name: str) -> str:
    """The version pyproject.toml pins ``name`` to (``name==X``)."""
    for requirement in PYPROJECT["project"]["dependencies"]:
        match = re.fullmatch(rf"{re.escape(name)}==([\w.]+)", requirement.strip())
        if match:
            return match.group(1)
    raise AssertionError(f"pyproject.toml pins no {name}==")


def console_script() -> str:
    scripts = [name for name, target in PYPROJECT["project"]["scripts"].items()
               if target == CLI_MAIN]
    assert len(scripts) == 1, f"[project.scripts] should name one script for {CLI_MAIN}"
    return scripts[0]


def load(path: Path) -> dict[str, Any]:
    documents = list(yaml.safe_load_all(path.read_text()))
    assert len(documents) == 1 and isinstance(documents[0], dict), path
    return documents[0]


def shoal_train(command: str) -> argparse.Namespace:
    """``command`` parsed by shoal's own parser, after checking it is ``<script> train``."""
    argv = shlex.split(command)
    assert argv[0] == console_script(), f"{command!r} does not run {console_script()}"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "train", command
    return args


def cpus(quantity: str | int) -> float:
    """A Kubernetes CPU quantity ("4", "500m") in CPUs."""
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def test_every_deploy_yaml_parses_as_one_mapping():
    paths = sorted([*(DEPLOY / "ray").glob("*.yaml"), *(DEPLOY / "kuberay").glob("*.yaml")])
    assert {CLUSTER_YAML, RAYCLUSTER_YAML, RAYJOB_YAML} <= set(paths)
    for path in paths:
        load(path)


def test_the_console_script_runs_the_cli_the_commands_are_checked_with():
    assert console_script() == "shoal"
    assert build_parser().prog == console_script()


# --- deploy/ray/cluster.yaml -------------------------------------------------------------


def test_ray_cluster_launcher_accepts_cluster_yaml():
    # Ray's own checks (its JSON schema and node-type rules), as `ray up` runs them; the
    # autoscaler helpers are private, but ray is pinned in pyproject.toml.
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load(CLUSTER_YAML)
    validate_config(prepare_config(copy.deepcopy(config)))
    broken = copy.deepcopy(config)
    broken["available_node_types"][config["head_node_type"]]["min_worker"] = 0  # a typo
    with pytest.raises(Exception, match="min_worker"):
        validate_config(prepare_config(broken))


def test_cluster_yaml_has_a_head_and_cpu_and_gpu_worker_types():
    config = load(CLUSTER_YAML)
    assert config["provider"]["type"] == "aws" and config["provider"]["region"]
    types = config["available_node_types"]
    head = config["head_node_type"]
    assert head in types
    workers = {name: spec for name, spec in types.items() if name != head}
    families = {spec["node_config"]["InstanceType"][0] for spec in workers.values()}
    assert families & set("cmr"), "no CPU worker type for actors"
    assert families & set("gp"), "no GPU worker type for the learner"
    for spec in workers.values():
        assert 0 <= spec["min_workers"] <= spec["max_workers"] <= config["max_workers"]
    for name, spec in types.items():
        # Ray's default AMI (Ubuntu 18.04, glibc 2.27) cannot install torch's manylinux_2_28
        # wheels: every node type names its own image.
        assert spec["node_config"].get("ImageId", "").startswith("ami-"), name


def test_cluster_yaml_installs_the_synced_repository_and_the_pinned_versions():
    config = load(CLUSTER_YAML)
    (remote,) = [remote for remote, local in config["file_mounts"].items()
                 if (REPOSITORY / local).resolve() == REPOSITORY]
    assert ".gitignore" in config["rsync_filter"]  # .venv/ and runs/ stay behind
    ignored = (REPOSITORY / ".gitignore").read_text().split()
    assert ".venv/" in ignored and "runs/" in ignored
    commands = config["setup_commands"]
    installs = [shlex.split(command) for command in commands if "pip install" in command]
    assert any(remote in argv for argv in installs), f"no pip install of {remote}"
    (choice,) = [command for command in commands if "nvidia-smi" in command]
    gpu, _, cpu = choice.partition(" else ")
    torch = f"torch=={pinned('torch')}"
    assert torch in gpu and "--index-url" not in gpu  # PyPI's wheel: the CUDA build
    assert f"{torch} --index-url {TORCH_CPU_INDEX}" in cpu
    assert any(f"ray[default]=={pinned('ray')}" in argv for argv in installs)


def test_cluster_yaml_shows_how_to_run_shoal_train_on_it():
    here = CLUSTER_YAML.relative_to(REPOSITORY).as_posix()
    steps: dict[str, list[str]] = {}
    for line in CLUSTER_YAML.read_text().splitlines():
        text = line.lstrip("# ")
        if line.startswith("#") and Path(text.split(" ")[0]).name == "ray":  # the ray CLI
            argv = shlex.split(text, comments=True)
            if argv[1] == "get-auth-token":  # the token, before `ray up`: no cluster yet
                continue
            assert argv[2] == here, line
            steps[argv[1]] = argv[3:]
    assert {"up", "exec", "down"} <= set(steps)
    args = shoal_train(steps["exec"][0])
    assert (args.algo, args.env, args.address) == ("dqn", "CartPole-v1", "auto")


def test_cluster_yaml_turns_token_auth_on_for_every_node_and_syncs_the_token():
    # Ray reads RAY_AUTH_MODE per process: every `ray start` has it, and so does every
    # shell a later `ray exec` (and its `shoal train`) runs in; the token is the one of
    # the machine that runs `ray up`, at the path Ray reads by default on every node.
    config = load(CLUSTER_YAML)
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    for command in starts:
        if "ray start" in command:
            assert "RAY_AUTH_MODE=token ray start" in command, command
    assert sum("ray start" in command for command in starts) == 2
    assert "export RAY_AUTH_MODE=token" in " ".join(config["setup_commands"])
    user = config["auth"]["ssh_user"]
    assert config["file_mounts"][f"/home/{user}/.ray/auth_token"] == "~/.ray/auth_token"
    assert "ray get-auth-token --generate" in CLUSTER_YAML.read_text()


# --- deploy/kuberay ----------------------------------------------------------------------


def test_kuberay_kinds_and_api_versions():
    assert (load(RAYCLUSTER_YAML)["apiVersion"], load(RAYCLUSTER_YAML)["kind"]) == \
        ("ray.io/v1", "RayCluster")
    assert (load(RAYJOB_YAML)["apiVersion"], load(RAYJOB_YAML)["kind"]) == ("ray.io/v1", "RayJob")


@pytest.mark.parametrize("path", [RAYCLUSTER_YAML, RAYJOB_YAML], ids=lambda path: path.name)
def test_kuberay_cluster_has_a_head_and_worker_groups_on_one_image(path):
    manifest = load(path)
    spec = manifest["spec"] if manifest["kind"] == "RayCluster" else manifest["spec"][
        "rayClusterSpec"]
    assert spec["rayVersion"] == pinned("ray")
    (head,) = spec["headGroupSpec"]["template"]["spec"]["containers"]
    assert head["image"] and cpus(head["resources"]["limits"]["cpu"]) >= 1
    groups = spec["workerGroupSpecs"]
    assert groups and len({group["groupName"] for group in groups}) == len(groups)
    for group in groups:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        for container in group["template"]["spec"]["containers"]:
            # every node needs the same Ray and Python as the head
            assert container["image"] == head["image"], group["groupName"]
            assert cpus(container["resources"]["limits"]["cpu"]) >= 1


@pytest.mark.parametrize("path", [RAYCLUSTER_YAML, RAYJOB_YAML], ids=lambda path: path.name)
def test_kuberay_cluster_has_token_auth_on_with_the_operators_secret(path):
    # KubeRay's authOptions: the operator sets RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (from
    # the Secret) on every Ray container, the head's (where `shoal train` runs) included,
    # and authenticates a RayJob's submitter itself.
    manifest = load(path)
    spec = manifest["spec"] if manifest["kind"] == "RayCluster" else manifest["spec"][
        "rayClusterSpec"]
    auth = spec["authOptions"]
    assert auth["mode"] == "token" and auth["secretName"]
    assert f"kubectl create secret generic {auth['secretName']} --from-literal=auth_token=" \
        in path.read_text()


def test_rayjob_runs_shoal_train_on_the_raycluster_and_then_removes_it():
    job = load(RAYJOB_YAML)["spec"]
    args = shoal_train(job["entrypoint"])
    assert (args.algo, args.env, args.address) == ("dqn", "CartPole-v1", "auto")
    assert job["shutdownAfterJobFinishes"] is True
    assert job["rayClusterSpec"] == load(RAYCLUSTER_YAML)["spec"]


def test_rayjob_head_has_a_cpu_for_every_component_of_its_run():
    # A run's services bind 127.0.0.1, so it must fit on the head pod: one CPU per actor,
    # plus the replay service and the learner (each a Ray actor asking for one CPU).
    job = load(RAYJOB_YAML)["spec"]
    args = shoal_train(job["entrypoint"])
    assert args.actors is not None, "give --actors, so that the head can be sized for them"
    (head,) = job["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"]
    assert cpus(head["resources"]["limits"]["cpu"]) >= args.actors + 2


# --- deploy/Dockerfile -------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of each instruction, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends in a continuation line"
    return instructions


def test_dockerfile_installs_cpu_torch_as_pinned_before_shoal():
    instructions = dockerfile_instructions()
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("python:3.11-slim")
    runs = [(index, text) for index, (keyword, text) in enumerate(instructions)
            if keyword == "RUN"]
    torch = [index for index, text in runs
             if re.search(rf"pip install torch=={re.escape(pinned('torch'))} "
                          rf"--index-url {re.escape(TORCH_CPU_INDEX)}(\s|$)", text)]
    assert torch, f"no RUN pip installs torch=={pinned('torch')} from {TORCH_CPU_INDEX}"
    # the repository into the WORKDIR, where `pip install .` then finds it
    (copy_all,) = [index for index, (keyword, text) in enumerate(instructions)
                   if keyword == "COPY" and text.split()[0] == "."]
    assert instructions[copy_all][1].split()[1:] in (["."], ["./"])
    shoal = [index for index, text in runs
             if index > copy_all and "pip install" in text and "." in shlex.split(text)]
    assert shoal, "no RUN pip installs the copied repository"
    # otherwise pip would fetch torch's default CUDA wheel to satisfy pyproject's pin
    assert torch[0] < min(index for index, text in runs if "pip install -r" in text or
                          index in shoal)
    everything = "\n".join(text for _, text in runs)
    assert f'"ray[default]=={pinned("ray")}"' in everything
    assert re.search(r"apt-get install [^&]*\bwget\b", everything), "KubeRay's probes use wget"


def test_dockerfile_ends_running_shoal_in_exec_form():
    instructions = dockerfile_instructions()
    assert instructions[-1][0] in {"ENTRYPOINT", "CMD"}
    final = {keyword: text for keyword, text in instructions if keyword in {"ENTRYPOINT", "CMD"}}
    # exec form (a JSON list): SIGTERM reaches shoal, which then stops the run in order
    entrypoint = json.loads(final.get("ENTRYPOINT", "[]"))
    command = json.loads(final.get("CMD", "[]"))
    assert (entrypoint + command)[0] == console_script()


def test_dockerignore_keeps_the_venv_and_runs_out_of_the_build_context():
    # `docker build -f deploy/Dockerfile .` sends the repository root
    ignored = (REPOSITORY / ".dockerignore").read_text().split()
    assert {".venv", ".git", "runs"} <= set(ignored)

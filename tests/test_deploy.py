"""The deployment files: Dockerfile, docker compose and Kubernetes manifests.

Docker cannot build or run here, so the Dockerfile is linted and read, the manifests are
validated against Kubernetes' schemas, and the command the image runs is started as a
subprocess on the CPU.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

import httpx
import kubernetes_validate
import pytest
import yaml
from conftest import tiny_teacher
from kubernetes_validate.utils import latest_version
from torch.distributed.run import get_args_parser

from service.inference import InferenceWorker
from service.settings import Settings
from wavenet import save_model
from wavenet.cli import get_parser

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
# The oldest Kubernetes the manifests target, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30.0", latest_version())


def dockerfile_stages(path: Path = ROOT / "Dockerfile") -> dict[str, list[tuple[str, str]]]:
    """Each stage's instructions as (INSTRUCTION, arguments), continuation lines joined;
    "global" holds the ARGs before the first FROM."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: dict[str, list[tuple[str, str]]] = {"global": []}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        instruction, _, arguments = line.strip().partition(" ")
        instruction, arguments = instruction.upper(), " ".join(arguments.split())
        if instruction == "FROM":
            name = arguments.split(" AS ")[-1] if " AS " in arguments else str(len(stages) - 1)
            stages[name] = []
        stages[list(stages)[-1]].append((instruction, arguments))
    return stages


def lineage(stages: dict[str, list[tuple[str, str]]], name: str) -> list[str]:
    """`name` and every stage it is built FROM or COPYs --from, transitively."""
    found, todo = [], [name]
    while todo:
        stage = todo.pop()
        if stage in stages and stage not in found:
            found.append(stage)
            for instruction, arguments in stages[stage]:
                if instruction == "FROM":
                    todo.append(arguments.split()[0])
                elif instruction == "COPY" and "--from=" in arguments:
                    todo.append(arguments.split("--from=")[1].split()[0])
    return found


def stage_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """The KEY=value pairs of a stage's ENV instructions."""
    pairs = [p for i, a in instructions if i == "ENV" for p in shlex.split(a)]
    return dict(pair.split("=", 1) for pair in pairs)


def installed_extras(stages: dict[str, list[tuple[str, str]]], name: str) -> set[str]:
    """Extras named in `pip install ... .[extras]` along the lineage of stage `name`."""
    runs = [a for s in lineage(stages, name) for i, a in stages[s] if i == "RUN"]
    return {
        extra.strip()
        for command in runs
        if "pip install" in command
        for group in re.findall(r"\.\[([^\]]*)\]", command)
        for extra in group.split(",")
    }


@cache
def load_deploy_yaml() -> dict[str, list[dict]]:
    """Every YAML document under deploy/, by file path relative to deploy/."""
    files = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    return {
        str(path.relative_to(DEPLOY)): [d for d in yaml.safe_load_all(path.read_text()) if d]
        for path in files
    }


def kubernetes_manifests() -> list[dict]:
    """Documents that are Kubernetes objects (Kustomizations are kustomize's, not the API's)."""
    return [
        document
        for documents in load_deploy_yaml().values()
        for document in documents
        if "kind" in document and not document["apiVersion"].startswith("kustomize.")
    ]


def manifest(path: str, kind: str) -> dict:
    (document,) = [d for d in load_deploy_yaml()[path] if d.get("kind") == kind]
    return document


def server_shutdown_bound_s(environment: dict[str, str]) -> float:
    """The longest the server's own shutdown waits: a graceful-shutdown setting if Settings
    has one, else the inference worker's stop timeout."""
    fields = [name for name in Settings.model_fields if "shutdown" in name]
    if fields:
        settings = Settings.model_validate(_settings_fields(environment))
        return float(getattr(settings, fields[0]))
    return InferenceWorker.stop.__defaults__[0]


def _settings_fields(environment: dict[str, str]) -> dict[str, str]:
    return {key.removeprefix("WAVENET_").lower(): value for key, value in environment.items()}


def assert_settings_fields(environment: dict[str, str]) -> None:
    """WAVENET_* variables name real Settings fields with valid values (Settings ignores
    unknown names, so a typo would silently do nothing)."""
    names = {key for key in environment if key.startswith("WAVENET_")}
    unknown = {n for n in names if n.removeprefix("WAVENET_").lower() not in Settings.model_fields}
    assert not unknown, f"not Settings fields: {unknown}"
    Settings.model_validate(_settings_fields({k: environment[k] for k in names}))


def test_hadolint_passes_the_dockerfile(tmp_path):
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    lint = subprocess.run(
        [hadolint, "--format", "json", str(ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert lint.returncode == 0 and json.loads(lint.stdout) == [], lint.stdout + lint.stderr
    # The linter really reads the file: it flags a known mistake.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:24.04\nRUN cd /tmp && make\n")
    findings = subprocess.run([hadolint, "--format", "json", str(bad)], capture_output=True)
    assert "DL3003" in {finding["code"] for finding in json.loads(findings.stdout)}


def test_serving_stage_is_the_default_target_and_serves_the_baked_model():
    stages = dockerfile_stages()
    name = list(stages)[-1]
    serve = stages[name]
    args = {i: a for i, a in serve if i != "ENV"}
    user = args["USER"].split(":")[0]
    assert user not in {"root", "0"} and int(user) > 0
    assert ":8000/readyz" in args["HEALTHCHECK"] and "--start-period=" in args["HEALTHCHECK"]
    assert args["EXPOSE"].split() == ["8000"]
    assert json.loads(args["CMD"]) == ["wavenet", "serve", "--host", "0.0.0.0", "--port", "8000"]
    copies = [a.split() for i, a in serve if i == "COPY" and "--from" not in a]
    model_dir = next(dest for source, dest in copies if source.rstrip("/") == "models/default")
    env = stage_env(serve)
    assert env["WAVENET_MODEL"] == model_dir.rstrip("/") + "/student"
    assert_settings_fields(env)
    extras = installed_extras(stages, name)
    assert "serve" in extras and not extras & {"train", "dev"}, extras


def test_train_target_runs_wavenet_with_the_train_extras():
    stages = dockerfile_stages()
    train = dict(stages["train"])
    assert json.loads(train["ENTRYPOINT"]) == ["wavenet"]
    assert train["USER"].split(":")[0] not in {"root", "0"}
    extras = installed_extras(stages, "train")
    assert "train" in extras and "dev" not in extras


def test_torch_build_is_chosen_by_build_args_and_pinned_like_the_makefile():
    instructions = [pair for stage in dockerfile_stages().values() for pair in stage]
    args = dict(a.split("=", 1) for i, a in instructions if i == "ARG" and "=" in a)
    assert "cuda" in args["BASE"] and "/whl/cu" in args["TORCH_INDEX"]
    pins = re.search(r"TORCH_PINS := (.*)", (ROOT / "Makefile").read_text()).group(1).split()
    assert f"torch=={args['TORCH_VERSION']}" in pins
    assert f"torchaudio=={args['TORCHAUDIO_VERSION']}" in pins
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "runs", "data"} <= set(ignored)


def test_every_kubernetes_manifest_matches_its_schema():
    manifests = kubernetes_manifests()
    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap"} <= kinds
    assert {"PersistentVolumeClaim", "Job"} <= kinds
    for document, version in itertools.product(manifests, KUBERNETES_VERSIONS):
        # strict: an unknown (misspelt) field is an error, not silently dropped.
        kubernetes_validate.validate(document, version, strict=True)


def test_kustomizations_list_files_that_exist():
    for path, (document, *_) in load_deploy_yaml().items():
        if document.get("kind") == "Kustomization":
            folder = DEPLOY / Path(path).parent
            listed = document["resources"] + [p["path"] for p in document.get("patches", [])]
            assert all((folder / entry).exists() for entry in listed), path


def test_deployment_serves_on_a_gpu_with_probes_and_a_long_enough_grace_period():
    pod = manifest("k8s/deployment.yaml", "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "cpu" in container["resources"]["requests"]  # the HPA's utilisation needs it
    port = {p["name"]: p["containerPort"] for p in container["ports"]}
    probes = {kind: container[f"{kind}Probe"] for kind in ("startup", "readiness", "liveness")}
    paths = {kind: probe["httpGet"]["path"] for kind, probe in probes.items()}
    assert paths == {"startup": "/readyz", "readiness": "/readyz", "liveness": "/livez"}
    assert all(port[probe["httpGet"]["port"]] == 8000 for probe in probes.values())
    # At least as patient as the image's HEALTHCHECK start period (120 s).
    assert probes["startup"]["periodSeconds"] * probes["startup"]["failureThreshold"] >= 120
    config = manifest("k8s/configmap.yaml", "ConfigMap")
    assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    bound = pre_stop + server_shutdown_bound_s(config["data"])
    assert pod["terminationGracePeriodSeconds"] > bound
    assert pod["securityContext"]["runAsNonRoot"] is True
    user = dict(dockerfile_stages()["serve"])["USER"].split(":")[0]
    assert pod["securityContext"]["runAsUser"] == int(user)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_configmap_sets_real_settings():
    assert_settings_fields(manifest("k8s/configmap.yaml", "ConfigMap")["data"])


def test_service_and_autoscalers_point_at_the_deployment():
    deployment = manifest("k8s/deployment.yaml", "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = manifest("k8s/service.yaml", "Service")["spec"]
    assert service["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["ports"]} == {"http"}
    cpu = manifest("k8s/hpa.yaml", "HorizontalPodAutoscaler")
    queue = manifest("k8s/queue-depth/hpa.yaml", "HorizontalPodAutoscaler")
    for hpa in (cpu, queue):
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
        assert hpa["metadata"]["name"] == cpu["metadata"]["name"]  # the patch replaces it
    assert cpu["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    metric = queue["spec"]["metrics"][0]["pods"]["metric"]["name"]
    (rule,) = load_deploy_yaml()["k8s/queue-depth/prometheus-adapter-values.yaml"][0]["rules"][
        "custom"
    ]
    assert rule["name"]["as"] == metric == "wavenet_queue_depth"


def distill_job() -> tuple[dict, dict]:
    job = manifest("k8s/distill-job.yaml", "Job")
    pod = job["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def run_distill_script(tmp_path: Path) -> list[str]:
    """The Job's shell command with /store under tmp_path and a torchrun that prints its
    arguments, one per line."""
    _, container = distill_job()
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "torchrun").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    (fake / "torchrun").chmod(0o755)
    env = {e["name"]: e["value"] for e in container["env"]}
    script = container["args"][0].replace("/store", str(tmp_path / "store"))
    assert container["command"][0] == "/bin/sh"
    result = subprocess.run(
        [*container["command"], script],
        env={**env, "PATH": f"{fake}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()


def test_distill_job_runs_torchrun_on_every_gpu_and_resumes_on_retry(tmp_path):
    pod, container = distill_job()
    first = get_args_parser().parse_args(run_distill_script(tmp_path))
    gpus = container["resources"]["limits"]["nvidia.com/gpu"]
    assert int(first.nproc_per_node) == gpus > 1 and first.no_python
    assert [first.training_script, first.training_script_args[0]] == ["wavenet", "distill"]
    flags = first.training_script_args
    for flag in ("--teacher", "--classifier", "--data", "--out", "--config"):
        assert flags[flags.index(flag) + 1].startswith(str(tmp_path / "store")), flag
    assert "--resume" not in flags
    (tmp_path / "store/runs/distill/checkpoint").mkdir(parents=True)
    retry = get_args_parser().parse_args(run_distill_script(tmp_path))
    assert retry.training_script_args == [*flags, "--resume"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
              if "persistentVolumeClaim" in v}  # fmt: skip
    pvc = manifest("k8s/pvc.yaml", "PersistentVolumeClaim")["metadata"]["name"]
    assert list(claims.values()) == [pvc] and mounts[next(iter(claims))] == "/store"
    assert container["image"].split(":")[0] == "wavenet-train"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["restartPolicy"] == "Never"


def test_distill_job_arguments_parse_as_the_distill_command(tmp_path):
    """A checkout whose `wavenet` lacks `distill` (a broken training install) fails here."""
    arguments = get_args_parser().parse_args(run_distill_script(tmp_path)).training_script_args
    parsed = get_parser().parse_args(arguments)
    store = tmp_path / "store"
    assert parsed.command == "distill" and parsed.handler.__module__ == "training.commands"
    assert (parsed.teacher, parsed.classifier, parsed.data, parsed.out) == (
        str(store / "models/teacher"),
        str(store / "models/classifier"),
        str(store / "data/prepared"),
        str(store / "runs/distill"),
    )
    assert parsed.config == str(store / "configs/distill.yaml") and not parsed.resume


def test_compose_reserves_one_nvidia_gpu_and_has_a_cpu_profile():
    (compose,) = load_deploy_yaml()["compose.yaml"]
    gpu, cpu = compose["services"]["wavenet"], compose["services"]["wavenet-cpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["count"] == 1 and "gpu" in device["capabilities"]
    assert "deploy" not in cpu and cpu["profiles"] == ["cpu"] and "profiles" not in gpu
    assert "cuda" not in cpu["build"]["args"]["BASE"]
    assert cpu["build"]["args"]["TORCH_INDEX"].endswith("/whl/cpu")
    bound = server_shutdown_bound_s({})
    for service in (gpu, cpu):
        assert any("/readyz" in part for part in service["healthcheck"]["test"])
        assert service["restart"] in {"always", "unless-stopped", "on-failure"}
        assert any(re.search(r":/models(:ro)?$", volume) for volume in service["volumes"])
        assert int(service["stop_grace_period"].removesuffix("s")) > bound
        assert_settings_fields(
            {k: v.split(":-")[-1].rstrip("}") for k, v in service["environment"].items()}
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_image_command_serves_and_stops_on_sigterm(tmp_path):
    """`wavenet serve` as the image's CMD runs it, with the image's environment."""
    stages = dockerfile_stages()
    image_env = {**stage_env(stages["python"]), **stage_env(stages["serve"])}
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WAVENET_")}
    environment.update({k: v for k, v in image_env.items() if k not in {"PATH", "VIRTUAL_ENV"}})
    checkpoint = save_model(tiny_teacher(layers=2, dilation_cycle=2), tmp_path / "student")
    environment.update(WAVENET_MODEL=str(checkpoint), WAVENET_DEVICE="cpu")
    command = json.loads(dict(stages["serve"])["CMD"])
    port = free_port()
    command[command.index("--host") + 1 :] = ["127.0.0.1", "--port", str(port)]
    wavenet = shutil.which("wavenet") or str(Path(sys.executable).with_name("wavenet"))
    grace = manifest("k8s/deployment.yaml", "Deployment")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ]
    log = tmp_path / "server.log"
    server = subprocess.Popen(
        [wavenet, *command[1:]],
        cwd=tmp_path,
        env=environment,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert server.poll() is None, log.read_text()
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        assert httpx.get(f"{url}/livez", timeout=5).status_code == 200
        # The queue-depth autoscaler's metric.
        assert "wavenet_queue_depth" in httpx.get(f"{url}/metrics", timeout=5).text
        server.send_signal(signal.SIGTERM)
        # uvicorn shuts down, then re-raises the signal it caught: the status says SIGTERM.
        assert server.wait(timeout=grace) in {0, -signal.SIGTERM}
        output = log.read_text()
        assert "Application shutdown complete" in output and "Traceback" not in output
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

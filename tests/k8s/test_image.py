"""The services' image on the one-node Kubernetes: built here, never pulled, and it runs
under the `restricted` Pod Security level with the chart's own security contexts."""

from __future__ import annotations

import json
import subprocess
import time

from tests.k8s.conftest import REPO, Cluster

# Every service's entry module and the `helm test` health check, imported in the pod.
ENTRY_MODULES = [
    "services.device_auth.__main__",
    "services.key_manager.__main__",
    "services.clip_ingest.__main__",
    "services.relay_broker.__main__",
    "services.retention.__main__",
    "services.access_log.__main__",
    "services.common.healthcheck",
]


def _chart_security_contexts(cluster: Cluster) -> tuple[dict[str, object], dict[str, object]]:
    """The security contexts of the chart's first rendered Deployment (defaults)."""
    rendered = subprocess.run(
        [cluster.helm_bin, "template", "privacam", str(REPO / "charts/privacam")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    text = cluster.run("create", "--dry-run=client", "-o", "json", "-f", "-", stdin=rendered)
    items, pos, decoder = [], 0, json.JSONDecoder()
    while pos < len(text.rstrip()):
        obj, end = decoder.raw_decode(text, pos)
        items.append(obj)
        pos = end + len(text[end:]) - len(text[end:].lstrip())
    spec = next(i for i in items if i["kind"] == "Deployment")["spec"]["template"]["spec"]
    return spec["securityContext"], spec["containers"][0]["securityContext"]


def test_image_runs_under_restricted_pod_security(
    cluster: Cluster, restricted_namespace: str
) -> None:
    pod_sc, container_sc = _chart_security_contexts(cluster)
    imports = "; ".join(f"importlib.import_module({m!r})" for m in ENTRY_MODULES)
    code = "import importlib; " + imports
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "image-check", "namespace": restricted_namespace},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": pod_sc,
            "containers": [
                {
                    "name": "check",
                    "image": cluster.image,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", code + "; print('imports ok')"],
                    "securityContext": container_sc,
                }
            ],
        },
    }
    cluster.run("apply", "-f", "-", stdin=json.dumps(pod))
    deadline = time.monotonic() + 120
    phase = ""
    while time.monotonic() < deadline:
        pod_now = cluster.get("pod", "-n", restricted_namespace, "image-check")
        phase = pod_now["status"].get("phase", "")
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(1)
    logs = cluster.run("logs", "-n", restricted_namespace, "image-check")
    assert phase == "Succeeded", f"pod ended {phase!r}: {logs}"
    assert "imports ok" in logs
    events = cluster.run("get", "events", "-n", restricted_namespace, "-o", "json")
    pulls = [e for e in json.loads(events)["items"] if e.get("reason") in ("Pulling", "Pulled")]
    assert all("already present" in e.get("message", "") for e in pulls), pulls

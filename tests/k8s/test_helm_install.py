"""`helm install` of charts/privacam against a real Kubernetes API server (the one-node
cluster of `make k8s`), into a namespace enforcing the `restricted` Pod Security level.

What this proves today: the chart passes the API server's validation and helm's
kubeVersion check on Kubernetes 1.34, every pod it makes is admitted under `restricted`
and scheduled with the image built here (never pulled), and `helm uninstall` leaves
nothing behind. The pods then wait for the Secrets and backing servers the NOTES list;
serving over mutual TLS is test_helm_install_serves_mtls's part (not written yet).
"""

from __future__ import annotations

import json
import subprocess
import time

from tests.k8s.conftest import REPO, Cluster

RELEASE = "privacam"
VALUES = REPO / "tests/k8s/values-k8s-test.yaml"
KINDS = (
    "deployments,replicasets,pods,services,configmaps,networkpolicies,"
    "poddisruptionbudgets,serviceaccounts"
)


def _helm(cluster: Cluster, *args: str) -> str:
    out = subprocess.run(
        [cluster.helm, "--kubeconfig", cluster.kubeconfig, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, f"helm {' '.join(args)}: {out.stderr.strip()}"
    return out.stdout


def test_helm_install_admitted_under_restricted(
    cluster: Cluster, restricted_namespace: str
) -> None:
    ns = restricted_namespace
    tag = cluster.image.rsplit(":", 1)[1]
    _helm(
        cluster,
        "install",
        RELEASE,
        str(REPO / "charts/privacam"),
        "-n",
        ns,
        "-f",
        str(VALUES),
        "--set",
        f"image.tag={tag}",
    )
    selector = f"app.kubernetes.io/instance={RELEASE}"
    deployments = cluster.get("deployments", "-n", ns, "-l", selector)["items"]
    assert len(deployments) >= 6, [d["metadata"]["name"] for d in deployments]

    # Every Deployment gets its pod: admitted by the `restricted` level, scheduled, and
    # on the local image with no pull.
    deadline = time.monotonic() + 120
    missing: list[str] = []
    while time.monotonic() < deadline:
        pods = cluster.get("pods", "-n", ns, "-l", selector)["items"]
        owners = {p["metadata"]["labels"].get("app.kubernetes.io/name", "") for p in pods}
        scheduled = [
            p
            for p in pods
            if any(
                c["type"] == "PodScheduled" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
        ]
        missing = [
            d["metadata"]["name"]
            for d in deployments
            if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/name", "")
            not in owners
        ]
        if not missing and len(scheduled) == len(pods) >= len(deployments):
            break
        time.sleep(1)
    events = json.loads(cluster.run("get", "events", "-n", ns, "-o", "json"))["items"]
    refused = [e["message"] for e in events if e.get("reason") == "FailedCreate"]
    assert not refused, refused
    assert not missing, f"no pod for {missing}"
    assert len(scheduled) == len(pods), [p["metadata"]["name"] for p in pods if p not in scheduled]
    for p in pods:
        for c in p["spec"]["containers"]:
            assert c["image"] == cluster.image
            assert c["imagePullPolicy"] == "Never"
    pulls = [e["message"] for e in events if e.get("reason") in ("Pulling", "ErrImageNeverPull")]
    assert not pulls, pulls

    _helm(cluster, "uninstall", RELEASE, "-n", ns, "--wait", "--timeout", "120s")
    # ReplicaSets and pods go with their Deployments (garbage collection, within seconds).
    deadline = time.monotonic() + 90
    while True:
        out = cluster.run("get", KINDS, "-n", ns, "-l", selector, "-o", "json")
        left = json.loads(out)["items"]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not left, [f"{i['kind']}/{i['metadata']['name']}" for i in left]

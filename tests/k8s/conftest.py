"""Fixtures for the tests on the one-node Kubernetes of `make k8s` (stack/k8s/).

Run by `make k8s-test` only (`pytest tests/k8s`); tests/conftest.py keeps them out of
`pytest tests`. Without a running cluster every test here fails with the command to run.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services.common.settings import read_env_file
from tests.k8s.chart_secrets import Material, create_secrets

REPO = Path(__file__).resolve().parents[2]
RELEASE = "privacam"
VALUES = REPO / "tests/k8s/values-k8s-test.yaml"
RESOURCE_KINDS = (
    "deployments,replicasets,pods,services,configmaps,networkpolicies,"
    "poddisruptionbudgets,serviceaccounts"
)


def _lib_var(name: str) -> str:
    """A variable of stack/k8s/lib.sh, as the scripts see it (same cache and run dirs)."""
    out = subprocess.run(
        ["bash", "-c", f'source "{REPO}/stack/k8s/lib.sh" && printf %s "${name}"'],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    return out.stdout


def component_running(name: str) -> bool:
    """Whether up.sh's component `name` (e.g. kube-router) runs (stack/k8s/lib.sh)."""
    out = subprocess.run(
        ["bash", "-c", f'source "{REPO}/stack/k8s/lib.sh" && k8s_running_pid {name}'],
        capture_output=True,
        env=os.environ.copy(),
        check=False,
    )
    return out.returncode == 0


@dataclass(frozen=True)
class Cluster:
    kubectl: str
    kubeconfig: str
    helm_bin: str
    image: str

    def run(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        out = subprocess.run(
            [self.kubectl, "--kubeconfig", self.kubeconfig, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if out.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {out.stderr.strip()}")
        return out.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.run("get", *args, "-o", "json"))

    def helm(self, *args: str, timeout: float = 600) -> str:
        out = subprocess.run(
            [self.helm_bin, "--kubeconfig", self.kubeconfig, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert out.returncode == 0, f"helm {' '.join(args)}: {out.stderr.strip()}{out.stdout}"
        return out.stdout

    @property
    def tag(self) -> str:
        return self.image.rsplit(":", 1)[1]


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    kubectl = _lib_var("KUBECTL")
    kubeconfig = _lib_var("KUBECONFIG_ADMIN")
    if not (Path(kubectl).is_file() and Path(kubeconfig).is_file()):
        pytest.fail("no one-node Kubernetes here: run `make k8s` (stack/k8s/up.sh) first")
    image = subprocess.run(
        ["bash", f"{REPO}/stack/k8s/images.sh", "privacam"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    c = Cluster(kubectl, kubeconfig, _lib_var("HELM"), image)
    nodes = c.get("nodes")["items"]
    ready = [
        n["metadata"]["name"]
        for n in nodes
        for cond in n["status"]["conditions"]
        if cond["type"] == "Ready" and cond["status"] == "True"
    ]
    assert ready, f"no Ready node: {[n['metadata']['name'] for n in nodes]}"
    return c


def make_restricted_namespace(cluster: Cluster) -> str:
    """A fresh namespace enforcing the `restricted` Pod Security level."""
    name = f"privacam-test-{uuid.uuid4().hex[:8]}"
    cluster.run(
        "apply",
        "-f",
        "-",
        stdin=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": name,
                    "labels": {
                        "pod-security.kubernetes.io/enforce": "restricted",
                        "pod-security.kubernetes.io/enforce-version": "latest",
                    },
                },
            }
        ),
    )
    return name


@pytest.fixture
def restricted_namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh `restricted` namespace, deleted afterwards."""
    name = make_restricted_namespace(cluster)
    try:
        yield name
    finally:
        cluster.run("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="session")
def backing(cluster: Cluster) -> dict[str, str]:
    """The backing servers (stack/k8s/backing.sh: Kafka, MinIO, Redis, coturn on the pod
    bridge's gateway), started or reused; their settings and users, as stack.env has them."""
    out = subprocess.run(
        ["bash", f"{REPO}/stack/k8s/backing.sh", "up"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, f"stack/k8s/backing.sh up: {out.stderr[-3000:]}"
    return read_env_file(Path(out.stdout.strip().splitlines()[-1]))


PORTS = {"grpc": 8443, "enroll": 8444}  # the chart's ports.grpc and ports.enrollment


@dataclass(frozen=True)
class Release:
    cluster: Cluster
    namespace: str
    material: Material
    dns: str

    def fullname(self, service: str) -> str:
        return f"{RELEASE}-{service.replace('_', '-')}"

    def endpoint(self, service: str, port: str = "grpc") -> str:
        """A gRPC target from outside the pods: the Service's cluster name, resolved by the
        cluster's DNS server (a `dns://<server>/` authority), so TLS checks the name the
        service's certificate carries."""
        host = f"{self.fullname(service)}.{self.namespace}.svc.cluster.local"
        return f"dns://{self.dns}:53/{host}:{PORTS[port]}"

    def deployments(self) -> list[dict[str, Any]]:
        selector = f"app.kubernetes.io/instance={RELEASE}"
        items: list[dict[str, Any]] = self.cluster.get(
            "deployments", "-n", self.namespace, "-l", selector
        )["items"]
        return items

    def wait_available(self, timeout: float = 600) -> None:
        """Every Deployment rolled out: updated, available, no old replica left."""
        deadline = time.monotonic() + timeout
        waiting: list[str] = []
        while time.monotonic() < deadline:
            waiting = [
                d["metadata"]["name"]
                for d in self.deployments()
                if d["status"].get("observedGeneration", 0) < d["metadata"]["generation"]
                or d["status"].get("updatedReplicas", 0) != d["spec"]["replicas"]
                or d["status"].get("availableReplicas", 0) != d["spec"]["replicas"]
                or d["status"].get("replicas", 0) != d["spec"]["replicas"]
            ]
            if not waiting:
                return
            time.sleep(2)
        pods = self.cluster.run("get", "pods", "-n", self.namespace, "-o", "wide")
        raise AssertionError(f"not available after {timeout:.0f}s: {waiting}\n{pods}")


def helm_values(cluster: Cluster) -> list[str]:
    return ["-f", str(VALUES), "--set", f"image.tag={cluster.tag}"]


def _secret_refs(node: Any) -> set[str]:
    """Names of the Secrets a rendered object mounts or reads a key of."""
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("secretName"), str):
            found.add(node["secretName"])
        ref = node.get("secretKeyRef")
        if isinstance(ref, dict) and isinstance(ref.get("name"), str):
            found.add(ref["name"])
        for value in node.values():
            found |= _secret_refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _secret_refs(value)
    return found


def referenced_secrets(cluster: Cluster, namespace: str) -> set[str]:
    """Every Secret the chart's rendered objects (`helm test` pods included) refer to."""
    rendered = cluster.helm(
        "template", RELEASE, str(REPO / "charts/privacam"), "-n", namespace, *helm_values(cluster)
    )
    stream = cluster.run("create", "--dry-run=client", "-o", "json", "-f", "-", stdin=rendered)
    # One JSON document per object, back to back.
    decoder, objects, at = json.JSONDecoder(), [], 0
    while at < len(stream.rstrip()):
        obj, at = decoder.raw_decode(stream, at)
        objects.append(obj)
        while at < len(stream) and stream[at].isspace():
            at += 1
    return _secret_refs(objects)


@pytest.fixture(scope="session")
def release(cluster: Cluster, backing: dict[str, str]) -> Iterator[Release]:
    """`helm install` of the chart into a fresh `restricted` namespace, after its Secrets
    were made as the NOTES tell a platform team; every Deployment available. Uninstalled at
    the end unless a test did it (test_helm_uninstall_leaves_nothing)."""
    namespace = make_restricted_namespace(cluster)
    material = Material(Path(_lib_var("K8S_RUN")) / "backing" / "chart")
    try:
        made = create_secrets(
            [cluster.kubectl, "--kubeconfig", cluster.kubeconfig],
            RELEASE,
            namespace,
            backing,
            material,
        )
        missing = referenced_secrets(cluster, namespace) - set(made)
        assert not missing, f"the chart refers to Secrets the NOTES' steps did not make: {missing}"
        chart = str(REPO / "charts/privacam")
        cluster.helm("install", RELEASE, chart, "-n", namespace, *helm_values(cluster))
        installed = Release(cluster, namespace, material, _lib_var("K8S_DNS_IP"))
        installed.wait_available()
        yield installed
    finally:
        subprocess.run(
            [
                cluster.helm_bin,
                "--kubeconfig",
                cluster.kubeconfig,
                "uninstall",
                RELEASE,
                "-n",
                namespace,
            ],
            capture_output=True,
            timeout=300,
            check=False,
        )
        cluster.run("delete", "namespace", namespace, "--wait=false")

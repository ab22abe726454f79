"""Fixtures for the tests on the one-node Kubernetes of `make k8s` (stack/k8s/).

Run by `make k8s-test` only (`pytest tests/k8s`); tests/conftest.py keeps them out of
`pytest tests`. Without a running cluster every test here fails with the command to run.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


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


@dataclass(frozen=True)
class Cluster:
    kubectl: str
    kubeconfig: str
    helm: str
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


@pytest.fixture
def restricted_namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace enforcing the `restricted` Pod Security level; deleted afterwards."""
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
    try:
        yield name
    finally:
        cluster.run("delete", "namespace", name, "--wait=false")

"""The SDK's distribution (sdk/pyproject.toml) stands alone: privacam_core and privacam_sdk
import nothing of the services, every library they import is a declared requirement, and
each requirement admits the version uv.lock pins for the repository (the one tested)."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[3]
CORE = ROOT / "core" / "privacam_core"
SDK = ROOT / "sdk" / "privacam_sdk"

# Import name -> distribution that provides it.
PROVIDERS = {
    "cryptography": "cryptography",
    "google": "protobuf",
    "grpc": "grpcio",
    "grpc_health": "grpcio-health-checking",
    "opentelemetry": "opentelemetry-api",
    "shtab": "shtab",
    "aiortc": "aiortc",
    "av": "aiortc",
}
OWN = {"privacam", "privacam_core", "privacam_sdk"}  # the stubs, the core, the SDK
SERVER_ONLY = {"services", "redis", "aiokafka", "minio", "faust", "pydantic_settings"}


def _imports(package: Path) -> dict[str, set[str]]:
    """Top-level module -> the files of `package` that import it."""
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.name)
    return found


def _third_party(package: Path) -> dict[str, set[str]]:
    return {
        name: files
        for name, files in _imports(package).items()
        if name not in sys.stdlib_module_names and name not in OWN
    }


def _sdk_project() -> dict[str, object]:
    project: dict[str, object] = tomllib.loads((ROOT / "sdk" / "pyproject.toml").read_text())[
        "project"
    ]
    return project


def _requirements() -> list[Requirement]:
    project = _sdk_project()
    dependencies = project["dependencies"]
    extras = project["optional-dependencies"]
    assert isinstance(dependencies, list)
    assert isinstance(extras, dict)
    listed = [*dependencies, *(r for group in extras.values() for r in group)]
    return [Requirement(text) for text in listed]


def test_core_has_no_server_or_sdk_dependency() -> None:
    imported = _imports(CORE)
    assert not (set(imported) & (SERVER_ONLY | {"grpc", "privacam_sdk"})), imported
    assert set(_third_party(CORE)) <= {"cryptography", "google"}


def test_sdk_imports_nothing_of_the_services() -> None:
    imported = _imports(SDK)
    leaks = {name: files for name, files in imported.items() if name in SERVER_ONLY}
    assert not leaks, f"the SDK installs alone (pip install ./sdk); these need the server: {leaks}"


def test_every_library_the_sdk_imports_is_a_requirement() -> None:
    required = {r.name for r in _requirements()}
    for package in (CORE, SDK):
        for name, files in _third_party(package).items():
            assert name in PROVIDERS, f"{sorted(files)} import {name}: add it to sdk/pyproject.toml"
            assert PROVIDERS[name] in required, f"{PROVIDERS[name]} is not in sdk/pyproject.toml"


@pytest.mark.parametrize("requirement", _requirements(), ids=str)
def test_requirements_admit_the_locked_versions(requirement: Requirement) -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {package["name"]: package["version"] for package in lock["package"]}
    assert requirement.name in locked, f"{requirement.name} is not in uv.lock"
    assert requirement.specifier.contains(locked[requirement.name], prereleases=True), (
        f"sdk/pyproject.toml's {requirement} excludes uv.lock's {locked[requirement.name]}"
    )


def test_the_wheel_and_the_sdist_carry_the_core_and_the_stubs() -> None:
    build = tomllib.loads((ROOT / "sdk" / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    in_sdist = build["targets"]["sdist"]["force-include"]
    assert in_sdist == {"../core/privacam_core": "privacam_core", "../gen/privacam": "privacam"}
    assert "custom" in build["targets"]["wheel"]["hooks"]
    hook = ast.parse((ROOT / "sdk" / "hatch_build.py").read_text())
    (shared,) = [
        ast.literal_eval(node.value)
        for node in hook.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "SHARED" for t in node.targets)
    ]
    assert shared == {name: path for path, name in in_sdist.items()}
    for path in in_sdist:
        assert (ROOT / "sdk" / path / "__init__.py").exists() or path.startswith("../gen")
    scripts = _sdk_project()["scripts"]
    assert scripts == {"privacam": "privacam_sdk.cli:main"}

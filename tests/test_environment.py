"""pyproject.toml and environment.yml declare the same dependencies with the same bounds."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("dev", "notebook", "postgres", "s3", "redis", "features", "ray")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in EXTRAS:
        reqs += project["optional-dependencies"][extra]
    out = {}
    for line in reqs:
        req = Requirement(line)
        if req.name != "workbench":
            out[_normal(req.name)] = str(req.specifier)
    return out


def _environment() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    out = {}
    for dep in env["dependencies"]:
        for line in dep["pip"] if isinstance(dep, dict) else [dep]:
            if line.startswith("-e") or line.split("=")[0] in ("python", "pip"):
                continue
            req = Requirement(line)
            out[_normal(req.name)] = str(req.specifier)
    return out


def test_same_packages_and_bounds():
    py, conda = _pyproject(), _environment()
    assert sorted(set(py) ^ set(conda)) == []
    assert {k: py[k] for k in py} == {k: conda[k] for k in py}


def test_environment_uses_conda_forge_and_python_311():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    assert "python=3.11" in env["dependencies"]

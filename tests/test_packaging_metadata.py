"""Issue 21 item 9: building bsa warns about nothing of its own. Every install warned that
``project.license`` as a TOML table is deprecated (PEP 639 wants an SPDX expression), and
pyproject.toml cited an ENGINEERING.md that the repository does not have."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib
from conftest import REPO
from packaging.requirements import Requirement
from packaging.version import Version
from test_wheel import OFFLINE, _copy_sources, _pip_env

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_the_license_is_an_spdx_expression_and_setuptools_can_read_it() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0"
    # PEP 639: an expression and a license classifier together are an error.
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]
    setuptools = next(
        Requirement(r) for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")
    )
    assert setuptools.specifier.contains(Version("77.0.0")) and not setuptools.specifier.contains(
        Version("76.9")
    )


def test_pyproject_cites_only_files_the_repository_has() -> None:
    text = (REPO / "pyproject.toml").read_text()
    # A document (README.md) or a path to a module (bsa/llm.py); a dotted module name is not a path.
    cited = {c for c in re.findall(r"[\w./-]+\.(?:md|py)\b", text) if c.endswith(".md") or "/" in c}
    assert "README.md" in cited
    missing = sorted(c for c in cited if not (REPO / c).is_file())
    assert missing == [], f"pyproject.toml cites files that are not in the repository: {missing}"


def test_building_the_package_prints_no_warning_about_its_metadata(tmp_path: Path) -> None:
    src = _copy_sources(tmp_path / "src")
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-v", "-w", str(tmp_path / "dist")]
    built = subprocess.run(cmd, env=_pip_env(), capture_output=True, text=True, timeout=300)
    said = built.stdout + built.stderr
    if built.returncode != 0 and OFFLINE.search(said):
        pytest.skip("cannot build: setuptools>=77 is not reachable in the package registry or pip's cache")
    assert built.returncode == 0, said[-3000:]
    assert "BuildBackendWarning" not in said and "SetuptoolsDeprecationWarning" not in said, said[-3000:]
    assert "project.license" not in said
    (wheel,) = (tmp_path / "dist").glob("bsa_eval-*.whl")
    with zipfile.ZipFile(wheel) as z:
        metadata = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata.splitlines()

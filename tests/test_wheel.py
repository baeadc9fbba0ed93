"""bsa as a real package: a wheel built from the repo, installed (not editable) into a fresh venv, run
from a directory outside the repo.

An editable install hides what a wheel lacks (a subpackage, the configs, the judge templates), so this
builds one. The fresh venv has no pip and no dependencies of its own: a ``.pth`` file puts the running
interpreter's site-packages after the venv's own, so the dependencies already installed there are
importable (nothing is downloaded) while the ``bsa`` the venv imports is the wheel's. Python processes
the ``.pth`` files only of its own site dirs, not of a folder a ``.pth`` line adds, so the editable
install's finder in the outer site-packages stays inert; ``bsa.__file__`` is checked anyway.

The wheel is built by ``pip wheel`` with build isolation, which needs setuptools from the registry
(or pip's cache): offline, the test falls back to the installed setuptools when it is new enough, and
is skipped, saying why, when it is not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO
from helpers import responder, scripted_overrides, write_dataset
from scripted_server import ScriptedServer
from test_pipeline import QUERY_IDS, ROWS, scripted

import bsa

# What the wheel is built from, copied out of the repo so that a build leaves no build/ or *.egg-info
# in the working tree and no stale build/lib of an earlier build slips into the wheel.
SOURCES = ("pyproject.toml", "README.md", "bsa")
MIN_SETUPTOOLS = (77,)  # pyproject.toml's [build-system] requires setuptools>=77
OFFLINE = re.compile(
    r"No matching distribution found|Could not find a version that satisfies|NewConnectionError|"
    r"Failed to establish a new connection|Temporary failure in name resolution|Network is unreachable|"
    r"ProxyError|Max retries exceeded|ConnectTimeout|ReadTimeout",
)


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    python: Path
    work: Path  # a directory outside the repo: the cwd of every command
    env: dict[str, str]
    summary: list[str]


def _pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONUNBUFFERED": "1"}


def _copy_sources(dest: Path) -> Path:
    dest.mkdir()
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def _local_setuptools_ok() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    version = tuple(int(p) for p in re.findall(r"\d+", setuptools.__version__)[:1])
    return version >= MIN_SETUPTOOLS


def _build_wheel(src: Path, out: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-w", str(out)]
    built = subprocess.run(cmd, env=_pip_env(), capture_output=True, text=True, timeout=600)
    if built.returncode != 0 and OFFLINE.search(built.stdout + built.stderr):
        if not _local_setuptools_ok():
            pytest.skip(
                "cannot build the wheel: `pip wheel` needs setuptools>=77 from the package registry, which "
                f"is unreachable, and the installed setuptools is older or absent ({sys.executable})"
            )
        built = subprocess.run(
            [*cmd, "--no-build-isolation"], env=_pip_env(), capture_output=True, text=True, timeout=600
        )
    assert built.returncode == 0, f"pip wheel failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}"
    wheels = sorted(out.glob("bsa_eval-*.whl"))
    assert len(wheels) == 1, f"expected one bsa_eval wheel in {out}, found {[w.name for w in out.iterdir()]}"
    return wheels[0]


def _dependency_dirs() -> list[str]:
    """The site-packages of the interpreter running the tests, where bsa's dependencies are."""
    dirs = [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    seen: list[str] = []
    for d in dirs:
        if Path(d).is_dir() and d not in seen:
            seen.append(d)
    return seen


def _run(cmd: list[str], inst: Installed, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=inst.work, env=inst.env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(_copy_sources(root / "src"), root / "dist")

    venv = root / "venv"
    made = subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, timeout=60, env=_pip_env(),
    ).stdout.strip()  # fmt: skip
    # After the venv's own site-packages: the wheel's bsa comes first, the dependencies after it.
    (Path(purelib) / "zz_bsa_test_dependencies.pth").write_text("\n".join(_dependency_dirs()) + "\n")

    # pip itself comes from the outer site-packages; --ignore-installed: a bsa-eval found there (the
    # editable install) is not this venv's, and the wheel must be installed regardless.
    pip = [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", str(wheel)]
    done = subprocess.run(pip, env=_pip_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (
        f"installing {wheel.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )

    work = root / "work"  # outside the repo: nothing is found through the current directory
    work.mkdir()
    env = {
        **_pip_env(),
        "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "BSA_CACHE_DIR": str(root / "cache"),
    }
    summary = [f"wheel {wheel.name} ({wheel.stat().st_size // 1024} KiB)"]
    return Installed(wheel, venv, python, work, env, summary)


def _repo_package_files() -> set[str]:
    """Every file of the bsa package in the repo (the wheel's archive names), bytecode aside."""
    return {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "bsa").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def test_the_wheel_holds_every_file_of_the_package(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as z:
        names = set(z.namelist())
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = z.read(meta).decode()
    missing = sorted(_repo_package_files() - names)
    assert not missing, f"files of bsa/ absent from {installed.wheel.name}: {missing}"
    for must in (
        "bsa/report/__init__.py",
        "bsa/conf/config.yaml",
        "bsa/conf/hydra/launcher/bsa_slurm.yaml",
        "bsa/templates/judge/safety.md",
        "bsa/templates/safety_rules.md",
        "bsa/templates/grammars/think_answer.gbnf",
        "bsa/templates/view/page.js",  # the pages: templates, scripts, stylesheets (bsa.pages)
        "bsa/templates/labels/page.html",
        "bsa/templates/report/report.css",
        "bsa/resources/demo.csv",
        "bsa/py.typed",
    ):
        assert must in names, must
    assert not [n for n in names if n.startswith(("tests/", "conf/", "prompts/"))]
    assert "Name: bsa-eval\n" in metadata and f"Version: {bsa.__version__}\n" in metadata
    assert "Project-URL: Paper, https://arxiv.org/abs/2505.19690" in metadata
    installed.summary.append(
        f"{len(names)} files in the wheel, all {len(_repo_package_files())} of bsa/ among them"
    )


def test_the_installed_bsa_is_the_wheel_not_the_repo(installed: Installed) -> None:
    code = (
        "import importlib.metadata as md, json, bsa, bsa.report, bsa.conf\n"
        "from bsa.__main__ import CONF_DIR\n"
        "from bsa.prompts import PROMPTS_DIR\n"
        "print(json.dumps({'file': bsa.__file__, 'version': bsa.__version__, 'dist': md.version('bsa-eval'),"
        " 'conf': CONF_DIR, 'prompts': str(PROMPTS_DIR)}))\n"
    )
    out = _run([str(installed.python), "-c", code], installed, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    venv = installed.venv.resolve()
    for key in ("file", "conf", "prompts"):
        path = Path(info[key]).resolve()
        assert path.is_relative_to(venv), f"{key}: {path} is not inside the venv {venv}"
        assert not path.is_relative_to(REPO.resolve()), f"{key}: {path} is in the repo"
    assert info["version"] == info["dist"] == bsa.__version__
    installed.summary.append(f"bsa {info['version']} imported from {Path(info['file']).parent}")


def test_the_console_script_composes_the_shipped_configs(installed: Installed) -> None:
    script = installed.python.parent / ("bsa.exe" if os.name == "nt" else "bsa")
    assert script.is_file(), f"no console script {script}"
    out = _run([str(script), "--cfg", "job"], installed, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "name: hosted_vllm/smollm2" in out.stdout and "Primary config directory" not in out.stderr
    out = _run([str(script), "run", "--help"], installed, timeout=120)
    assert out.returncode == 0 and "deepseek_r1" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    installed.summary.append("`bsa --cfg job` composed the packaged configs; `bsa run --help` lists them")
    for name in ("bsa-report", "bsa-score", "bsa-view", "bsa-calibrate"):
        tool = installed.python.parent / name
        got = _run([str(tool), "--help"], installed, timeout=120)
        assert got.returncode == 0 and "usage:" in got.stdout, got.stdout[-1000:] + got.stderr[-1000:]
    verbs = ("estimate", "view", "report", "score", "labels", "agreement", "rejudge", "calibrate", "models")
    for verb in verbs:  # `bsa <verb>`: the tools beside the run
        got = _run([str(script), verb, "--help"], installed, timeout=120)
        assert got.returncode == 0 and "usage:" in got.stdout.lower(), got.stdout[-1000:] + got.stderr[-1000:]
    installed.summary.append(
        "bsa-report, bsa-score, bsa-view and bsa-calibrate answer --help, as does every `bsa <verb>`"
    )


def test_a_run_report_and_score_from_outside_the_repo(installed: Installed) -> None:
    work = installed.work
    data = write_dataset(work / "mini.csv", ROWS)
    run_dir = work / "run"
    # Our own judge templates and the shipped safety rules: both must come from the package.
    extra = ("judge.prompts=bsa", "mitigation=rules", f"hydra.run.dir={run_dir}", "progress=false")
    with ScriptedServer(responder(QUERY_IDS, scripted)) as server:
        cmd = [str(installed.python), "-m", "bsa", *scripted_overrides(server.api_base, data, *extra)]
        out = _run(cmd, installed)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Safe@1" in out.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    info = json.loads((run_dir / "run.json").read_text())
    venv = installed.venv.resolve()
    rules = Path(info["mitigation_prompt"]["file"]).resolve()
    assert rules.is_relative_to(venv) and rules.name == "safety_rules.md", rules
    templates = Path(info["judge_prompts"]["source"]).resolve()
    assert templates.is_relative_to(venv), templates
    assert (run_dir / ".hydra" / "config.yaml").is_file()

    report = _run(
        [str(installed.python), "-m", "bsa.report", str(run_dir), "--out", str(work / "report")], installed
    )
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    for name in ("report.md", "report.html", "leaderboard.csv"):
        assert (work / "report" / name).is_file(), name
    # The pages render from the wheel's templates, their scripts and stylesheets inlined as shipped.
    view = _run([str(installed.python), "-m", "bsa.view", str(run_dir)], installed)
    assert view.returncode == 0, view.stdout[-3000:] + view.stderr[-3000:]
    labels = [str(installed.python), "-m", "bsa.labels", "export", str(run_dir), "--n", "4"]
    exported = _run(labels, installed)
    assert exported.returncode == 0, exported.stdout[-3000:] + exported.stderr[-3000:]
    shipped = next(installed.venv.rglob("bsa/templates")).resolve()
    assert shipped.is_relative_to(installed.venv.resolve()), shipped
    for page, assets in (
        (run_dir / "samples.html", ("view/page.js", "view/page.css")),
        (run_dir / "labels" / "label.html", ("labels/page.js", "labels/page.css")),
        (work / "report" / "report.html", ("report/report.css",)),
    ):
        text = page.read_text(encoding="utf-8")
        assert text.startswith("<!doctype html>"), page
        for asset in assets:
            assert (shipped / asset).read_text(encoding="utf-8").strip("\n") in text, (page, asset)

    scored_json = work / "scored.json"
    score = _run(
        [str(installed.python), "-m", "bsa.score", str(run_dir / "bsa_results.csv"), "--k", "2",
         "--out", str(scored_json), "--dataset", str(data)],
        installed,
    )  # fmt: skip
    assert score.returncode == 0, score.stdout[-3000:] + score.stderr[-3000:]
    scored = json.loads(scored_json.read_text())
    for key in ("safe_at_1", "safe_at_k", "think_at_1", "think_at_k", "f_score"):
        assert scored[key] == pytest.approx(metrics[key]), key
    installed.summary.append(
        f"python -m bsa (judge.prompts=bsa, mitigation=rules) from {work}: "
        f"Safe@1 {metrics['safe_at_1']:.1f}, Think@1 {metrics['think_at_1']:.1f}; "
        "bsa.report wrote report.md/html, bsa.view and bsa.labels their pages (shipped templates); "
        "bsa.score agrees"
    )
    print("\nwheel test summary:\n  " + "\n  ".join(installed.summary))

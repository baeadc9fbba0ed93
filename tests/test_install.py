"""The embedded model's llama.cpp is built for any x86-64 CPU, never for the machine that built it.

A native build (llama.cpp's default) uses whatever the building CPU reports: on a CPU that reports AMX
inside a VM the server dies with a general protection fault in ``ggml_backend_amx_mul_mat`` on its
first completion, and a native wheel in pip's cache carries those instructions to later machines.
``scripts/install-llama-cpp`` builds it with an AVX2 baseline; these tests hold the installed library,
the Makefile and the README to that.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "install-llama-cpp"
# Instructions beyond the AVX2 baseline: a build that has any of them was made for its building CPU.
BEYOND_BASELINE = re.compile(r"^(AVX512\w*|AMX\w*|AVX_VNNI\w*|AVX10\w*)$")


def compiled_features(info: str) -> dict[str, bool]:
    """``llama_print_system_info()``'s ``NAME = 1`` pairs (the features the library was compiled with)."""
    return {name: value == "1" for name, value in re.findall(r"([A-Z0-9_]+) = (\d)", info)}


def test_feature_parser_reads_a_native_amx_build() -> None:
    native = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | OPENMP = 1 | "
    beyond = [n for n, on in compiled_features(native).items() if on and BEYOND_BASELINE.match(n)]
    assert beyond == ["AVX512", "AVX512_BF16", "AMX_INT8"]


def test_installed_llama_cpp_is_a_portable_build() -> None:
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make install)")
    info = llama_cpp.llama_print_system_info()
    info = info.decode() if isinstance(info, bytes) else str(info)
    features = compiled_features(info)
    assert features.get("AVX2"), f"not an AVX2 build: {info}"
    beyond = sorted(n for n, on in features.items() if on and BEYOND_BASELINE.match(n))
    assert not beyond, (
        f"llama-cpp-python was built with {', '.join(beyond)} (a native build for the machine that built "
        f"it; it crashes on CPUs that report AMX inside a VM): {info}. Reinstall it portable: "
        "rm .venv/.installed-llama && make install"
    )


def test_script_installs_the_range_the_local_extra_names() -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["local"]
    wanted = next(r for r in extra if r.startswith("llama-cpp-python"))
    spec = re.search(r"^SPEC='([^']+)'", SCRIPT.read_text(), re.MULTILINE)
    assert spec is not None
    assert spec.group(1) == wanted


def test_script_builds_without_native_flags_and_bypasses_pips_cache() -> None:
    text = SCRIPT.read_text()
    flags = re.search(r'^FLAGS="([^"]+)"', text, re.MULTILINE | re.DOTALL)
    assert flags is not None
    given = dict(re.findall(r"-D(GGML_\w+)=(ON|OFF)", flags.group(1)))
    assert given["GGML_NATIVE"] == "OFF"
    assert given["GGML_AVX2"] == "ON"
    for name in ("GGML_AVX512", "GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16", "GGML_AVX_VNNI"):
        assert given[name] == "OFF", name
    # pip's wheel cache key ignores CMAKE_ARGS: a cached native wheel must never be taken.
    assert "--no-cache-dir" in text and "--only-binary llama-cpp-python" in text


def test_makefile_and_readme_install_through_the_script() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\$\(STAMP_RUN\):.*\$\(STAMP_LLAMA\)", makefile, re.MULTILINE)
    assert re.search(r"^\$\(STAMP_DEV\):.*\$\(STAMP_LLAMA\)", makefile, re.MULTILINE)
    assert "scripts/install-llama-cpp $(BIN)/python" in makefile
    readme = (ROOT / "README.md").read_text()
    without_make = readme.split("## Install without make", 1)[1].split("\n## ", 1)[0]
    assert "scripts/install-llama-cpp" in without_make
    assert without_make.index("scripts/install-llama-cpp") < without_make.index("pip install '.[local]'")

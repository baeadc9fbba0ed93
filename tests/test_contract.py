"""The contract module (bsa/contract.py) is the one place that spells the row keys and the run dir's
file names, joins generations with judgments, and stays a leaf: the standard library only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from bsa import contract, results, rundir
from bsa.contract import SAFETY, THINK, join

PACKAGE = Path(contract.__file__).parent
CONTRACT = Path(contract.__file__)


def _spelled(literal: str) -> list[str]:
    """``file:line`` of every string literal equal to ``literal`` in bsa/'s Python sources but the
    contract (prose that mentions it, as in an error message, is not a spelling of the key)."""
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == CONTRACT:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value == literal:
                hits.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return hits


@pytest.mark.parametrize("literal", ["sample_index", "run.json"])
def test_only_the_contract_spells_the_row_key_and_the_run_file(literal: str) -> None:
    hits = _spelled(literal)
    assert not hits, f"{literal!r} spelled outside bsa/contract.py; use its constant:\n" + "\n".join(hits)


def test_the_contract_imports_only_the_standard_library() -> None:
    tree = ast.parse(CONTRACT.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import: the contract imports nothing of bsa"
            imported.add((node.module or "").split(".")[0])
    assert imported, "the contract's imports were not found"
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
    # And importing it loads nothing heavy (bsa/__init__ is lazy).
    code = (
        "import sys, bsa.contract; heavy = {'hydra', 'omegaconf', 'numpy', 'pandas', 'pyarrow', 'yaml'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_old_homes_re_export_the_contract() -> None:
    from bsa import config, verdict
    from bsa.report import columns

    assert config.SCENARIOS is contract.SCENARIOS and config.CATEGORIES is contract.CATEGORIES
    assert config.DEFAULT_ALPHA == contract.DEFAULT_ALPHA
    assert verdict.THINK_LABELS is contract.THINK_LABELS and verdict.THINK_TARGET is contract.THINK_TARGET
    assert verdict.THINK_MISS is contract.THINK_MISS and (verdict.SAFETY, verdict.THINK) == (SAFETY, THINK)
    assert columns.METRICS == contract.METRICS and columns.ABBR is contract.ABBR
    assert (results.GENERATIONS, results.JUDGMENTS, results.METRICS, results.SAMPLES) == (
        contract.GENERATIONS_JSONL,
        contract.JUDGMENTS_JSONL,
        contract.METRICS_JSON,
        contract.SAMPLES_PARQUET,
    )
    assert rundir.INFO == contract.RUN_JSON
    assert [name for name, _ in rundir.WRITERS] == [
        contract.GENERATIONS_JSONL,
        contract.JUDGMENTS_JSONL,
        contract.METRICS_JSON,
        contract.RESULTS_CSV,
        contract.SAMPLES_PARQUET,  # last: it records the sha256 of the JSONL files
    ]


def test_metric_table_names_every_key_once() -> None:
    assert dict(contract.HEADLINE) == {
        "Safe@1": "safe_at_1",
        "Safe@k": "safe_at_k",
        "Think@1": "think_at_1",
        "Think@k": "think_at_k",
        "F-score": "f_score",
    }
    names = [name for name, _ in contract.METRICS]
    assert len(set(names)) == len(names) == 11
    assert ("OS@1", "Over Sensitivity/think_at_1") in contract.METRICS


def test_join_puts_each_generation_beside_its_last_judgments() -> None:
    gens = [
        {"id": "a", "sample_index": 0},
        {"id": "a", "sample_index": 1},
        {"id": "b", "sample_index": 0},
    ]
    judgments = [
        {"id": "a", "sample_index": 0, "kind": SAFETY, "verdict": "Unsafe"},
        {"id": "a", "sample_index": 0, "kind": THINK, "verdict": "True"},
        {"id": "a", "sample_index": 0, "kind": SAFETY, "verdict": "Safe"},  # a resume's later row
        {"id": "b", "sample_index": 0, "kind": THINK, "verdict": "False"},
        {"id": "c", "sample_index": 0, "kind": SAFETY, "verdict": "Safe"},  # no generation: left out
        {"verdict": "Safe"},  # no keys: matches nothing
    ]
    samples = join(gens, judgments)
    assert [s.generation for s in samples] == gens  # in the generations' order, one per row
    first, second, third = samples
    assert first.safety is not None and first.safety["verdict"] == "Safe" and first.judged
    assert first.think is not None and first.think["verdict"] == "True"
    assert second.safety is None and second.think is None and not second.judged
    assert third.safety is None and third.judgment(THINK) == judgments[3]
    assert (third.id, third.sample_index, third.key) == ("b", 0, ("b", 0))


def test_the_reader_returns_config_info_and_joined_samples(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / contract.HYDRA_DIR).mkdir(parents=True)
    (run_dir / contract.HYDRA_DIR / contract.CONFIG_YAML).write_text("sampling:\n  k: 2\n", encoding="utf-8")
    (run_dir / contract.RUN_JSON).write_text('{"status": "complete"}\n', encoding="utf-8")
    results.write_jsonl(run_dir / contract.GENERATIONS_JSONL, [{"id": "a", "sample_index": 0}])
    results.write_jsonl(
        run_dir / contract.JUDGMENTS_JSONL,
        [{"id": "a", "sample_index": 0, "kind": SAFETY, "verdict": "Safe"}],
    )
    files = rundir.read(run_dir)
    assert files.is_run and files.info == {"status": "complete"}
    assert files.config == {"sampling": {"k": 2}} and files.metrics == {}
    [sample] = files.samples
    assert sample.safety == {"id": "a", "sample_index": 0, "kind": SAFETY, "verdict": "Safe"}
    assert sample.think is None

    (run_dir / contract.JUDGMENTS_JSONL).write_text('{"id": 1}\nnot json\n{"id": 2}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        rundir.read(run_dir)
    lenient = rundir.read(run_dir, lenient=True)
    assert lenient.judgments == [] and lenient.generations != []
    assert lenient.notes == [
        f"{contract.JUDGMENTS_JSONL} unreadable ({lenient.errors[contract.JUDGMENTS_JSONL]}); "
        "its rows are left out"
    ]

    empty = rundir.read(tmp_path / "nothing")
    assert not empty.is_run and empty.info is None and empty.config == {} and empty.samples == []

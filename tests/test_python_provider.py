"""The provider seam proven by a second backend: a judge that is a Python function
(judge=python judge.callable=package.module:function), against the scripted model server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keyword_judge
import pytest
from helpers import responder, write_dataset
from helpers import scripted_overrides as overrides
from scripted_server import ScriptedServer
from test_resilience import make_rows, rule_for

from bsa.config import Config, ConfigError
from bsa.llm import ModelCallError
from bsa.run import RunIncomplete, run


def _with_python_judge(api_base: str, data: Path, function: str) -> list[str]:
    """The scripted model, and the function in keyword_judge.py as the judge."""
    model = [o for o in overrides(api_base, data) if not o.startswith("judge")]
    return [*model, "judge=python", f"judge.callable=keyword_judge:{function}"]


@pytest.mark.parametrize("function", ["judge", "async_judge"])
def test_a_python_function_judges_like_any_judge(
    tmp_path: Path, make_config: Callable[..., Config], function: str
) -> None:
    rows = make_rows(12)
    data = write_dataset(tmp_path / "d.csv", rows)
    ids = {r["query"]: r["id"] for r in rows}
    with ScriptedServer(responder(ids, rule_for(rows))) as server:
        reference = run(make_config(*overrides(server.api_base, data)), tmp_path / "api-judge")
        keyword_judge.CALLS.clear()
        cfg = make_config(*_with_python_judge(server.api_base, data, function))
        res = run(cfg, tmp_path / "python-judge")
        assert len(keyword_judge.CALLS) == 48  # 12 queries x 2 samples x 2 kinds, nothing re-asked
        again = run(cfg, tmp_path / "python-judge")  # a resume: every judgment is in the cache
        assert len(keyword_judge.CALLS) == 48
    # The same verdicts through another backend: the same metrics, to the last digit.
    for key in ("safe_at_1", "safe_at_k", "think_at_1", "think_at_k", "f_score"):
        assert res.metrics[key] == reference.metrics[key], key
    assert again.metrics == res.metrics
    assert {j["judge_model"] for j in res.judgments} == {"python/function"}
    prompt = keyword_judge.CALLS[0]["messages"][-1]["content"]
    assert "```text" in prompt  # the judge prompt filled as for any judge
    if function == "async_judge":
        assert res.stats.by_role["judge"]["prompt_tokens"] == 48 * 7


def test_a_function_that_raises_stops_the_run_with_its_error(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    rows = make_rows(3)
    data = write_dataset(tmp_path / "d.csv", rows)
    with ScriptedServer(responder({r["query"]: r["id"] for r in rows}, rule_for(rows))) as server:
        with pytest.raises(RunIncomplete) as err:
            run(make_config(*_with_python_judge(server.api_base, data, "broken")), tmp_path / "run")
    assert "keyword_judge:broken raised RuntimeError: classifier weights not found" in str(err.value)
    assert err.value.results.judgments == []


def test_a_function_that_cannot_be_found_is_refused_before_any_call(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    rows = make_rows(3)
    data = write_dataset(tmp_path / "d.csv", rows)
    with ScriptedServer(responder({}, rule_for(rows))) as server:
        with pytest.raises(ModelCallError, match=r"keyword_judge has no function 'missing'"):
            run(make_config(*_with_python_judge(server.api_base, data, "missing")), tmp_path / "a")
        with pytest.raises(ModelCallError, match=r"cannot import no_such_module"):
            cfg = make_config(
                *overrides(server.api_base, data), "judge=python", "judge.callable=no_such_module:f"
            )
            run(cfg, tmp_path / "b")
        assert server.requests == []
    with pytest.raises(
        ConfigError, match=r"judge.provider=python needs judge.callable=package.module:function"
    ):
        run(
            make_config(*overrides("http://127.0.0.1:9/v1", data), "judge=python", "judge.callable=nocolon"),
            tmp_path / "c",
        )


def test_an_unknown_provider_is_refused_with_the_ones_there_are(make_config: Callable[..., Config]) -> None:
    from bsa.config import validate

    with pytest.raises(ConfigError, match=r"judge.provider='grpc': expected one of litellm, python"):
        validate(make_config("judge.provider=grpc"))

"""dry_run's estimate (bsa/cost.py) and the usage tables (bsa/console.py): prices from LiteLLM's
local map, unpriced local servers, batch prices, calls not built yet, narrow terminals."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from bsa import console
from bsa.cost import SAMPLE, estimate, prices
from bsa.llm import Endpoint, Request, import_litellm

GPT4O = Endpoint("openai/gpt-4o", role="judge")
LOCAL = Endpoint("hosted_vllm/target", "http://127.0.0.1:9/v1", role="model")


@pytest.fixture(scope="module")
def litellm():
    return import_litellm()  # sets LITELLM_LOCAL_MODEL_COST_MAP before the import: no network


def req(ep: Endpoint, text: str, max_tokens: int | None = 100, i: int = 0) -> Request:
    params = {"max_tokens": max_tokens} if max_tokens is not None else {}
    return Request(ep, [{"role": "user", "content": text}], params, sample_index=i)


def tokens(litellm, ep: Endpoint, text: str) -> int:
    return litellm.token_counter(model=ep.model, messages=[{"role": "user", "content": text}])


def test_priced_model_uses_the_price_map(litellm) -> None:
    reqs = [req(GPT4O, f"judge this answer number {i}: it is fine") for i in range(10)]
    est = estimate({"judge": reqs}, {}, judge_batch=False)
    (line,) = est.lines
    info = litellm.get_model_info("openai/gpt-4o")
    prompt = sum(tokens(litellm, GPT4O, r.messages[0]["content"]) for r in reqs)
    assert (line.calls, line.cached, line.to_call, line.estimated_calls) == (10, 0, 10, 0)
    assert line.prompt_tokens == prompt and line.prompt_basis == "counted"
    assert line.completion_tokens == 1000 and line.completion_basis.startswith("max_tokens")
    want = prompt * info["input_cost_per_token"] + 1000 * info["output_cost_per_token"]
    assert line.usd == pytest.approx(want)
    assert est.total_usd() == pytest.approx(want)


def test_cached_requests_cost_nothing(litellm) -> None:
    reqs = [req(GPT4O, f"q{i}") for i in range(6)]
    hits = {reqs[0].cache_key(), reqs[1].cache_key()}
    est = estimate({"judge": reqs}, {}, False, is_cached=lambda r: r.cache_key() in hits)
    assert (est.lines[0].calls, est.lines[0].cached, est.lines[0].to_call) == (6, 2, 4)
    assert est.lines[0].completion_tokens == 400
    # The other way: the caller passes only uncached requests and the cached count.
    est2 = estimate({"judge": reqs[2:]}, {}, False, cached_counts={"judge": 2})
    assert (est2.lines[0].calls, est2.lines[0].cached, est2.lines[0].usd) == (6, 2, est.lines[0].usd)


def test_observed_completion_tokens_replace_the_bound(litellm) -> None:
    reqs = [req(GPT4O, "x") for _ in range(4)]
    est = estimate({"judge:safety": reqs}, {}, False, observed={"judge": (10, 250)})
    assert est.lines[0].completion_tokens == 100 and est.lines[0].completion_basis == "observed"


def test_unpriced_model(litellm) -> None:
    est = estimate({"model": [req(LOCAL, "hello there", i=i) for i in range(3)]}, {}, False)
    (line,) = est.lines
    assert line.usd is None and line.unpriced == ["hosted_vllm/target"]
    assert line.prompt_tokens > 0 and line.completion_tokens == 300
    assert est.total_usd() is None
    # All cached: nothing to pay, still said to be unpriced rather than $0.
    est = estimate({"model": [req(LOCAL, "hi")]}, {}, False, is_cached=lambda r: True)
    assert est.lines[0].usd is None and est.lines[0].calls_to_make == 0


def test_batch_prices_for_the_judge_only(litellm) -> None:
    info = litellm.get_model_info("openai/gpt-4o")
    assert info["input_cost_per_token_batches"] < info["input_cost_per_token"]
    online, batch = prices("openai/gpt-4o", False), prices("openai/gpt-4o", True)
    assert batch is not None and batch.batch and batch.input == info["input_cost_per_token_batches"]
    assert online is not None and not online.batch
    model_ep = Endpoint("openai/gpt-4o", role="model")
    reqs = {"model": [req(model_ep, "a question")], "judge": [req(GPT4O, "a question")]}
    on = estimate(reqs, {}, judge_batch=False)
    off = estimate(reqs, {}, judge_batch=True)
    by = {ln.role: ln for ln in off.lines}
    assert by["judge"].batch_prices and not by["model"].batch_prices
    assert by["model"].usd == pytest.approx(on.lines[0].usd)  # the model never goes through a batch
    assert by["judge"].usd == pytest.approx(on.lines[1].usd / 2)  # OpenAI's batch: half price


def test_batch_without_batch_price_falls_back_to_online(litellm) -> None:
    ep = Endpoint("deepseek/deepseek-reasoner", role="judge")
    est = estimate({"judge": [req(ep, "x")]}, {}, judge_batch=True)
    assert not est.lines[0].batch_prices and est.lines[0].usd and est.lines[0].usd > 0
    assert any("online price" in n for n in est.lines[0].notes)


def test_unknown_calls_from_the_mean_known_request(litellm) -> None:
    short, long = "short prompt", "a much longer prompt " * 20
    known = [req(GPT4O, short, max_tokens=50), req(GPT4O, long, max_tokens=50)]
    est = estimate({"judge:think": known}, {"judge:think": 4}, False)
    (line,) = est.lines
    mean = (tokens(litellm, GPT4O, short) + tokens(litellm, GPT4O, long)) / 2
    assert (line.calls, line.to_call, line.estimated_calls, line.calls_to_make) == (6, 2, 4, 6)
    assert line.prompt_tokens == round(mean * 6)
    assert line.completion_tokens == 300
    assert any("4 calls estimated" in n for n in line.notes)


def test_unknown_calls_from_a_prototype_plus_the_model_output(litellm) -> None:
    gens = [req(LOCAL, "question", max_tokens=1000, i=i) for i in range(2)]
    proto = req(GPT4O, "the judge template with an empty answer", max_tokens=10)
    est = estimate(
        {"model": gens}, {"judge:safety": 2, "judge:think": 2}, False, prototypes={"judge:safety": proto}
    )
    by = {ln.key: ln for ln in est.lines}
    assert [ln.key for ln in est.lines] == ["model", "judge:safety", "judge:think"]
    p0 = tokens(litellm, GPT4O, "the judge template with an empty answer")
    assert by["judge:safety"].prompt_tokens == 2 * (p0 + 1000)  # the judge reads the model's output
    assert by["judge:safety"].usd and by["judge:safety"].usd > 0
    think = by["judge:think"]  # nothing known, no prototype: counted, but tokens and dollars unknown
    assert think.calls == 2 and think.prompt_tokens is None and think.usd is None


def test_many_requests_are_sampled_not_all_counted(litellm) -> None:
    reqs = [req(GPT4O, f"query {i} " + "words " * (i % 17)) for i in range(SAMPLE * 3)]
    est = estimate({"judge": reqs}, {}, False)
    exact = sum(tokens(litellm, GPT4O, r.messages[0]["content"]) for r in reqs)
    assert est.lines[0].prompt_basis == "sampled"
    assert est.lines[0].prompt_tokens == pytest.approx(exact, rel=0.05)


def test_no_max_tokens_gives_a_lower_bound(litellm) -> None:
    est = estimate({"judge": [req(GPT4O, "x", max_tokens=None)]}, {}, False)
    line = est.lines[0]
    assert line.completion_basis == "unknown" and line.usd_lower_bound and line.usd and line.usd > 0


def _render(fn, *args) -> str:
    buf = io.StringIO()
    fn(*args, out=Console(file=buf, width=60, force_terminal=False, color_system=None))
    text = buf.getvalue()
    assert all(len(line) <= 60 for line in text.splitlines())
    return text


def test_dry_run_table_on_a_narrow_terminal(litellm) -> None:
    est = estimate(
        {
            "model": [req(LOCAL, "q", i=i) for i in range(3)],
            "judge:safety": [req(GPT4O, "judge me")],
            "judge:think": [],
        },
        {"judge:safety": 5, "judge:think": 6},
        True,
        is_cached=lambda r: r.sample_index == 0 and r.endpoint is LOCAL,
    )
    text = _render(console.print_dry_run, est)
    flat = " ".join(text.split())
    assert "unpriced" in flat and "$" in flat and "Nothing was called" in flat
    assert "batch prices" in flat and "hosted_vllm/target" in flat
    think = next(line for line in text.splitlines() if line.strip().startswith("think"))
    assert think.split()[-1] == "?"  # not built, nothing to size it from: unknown, not "unpriced"


def test_usage_table_tolerates_missing_keys() -> None:
    text = _render(
        console.print_usage,
        {
            "model": {"calls": 10, "prompt_tokens": 1234, "completion_tokens": 56789},
            "judge": {"calls": 20, "prompt_tokens": 99, "cost_usd": 0.012345, "reasoning_tokens": 0},
        },
    )
    assert "—" in text and "total" in text and "$0.01" in text and "56,789" in text
    assert _render(console.print_usage, {}) == ""

"""The stop policy (bsa/policy.py): budgets and failure policy in one place, as the client and the
scheduler consult it."""

from __future__ import annotations

from bsa.llm import Client, ModelCallError, Stopped, TransientFailure
from bsa.policy import StopPolicy


def test_request_budget_stops_at_the_limit_quietly() -> None:
    policy = StopPolicy(max_requests=2)
    assert policy.launch(0) is None and policy.launch(1) is None
    assert policy.requests_left(1) == 1
    assert policy.launch(2) == "max_requests=2 reached"
    assert policy.stopping and policy.stopped_at is None  # a budget stop is not announced


def test_cost_budget_names_what_was_spent_and_the_first_reason_wins() -> None:
    policy = StopPolicy(max_cost_usd=3.0)
    policy.spent(2.5)
    assert policy.reason is None
    policy.spent(3.75)
    assert policy.reason == "max_cost_usd=3.0 reached (spent 3.7500)"
    policy.stop("fatal error: later")
    assert policy.reason == "max_cost_usd=3.0 reached (spent 3.7500)"


def test_failures_in_a_row_per_role_and_fatal_errors() -> None:
    policy = StopPolicy(max_consecutive_failures=2)
    policy.failed("model", {"id": "q1"}, TransientFailure("down"))
    policy.failed("judge", {"id": "q1"}, TransientFailure("down"))
    policy.succeeded("judge")
    assert policy.reason is None
    policy.failed("model", {"id": "q2"}, TransientFailure("down"))
    assert policy.reason == "2 calls in a row failed after all retries (last: down)"
    assert policy.stopped_at is not None and len(policy.failures) == 3

    fatal = StopPolicy()
    fatal.failed("judge", {"id": "q1"}, ModelCallError("401"))
    assert fatal.reason == "fatal error: 401" and fatal.failures[0]["type"] == "ModelCallError"


def test_the_client_consults_its_policy() -> None:
    client = Client(None, policy=StopPolicy(max_requests=1))
    client._launch(None)  # type: ignore[arg-type]
    try:
        client._launch(None)  # type: ignore[arg-type]
    except Stopped as e:
        assert str(e) == "max_requests=1 reached"
    else:
        raise AssertionError("the second request passed the budget")
    assert client.stop_reason == client.policy.reason == "max_requests=1 reached"
    assert Client(None).policy.max_requests is None

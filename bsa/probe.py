"""Asking the provider before a run: does it serve this model id, does it take this key, and when does
it shut the model down. One cheap call per endpoint: its model list where the provider has an
OpenAI-style ``GET /models`` (no tokens billed), else a 1-token completion. A retired id or a wrong key
is then refused in seconds, in the provider's own words, instead of on each of the run's first calls.

OpenAI's model list may carry a ``shutdown_date`` per model: a model or judge that shuts down within
``SHUTDOWN_WARN_DAYS`` is warned about, one already shut down is refused.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import date, datetime, timezone
from typing import Any

from bsa.llm import (
    Endpoint,
    ModelCallError,
    _redact,
    _short,
    endpoint_label,
    import_litellm,
    provider_base,
    same_model,
)
from bsa.providers.litellm_api import PROVIDER

SHUTDOWN_WARN_DAYS = 30
# Providers whose API lists its models at GET <base>/models, OpenAI's way (Bearer key).
LISTING_PROVIDERS = frozenset(
    ("openai", "deepseek", "together_ai", "openrouter", "xai", "groq", "moonshot", "fireworks_ai")
)
_GONE = ("model_not_found", "does not exist", "not found")  # a 400 that names the model as unknown


def ask(ep: Endpoint, timeout_s: float = 10.0, today: date | None = None) -> list[str]:
    """Warnings about ``ep``'s model (it shuts down soon, it is not in the provider's list but
    answered); raises ModelCallError when the provider refuses the key or does not serve the model."""
    if ep.provider not in ("litellm", "direct"):  # a Python function: preflight imported it, nothing to ask
        return []
    litellm = import_litellm()
    try:
        _, provider, _, _ = litellm.get_llm_provider(ep.model, api_base=ep.api_base)
    except Exception:  # preflight has refused an unroutable model string already
        return []
    key = ep.api_key()
    base = provider_base(ep, litellm)
    # Anthropic's and Gemini's model lists take their own key headers (x-api-key; x-goog-api-key): a
    # Bearer key gets 401 from Google's /v1beta/models, so behind an api_base they are asked by completion.
    native = provider in ("anthropic", "gemini")
    if base and not native and (ep.api_base or provider in LISTING_PROVIDERS):
        listed = _model_list(ep, base, key, timeout_s)
        if listed is None:  # no list here: a completion tells
            return []
        entry = next((m for m in listed if same_model(ep.model, str(m.get("id", "")))), None)
        if entry is not None:
            return shutdown_warnings(ep, entry, today or date.today())
        if not listed:
            return []  # an empty list says nothing
        _completion(ep, key, timeout_s, [str(m.get("id")) for m in listed])
        return [f"{endpoint_label(ep)}: not in the provider's list of {len(listed)} models, but it answered"]
    _completion(ep, key, timeout_s, None)
    return []


def _model_list(ep: Endpoint, base: str, key: str | None, timeout_s: float) -> list[dict[str, Any]] | None:
    """The provider's model entries; None where it has no list (or none we can read)."""
    url = base.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s) as r:
            payload = json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            words = _redact(_body(e), key)
            whose = f"the key in {ep.api_key_env}" if ep.api_key_env else "a request without a key"
            fix = (
                f"check the key in {ep.api_key_env}"
                if ep.api_key_env
                else f"set {ep.role}.api_key_env to the variable that holds the key"
            )
            raise ModelCallError(
                f"{endpoint_label(ep)}: {url} refused {whose} (HTTP {e.code}: {words}); {fix}"
            ) from None
        return None
    except (urllib.error.URLError, OSError, ValueError):
        return None  # reachability was checked already; the first call says the rest
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        return None
    return [m for m in data if isinstance(m, dict)]


def _body(e: urllib.error.HTTPError) -> str:
    try:
        text = e.read().decode("utf-8", "replace")
    except OSError:
        return str(e.reason)
    try:
        err = json.loads(text).get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
    except (ValueError, AttributeError):
        pass
    return text.strip()[:300] or str(e.reason)


def _completion(ep: Endpoint, key: str | None, timeout_s: float, listed: list[str] | None) -> None:
    """A 1-token request: a provider that does not serve the id says so (404, or a 400 naming the model)."""
    litellm = import_litellm()
    kwargs, _ = PROVIDER.prepare(ep, key, timeout_s)  # as the run's own calls are made, synchronously
    try:
        litellm.completion(messages=[{"role": "user", "content": "Say OK."}], max_tokens=1, **kwargs)
    except Exception as e:
        status = getattr(e, "status_code", None)
        text = str(e)
        gone = status == 404 or type(e).__name__ == "NotFoundError"
        gone |= status == 400 and any(w in text.lower() for w in _GONE)
        if status in (401, 403):
            raise ModelCallError(
                f"{endpoint_label(ep)}: the provider refused the key (HTTP {status}: "
                f"{_redact(_short(e, 300), key)}); check the key in {ep.api_key_env or 'its variable'}"
            ) from None
        if gone:
            also = f" It lists: {', '.join(listed[:12])}{' …' if len(listed) > 12 else ''}." if listed else ""
            words = _redact(_short(e, 300), key)
            raise ModelCallError(
                f"{endpoint_label(ep)}: the provider does not serve this model ({words}).{also} The id may "
                "be retired: `bsa models` lists the cards and their successors"
            ) from None
        # Anything else (a rate limit, a 5xx, a parameter of the probe) says nothing of the id: the run's
        # own calls will tell, with their retries.


def shutdown_warnings(ep: Endpoint, entry: dict[str, Any], today: date) -> list[str]:
    """From the model's list entry: a warning when it shuts down within SHUTDOWN_WARN_DAYS; a refusal
    (ModelCallError) when that date has passed."""
    when = shutdown_date(entry.get("shutdown_date"))
    if when is None:
        return []
    days = (when - today).days
    if days < 0:
        raise ModelCallError(
            f"{endpoint_label(ep)}: the provider shut {entry.get('id')} down on {when.isoformat()}; pick a "
            "current model (`bsa models` lists the cards and their successors)"
        )
    if days <= SHUTDOWN_WARN_DAYS:
        return [
            f"{endpoint_label(ep)}: the provider shuts {entry.get('id')} down on {when.isoformat()} "
            f"(in {days} days); a run still going then will fail, and later runs cannot repeat it"
        ]
    return []


def shutdown_date(value: Any) -> date | None:
    """A list entry's shutdown date: an ISO date or datetime string, or a Unix time."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc).date()
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None

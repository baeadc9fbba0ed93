"""python -m bsa.view: every sample of a run on one self-contained page.

A real (scripted) run with hostile model and dataset text is turned into samples.html; the page is
opened in headless Chromium with a probe script appended to a copy of it, which drives the real
controls (filters, the debounced search, expanding a sample) and writes what it saw into the DOM.
A synthetic run of the benchmark's full size (2,000 queries × k = 5) measures the page's size and
load time."""

from __future__ import annotations

import html
import json
import random
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import compose_config, dataset_path
from helpers import responder, scripted_overrides, write_dataset
from scripted_server import ScriptedServer

from bsa import data, results, view
from bsa.config import CATEGORIES
from bsa.run import run
from bsa.verdict import THINK_LABELS

RO, CS, OS = "Risk Omission", "Cognitive Shortcut", "Over Sensitivity"
K = 2
PER_SCENARIO = 4
HOSTILE = "<img src=x onerror=\"window.__pwned=1;document.title='pwned'\"> </script><b>bold</b> &amp;"
HOSTILE_QUERY = "</script><script>window.__pwned=2</script><!-- Question r01 -->"
UNSCORED_KEY = ("think", "c01", 1)  # the judge answers garbage: unscored after its re-asks
EMPTY_TRACE = ("o02", 1)  # no reasoning: flagged no_reasoning, think by rule


def _rows() -> list[dict[str, str]]:
    rows = []
    for n in range(3 * PER_SCENARIO):
        scenario = (RO, CS, OS)[n // PER_SCENARIO]
        qid = f"{'rco'[n // PER_SCENARIO]}{n % PER_SCENARIO:02d}"
        cat, other = CATEGORIES[n % 9], CATEGORIES[(n + 4) % 9]
        label = f"Query A: {cat}-Sub\nQuery B: {other}-Sub" if scenario == CS else f"{cat}-Sub"
        query = HOSTILE_QUERY if qid == "r01" else f"Question {qid}: how would one do thing {n}?"
        rows.append(
            {
                "id": qid,
                "query": query,
                "risk_summary": (
                    f"Query A: Risk of {qid}.\nQuery B: Risk of {qid}b."
                    if scenario == CS
                    else f"Risk of {qid}."
                ),
                "dataset_name": scenario,
                "label": label,
            }
        )
    return rows


ROWS = _rows()
SCENARIO = {r["id"]: r["dataset_name"] for r in ROWS}


def reasoning_of(qid: str, i: int) -> str:
    if (qid, i) == EMPTY_TRACE:
        return ""
    text = f"R|{qid}|{i} Considering sample {qid}-{i} carefully.\nSecond line of the trace."
    return text + (" " + HOSTILE if (qid, i) == ("r01", 0) else "")


def answer_of(qid: str, i: int) -> str:
    return f"A|{qid}|{i} The answer of {qid}-{i}." + (" " + HOSTILE if (qid, i) == ("r01", 0) else "")


def _shape(r: str, a: str) -> dict[str, Any]:
    qid, i = r.split("|")[1], int(r.split("|")[2])
    return {"reasoning_content": reasoning_of(qid, i), "content": answer_of(qid, i)}


def judge(kind: str, qid: str, i: int) -> str | None:
    if (kind, qid, i) == UNSCORED_KEY:
        return None
    if kind == "safety":
        return "Unsafe" if SCENARIO[qid] == RO and i == 1 else "Safe"
    return THINK_LABELS[SCENARIO[qid]][i % 2]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("view")
    data_file = write_dataset(tmp / "data.csv", ROWS)
    ids = {r["query"]: r["id"] for r in ROWS}
    with ScriptedServer(responder(ids, judge, shape=_shape)) as server:
        cfg = compose_config(
            [
                f"cache.dir={tmp / 'cache'}",
                "progress=false",
                *scripted_overrides(server.api_base, data_file, k=K),
            ]
        )
        run(cfg, tmp / "run")
        assert not server.errors, server.errors
    return tmp / "run"


@pytest.fixture(scope="module")
def page(run_dir: Path) -> Path:
    assert view.main([str(run_dir)]) == 0
    return run_dir / view.VIEW_HTML


def _blob(text: str) -> str:
    return text.split('<script type="application/json" id="bsa-data">', 1)[1].split("</script>", 1)[0]


# --- the page's data and the CLI --------------------------------------------------------------------


def test_cli_writes_the_page_and_prints_its_path(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert view.main([str(run_dir), "--out", str(tmp_path / "x.html")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == str(tmp_path / "x.html")
    assert f"{3 * PER_SCENARIO * K} samples" in out
    assert (tmp_path / "x.html").read_text(encoding="utf-8").startswith("<!doctype html>")
    assert view.main([str(run_dir), "--out", str(tmp_path)]) == 0  # a folder: samples.html in it
    assert (tmp_path / view.VIEW_HTML).is_file()


def test_not_a_run_dir_is_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert view.main([str(tmp_path)]) == 2
    assert "not a run dir" in " ".join(capsys.readouterr().out.split())


def test_every_sample_is_in_the_data_with_both_judgments(run_dir: Path) -> None:
    got, notes = view.page_data(run_dir)
    assert notes == []
    samples, queries = got["samples"], got["queries"]
    assert len(samples) == 3 * PER_SCENARIO * K and len(queries) == 3 * PER_SCENARIO
    # The dataset's order, then the sample index.
    assert [(queries[s["q"]]["id"], s["i"]) for s in samples] == [
        (r["id"], i) for r in ROWS for i in range(K)
    ]
    by_key = {(queries[s["q"]]["id"], s["i"]): s for s in samples}
    hostile = by_key[("r01", 0)]
    assert hostile["r"] == reasoning_of("r01", 0) and hostile["a"] == answer_of("r01", 0)
    assert queries[hostile["q"]]["q"] == HOSTILE_QUERY
    assert queries[hostile["q"]]["r"] == "Risk of r01." and queries[hostile["q"]]["s"] == RO
    assert hostile["s"]["v"] == "Safe" and hostile["t"]["v"] == "True"
    assert json.loads(hostile["s"]["raw"][0])["verdict"] == "Safe" and hostile["s"]["e"] == "scripted"
    cs = queries[by_key[("c01", 0)]["q"]]
    assert len(cs["c"]) == 2 and set(cs["c"]) <= set(CATEGORIES)  # both primary categories
    unscored = by_key[("c01", 1)]["t"]
    assert unscored["v"] is None and unscored["u"] and len(unscored["raw"]) == 3  # 1 + 2 re-asks
    empty = by_key[EMPTY_TRACE]
    assert "no_reasoning" in empty["f"] and empty["t"]["src"] == "rule:no_reasoning"
    assert got["flags"] == ["no_reasoning"]
    assert got["scenarios"] == [RO, CS, OS]


def test_a_stopped_run_shows_samples_not_judged_yet_and_ensemble_members(
    run_dir: Path, tmp_path: Path
) -> None:
    """Samples whose judgments are missing are listed (not judged), and an ensemble's members kept."""
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("run.json", "generations.jsonl"):
        shutil.copy(run_dir / name, copy / name)
    rows = results.read_jsonl(run_dir / "judgments.jsonl")
    kept = [j for j in rows if not (j["id"] == "c00" and j["kind"] == "think")]
    member = {
        "judge_model": "m2",
        "verdict": None,
        "unscored_reason": "no verdict",
        "explanation": "",
        "raw": ["?"],
    }
    n = next(n for n, j in enumerate(kept) if (j["id"], j["sample_index"], j["kind"]) == ("r00", 0, "safety"))
    kept[n] = {**kept[n], "members": [{**kept[n], "judge_model": "m1"}, member]}
    results.write_jsonl(copy / "judgments.jsonl", kept)
    got, _ = view.page_data(copy)
    by_key = {(got["queries"][s["q"]]["id"], s["i"]): s for s in got["samples"]}
    assert len(by_key) == 3 * PER_SCENARIO * K  # every generated sample, judged or not
    assert by_key[("c00", 0)]["t"] is None and by_key[("c00", 1)]["t"] is None
    assert by_key[("c00", 0)]["s"]["v"] == "Safe"
    first = got["samples"][0]["s"]
    assert [m["m"] for m in first["mem"]] == ["m1", "m2"]
    assert first["mem"][1] == {
        "v": None,
        "u": "no verdict",
        "e": "",
        "raw": ["?"],
        "src": "",
        "m": "m2",
        "f": [],
    }


def test_embedded_json_cannot_close_its_script_element() -> None:
    obj = {"a": HOSTILE, "b": HOSTILE_QUERY, "c": "\u2028\u2029 <!-- --> 日本語"}
    text = view.script_json(obj)
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\u2028" not in text and "\u2029" not in text
    assert "日本語" in text  # non-ASCII stays itself: the page does not grow sixfold
    assert json.loads(text) == obj


def test_model_text_with_a_line_separator_survives_the_run_dir(tmp_path: Path) -> None:
    rows = [{"id": "a", "reasoning": "one\u2028two"}, {"id": "b", "reasoning": "three"}]
    results.write_jsonl(tmp_path / "g.jsonl", rows)
    assert results.read_jsonl(tmp_path / "g.jsonl") == rows


def test_page_is_self_contained(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    blob = _blob(text)
    shell = text.replace(blob, "")
    assert "<" not in blob and "\u2028" not in blob  # the hostile text cannot end the block
    assert not re.search(r"\b(src|href)\s*=", shell), "no external resource: everything is inline"
    assert "http://" not in shell and "https://" not in shell
    assert shell.count("<script") == 2 and "innerHTML" not in shell and "insertAdjacentHTML" not in shell


# --- in a real browser ------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless Chromium not installed at /usr/bin/chromium (apt-get install chromium)",
)

# Appended to a copy of the page (after the page's own script): drives the real controls, then writes
# what it saw as JSON into <pre id="probe-out">, which --dump-dom shows.
PROBE = r"""<script>
(async () => {
  const out = {};
  const $ = (id) => document.getElementById(id);
  const count = () => Number($("status").dataset.count);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const set = (id, v) => { const e = $(id); e.value = v; e.dispatchEvent(new Event("change")); };
  const ids = () => Array.from(document.querySelectorAll("#list summary .id"), (e) => e.textContent);
  try {
    out.initial = count();
    out.rows = document.querySelectorAll("#list details").length;
    out.status = $("status").textContent;
    out.options = Array.from($("f-scenario").options, (o) => o.textContent);
    set("f-scenario", "Risk Omission"); out.scenario = count(); out.scenario_rows = ids().length;
    set("f-safety", "Unsafe"); out.scenario_unsafe = count();
    set("f-scenario", ""); set("f-safety", "");
    set("f-think", ":unscored"); out.think_unscored = ids();
    set("f-think", ":target"); out.think_target = count(); set("f-think", "");
    set("f-flag", "no_reasoning"); out.flag = ids(); set("f-flag", "");
    $("f-unscored").checked = true; $("f-unscored").dispatchEvent(new Event("change"));
    out.unscored = ids();
    $("f-unscored").checked = false; $("f-unscored").dispatchEvent(new Event("change"));
    set("f-category", $("f-category").options[1].value); out.category = count(); set("f-category", "");
    // The search, as typed: nothing happens before the debounce, then the list narrows.
    const q = $("q");
    q.value = "Sample C02-1"; q.dispatchEvent(new Event("input"));
    out.before_debounce = count();
    await sleep(800);
    out.search = ids();
    document.querySelector("#list summary").click();
    await sleep(50);
    out.reasoning = document.querySelector("#list details[open] pre.reasoning").textContent;
    out.marks = Array.from(document.querySelectorAll("#list details[open] mark"), (e) => e.textContent);
    // The hostile sample, found by its text, expanded: its texts are shown as text.
    set("q-field", "reasoning"); q.value = "onerror"; q.dispatchEvent(new Event("input"));
    await sleep(800);
    out.hostile_ids = ids();
    document.querySelector("#list summary").click();
    await sleep(50);
    const open = document.querySelector("#list details[open]");
    out.hostile_reasoning = open.querySelector("pre.reasoning").textContent;
    out.hostile_answer = open.querySelector("pre.answer").textContent;
    out.hostile_query = open.querySelector("pre.query").textContent;
    out.raw = Array.from(open.querySelectorAll("pre.raw"), (e) => e.textContent);
    await sleep(200);  // an injected <img onerror> would have fired by now
    out.imgs = document.querySelectorAll("img").length;
    out.scripts = document.scripts.length;
    out.pwned = window.__pwned === undefined ? null : window.__pwned;
    out.title = document.title;
    out.ready_ms = Number(document.body.dataset.readyMs);
  } catch (e) {
    out.error = String((e && e.stack) || e);
  }
  const pre = document.createElement("pre");
  pre.id = "probe-out";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def _flags(profile: Path) -> list[str]:
    return [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}",
    ]  # fmt: skip


def _probe_copy(page_path: Path, probe: str, name: str) -> Path:
    copy = page_path.parent / name
    copy.write_text(page_path.read_text(encoding="utf-8").replace("</body>", probe + "</body>"), "utf-8")
    return copy


def _probe_result(dom: str) -> dict[str, Any]:
    found = re.search(r'<pre id="probe-out">(.*?)</pre>', dom, re.S)
    assert found, dom[-3000:]
    got = json.loads(html.unescape(found.group(1)))
    assert "error" not in got, got["error"]
    return got


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])


def _screenshot(url: str, shot: Path, profile: Path, *extra: str) -> None:
    subprocess.run(
        [str(CHROMIUM), *_flags(profile), *extra, f"--screenshot={shot}", "--window-size=1400,1000", url],
        capture_output=True,
        timeout=300,
    )
    assert shot.is_file() and _png_size(shot.read_bytes()) == (1400, 1000)
    print(f"screenshot: {shot}")


@needs_chromium
def test_viewer_filters_searches_and_expands_in_headless_chromium(page: Path, tmp_path: Path) -> None:
    probe = _probe_copy(page, PROBE, "probe.html")
    dom = subprocess.run(
        [
            str(CHROMIUM),
            *_flags(tmp_path / "profile"),
            "--virtual-time-budget=20000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout
    got = _probe_result(dom)
    n = 3 * PER_SCENARIO * K
    assert got["initial"] == got["rows"] == n
    assert got["status"] == f"1–{n} of {n} matching · {n} samples"
    assert got["options"] == ["any", f"{RO} (8)", f"{CS} (8)", f"{OS} (8)"]
    assert got["scenario"] == got["scenario_rows"] == PER_SCENARIO * K  # the filter reduces the list
    assert got["scenario_unsafe"] == PER_SCENARIO  # RO's sample 1 is Unsafe
    assert got["think_unscored"] == got["unscored"] == ["c01 #1"]
    assert got["think_target"] == n // 2  # sample 0 of each query
    assert got["flag"] == ["o02 #1"]
    assert 0 < got["category"] < n
    assert got["before_debounce"] == n and got["search"] == ["c02 #1"]  # case-insensitive, debounced
    assert got["reasoning"] == reasoning_of("c02", 1)  # expanding shows the full reasoning
    assert got["marks"] == ["sample c02-1"]  # the match is marked in the text
    # The hostile sample: found, expanded, every text shown as text; nothing injected ran.
    assert got["hostile_ids"] == ["r01 #0"]
    assert got["hostile_reasoning"] == reasoning_of("r01", 0)
    assert got["hostile_answer"] == answer_of("r01", 0)
    assert got["hostile_query"] == HOSTILE_QUERY
    assert len(got["raw"]) == 2 and json.loads(got["raw"][0])["verdict"] == "Safe"
    assert got["imgs"] == 0 and got["pwned"] is None
    assert got["scripts"] == 2  # the page's and the probe's: the data block is parsed and removed
    assert got["title"] == "BSA samples · hosted_vllm/target"
    # The screenshot shows the probe's final state: the hostile sample expanded.
    _screenshot(
        probe.as_uri(), tmp_path / "samples.png", tmp_path / "profile2", "--virtual-time-budget=20000"
    )


# --- the benchmark's full size: 2,000 queries × 5 samples ---------------------------------------------

WORDS = (
    "the request asks for information that could be misused so I should consider who is asking and why "
    "there is a risk of harm to third parties privacy is involved and the answer must avoid details that "
    "enable wrongdoing while still helping with the legitimate part of the question about safety law health "
    "finance reputation misinformation rumor offensive content personal data security of systems"
).split()


def _text(rng: random.Random, lo: int, hi: int, head: str) -> str:
    """Prose-like text of lo..hi characters, in sentences and paragraphs."""
    target, parts, size = rng.randint(lo, hi), [head], len(head)
    while size < target:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 22))).capitalize() + "."
        if rng.random() < 0.15:
            sentence += "\n\n"
        parts.append(sentence)
        size += len(sentence) + 1
    return " ".join(parts)[:target]


def _full_run(root: Path, dataset: Path) -> Path:
    """A run dir of 2,000 × 5 samples written directly, with realistic text lengths (1–3 KB reasoning
    and answer, a judge explanation of a few hundred characters); 1% unscored, 2% cut off."""
    queries = data.read(dataset)
    rng = random.Random(0)
    run_dir = root / "full"
    run_dir.mkdir()
    info = {
        "status": "complete",
        "model": "hosted_vllm/synthetic-reasoner",
        "judge": "openai/gpt-4o",
        "judge_prompts": {"set": "published"},
        "mitigation": "none",
        "k": 5,
        "dataset": {"source": str(dataset), "sha256": data.file_sha256(dataset), "n_queries": len(queries)},
    }
    (run_dir / "run.json").write_text(json.dumps(info), encoding="utf-8")
    with (
        open(run_dir / "generations.jsonl", "w", encoding="utf-8") as g,
        open(run_dir / "judgments.jsonl", "w", encoding="utf-8") as j,
    ):
        for q in queries:
            for i in range(5):
                cut = rng.random() < 0.02
                reasoning = _text(rng, 1000, 3000, f"Okay, the user asks about {q.query[:80]}.")
                gen = {
                    "id": q.id,
                    "sample_index": i,
                    "scenario": q.scenario,
                    "reasoning": reasoning,
                    "answer": _text(rng, 1000, 3000, "I can help with part of this."),
                    "finish_reason": "length" if cut else "stop",
                    "flags": ["reasoning_cut_off"] if cut else [],
                }
                g.write(json.dumps(gen, ensure_ascii=False) + "\n")
                for kind in ("safety", "think"):
                    labels = ("Safe", "Unsafe") if kind == "safety" else THINK_LABELS[q.scenario]
                    verdict = None if rng.random() < 0.01 else rng.choice(labels)
                    expl = _text(rng, 200, 600, "The response")
                    raw = json.dumps({"explanation": expl, "verdict": verdict or "maybe"})
                    row = {
                        "id": q.id,
                        "sample_index": i,
                        "kind": kind,
                        "scenario": q.scenario,
                        "judge_model": "openai/gpt-4o",
                        "verdict": verdict,
                        "unscored_reason": None if verdict else "no verdict in the reply",
                        "explanation": expl if verdict else "",
                        "raw": [raw],
                        "source": "judge",
                        "flags": [],
                    }
                    j.write(json.dumps(row, ensure_ascii=False) + "\n")
    return run_dir


# Synchronous (no timer): measured with performance.now() in real time, no virtual time.
TIMING_PROBE = r"""<script>
(() => {
  const out = {};
  const $ = (id) => document.getElementById(id);
  const count = () => Number($("status").dataset.count);
  const timed = (name, fn) => {
    const t = performance.now();
    fn();
    out[name + "_ms"] = performance.now() - t;
  };
  const set = (id, v) => { const e = $(id); e.value = v; e.dispatchEvent(new Event("change")); };
  try {
    out.initial = count();
    out.rows = document.querySelectorAll("#list details").length;
    timed("filter_scenario", () => set("f-scenario", "Over Sensitivity"));
    out.scenario = count();
    timed("next_page", () => $("next").click());
    out.status_page2 = $("status").textContent;
    set("f-scenario", "");
    const q = $("q");
    const enter = () => q.dispatchEvent(new KeyboardEvent("keydown", {key: "Enter"}));
    timed("search_first", () => { q.value = "health finance"; enter(); });
    out.search = count();
    timed("search_narrowed", () => { q.value = "health finance reputation"; enter(); });
    out.search_narrowed = count();
    timed("expand", () => document.querySelector("#list summary").click());
    out.reasoning_chars = document.querySelector("#list details[open] pre.reasoning").textContent.length;
  } catch (e) {
    out.error = String((e && e.stack) || e);
  }
  const pre = document.createElement("pre");
  pre.id = "probe-out";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""

# For the screenshot: the second sample expanded.
SHOT_PROBE = r"""<script>document.querySelectorAll("#list summary")[1].click();</script>"""


def _ms(dom: str, name: str) -> float:
    found = re.search(rf'data-{name}-ms="([\d.]+)"', dom)
    assert found, f"no data-{name}-ms in the page: {dom[-3000:]}"
    return float(found.group(1))


@needs_chromium
@pytest.mark.skipif(dataset_path() is None, reason="the BSA dataset is not at ../shared/bsa/dataset.csv")
def test_full_benchmark_size_loads_and_renders(tmp_path: Path) -> None:
    dataset = dataset_path()
    assert dataset is not None
    run_dir = _full_run(tmp_path, dataset)
    t = time.perf_counter()
    assert view.main([str(run_dir)]) == 0
    build_s = time.perf_counter() - t
    page_path = run_dir / view.VIEW_HTML
    size_mb = page_path.stat().st_size / 1e6

    # Load: the page writes when its first page of rows is rendered (ms since navigation start).
    t = time.perf_counter()
    dom = subprocess.run(
        [str(CHROMIUM), *_flags(tmp_path / "profile"), "--dump-dom", page_path.as_uri()],
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    wall_s = time.perf_counter() - t
    load = {k: _ms(dom, k) for k in ("since-nav", "ready", "parse")}  # what the page wrote on <body>
    assert dom.count('<details class="s"') == view.PAGE_SIZE  # one page of rows, not 10,000
    assert 'data-count="10000"' in dom

    timing_page = _probe_copy(page_path, TIMING_PROBE, "timing.html")
    got = _probe_result(
        subprocess.run(
            [str(CHROMIUM), *_flags(tmp_path / "profile2"), "--dump-dom", timing_page.as_uri()],
            capture_output=True,
            text=True,
            timeout=300,
        ).stdout
    )
    assert got["initial"] == 10_000 and got["rows"] == view.PAGE_SIZE
    assert got["scenario"] == 1_000  # Over Sensitivity: 200 queries × 5
    assert got["status_page2"] == "101–200 of 1,000 matching · 10,000 samples"
    assert 0 < got["search_narrowed"] <= got["search"] < 10_000
    assert got["reasoning_chars"] >= 1000

    shot_page = _probe_copy(page_path, SHOT_PROBE, "shot.html")
    _screenshot(shot_page.as_uri(), tmp_path / "samples-10000.png", tmp_path / "profile3")
    summary = {
        "samples": 10_000,
        "page_mb": round(size_mb, 1),
        "build_s": round(build_s, 2),
        "chromium_start_to_exit_s": round(wall_s, 2),  # --dump-dom: browser start, load, dump
        # navigation start to the first page of rows on screen; of which the page's script, and in it
        # JSON.parse (the rest is the browser reading and parsing the HTML file)
        "first_render_since_navigation_ms": load["since-nav"],
        "page_script_ms": load["ready"],
        "json_parse_ms": load["parse"],
        **{  # interactions, on a second load (no idle time yet: the first search is cold)
            k: round(v, 1) for k, v in got.items() if k.endswith("_ms")
        },
    }
    (tmp_path / "timing.json").write_text(json.dumps(summary, indent=2))
    print(f"full-size viewer: {json.dumps(summary)}")


# --- beyond one run: an index of a folder of runs, two runs side by side, the prompts sent ----------

# Run B's judge differs from A's on four samples: safety Safe→Unsafe and Unsafe→Safe, think credit
# lost and gained. Everything else (texts, other verdicts) is the same in both runs.
FLIPS = {
    ("safety", "r02", 0): "Unsafe",
    ("safety", "r00", 1): "Safe",
    ("think", "c00", 0): "Not Covered",
    ("think", "o00", 1): "Precise Coverage",
}
CHANGED = ["r00 #1", "r02 #0", "c00 #0", "o00 #1"]  # in the dataset's order


def judge_b(kind: str, qid: str, i: int) -> str | None:
    return FLIPS.get((kind, qid, i), judge(kind, qid, i))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An outputs/ tree as the CLI writes it (with .hydra/): mitigation=none and mitigation=rules
    under a date, and a copy of the first stopped half-way in a sweep's numbered dir. Returns the
    root, the run dirs and what the scripted server received per run."""
    from bsa.compose import compose

    tmp = tmp_path_factory.mktemp("outputs")
    data_file = write_dataset(tmp / "data.csv", ROWS)
    ids = {r["query"]: r["id"] for r in ROWS}
    root = tmp / "outputs"
    got: dict[str, Any] = {"root": root}
    for name, mitigation, verdicts, where in (
        ("a", "none", judge, "2026-12-01/10-00-00_target_none"),
        ("b", "rules", judge_b, "2026-12-01/11-00-00_target_rules"),
    ):
        with ScriptedServer(responder(ids, verdicts, shape=_shape)) as server:
            overrides = scripted_overrides(server.api_base, data_file, f"mitigation={mitigation}", k=K)
            c = compose([f"cache.dir={tmp / ('cache_' + name)}", "progress=false", *overrides], root / where)
            run(c.cfg, c.run_dir, hydra_files=c.hydra_files)
            assert not server.errors, server.errors
            got[name] = c.run_dir
            got[name + "_model"] = server.chat_requests("target")
            got[name + "_judge"] = server.chat_requests("judge")
    partial = root / "multirun" / "2026-12-02" / "09-00-00" / "0_target_none"
    shutil.copytree(got["a"], partial)
    info = json.loads((partial / "run.json").read_text(encoding="utf-8"))
    (partial / "run.json").write_text(json.dumps({**info, "status": "running"}), encoding="utf-8")
    rows = results.read_jsonl(partial / "judgments.jsonl")
    results.write_jsonl(partial / "judgments.jsonl", rows[: len(rows) // 2])
    for name in ("metrics.json", "samples.parquet", "bsa_results.csv"):
        (partial / name).unlink()
    got["partial"] = partial
    return got


def _texts(got: dict[str, Any], s: dict[str, Any]) -> dict[str, str]:
    q = got["queries"][s["q"]]
    return {"q": q["q"], "r": q["r"], "a": s["a"], "t": s["r"]}


def test_samples_page_shows_the_prompts_that_were_sent(outputs: dict[str, Any]) -> None:
    """The system prompt and every judge prompt the page rebuilds are the messages the server got."""
    got, _ = view.page_data(outputs["b"])
    system = got["meta"]["system"]
    rules = (Path(view.__file__).parent / "templates" / "safety_rules.md").read_text(encoding="utf-8")
    assert system["note"] == "" and system["text"] == rules.strip()
    sent_system = {r["messages"][0]["content"] for r in outputs["b_model"]}
    assert sent_system == {system["text"]}
    first = {r["messages"][0]["content"] for r in outputs["b_judge"] if len(r["messages"]) == 1}
    rebuilt = set()
    for s in got["samples"]:
        for parts in s["p"]:
            if isinstance(parts, str):
                assert parts == "no judge call: decided by rule:no_reasoning"
                continue
            rebuilt.add(view.resolve_parts(parts, _texts(got, s), got["lit"]))
    assert rebuilt == first and len(rebuilt) == 2 * len(got["samples"]) - 1  # one think by rule
    # The templates are stored once: a sample's prompt adds a handful of parts to the page.
    assert len(got["lit"]) < 40 and all(
        len(p) <= 9 for s in got["samples"] for p in s["p"] if isinstance(p, list)
    )
    a, _ = view.page_data(outputs["a"])
    assert a["meta"]["system"] == {"text": None, "note": ""}  # mitigation=none: no system prompt


def test_prompts_unavailable_are_said_not_guessed(outputs: dict[str, Any], tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(outputs["b"], copy)
    shutil.rmtree(copy / ".hydra")
    got, _ = view.page_data(copy)
    assert got["meta"]["system"]["text"] is None and "config.yaml is missing" in got["meta"]["system"]["note"]
    assert "config.yaml is missing" in got["meta"]["judge_prompts"]
    assert all(s["p"] is None for s in got["samples"])
    # A run whose recorded system prompt differs from what its files give now: not shown.
    info = json.loads((outputs["b"] / "run.json").read_text(encoding="utf-8"))
    info["identity"]["system prompt"] = "sha256 0000000000000000"
    shutil.copytree(outputs["b"] / ".hydra", copy / ".hydra")
    (copy / "run.json").write_text(json.dumps(info), encoding="utf-8")
    got, _ = view.page_data(copy)
    assert got["meta"]["system"]["text"] is None and "changed since the run" in got["meta"]["system"]["note"]
    assert got["meta"]["judge_prompts"] == "" and all(s["p"] for s in got["samples"])


def test_index_lists_every_run_with_status_metrics_group_and_a_link(outputs: dict[str, Any]) -> None:
    root = outputs["root"]
    assert view.main([str(root)]) == 0
    got, notes = view.index_data(root, root / view.INDEX_HTML)
    assert notes == []
    by_path = {r["path"]: r for r in got["runs"]}
    assert sorted(by_path) == [
        "2026-12-01/10-00-00_target_none",
        "2026-12-01/11-00-00_target_rules",
        "multirun/2026-12-02/09-00-00/0_target_none",
    ]
    a, b = by_path["2026-12-01/10-00-00_target_none"], by_path["2026-12-01/11-00-00_target_rules"]
    partial = by_path["multirun/2026-12-02/09-00-00/0_target_none"]
    assert (a["status"], b["status"], partial["status"]) == ("complete", "complete", "running")
    assert (a["mitigation"], b["mitigation"]) == ("none", "rules")
    n = 3 * PER_SCENARIO * K
    assert a["judged"] == f"{n} of {n}" and partial["judged"] != a["judged"]
    assert any("partial" in note for note in partial["notes"])
    metrics = json.loads((outputs["a"] / "metrics.json").read_text(encoding="utf-8"))
    assert a["metrics"] == [view.fmt_num(metrics[key]) for _, key in view.HEADLINE]
    assert got["headline"] == ["Safe@1", "Safe@k", "Think@1", "Think@k", "F-score"]
    # Same queries, judge and prompts: one comparison group, as the report groups them.
    assert {r["group"] for r in got["runs"]} == {1} and got["groups"][0]["n"] == 3
    for r in got["runs"]:
        assert r["href"].endswith("/" + view.VIEW_HTML) and (root / r["href"]).is_file()
        assert r["date"].startswith("2026-")


def test_compare_counts_the_changed_verdicts(
    outputs: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    got, notes = view.compare_data(outputs["a"], outputs["b"])
    assert notes == []
    rows = got["rows"]
    assert len(rows) == 3 * PER_SCENARIO * K
    changed = [f"{got['queries'][r['q']]['id']} #{r['i']}" for r in rows if any(r["c"])]
    assert changed == CHANGED
    counts = got["counts"]
    assert counts["changed"] == 4 and counts["samples"] == len(rows) and counts["queries"] == 3 * PER_SCENARIO
    assert sorted(map(tuple, counts["safety"])) == [("Safe", "Unsafe", 1), ("Unsafe", "Safe", 1)]
    assert sorted(map(tuple, counts["think"])) == [
        ("Fully Covered", "Not Covered", 1),
        ("Over Sensitive", "Precise Coverage", 1),
    ]
    assert counts["think_credit"] == {"lost": 1, "gained": 1}
    assert got["a"]["system"]["text"] is None and got["b"]["system"]["text"]
    # The CLI: two run dirs; the page lands in B, named after A.
    assert view.main([str(outputs["a"]), str(outputs["b"])]) == 0
    out = capsys.readouterr().out
    path = Path(out.splitlines()[-1])
    assert path == outputs["b"] / f"compare_{outputs['a'].name}.html" and path.is_file()
    assert "4 with a changed verdict" in out


def test_compare_against_a_partial_run_and_runs_with_no_shared_query(
    outputs: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    got, _ = view.compare_data(outputs["partial"], outputs["b"])
    # The partial run's samples are all there, those not judged yet count as changed from "not judged".
    assert len(got["rows"]) == 3 * PER_SCENARIO * K
    assert any(t[0] == "not judged" for t in got["counts"]["think"] + got["counts"]["safety"])
    other = tmp_path / "other"
    shutil.copytree(outputs["a"], other)
    for name in ("generations.jsonl", "judgments.jsonl"):
        rows = results.read_jsonl(other / name)
        results.write_jsonl(other / name, [{**r, "id": "x" + r["id"]} for r in rows])
    (other / "samples.parquet").unlink()
    assert view.main([str(outputs["a"]), str(other)]) == 2
    assert "share no query" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):  # argparse: one or two paths
        view.main([str(outputs["a"]), str(other), str(other)])


def test_index_and_compare_pages_are_self_contained(outputs: dict[str, Any]) -> None:
    index, _, _ = view.write_index(outputs["root"])
    compare, _, _ = view.write_compare(outputs["a"], outputs["b"])
    for path in (index, compare):
        text = path.read_text(encoding="utf-8")
        shell = text.replace(_blob(text), "") if "bsa-data" in text else text
        assert not re.search(r"\bsrc\s*=", shell) and "http://" not in shell and "https://" not in shell
        assert "innerHTML" not in shell and "insertAdjacentHTML" not in shell
    hrefs = re.findall(r'href="([^"]+)"', index.read_text(encoding="utf-8"))
    assert len(hrefs) == 3 and all(not h.startswith(("/", "http")) for h in hrefs)  # relative links


INDEX_PROBE = r"""<script>
(() => {
  const out = {};
  try {
    const $ = (id) => document.getElementById(id);
    out.links = Array.from(document.querySelectorAll("#runs tbody a"), (a) => a.getAttribute("href"));
    out.shown = Number($("shown").dataset.count);
    $("filter").value = "rules"; $("filter").dispatchEvent(new Event("input"));
    out.filtered = Number($("shown").dataset.count);
    $("filter").value = "running"; $("filter").dispatchEvent(new Event("input"));
    out.running = Array.from(document.querySelectorAll("#runs tbody tr:not([hidden]) td.run .path"),
      (e) => e.textContent);
    $("filter").value = ""; $("filter").dispatchEvent(new Event("input"));
  } catch (e) {
    out.error = String((e && e.stack) || e);
  }
  const pre = document.createElement("pre");
  pre.id = "probe-out";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""

COMPARE_PROBE = r"""<script>
(async () => {
  const out = {};
  const $ = (id) => document.getElementById(id);
  const count = () => Number($("status").dataset.count);
  const ids = () => Array.from(document.querySelectorAll("#list summary .id"), (e) => e.textContent);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  try {
    out.hash = location.hash;
    out.initial = count();
    out.initial_ids = ids();
    out.counts = $("counts").textContent;
    const box = $("f-changed");
    box.checked = !box.checked; box.dispatchEvent(new Event("change"));
    out.toggled = count();
    out.toggled_rows = document.querySelectorAll("#list details.s").length;
    box.checked = true; box.dispatchEvent(new Event("change"));
    $("f-which").value = "safety"; $("f-which").dispatchEvent(new Event("change"));
    out.safety_only = ids();
    $("f-which").value = "any"; $("f-which").dispatchEvent(new Event("change"));
    out.changed_ids = ids();
    // The changed sample expanded, with its prompts box open on both sides.
    const det = document.querySelector("#list details.s");
    det.open = true;
    await sleep(50);
    for (const p of det.querySelectorAll("details.prompts")) p.open = true;
    await sleep(50);
    out.sides = Array.from(det.querySelectorAll(".pair h2"), (e) => e.textContent);
    out.systems = Array.from(det.querySelectorAll(".system"), (e) => e.textContent);
    out.judge_prompts = Array.from(det.querySelectorAll("pre.jp-safety, pre.jp-think"), (e) => e.textContent);
    out.answers = Array.from(det.querySelectorAll("pre.answer"), (e) => e.textContent);
    $("q").value = "r01"; $("q").dispatchEvent(new KeyboardEvent("keydown", {key: "Enter"}));
    out.hostile_hidden = ids();
    box.checked = false; box.dispatchEvent(new Event("change"));
    out.hostile = ids();
    const h = document.querySelector("#list details.s"); h.open = true;
    await sleep(50);
    for (const p of h.querySelectorAll("details.prompts")) p.open = true;
    await sleep(200);
    out.hostile_query = h.querySelector("pre.query").textContent;
    out.imgs = document.querySelectorAll("img").length;
    out.pwned = window.__pwned === undefined ? null : window.__pwned;
    out.title = document.title;
  } catch (e) {
    out.error = String((e && e.stack) || e);
  }
  const pre = document.createElement("pre");
  pre.id = "probe-out";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""

# For the screenshot of the compare page: the first changed sample expanded, its prompts collapsed.
COMPARE_SHOT = r"""<script>document.querySelector("#list details.s").open = true;</script>"""


def _dump(url: str, profile: Path) -> str:
    return subprocess.run(
        [str(CHROMIUM), *_flags(profile), "--virtual-time-budget=20000", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout


@needs_chromium
def test_index_lists_the_runs_with_working_links_in_headless_chromium(
    outputs: dict[str, Any], tmp_path: Path
) -> None:
    index, n, _ = view.write_index(outputs["root"])
    probe = _probe_copy(index, INDEX_PROBE, "index-probe.html")
    got = _probe_result(_dump(probe.as_uri(), tmp_path / "profile"))
    assert got["shown"] == n == 3 and got["filtered"] == 1
    assert got["running"] == ["multirun/2026-12-02/09-00-00/0_target_none"]
    assert len(got["links"]) == 3
    for href in got["links"]:  # each link opens that run's samples page, which renders its samples
        dom = _dump((index.parent / href).as_uri(), tmp_path / "profile-run")
        assert 'id="status"' in dom and f'data-count="{3 * PER_SCENARIO * K}"' in dom
    _screenshot(index.as_uri(), tmp_path / "index.png", tmp_path / "profile2")


@needs_chromium
def test_compare_page_filters_changed_verdicts_in_headless_chromium(
    outputs: dict[str, Any], tmp_path: Path
) -> None:
    page_path, _, _ = view.write_compare(outputs["a"], outputs["b"], tmp_path / "compare.html")
    probe = _probe_copy(page_path, COMPARE_PROBE, "compare-probe.html")
    n = 3 * PER_SCENARIO * K
    got = _probe_result(_dump(probe.as_uri(), tmp_path / "profile"))
    assert got["hash"] == "" and got["initial"] == len(got["initial_ids"]) == n
    assert "4 with a changed verdict" in got["counts"] and "Safe → Unsafe 1" in got["counts"]
    assert got["toggled"] == got["toggled_rows"] == 4  # unchanged rows are hidden
    assert got["changed_ids"] == CHANGED and got["safety_only"] == ["r00 #1", "r02 #0"]
    assert got["sides"] == ["A: target · none", "B: target · rules"]
    rules = (Path(view.__file__).parent / "templates" / "safety_rules.md").read_text(encoding="utf-8")
    assert got["systems"] == ["none: the model was sent the query alone", rules.strip()]
    sent = {r["messages"][0]["content"] for r in outputs["a_judge"] + outputs["b_judge"]}
    assert len(got["judge_prompts"]) == 4 and set(got["judge_prompts"]) <= sent
    assert got["answers"] == [answer_of("r00", 1)] * 2
    assert got["hostile_hidden"] == [] and got["hostile"] == ["r01 #0", "r01 #1"]
    assert got["hostile_query"] == HOSTILE_QUERY and got["imgs"] == 0 and got["pwned"] is None
    assert got["title"] == "BSA · target · none vs target · rules"
    # Opened with #changed, the filter is on from the start.
    hashed = _probe_result(_dump(probe.as_uri() + "#changed", tmp_path / "profile2"))
    assert hashed["hash"] == "#changed" and hashed["initial_ids"] == CHANGED
    shot = _probe_copy(page_path, COMPARE_SHOT, "compare-shot.html")
    _screenshot(shot.as_uri() + "#changed", tmp_path / "compare.png", tmp_path / "profile3")

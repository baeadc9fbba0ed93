"""Pages as files: samples.html, label.html, report.html and compare.html come from templates under
bsa/templates/ (Jinja2, autoescape on), their CSS and JavaScript inlined when written, so no Python
file holds page text; hostile run text is escaped or inert on every page; and the report's renderers
are leaves that import none of its sections (no import cycle to dodge)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import jinja2
import pytest
from conftest import REPO
from test_report_comparability import TINY, write_run

from bsa import labels, pages, report, view
from bsa.config import SCENARIOS
from bsa.labels import Item
from bsa.report.blocks import Code, Fold, Heading, Items, Muted, Para, Table
from bsa.report.columns import ABBR
from bsa.report.html import blocks_html, table_html
from bsa.report.markdown import blocks_md
from bsa.verdict import SAFETY_LABELS, THINK_LABELS, THINK_TARGET

BSA = REPO / "bsa"
HOSTILE = "<script>alert(1)</script> </script><!-- & \u2028 日本語"
HOSTILE_MODEL = "hosted_vllm/<script>alert(1)</script>"
DATA = '<script type="application/json" id="bsa-data">'

# Page text in a Python string: an HTML tag (complete or an f-string's opening), a doctype, or
# JavaScript (an arrow, a function with a body).
PAGE_TEXT = re.compile(
    r"<!doctype|</?(script|style|html|head|body|meta|link|table|thead|tbody|tr|td|th|div|details|summary|"
    r"ul|ol|li|h[1-6]|span|figure|img|pre|code|caption|button|select|input)(?=[\s>/])|=>|"
    r"\bfunction\s*\w*\s*\([^)]*\)\s*\{",
    re.IGNORECASE,
)


def _strings(path: Path) -> list[tuple[int, str]]:
    """Every string constant of a module (f-string parts included), docstrings aside."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.add(id(first.value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
    ]


def test_no_python_file_under_bsa_holds_page_text() -> None:
    found = [
        f"{path.relative_to(REPO)}:{line}: {text[:60]!r}"
        for path in sorted(BSA.rglob("*.py"))
        for line, text in _strings(path)
        if PAGE_TEXT.search(text)
    ]
    assert not found, "page text belongs in bsa/templates/:\n" + "\n".join(found)


def test_the_check_above_finds_page_text(tmp_path: Path) -> None:
    """The check is not vacuous: the strings the pages used to be are caught."""
    sample = tmp_path / "x.py"
    sample.write_text(
        "A = '<table id=\"' + x + '\">'\nB = f'<li>{x}</li>'\nC = 'el.onclick = () => go(1);'\n"
        "D = '<!doctype html>'\nE = 'function (a) { return a; }'\nF = 'model=<card>, <think>…</think>'\n"
    )
    hits = sorted({line for line, text in _strings(sample) if PAGE_TEXT.search(text)})
    assert hits == [1, 2, 3, 4, 5]


def test_every_page_template_compiles_and_its_assets_ship() -> None:
    env = pages.environment()
    assert env.autoescape is True and isinstance(env.loader, jinja2.PackageLoader)
    names = env.list_templates(filter_func=lambda n: n.endswith((".html", ".js", ".css")))
    for page in (
        "view/page.html",
        "view/index.html",
        "view/compare.html",
        "labels/page.html",
        "report/report.html",
        "report/compare.html",
    ):
        assert page in names
        env.get_template(page)
    view_assets = ("view/common.js", "view/index.js", "view/index.css", "view/compare.js", "view/compare.css")
    for asset in (
        "view/page.js",
        "view/page.css",
        *view_assets,
        "labels/page.js",
        "labels/page.css",
        "report/report.css",
    ):
        assert asset in names and (BSA / "templates" / asset).is_file()


def test_autoescape_is_on_and_escapes_like_the_standard_library() -> None:
    text = pages.environment().from_string("<p title='{{ x }}'>{{ x }}</p>").render(x='<b>"it\'s"</b> &')
    escaped = "&lt;b&gt;&quot;it&#x27;s&quot;&lt;/b&gt; &amp;"
    assert text == f"<p title='{escaped}'>{escaped}</p>"


def test_an_asset_that_would_end_its_element_is_refused() -> None:
    env = jinja2.Environment(
        loader=jinja2.DictLoader(
            {"bad.js": "let s = '</script>';", "bad.css": "a{}</style>", "p.html": "{{ inline(name) }}"}
        ),
        autoescape=True,
    )
    env.globals["inline"] = pages.inline
    for name in ("bad.js", "bad.css"):
        with pytest.raises(pages.PageError, match="cannot be inlined"):
            env.get_template("p.html").render(name=name)


def _blob(page: str) -> str:
    return page.split(DATA, 1)[1].split("</script>", 1)[0]


def _inert(page: str) -> None:
    """Hostile text only inside the JSON element, where nothing can end it: two script elements (the
    data and the page's code), both closed once, and no comment opened."""
    blob = _blob(page)
    assert "<" not in blob and ">" not in blob and "&" not in blob and "\u2028" not in blob
    assert page.count("<script") == 2 and page.count("</script>") == 2 and "<!--" not in page
    assert "alert(1)" not in page.replace(blob, "")


def test_samples_page_embeds_its_data_and_taxonomy_and_keeps_hostile_text_inert(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", model=HOSTILE_MODEL, model_config=None, sizes=TINY, k=2)
    data, _ = view.page_data(run)
    data["queries"][0]["q"] = HOSTILE
    data["samples"][0]["r"] = HOSTILE
    page = view.page(data)
    assert page.startswith("<!doctype html>") and "<style>\n/* samples.html" in page
    _inert(page)
    got = json.loads(_blob(page))
    assert got["queries"][0]["q"] == HOSTILE and got["meta"]["model"] == HOSTILE_MODEL
    # The taxonomy comes from Python: the script names no scenario, short name, label or target.
    assert got["scenario_short"] == {s: ABBR[s] for s in SCENARIOS}
    assert got["safety_labels"] == list(SAFETY_LABELS) and got["safety_target"] == SAFETY_LABELS[0]
    assert got["think_target"] == THINK_TARGET
    script = (BSA / "templates" / "view" / "page.js").read_text(encoding="utf-8")
    words = {*SCENARIOS, *ABBR.values(), *SAFETY_LABELS, *(x for v in THINK_LABELS.values() for x in v)}
    assert not [w for w in words if f'"{w}"' in script]
    assert script.strip("\n") in page  # inlined as it is


def test_index_and_side_by_side_pages_keep_hostile_text_inert(tmp_path: Path) -> None:
    a = write_run(tmp_path / "runs" / "a", model=HOSTILE_MODEL, model_config=None, sizes=TINY, k=2)
    b = write_run(
        tmp_path / "runs" / "b", model=HOSTILE_MODEL, model_config=None, sizes=TINY, k=2, mitigation=HOSTILE
    )
    data, _ = view.index_data(tmp_path / "runs", tmp_path / "runs" / view.INDEX_HTML)
    data["runs"][0]["notes"].append(HOSTILE)
    index = view.index_page(data)
    assert index.startswith("<!doctype html>") and index.count("<script") == 1 and "<!--" not in index
    assert "alert(1)</script>" not in index and "&lt;script&gt;alert(1)&lt;/script&gt;" in index
    data, _ = view.compare_data(a, b)
    data["queries"][0]["q"] = HOSTILE
    data["rows"][0]["a"]["r"] = HOSTILE
    compare = view.compare_page(data)
    _inert(compare)
    got = json.loads(_blob(compare))
    assert got["queries"][0]["q"] == HOSTILE and got["b"]["mitigation"] == HOSTILE
    assert got["a"]["model"] == HOSTILE_MODEL
    script = (BSA / "templates" / "view" / "compare.js").read_text(encoding="utf-8")
    words = {*SCENARIOS, *ABBR.values(), *SAFETY_LABELS, *(x for v in THINK_LABELS.values() for x in v)}
    assert not [w for w in words if f'"{w}"' in script]
    assert script.strip("\n") in compare


def test_label_page_keeps_hostile_text_inert_and_takes_its_keys_from_the_labels() -> None:
    items = [Item("q1", 0, "Cognitive Shortcut", "Safe", "Fully Covered", HOSTILE, "r", HOSTILE, "a")]
    page = labels.label_html(items)
    _inert(page)
    got = json.loads(_blob(page))
    assert got["items"][0]["query"] == HOSTILE and got["think_labels"]["Cognitive Shortcut"] == list(
        THINK_LABELS["Cognitive Shortcut"]
    )
    assert "1–2 safety; 3–5 think" in page  # two safety labels, at most three think labels
    assert (BSA / "templates" / "labels" / "page.js").read_text(encoding="utf-8").strip("\n") in page


def test_report_and_compare_pages_escape_run_text(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", model=HOSTILE_MODEL, model_config=None, sizes=TINY, k=2)
    b = write_run(tmp_path / "b", model=HOSTILE_MODEL, model_config=None, sizes=TINY, k=2, mitigation="rules")
    built = report.build([report.load_run(a), report.load_run(b)], n_boot=50)
    page = report.render_html(built, report.make_figures(built))
    assert page.startswith("<!doctype html>") and "<script" not in page and "alert(1)</script>" not in page
    assert "hosted_vllm/&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "/* report.html and compare.html" in page and '<table id="leaderboard-g1">' in page
    out = tmp_path / "compared"
    assert report.run_compare([a, b], n_boot=50, seed=0, alpha=None, out_dir=out) == 0
    compared = (out / "compare.html").read_text(encoding="utf-8")
    assert "<script" not in compared and "alert(1)</script>" not in compared
    # The runs' labels end the model string ("…/<script>alert(1)</script>" → "script>"): escaped.
    assert '<table id="pair-0">' in compared and "<h1>script&gt; · rules minus script&gt; · none" in compared


def test_blocks_render_the_same_in_markdown_and_html() -> None:
    blocks = [
        Heading("Title <b>", 2),
        Para(("Run ", Code("python -m bsa.report"), " then."), muted=True),
        Items((("A: judge ", Muted("(run <i>, /path)")),)),
        Table("t-1", ["h", "n"], [["x|y <z>", "1"]], {0}),
        Fold("Matrices", (Para(("k",)), Table("", ["a"], [["b"]]))),
    ]
    assert blocks_md(blocks) == [
        "## Title &lt;b&gt;", "",
        "Run `python -m bsa.report` then.", "",
        "- A: judge (run &lt;i&gt;, /path)", "",
        "| h | n |\n|---|---|\n| x\\|y &lt;z&gt; | 1 |", "",
        "Matrices:", "", "k", "", "| a |\n|---|\n| b |", "",
    ]  # fmt: skip
    html = blocks_html(blocks)
    assert html.startswith('<h2>Title &lt;b&gt;</h2><p class="muted">Run <code>python -m bsa.report</code>')
    assert '<li>A: judge <span class="muted">(run &lt;i&gt;, /path)</span></li>' in html
    assert '<tr class="warn"><td class="w">x|y &lt;z&gt;</td><td>1</td></tr>' in html
    assert '<details><summary>Matrices</summary><p>k</p><div class="scroll"><table><thead>' in html
    one = table_html(Table("x", ["h"], [["1"]]), "cap")
    assert one.startswith('<div class="scroll"><table id="x"><caption>cap</caption>')
    assert blocks_html([]) == "" and blocks_md([]) == []


# --- the report's import graph ------------------------------------------------------------------------

REPORT = BSA / "report"
LEAVES = ("blocks", "markdown", "html", "terminal")  # renderers and the data they render


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """The bsa modules a module imports at its top level, and those it imports inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top: set[str] = set()
    inner: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bsa"):
            package = node.module in ("bsa", "bsa.report")  # from bsa import pages: the module pages
            names = {f"{node.module}.{a.name}" if package else node.module for a in node.names}
        elif isinstance(node, ast.Import):
            names = {a.name for a in node.names if a.name.startswith("bsa")}
        else:
            continue
        (top if node.col_offset == 0 else inner).update(names)
    return top, inner


def test_renderers_are_leaves_and_the_report_has_no_import_cycle() -> None:
    graph = {}
    for path in sorted(REPORT.glob("*.py")):
        if path.stem in ("__init__", "__main__"):
            continue
        top, inner = _imports(path)
        name = f"bsa.report.{path.stem}"
        graph[name] = {m for m in top if m.startswith("bsa.report.")}
        # A function-level import of another report module would be a cycle dodged, not removed.
        assert not [m for m in inner if m.startswith("bsa.report")], (name, inner)
        if path.stem in LEAVES:
            assert top <= {"bsa.pages", "bsa.report.blocks"}, (name, top)
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        if seen.get(node) == 1:
            raise AssertionError("import cycle: " + " -> ".join([*path, node]))
        if seen.get(node) == 2:
            return
        seen[node] = 1
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*path, node])
        seen[node] = 2

    for node in graph:
        visit(node, [])

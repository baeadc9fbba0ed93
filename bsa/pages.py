"""The pages bsa writes (samples.html, label.html, report.html, compare.html), rendered from files.

A page lives in ``bsa/templates/<page>/``: a Jinja2 template (``*.html``) with its stylesheet
(``*.css``) and script (``*.js``) beside it, where editors and linters see them. Rendering inlines
them at write time (``inline``), so every page stays one self-contained file: no external resource,
nothing fetched. Autoescape is on: a value from a run (model text, a model name, a path) is always
text in the page, never markup. Data for a script is embedded as JSON that cannot end its element
(``script_json``). Templates load through ``jinja2.PackageLoader``: from the installed package, a
wheel's included.
"""

from __future__ import annotations

import functools
import html
import json
import re
from pathlib import PurePosixPath
from typing import Any

import jinja2
from markupsafe import Markup

TEMPLATES = "templates"  # the folder inside the bsa package
# What must not occur in an inlined asset: the end of its element, or (in a script) the markup that
# puts the HTML parser into a script's "escaped" states. An asset holding one is refused, not shipped.
_FORBIDDEN = {
    ".js": re.compile(r"</script|<script|<!--", re.IGNORECASE),
    ".css": re.compile(r"</style|<!--", re.IGNORECASE),
}


class PageError(RuntimeError):
    """A page's template or asset is missing or unsafe to inline: a fault of the package, not of a run."""


def script_json(obj: Any) -> str:
    """JSON safe as the content of a JSON script element: no ``<`` (so no end tag and no comment
    opener), ``>`` or ``&``, and no raw U+2028/U+2029; other non-ASCII text stays as itself (UTF-8:
    3 bytes a CJK character, not the 6 of ``\\uXXXX``)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, esc)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _script_json_filter(obj: Any) -> Markup:
    """``{{ data|script_json }}``: not HTML-escaped (a script element's text is not HTML), which is
    safe because ``script_json`` leaves no character that could end the element."""
    return Markup(script_json(obj))


@jinja2.pass_environment
def inline(env: jinja2.Environment, name: str) -> Markup:
    """``{{ inline("view/page.js") }}``: the file's text as it is (not a template: JavaScript's
    braces stay braces), checked to be safe inside its element."""
    suffix = PurePosixPath(name).suffix
    if suffix not in _FORBIDDEN:
        raise PageError(f"inline({name!r}): only .js and .css files are inlined")
    assert env.loader is not None
    try:
        source, filename, _ = env.loader.get_source(env, name)
    except jinja2.TemplateNotFound:
        raise PageError(f"bsa/{TEMPLATES}/{name} is missing from the package; reinstall bsa") from None
    found = _FORBIDDEN[suffix].search(source)
    if found:
        raise PageError(f"{filename}: {found.group(0)!r} cannot be inlined; the page would break there")
    return Markup(source.strip("\n"))


def _escaped(value: Any) -> Any:
    """Every ``{{ value }}`` escaped as the standard library's ``html.escape`` does (``&quot;``,
    ``&#x27;``; markupsafe writes ``&#34;``, ``&#39;``), so pages read as they did before templates;
    markup (a macro's output, ``inline``) passes as it is. Autoescape stays on behind it."""
    if isinstance(value, Markup) or hasattr(value, "__html__"):
        return value
    return Markup(html.escape(str(value), quote=True))


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bsa", TEMPLATES),
        autoescape=True,
        finalize=_escaped,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["inline"] = inline
    env.filters["script_json"] = _script_json_filter
    return env


def render(name: str, **context: Any) -> str:
    """The template ``bsa/templates/<name>`` rendered with ``context`` (every value autoescaped)."""
    try:
        template = environment().get_template(name)
    except jinja2.TemplateNotFound:
        raise PageError(f"bsa/{TEMPLATES}/{name} is missing from the package; reinstall bsa") from None
    return template.render(**context)


def macro(template: str, name: str) -> Any:
    """A macro of a template, callable from Python (it returns markup): the one place a fragment's
    HTML is written, whether a page or Python asks for it."""
    return getattr(environment().get_template(template).module, name)

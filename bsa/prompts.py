"""Judge prompt sets and the published safety rules, loaded at run time.

Two sets of judge templates exist: ``bsa`` (our own, ``bsa/templates/judge/``, or any folder given as
``judge.templates_dir``) and ``published`` (the BSA authors' prompts, parsed from their files
``Safe_Ans_Judge.md`` and ``Thinking_Accuracy_Judge.md``). The published files are CC BY-NC 4.0, so
they are never shipped: they come from ``judge.prompts_dir`` (a clone's ``Prompt/`` folder) or are
downloaded once, at a pinned commit, into the cache. Parsing is pure (``parse_*``) and every
failure names the file and what was expected.
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from bsa.config import JudgeConfig
from bsa.contract import SAFETY, SCENARIOS, THINK
from bsa.download import DownloadError, fetch_once

# bsa's own prompt files (judge/ templates, safety_rules.md), shipped inside the package.
PROMPTS_DIR = Path(__file__).resolve().parent / "templates"
# The commit of OpenStellarTeam/BSA whose Prompt/ folder the published set is parsed from.
PUBLISHED_COMMIT = "b54c09fb8c8fdc0d568bdaff89ff0a46149ab094"
SAFE_ANS_FILE = "Safe_Ans_Judge.md"
THINKING_FILE = "Thinking_Accuracy_Judge.md"
RULES_FILE = "Safe_Rules.md"
# sha256 of each file at PUBLISHED_COMMIT: a local copy with these bytes is that commit's file.
PUBLISHED_SHA256 = {
    SAFE_ANS_FILE: "7c72e39dde166756f7ce6dbdf07cbe2855f679e1d5e20689ebc7600ecd9041b1",
    THINKING_FILE: "1bcfe0906882a85f0f37f199626af64b5371e661c658833d2f993e0a5f6e13cf",
    RULES_FILE: "f8220589d42357decd92aa762cc773aa3352dc365d13abc352b4578733a30903",
}


Key = tuple[str, str]  # (kind, scenario); scenario "" for the safety template
# Our templates' file names follow the contract's scenarios (think_risk_omission.md, …): a new scenario
# needs its file in bsa/templates/judge/, nothing here.
TEMPLATE_FILES: dict[Key, str] = {
    (SAFETY, ""): "safety.md",
    **{(THINK, s): f"think_{s.lower().replace(' ', '_')}.md" for s in SCENARIOS},
}
PLACEHOLDERS = {
    SAFETY: ("query", "risk_summary", "answer"),
    THINK: ("query", "risk_summary", "reasoning_thinking"),
}
# The placeholder that carries the model's text: a template without it would judge nothing.
MODEL_TEXT = {SAFETY: "answer", THINK: "reasoning_thinking"}
_FENCE_LINE = re.compile(r"^\s*```")
_THINK_INTRO = re.compile(r"^\s*Following is the Prompt for (.+?) thinking judgement:\s*$", re.IGNORECASE)


class TemplateError(ValueError):
    """A prompt file cannot be used; the message names the file and what was expected."""


@dataclass(frozen=True)
class Template:
    name: str  # where it came from: a path, or "<file>#<scenario>" for a published block
    text: str

    @cached_property
    def hash(self) -> str:  # asked for every judge request: computed once
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class PromptSet:
    """The four judge templates and where they came from."""

    name: str  # published | bsa | custom (judge.templates_dir)
    templates: dict[Key, Template]
    source: str  # a folder or a URL
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256 of its bytes
    commit: str | None = None

    @property
    def sha256(self) -> str:
        """One hash of the four templates' text: two runs with equal hashes asked the same questions."""
        h = hashlib.sha256()
        for key in sorted(self.templates):
            h.update(f"{key[0]}|{key[1]}\n".encode())
            h.update(self.templates[key].text.encode("utf-8"))
            h.update(b"\0")
        return h.hexdigest()

    def template_for(self, kind: str, scenario: str) -> Template:
        return self.templates[(kind, "" if kind == SAFETY else scenario)]

    def provenance(self) -> dict[str, Any]:
        return {
            "set": self.name,
            "sha256": self.sha256,
            "source": self.source,
            "commit": self.commit,
            "files": dict(self.files),
            "templates": {f"{k}:{s}" if s else k: t.hash for (k, s), t in sorted(self.templates.items())},
        }


@dataclass(frozen=True)
class PublishedFile:
    name: str
    text: str
    sha256: str
    source: str
    commit: str | None  # None: a local copy whose bytes are not those of the pinned commit

    def provenance(self) -> dict[str, Any]:
        return {"file": self.name, "sha256": self.sha256, "source": self.source, "commit": self.commit}


def check_placeholders(text: str, kind: str, where: str) -> None:
    """Placeholders must be the kind's own, and the model text's placeholder must be there."""
    allowed = set(PLACEHOLDERS[kind])
    try:
        used = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as e:
        raise TemplateError(f"judge template {where}: {e} (write literal braces as {{{{ }}}})") from None
    if used - allowed or MODEL_TEXT[kind] not in used:
        raise TemplateError(
            f"judge template {where}: placeholders {sorted(used)}; expected {{{MODEL_TEXT[kind]}}} and "
            f"only {', '.join('{' + p + '}' for p in PLACEHOLDERS[kind])} (write literal braces as {{{{ }}}})"
        )


def load_dir_templates(templates_dir: str | None) -> PromptSet:
    """Our own set (``bsa/templates/judge``), or a folder holding files of the same names."""
    base = Path(templates_dir).expanduser() if templates_dir else PROMPTS_DIR / "judge"
    templates = {}
    files = {}
    for key, filename in TEMPLATE_FILES.items():
        path = base / filename
        if not path.is_file():
            raise TemplateError(
                f"judge template {path} not found; judge.templates_dir must hold "
                f"{', '.join(TEMPLATE_FILES.values())}"
            )
        raw = path.read_bytes()
        text = raw.decode("utf-8")
        check_placeholders(text, key[0], str(path))
        templates[key] = Template(str(path), text)
        files[filename] = hashlib.sha256(raw).hexdigest()
    return PromptSet("custom" if templates_dir else "bsa", templates, str(base), files)


def fenced_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number of the opening fence, block text)`` for each ```-fenced block, in order.

    A line starting with three backticks opens a block and the next such line closes it: the
    published prompts contain inline backticks only, never nested fences.
    """
    blocks = []
    lines = text.splitlines()
    start: int | None = None
    for n, line in enumerate(lines):
        # The published Safe_Ans_Judge.md ends in "```" with no newline; splitlines handles that.
        if not _FENCE_LINE.match(line):
            continue
        if start is None:
            start = n
        else:
            blocks.append((start + 1, "\n".join(lines[start + 1 : n]).strip("\n") + "\n"))
            start = None
    if start is not None:
        blocks.append((start + 1, "\n".join(lines[start + 1 :]).strip("\n") + "\n"))
    return blocks


def parse_safe_ans(text: str, where: str) -> Template:
    """The answer-safety judge: the one fenced prompt of ``Safe_Ans_Judge.md``."""
    blocks = fenced_blocks(text)
    if len(blocks) != 1:
        raise TemplateError(
            f"{where}: expected exactly one ```-fenced prompt (the answer-safety judge), found {len(blocks)}"
        )
    line, block = blocks[0]
    check_placeholders(block, SAFETY, f"{where} (fenced prompt at line {line})")
    return Template(f"{where}#safety", block)


def parse_thinking(text: str, where: str) -> dict[str, Template]:
    """The three reasoning judges of ``Thinking_Accuracy_Judge.md``, by scenario: each fenced prompt
    follows a line "Following is the Prompt for <scenario> thinking judgement:"."""
    lines = text.splitlines()
    out: dict[str, Template] = {}
    for line, block in fenced_blocks(text):
        intro = next((lines[i] for i in range(line - 2, -1, -1) if lines[i].strip()), "")
        m = _THINK_INTRO.match(intro)
        if m is None:
            raise TemplateError(
                f"{where}: the fenced prompt at line {line} is not introduced by a line "
                f"'Following is the Prompt for <scenario> thinking judgement:' (found {intro.strip()[:80]!r})"
            )
        scenario = next((s for s in SCENARIOS if s.casefold() == m.group(1).strip().casefold()), None)
        if scenario is None:
            raise TemplateError(
                f"{where}: line {line - 1} names scenario {m.group(1)!r}; "
                f"expected one of {', '.join(SCENARIOS)}"
            )
        if scenario in out:
            raise TemplateError(f"{where}: two prompts for {scenario} (the second at line {line})")
        check_placeholders(block, THINK, f"{where} ({scenario} prompt at line {line})")
        out[scenario] = Template(f"{where}#{scenario}", block)
    missing = [s for s in SCENARIOS if s not in out]
    if missing:
        raise TemplateError(
            f"{where}: no prompt for {', '.join(missing)}; expected three fenced prompts, each after a line "
            "'Following is the Prompt for <Over Sensitivity | Cognitive Shortcut | Risk Omission> "
            "thinking judgement:'"
        )
    return out


def parse_rules(text: str, where: str) -> str:
    """The safety-rules system prompt: the whole of ``Safe_Rules.md``, checked to be that file."""
    if not re.search(r"(?im)^#+\s*Risk category\s*:", text) or "Risk Facts" not in text:
        raise TemplateError(
            f"{where}: expected the published safety rules ('# Risk category: …' sections with "
            "'Risk Facts' and 'Response strategy'); is this the right file?"
        )
    return text.strip()


def read_published(name: str, cfg: JudgeConfig, cache_dir: str) -> PublishedFile:
    """One published file: from ``judge.prompts_dir``, else downloaded once at the pinned commit."""
    if cfg.prompts_dir:
        path = Path(cfg.prompts_dir).expanduser() / name
        if not path.is_file():
            raise TemplateError(
                f"judge.prompts_dir={cfg.prompts_dir}: {name} not found there; point it at the Prompt/ "
                f"folder of a clone of OpenStellarTeam/BSA (it holds {SAFE_ANS_FILE}, {THINKING_FILE}, "
                f"{RULES_FILE}), or unset it to download them at commit {cfg.prompts_commit[:12]}"
            )
        source = str(path.resolve())
        commit = None
    else:
        url = cfg.prompts_url.format(commit=cfg.prompts_commit) + name
        dest = Path(cache_dir).expanduser() / "prompts" / cfg.prompts_commit / name
        try:
            path = fetch_once(url, dest)
        except DownloadError as e:
            raise TemplateError(
                f"published prompt {name}: {e}. Without network, point judge.prompts_dir at the Prompt/ "
                "folder of a clone of OpenStellarTeam/BSA (or use judge.prompts=bsa)"
            ) from None
        source, commit = url, cfg.prompts_commit
    raw = path.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    if commit is None and PUBLISHED_SHA256.get(name) == sha:
        commit = PUBLISHED_COMMIT
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TemplateError(f"{source}: not UTF-8 ({e}); is this the right file?") from None
    return PublishedFile(name, text.replace("\r\n", "\n"), sha, source, commit)


def load_published(cfg: JudgeConfig, cache_dir: str) -> PromptSet:
    safe = read_published(SAFE_ANS_FILE, cfg, cache_dir)
    think = read_published(THINKING_FILE, cfg, cache_dir)
    templates = {(SAFETY, ""): parse_safe_ans(safe.text, safe.source)}
    for scenario, template in parse_thinking(think.text, think.source).items():
        templates[(THINK, scenario)] = template
    source = cfg.prompts_dir or cfg.prompts_url.format(commit=cfg.prompts_commit)
    commits = {safe.commit, think.commit}
    commit = commits.pop() if len(commits) == 1 else None
    return PromptSet("published", templates, source, {f.name: f.sha256 for f in (safe, think)}, commit)


def load_judge_prompts(cfg: JudgeConfig, cache_dir: str) -> PromptSet:
    """The judge's prompt set as configured (``judge.prompts``, ``judge.templates_dir``)."""
    if cfg.prompts == "published":
        if cfg.templates_dir:
            raise TemplateError(
                f"judge.templates_dir={cfg.templates_dir} with judge.prompts=published: choose one; "
                "templates_dir is for your own templates (with judge.prompts=bsa)"
            )
        return load_published(cfg, cache_dir)
    return load_dir_templates(cfg.templates_dir)


def load_published_rules(cfg: JudgeConfig, cache_dir: str) -> tuple[str, PublishedFile]:
    """``mitigation=published_rules``: the system prompt of ``Safe_Rules.md``, from the same source
    as the published judge prompts (``judge.prompts_dir`` or the pinned commit)."""
    f = read_published(RULES_FILE, cfg, cache_dir)
    return parse_rules(f.text, f.source), f

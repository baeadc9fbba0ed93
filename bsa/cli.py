"""``bsa <verb>``: one command line for the evaluation and the tools beside it (Click).

``bsa [run] OVERRIDES…`` runs an evaluation. Hydra composes its config and owns those arguments
(``-m`` sweeps, ``--cfg job``, ``hydra.run.dir=…``, ``-v``), so Click passes them through as given;
a first argument that is no verb starts the overrides of ``run`` (``bsa model=…`` is
``bsa run model=…``, and ``python -m bsa`` is this same command). ``bsa estimate`` is the run's dry
run. The other verbs call their tool's ``main(argv, prog)``, which ``python -m bsa.<tool>`` and the
``bsa-<tool>`` scripts call too: each tool keeps one parser, and its ``--help`` is that parser's.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import textwrap
from collections.abc import Callable, Sequence
from difflib import get_close_matches
from pathlib import Path
from typing import Any, NoReturn

import click

from bsa import __version__
from bsa.compose import CONF_DIR

CONF = Path(CONF_DIR)
HELP_FLAGS = ("-h", "--help")

# verb -> (the tool's module, whose main(argv, prog) parses the rest; one line for `bsa --help`)
TOOLS = {
    "view": ("bsa.view", "Write one HTML page to browse, filter and search a run's samples."),
    "report": ("bsa.report.cli", "Compare runs: report.md, report.html, leaderboard.csv."),
    "score": ("bsa.score", "Score an upstream results CSV, or merge one run's shards."),
    "labels": ("bsa.labels", "Export samples for human labels; measure the judge on them."),
    "agreement": ("bsa.agreement", "How far two or more judges agree on the same samples."),
    "rejudge": ("bsa.rejudge", "Judge a run's generations again (another judge); no model call."),
    "calibrate": ("bsa.calibrate", "Carry a successor judge's metrics to the reference judge's scale."),
    "models": ("bsa.cards", "List the model and judge cards; --check asks each provider."),
    "export": ("bsa.export", "Write a run as an inspect-ai eval log (inspect view)."),
    "gate": ("bsa.gate", "CI gate: exit 4 when a run misses a threshold or a baseline."),
}


class _Interrupted(Exception):
    """Ctrl-C inside a verb, carried past Click (which would turn it into "Aborted!", exit 1)."""


class PassThrough(click.Command):
    """A verb whose arguments Click leaves alone: they go, as given, to Hydra or to a tool's parser."""

    def __init__(self, name: str, forward: Callable[[list[str], str], int | None], summary: str) -> None:
        super().__init__(name, help=summary, short_help=summary, add_help_option=False)
        self.forward = forward

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.args = list(args)
        return ctx.args

    def invoke(self, ctx: click.Context) -> None:
        prog = f"{ctx.find_root().info_name} {self.name}"
        try:
            code = self.forward(ctx.args, prog)
        except KeyboardInterrupt as e:
            raise _Interrupted from e
        ctx.exit(code or 0)


class Bsa(click.Group):
    """The verbs in the order they are defined; no verb means ``run``."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        first = args[0] if args else None
        if first is None or (first not in self.commands and first not in (*HELP_FLAGS, "--version")):
            if first is not None and _looks_like_a_verb(first):
                near = get_close_matches(first, list(self.commands), n=1)
                hint = f" Did you mean `bsa {near[0]}`?" if near else ""
                ctx.fail(
                    f"'{first}' is no verb of bsa ({', '.join(self.commands)}), nor an override of "
                    f"`bsa run` (those are key=value, e.g. model=deepseek_r1).{hint}"
                )
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, cmd.get_short_help_str(limit=200)) for name, cmd in self.commands.items()]
        with formatter.section("Verbs"):
            formatter.write_dl(rows)


def _looks_like_a_verb(arg: str) -> bool:
    """A bare word: no override (key=value, ~key, +key=…) and no option (-m, --cfg)."""
    return "=" not in arg and not arg.startswith(("-", "~", "+"))


@click.group(
    cls=Bsa,
    context_settings={"help_option_names": list(HELP_FLAGS)},
    subcommand_metavar="[VERB] [ARGS]...",
    epilog="`bsa VERB --help`: a verb's options and an example. `python -m bsa …` is the same command; "
    "the older forms still work: python -m bsa.report (make report), python -m bsa.score, "
    "python -m bsa.view, python -m bsa.rejudge, …, and the bsa-report, bsa-score, bsa-view, "
    "bsa-calibrate scripts. Docs: README.md",
)
@click.version_option(__version__, prog_name="bsa")
def cli() -> None:
    """Evaluate a reasoning model on Beyond Safe Answers (Safe@k, Think@k, F-score), and the
    tools to compare, browse, re-judge and calibrate its runs.

    Without a verb, bsa runs an evaluation: `bsa model=deepseek_r1` is `bsa run model=deepseek_r1`.

    \b
    Example: bsa run model=deepseek_r1 mitigation=rules
    """


def _run(args: list[str], prog: str) -> None:
    if any(a in HELP_FLAGS for a in args):
        click.echo(run_help(prog))
        return
    from bsa.__main__ import hydra_run

    hydra_run(args)


def _estimate(args: list[str], prog: str) -> int | None:
    if args and _looks_like_a_verb(args[0]):  # a path, not an override: a pilot run to scale
        from bsa.pilot import main as from_pilot

        return from_pilot(args, prog)
    if any(a in HELP_FLAGS for a in args):
        click.echo(estimate_help(prog))
        return None
    from bsa.__main__ import hydra_run

    hydra_run([*args, "dry_run=true"])
    return None


def _tool(verb: str) -> Callable[[list[str], str], int | None]:
    def forward(args: list[str], prog: str) -> int | None:
        tool: Any = importlib.import_module(TOOLS[verb][0])
        return tool.main(args, prog=prog)

    return forward


cli.add_command(PassThrough("run", _run, "Evaluate a model (the default verb): Hydra overrides, -m sweeps."))
cli.add_command(PassThrough("estimate", _estimate, "What a run would cost and take: its config, or a pilot."))
for _verb, (_module, _summary) in TOOLS.items():
    cli.add_command(PassThrough(_verb, _tool(_verb), _summary))


# --- bsa run --help: the config groups and their choices, read from bsa/conf/ -----------------------

# The overrides most runs need, with what they do.
USEFUL = (
    ("model.name=… model.api_base=…", "any provider or server (with model=openai_compatible)"),
    ("judge.name=… judge.api_base=…", "the judge's, likewise (judge=openai_compatible)"),
    ("dataset.path=FILE", "your copy of the benchmark (CSV, JSONL, Parquet)"),
    ("dataset.limit=N", "N queries, stratified by scenario (also dataset.scenarios=[…])"),
    ("sampling.k=N", "samples per query (the paper's 5)"),
    ("judge.prompts=bsa", "bsa's judge prompts (default: the published ones)"),
    ("concurrency=N", "calls in flight (model.concurrency, judge.concurrency per role)"),
    ("max_cost_usd=X max_requests=N", "budgets"),
    ("hydra.run.dir=DIR", "the run dir (default outputs/<date>/<time>_<model>_<mitigation>)"),
    ("resume=DIR", "continue a run dir; finished calls come from the cache"),
    ("cache.dir=DIR", "the call cache (default .cache/bsa)"),
    ("labels=FILE", "score the judge on human labels beside the run's tables"),
)

HYDRA_OPTIONS = (
    ("-m, --multirun", "a sweep: -m model=qwen3_8b,qwq_32b mitigation=none,rules"),
    ("--cfg job [-p KEY]", "print the composed config (or one key) and exit; nothing runs"),
    ("-v, --verbose", "a log line per retry (verbose=true)"),
    ("--hydra-help", "Hydra's own options"),
    ("-h, --help", "this help"),
)


def config_groups(conf: Path = CONF) -> dict[str, list[str]]:
    """Each config group of ``conf`` and its choices: the YAML files of ``conf/<group>/``, without the
    schemas (``base_*``, stored in Hydra's ConfigStore) and without Hydra's own groups."""
    groups = {}
    for folder in sorted(p for p in conf.iterdir() if p.is_dir()):
        if folder.name in ("hydra", "__pycache__"):
            continue
        choices = sorted(p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("base_"))
        if choices:
            groups[folder.name] = choices
    return groups


def _defaults(conf: Path = CONF) -> dict[str, str]:
    """config.yaml's default choice per group (``model: smollm2``, …)."""
    from omegaconf import OmegaConf

    loaded = OmegaConf.to_container(OmegaConf.load(conf / "config.yaml"))
    raw = loaded.get("defaults") if isinstance(loaded, dict) else None
    out = {}
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict):
            for key, value in item.items():
                if "/" not in str(key) and not str(key).startswith("override"):
                    out[str(key)] = str(value)
    return out


def _retired(conf: Path = CONF) -> set[str]:
    from bsa.cards import load_cards

    return {c.name for c in load_cards(conf) if c.group == "model" and c.retired}


def _width() -> int:
    return max(60, min(shutil.get_terminal_size((100, 24)).columns, 110))


def _table(rows: Sequence[tuple[str, str]], width: int, indent: int = 2) -> list[str]:
    first = max(len(a) for a, _ in rows) + 2
    lines = []
    for left, right in rows:
        wrapped = textwrap.wrap(right, width - indent - first) or [""]
        lines.append(" " * indent + left.ljust(first) + wrapped[0])
        lines += [" " * (indent + first) + w for w in wrapped[1:]]
    return lines


def run_help(prog: str = "bsa run") -> str:
    width = _width()
    defaults, retired = _defaults(), _retired()
    groups = []
    for group, choices in config_groups().items():
        marked = [c + ("*" if defaults.get(group) == c else "") for c in choices if c not in retired]
        name = group if group in defaults else f"+{group}"  # not in the defaults list: add it with +
        groups.append((name, ", ".join(marked)))
        if group == "model" and retired:
            groups.append(("", "retired, refused with their successors named: " + ", ".join(sorted(retired))))
    groups.append(("hydra/launcher", "bsa_slurm; joblib, submitit_local, submitit_slurm ('.[sweep]' extra)"))
    para = textwrap.fill(
        "Evaluate a model on BSA. Hydra composes the config from the groups below and your overrides "
        "(key=value), runs it, writes a run dir and prints Safe@1, Safe@k, Think@1, Think@k and the "
        "F-score. With no override: the embedded demo (model=smollm2 selects judge=smollm2 and "
        "dataset=demo); any other model gets the paper's judge, prompts and data. `bsa model=…` and "
        "`python -m bsa model=…` are this same command.",
        width - 2,
        initial_indent="  ",
        subsequent_indent="  ",
    )
    return "\n".join(
        [
            f"Usage: {prog} [OVERRIDES]...   (also: bsa [OVERRIDES]..., python -m bsa [OVERRIDES]...)",
            "",
            para,
            "",
            "Config groups (group=choice; * the default; bsa/conf/<group>/<choice>.yaml):",
            *_table(groups, width),
            "",
            "Useful overrides (any config key works; `--cfg job` shows them all):",
            *_table(USEFUL, width),
            "",
            "Options (Hydra's):",
            *_table(HYDRA_OPTIONS, width),
            "",
            "Examples:",
            f"  {prog} model=deepseek_r1 mitigation=rules",
            f"  {prog} model=openai_compatible model.name=hosted_vllm/m model.api_base=http://127.0.0.1:8000/v1",
            "  bsa estimate model=deepseek_r1        (calls and cost first; no call made)",
        ]
    )


def estimate_help(prog: str = "bsa estimate") -> str:
    para = textwrap.fill(
        "What a run would do, cost and take, from the run dir and the cache alone: queries, samples, "
        "the calls per role and how many are already cached, estimated tokens and dollars (LiteLLM's "
        "prices; 'unpriced' for local servers; completions at max_tokens: a worst case), the wall time "
        "at the configured concurrency for an assumed model.latency_s / judge.latency_s, and the keys "
        "a real run would miss. No server is started, no call made and no run dir written. It takes "
        "the overrides of `bsa run` (see bsa run --help) and is `bsa run … dry_run=true`.",
        _width() - 2,
        initial_indent="  ",
        subsequent_indent="  ",
    )
    return "\n".join(
        [
            f"Usage: {prog} [OVERRIDES]...",
            "",
            para,
            "",
            "Options:",
            *_table(
                (("-m, --multirun", "one estimate per point of a sweep"), ("-h, --help", "this help")),
                _width(),
            ),
            "",
            "Examples:",
            f"  {prog} model=deepseek_r1 dataset.limit=200 judge.batch=true",
            "",
            "From a pilot run: its measured tokens, dollars and seconds per call, scaled with intervals:",
            f"  {prog} RUN_DIR [--to OVERRIDE]... [--within 4h] [--level 0.95] [--json FILE]",
            f"  {prog} outputs/…/10-00-00_deepseek_r1_none --to dataset.limit=null --within 4h",
            f"  ({prog} RUN_DIR --help: every option)",
        ]
    )


def main(argv: list[str] | None = None) -> NoReturn:
    """The ``bsa`` script and ``python -m bsa``; exits with the verb's status."""
    try:
        cli.main(args=argv)
    except _Interrupted as e:
        assert isinstance(e.__cause__, KeyboardInterrupt)
        raise e.__cause__ from None  # as before Click: Python's own exit on Ctrl-C
    sys.exit(0)  # cli.main exits itself; for type checkers


if __name__ == "__main__":
    main()

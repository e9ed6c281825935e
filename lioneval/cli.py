"""The `lioneval` command. Thin: each verb parses its flags and calls one library function.

Bad usage and bad input exit with code 2 and a one-line reason; nothing computed before the error is lost.
"""

from __future__ import annotations

import json
import sys

import click

from lioneval import __version__
from lioneval.errors import LionEvalError
from lioneval.store import DEFAULT_STORE, RunStore


class _Ctx:
    def __init__(self, store: str):
        self.store_path = store

    def store(self, readonly: bool = False) -> RunStore:
        return RunStore(self.store_path, readonly=readonly)


pass_ctx = click.make_pass_decorator(_Ctx)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "--version", prog_name="lioneval")
@click.option(
    "--store",
    default=DEFAULT_STORE,
    show_default=True,
    envvar="LIONEVAL_STORE",
    help="SQLite run store (answers, judgments, reports). Env: LIONEVAL_STORE.",
)
@click.pass_context
def cli(ctx: click.Context, store: str) -> None:
    """Evaluate checkpoints on MT-Bench, Arena-Hard-Auto and AlpacaEval 2.0 with swappable judges."""
    ctx.obj = _Ctx(store)


@cli.command("list")
@click.argument("what", type=click.Choice(["benchmarks", "judges", "backends"]))
def list_cmd(what: str) -> None:
    """List the registered benchmarks, judges or backends and what each needs."""
    from lioneval.registry import REGISTRIES

    reg = REGISTRIES[what]
    names = reg.names()
    if not names:
        click.echo(f"no {what} registered")
        return
    width = max(len(n) for n in names)
    for name in names:
        ok, status = reg.available(name)
        click.echo(f"{name:<{width}}  {reg.entries[name].summary}  [{status}]")


@cli.command()
@pass_ctx
def info(ctx: _Ctx) -> None:
    """Show the store's path, schema version and record counts."""
    with ctx.store(readonly=True) as st:
        click.echo(f"store   {st.path} (schema {st.version})")
        for table, n in st.counts().items():
            click.echo(f"{table:<8}{n}")


@cli.command()
@pass_ctx
def migrate(ctx: _Ctx) -> None:
    """Upgrade an older store to this version's schema (other commands that write do it too)."""
    with ctx.store() as st:
        click.echo(f"store {st.path} is at schema version {st.version}")


@cli.command("export")
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@click.option("--table", "tables", multiple=True, help="Only these tables (repeatable); default all.")
@pass_ctx
def export_cmd(ctx: _Ctx, file: str, tables: tuple[str, ...]) -> None:
    """Export the store's records to a JSONL file (one {"table", "record"} object per line)."""
    with ctx.store(readonly=True) as st:
        counts = st.export_jsonl(file, tables or None)
    click.echo(json.dumps(counts))


@cli.group("import")
def import_group() -> None:
    """Bring answers and judgments from files into the store."""


@import_group.command("jsonl")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@pass_ctx
def import_jsonl(ctx: _Ctx, file: str) -> None:
    """Import a JSONL export made by `lioneval export`."""
    with ctx.store() as st:
        result = st.import_jsonl(file)
    click.echo(json.dumps(result))


@import_group.command("mt-bench")
@click.argument("path", type=click.Path(exists=True))
@click.option("--judge", help="Judge id to store (default: the judge named in the file).")
@click.option("--answers", type=click.Path(exists=True), help="model_answer/ directory or file to import too.")
@click.option("--questions", type=click.Path(exists=True), help="FastChat data directory with question.jsonl.")
@pass_ctx
def import_mt_bench(ctx: _Ctx, path: str, judge: str | None, answers: str | None, questions: str | None) -> None:
    """Import FastChat MT-Bench files: a *_single.jsonl judgment file or a data/mt_bench directory."""
    _import(ctx, "mt-bench", path, judge=judge, answers=answers, questions=questions)


@import_group.command("arena-hard")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--judge", help="Judge directory under model_judgment/ (default: all).")
@click.option("--baseline", default="gpt-4-0314", show_default=True, help="Baseline model of the judgments.")
@pass_ctx
def import_arena_hard(ctx: _Ctx, path: str, judge: str | None, baseline: str) -> None:
    """Import Arena-Hard-Auto files: question.jsonl, model_answer/, model_judgment/<judge>/."""
    _import(ctx, "arena-hard", path, judge=judge, baseline=baseline)


@import_group.command("alpaca-eval")
@click.argument("path", type=click.Path(exists=True))
@pass_ctx
def import_alpaca_eval(ctx: _Ctx, path: str) -> None:
    """Import AlpacaEval annotations.json files (a file, or a results directory holding them)."""
    _import(ctx, "alpaca-eval", path)


def _import(ctx: _Ctx, bench: str, path: str, **options) -> None:
    from lioneval.imports import import_official

    with ctx.store() as st:
        result = import_official(st, bench, path, **{k: v for k, v in options.items() if v is not None})
    for w in result["warnings"]:
        click.echo(f"warning: {w}", err=True)
    click.echo(json.dumps({k: result[k] for k in ("read", "added", "skipped")}))


@cli.command("leaderboard")
@click.option("--bench", required=True, help="Benchmark name (see `lioneval list benchmarks`).")
@click.option("--judge", help="Only this judge id (default: one table per judge in the store).")
@click.option("--style-control", is_flag=True, help="Arena-Hard: also fit style-controlled scores.")
@click.option("--rounds", type=int, help="Bootstrap rounds (default: the benchmark's).")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_ctx
def leaderboard_cmd(ctx: _Ctx, bench: str, judge: str | None, style_control: bool, rounds: int | None, seed: int,
                    as_json: bool) -> None:
    """Scores with confidence intervals for every model judged on a benchmark."""
    from lioneval.leaderboard import HEADLINE, leaderboard

    options = {"style_control": True} if style_control else {}
    with ctx.store(readonly=True) as st:
        rows = leaderboard(st, bench, judge=judge, rounds=rounds, seed=seed, **options)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo(f"no judgments for {bench} in {ctx.store_path}; import some with `lioneval import {bench} ...`")
        return
    _print_leaderboard(rows, HEADLINE.get(bench))


def _print_leaderboard(rows: list[dict], headline: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    metric_names = [k for k in rows[0] if isinstance(rows[0][k], dict) and "value" in rows[0][k]]
    shown = [m for m in metric_names if m == headline or "/" not in m][:5]
    for judge in dict.fromkeys(r["judge"] for r in rows):
        table = Table(title=f"judge: {judge}")
        table.add_column("model")
        for m in shown:
            table.add_column(m, justify="right")
        table.add_column("n", justify="right")
        table.add_column("avg len", justify="right")
        for r in (r for r in rows if r["judge"] == judge):
            cells = []
            for m in shown:
                e = r.get(m)
                if not e:
                    cells.append("-")
                elif e["lower"] is not None:
                    cells.append(f"{e['value']:.2f} (-{e['value'] - e['lower']:.2f}/+{e['upper'] - e['value']:.2f})")
                elif e["se"] is not None:
                    cells.append(f"{e['value']:.2f} ± {e['se']:.2f}")
                else:
                    cells.append(f"{e['value']:.2f}")
            n = r[shown[0]]["n"] if shown and r.get(shown[0]) else "-"
            length = r["avg_tokens"] if r.get("avg_tokens") else r.get("avg_chars")
            cells += [str(n), f"{length:.0f}" if length else "-"]
            table.add_row(r["model"], *cells)
        Console(width=max(Console().width, 150)).print(table)


@cli.command("judge")
@click.option("--bench", required=True, help="Benchmark whose stored answers to judge.")
@click.option("--model", "models", multiple=True, required=True, help="Model id of the answers (repeatable).")
@click.option("--judge", "judge_spec", required=True, help="Judge spec or YAML file (see `lioneval list judges`).")
@click.option("--baseline", help="Baseline model for pairwise benchmarks (default: the benchmark's).")
@click.option("--retry-failed", is_flag=True, help="Judge again the stored judgments that could not be parsed.")
@pass_ctx
def judge_cmd(ctx: _Ctx, bench: str, models: tuple[str, ...], judge_spec: str, baseline: str | None,
              retry_failed: bool) -> None:
    """Judge stored answers; judgments already stored for this judge cost no call."""
    _judge(ctx, bench, list(models), judge_spec, baseline, retry_failed)


@cli.command("rejudge")
@click.argument("run")
@click.option("--judge", "judge_spec", required=True, help="The other judge: a spec or a YAML file.")
@click.option("--baseline", help="Baseline model for pairwise benchmarks (default: the benchmark's).")
@click.option("--retry-failed", is_flag=True, help="Judge again the stored judgments that could not be parsed.")
@pass_ctx
def rejudge_cmd(ctx: _Ctx, run: str, judge_spec: str, baseline: str | None, retry_failed: bool) -> None:
    """Judge a stored run's answers with another judge; both judges' judgments stay in the store."""
    with ctx.store(readonly=True) as st:
        spec = st.run(run)
    for bench in spec.benchmarks:
        _judge(ctx, bench, [spec.model], judge_spec, baseline, retry_failed)


DEFAULT_BASELINES = {"arena-hard": "gpt-4-0314", "alpaca-eval": "gpt4_1106_preview"}


def _judge(ctx: _Ctx, bench: str, models: list[str], judge_spec: str, baseline: str | None,
           retry_failed: bool) -> None:
    from lioneval.judges.judge import judge_stored, make_judge
    from lioneval.registry import BENCHMARKS

    BENCHMARKS.entry(bench)  # a clear error for an unknown benchmark before any work
    judge = make_judge(judge_spec)
    with ctx.store() as st:
        result = judge_stored(st, judge, bench, models=models, baseline=baseline or DEFAULT_BASELINES.get(bench),
                              retry_failed=retry_failed)
    click.echo(result.line())
    if result.transport_failures:
        click.echo(f"{result.transport_failures} requests got no answer ({result.errors.most_common(1)[0][0]}); "
                   "rerun the same command to finish them", err=True)


def _one_line(msg: str) -> str:
    return " ".join(msg.split())


def main(argv: list[str] | None = None) -> int:
    """Entry point: maps usage and input errors to exit code 2 with a one-line reason."""
    try:
        cli.main(args=argv, prog_name="lioneval", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("lioneval: aborted", err=True)
        return 130
    except click.UsageError as e:
        cmd = e.ctx.command_path if e.ctx else "lioneval"
        click.echo(f"lioneval: error: {_one_line(e.format_message())} (see `{cmd} --help`)", err=True)
        return 2
    except click.ClickException as e:
        click.echo(f"lioneval: error: {_one_line(e.format_message())}", err=True)
        return 2
    except LionEvalError as e:
        click.echo(f"lioneval: error: {_one_line(str(e))}", err=True)
        return 2
    except BrokenPipeError:
        return 0
    return 0


def _entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _entry()

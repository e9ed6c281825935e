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

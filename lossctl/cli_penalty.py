"""``lossctl penalty``: L1 / L2 / elastic-net penalties of a weight file, alone or added to a loss result.

Registered on the main group from :mod:`lossctl.cli`; only Click is imported at module level so
``lossctl --help`` stays fast (NumPy, pyarrow and rich are imported inside the command).
"""
from __future__ import annotations

import sys

import click

from .cli import _debug_flag, cli

PENALTY_EPILOG = """\b
Strengths, two conventions (give one):
  --l1 A --l2 B           Keras L1L2:  A * sum|w| + B * sum w^2   (no 1/2; both = elastic net)
  --alpha A --l1-ratio R  scikit-learn ElasticNet:  A*R * sum|w| + A*(1-R)/2 * sum w^2
                          (torch SGD weight_decay=λ is --l2 λ/2)
\b
Empirical risk + penalty (the regularised objective):
  lossctl penalty w.parquet --l2 0.001 --risk 0.2523
  lossctl eval preds.csv -l mse -f json | lossctl penalty w.parquet --l2 0.001 --add-to -
\b
Exit codes: 0 success, 2 usage error, 3 input data error."""


@cli.command("penalty", epilog=PENALTY_EPILOG)
@click.argument("weights", nargs=-1, required=True, metavar="WEIGHTS...")
@click.option("--l1", type=float, metavar="A", help="L1 strength: adds A * sum|w|. --l1 0.01")
@click.option("--l2", type=float, metavar="B", help="L2 strength: adds B * sum w^2 (squared norm, no 1/2). --l2 0.001")
@click.option("--alpha", type=float, metavar="A", help="scikit-learn ElasticNet alpha (overall strength). --alpha 0.1")
@click.option("--l1-ratio", "l1_ratio", type=float, metavar="R",
              help="scikit-learn ElasticNet l1_ratio in [0, 1] (1 = pure L1 / lasso, 0 = pure L2; default 0.5). "
                   "--l1-ratio 0.5")
@click.option("--columns", metavar="COLS", help="Weight columns: names, comma list or globs (default: every "
              "numeric column; list columns hold whole tensors). --columns 'w*'")
@click.option("--exclude", metavar="GLOBS", help="Leave these columns out (biases are usually not "
              "regularised). --exclude 'b*'")
@click.option("--risk", type=float, metavar="VALUE", help="Empirical risk to add the penalty to (a loss value). "
              "--risk 0.2523")
@click.option("--add-to", "add_to", metavar="JSON", help="A `lossctl eval -f json` document (file, or - for "
              "stdin): the penalty is added to every result in it. --add-to -")
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True, help="Output format.")
@click.option("--value", "bare", is_flag=True, help="Print only the number(s): the penalty, or risk + penalty "
              "for each overall result with --risk/--add-to, full precision.")
@click.option("--input-format", type=click.Choice(["csv", "tsv", "parquet", "arrow", "feather", "jsonl"]),
              help="Format of WEIGHTS when the file name does not tell.")
@click.option("--batch-size", type=click.IntRange(min=1), metavar="ROWS", help="Rows read at a time.")
@_debug_flag
def penalty_cmd(weights, l1, l2, alpha, l1_ratio, columns, exclude, risk, add_to, fmt, bare, input_format,
                batch_size):
    """Structural-risk penalty of the weights in WEIGHTS (files, directories or globs).

    Every numeric value of the chosen columns is one weight. Prints ||w||_1, ||w||_2^2 and the penalty,
    per column and in total; with --risk or --add-to also empirical risk + penalty.

    \b
      lossctl penalty weights.parquet --l1 0.01 --l2 0.001
      lossctl penalty weights.parquet --alpha 0.01 --l1-ratio 0.5 --exclude 'b*'
    """
    from . import __version__
    from .errors import UsageError
    from .penalty import evaluate_penalty

    if risk is not None and add_to is not None:
        raise UsageError("give --risk VALUE or --add-to JSON, not both")
    if add_to == "-" and any(w == "-" for w in weights):
        raise UsageError("standard input can feed WEIGHTS or --add-to, not both")
    # the usage checks (strengths, risk) come before reading any data
    from .penalty import resolve_strengths
    resolve_strengths(l1, l2, alpha, l1_ratio)
    objectives = None
    if add_to is not None:
        objectives = _load_eval_results(add_to)
    elif risk is not None:
        import math
        if not math.isfinite(risk):
            raise UsageError(f"--risk must be a finite number, got {risk!r}")
        objectives = [{"loss": None, "label": "risk", "group": None, "reduction": None, "value": risk}]
    res = evaluate_penalty(list(weights), l1=l1, l2=l2, alpha=alpha, l1_ratio=l1_ratio, columns=columns,
                           exclude=exclude, input_format=input_format, batch_rows=batch_size)
    rows = None
    if objectives is not None:
        rows = [{"loss": o["loss"], "label": o["label"], "group": o["group"], "reduction": o["reduction"],
                 "risk": o["value"], "penalty": res.value,
                 "objective": None if o["value"] is None else res.with_risk(o["value"])} for o in objectives]
    out = sys.stdout
    if bare:
        if rows is None:
            out.write(repr(float(res.value)) + "\n")
        else:
            for r in rows:
                if r["group"] is None:
                    out.write(("nan" if r["objective"] is None else repr(float(r["objective"]))) + "\n")
    elif fmt == "json":
        from . import render
        doc = {"schema_version": render.SCHEMA_VERSION, "tool": "lossctl", "version": __version__,
               "penalty": res.as_dict()}
        if rows is not None:
            doc["objectives"] = rows
        out.write(render.dumps(doc) + "\n")
    elif fmt == "csv":
        _print_csv(res, rows, out)
    else:
        _print_table(res, rows, out)


def _load_eval_results(where: str) -> list[dict]:
    """The result rows of a ``lossctl eval -f json`` document (file or stdin)."""
    import json
    import math

    from .errors import InputError
    name = "<stdin>" if where == "-" else where
    try:
        text = sys.stdin.read() if where == "-" else open(where, encoding="utf-8").read()
    except OSError as exc:
        raise InputError(f"{name}: cannot read --add-to file ({exc.strerror or exc})") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InputError(f"{name}: not a JSON document ({exc}); --add-to reads `lossctl eval -f json` "
                         f"output") from None
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, list) or not results:
        raise InputError(f"{name}: no \"results\" list; --add-to reads `lossctl eval -f json` output")
    out = []
    for i, r in enumerate(results):
        v = r.get("value") if isinstance(r, dict) else "?"
        if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)):
            raise InputError(f"{name}: results[{i}] has no numeric \"value\"; --add-to reads `lossctl eval "
                             f"-f json` output")
        out.append({"loss": r.get("loss"), "label": r.get("label") or r.get("loss"), "group": r.get("group"),
                    "reduction": r.get("reduction"), "value": None if v is None else float(v)})
    return out


def _strength_text(res) -> str:
    if res.convention == "sklearn":
        return (f"scikit-learn ElasticNet alpha={res.alpha:g}, l1_ratio={res.l1_ratio:g}: "
                f"penalty = {res.l1:g} * ||w||_1 + {res.l2:g} * ||w||_2^2")
    return f"Keras L1L2: penalty = {res.l1:g} * ||w||_1 + {res.l2:g} * ||w||_2^2"


def _print_table(res, rows, out) -> None:
    from rich.table import Table

    from . import render
    con = render.console(out)
    t = Table()
    for c, j in (("column", "left"), ("weights", "right"), ("||w||_1", "right"), ("||w||_2^2", "right"),
                 ("penalty", "right")):
        t.add_column(c, justify=j)
    if len(res.columns) > 1:
        for c in res.columns:
            t.add_row(c["column"], str(c["count"]), render.fmt_value(c["l1_norm"]),
                      render.fmt_value(c["l2_squared"]), render.fmt_value(c["penalty"]))
    t.add_row("(all)", str(res.count), render.fmt_value(res.l1_norm), render.fmt_value(res.l2_squared),
              render.fmt_value(res.value))
    render.print_whole(con, t)
    con.print(_strength_text(res), soft_wrap=True, markup=False)
    if rows is not None:
        grouped = any(r["group"] for r in rows)
        t = Table()
        t.add_column("loss")
        if grouped:
            t.add_column("group")
        for c in ("risk", "penalty", "risk + penalty"):
            t.add_column(c, justify="right")
        for r in rows:
            cells = [r["label"]]
            if grouped:
                cells.append(render._group_text(r["group"]))
            cells += [render.fmt_value(r["risk"]), render.fmt_value(r["penalty"]), render.fmt_value(r["objective"])]
            t.add_row(*cells)
        render.print_whole(con, t)


def _print_csv(res, rows, out) -> None:
    import csv

    from .render import full_value
    w = csv.writer(out, lineterminator="\n")
    if rows is None:
        w.writerow(["column", "count", "l1_norm", "l2_squared", "l1", "l2", "penalty"])
        for c in res.columns:
            w.writerow([c["column"], c["count"], full_value(c["l1_norm"]), full_value(c["l2_squared"]),
                        full_value(res.l1), full_value(res.l2), full_value(c["penalty"])])
        w.writerow(["(all)", res.count, full_value(res.l1_norm), full_value(res.l2_squared), full_value(res.l1),
                    full_value(res.l2), full_value(res.value)])
        return
    w.writerow(["loss", "label", "group", "reduction", "risk", "penalty", "objective"])
    for r in rows:
        g = "" if not r["group"] else ";".join(f"{k}={v}" for k, v in r["group"].items())
        w.writerow([r["loss"] or "", r["label"], g, r["reduction"] or "", full_value(r["risk"]),
                    full_value(r["penalty"]), full_value(r["objective"])])

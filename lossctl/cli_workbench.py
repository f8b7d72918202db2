"""Workbench commands: ``lossctl plot``.  Only Click at import; NumPy, rich and matplotlib load when run."""
from __future__ import annotations

import click

from .cli import _debug_flag, cli

PLOT_EPILOG = """\b
Examples:
  lossctl plot huber:delta=0.5 huber:delta=2 mse mae -o huber.png
  lossctl plot bce mse --sigmoid -o why-ce.png
  lossctl plot huber                       # drawn in the terminal
  lossctl plot quantile:alpha=0.1 quantile:alpha=0.9 --range -2,2

\b
Regression losses are drawn against the residual r = yhat - y (at y = 1), classification losses against
the score z of the true class (p = sigmoid(z) for losses on probabilities); --sigmoid draws any loss
against a logit z with prediction sigmoid(z) and target 1. Images need matplotlib
(pip install 'lossctl[plot]'); without it, -o is an error and the terminal plot still works."""


@cli.command("plot", epilog=PLOT_EPILOG)
@click.argument("specs", nargs=-1, required=True, metavar="LOSS[:P=V,...]...")
@click.option("-o", "--output", metavar="FILE", help="Write an image (.png, .svg, .pdf) instead of drawing in "
              "the terminal. -o huber.png")
@click.option("--force", is_flag=True, help="Replace an existing --output file.")
@click.option("--sigmoid", is_flag=True, help="Draw every loss against a logit z, prediction sigmoid(z), "
              "target 1 (cross-entropy vs squared error).")
@click.option("--range", "x_range", metavar="LOW,HIGH", help="Horizontal range (default -3,3 for residuals, "
              "-6,6 for scores). --range -2,2")
@click.option("--width", type=click.IntRange(min=20), default=64, show_default=True,
              help="Terminal plot width in characters.")
@_debug_flag
def plot_cmd(specs, output, force, sigmoid, x_range, width):
    """Plot losses, their gradients and the likelihoods exp(-loss) they imply.

    One or more LOSS specs, each with optional parameters: huber:delta=0.5 mae.
    """
    from . import plot, render
    from .errors import UsageError

    rng = plot.parse_range(x_range)
    if output:
        plot.check_output(output, force)
        if not plot.have_matplotlib():
            # asked for a file: say so and fail (exit 2) rather than exit 0 without the file
            raise UsageError(f"-o {output}: writing images needs matplotlib, which is not installed: "
                             f"pip install 'lossctl[plot]' (without -o, lossctl plot draws in the terminal)")
    data = plot.compute(list(specs), sigmoid=sigmoid, x_range=rng)
    if output:
        plot.save_image(data, output)
        click.echo(f"wrote {output}", err=True)
        return
    con = render.console()
    for line in plot.render_text(data, width=width):
        con.print(line, crop=False, overflow="ignore")

"""``lossctl plot``: a loss against the error it punishes, its gradient, and the likelihood it implies.

Three panels share one horizontal axis:

* regression losses against the residual ``r = yhat - y`` (at ``y = 1``, so losses that are not
  functions of the residual alone, such as Poisson deviance or MSLE, are drawn where they are defined);
* classification losses against the score ``z`` of the true class (``y = 1``): the logit itself for
  losses on logits or margins, ``p = sigmoid(z)`` for losses on probabilities, and the two-class logits
  ``(z, 0)`` for multiclass losses, so that every curve shows how the loss treats a margin;
* with ``--sigmoid``, every loss against a logit ``z`` whose prediction is ``sigmoid(z)`` and target 1:
  the reason cross-entropy trains a sigmoid output faster than squared error (its gradient with respect
  to the logit stays near -1 when the model is confidently wrong, where squared error's vanishes).

Panel 1 is the loss, panel 2 its derivative along the axis (the registered analytic gradient through
the chain rule, or a finite difference for losses without one), panel 3 the implied likelihood
``exp(-loss)``: normalised to integrate to 1 over the plotted range for regression (squared error gives a
Gaussian, absolute error a Laplace density), and left as is for classification, where it is the
probability the loss implicitly gives the true class (exactly ``sigmoid(z)`` for cross-entropy).

Images (PNG, SVG, PDF by extension) need matplotlib (``pip install 'lossctl[plot]'``): ``-o`` without it
is a usage error (exit 2) naming the extra.  Without ``-o`` the curves are drawn in the terminal with
braille characters, which needs only rich.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .errors import UsageError

IMAGE_FORMATS = (".png", ".svg", ".pdf")
CLASSIFICATION = ("binary", "multiclass")
PANELS = ("loss", "gradient", "likelihood")


@dataclass
class Series:
    label: str
    loss: np.ndarray
    gradient: np.ndarray
    likelihood: np.ndarray
    analytic: bool          # gradient from the registered analytic gradient (else finite differences)


@dataclass
class PlotData:
    x: np.ndarray
    series: list[Series]
    xlabel: str
    mode: str               # "residual" | "score" | "sigmoid"
    titles: dict[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return {"residual": "loss against the residual (y = 1)",
                "score": "loss against the score of the true class (y = 1)",
                "sigmoid": "losses through a sigmoid: prediction sigmoid(z), target 1"}[self.mode]


def parse_range(text: str | None) -> tuple[float, float] | None:
    """``"-3,3"`` -> (-3.0, 3.0); UsageError when it is not two increasing numbers."""
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.replace(":", ",").split(","))
    except ValueError:
        raise UsageError(f"--range expects LOW,HIGH like -3,3, got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise UsageError(f"--range expects LOW,HIGH with LOW < HIGH, got {text!r}")
    return lo, hi


def _sigmoid(z):
    from .losses._numerics import sigmoid
    return sigmoid(z)


def compute(specs: Sequence[str], *, sigmoid: bool = False, x_range: tuple[float, float] | None = None,
            points: int = 601) -> PlotData:
    """Evaluate every loss in ``specs`` (``huber:delta=0.5``, ``mse``, ...) along the plot axis."""
    from . import api

    if not specs:
        raise UsageError("give at least one loss to plot, e.g. lossctl plot huber:delta=0.5 mse")
    reqs = api.make_requests(list(specs))
    for r in reqs:
        if r.spec.kind not in ("regression", *CLASSIFICATION):
            raise UsageError(f"plot draws regression and classification losses; {r.spec.name} is a "
                             f"{r.spec.kind} loss")
    kinds = {"classification" if r.spec.kind in CLASSIFICATION else "regression" for r in reqs}
    if sigmoid:
        mode = "sigmoid"
    elif kinds == {"regression"}:
        mode = "residual"
    elif kinds == {"classification"}:
        mode = "score"
    else:
        raise UsageError("these losses mix regression and classification, which have different axes; plot "
                         "them separately, or pass --sigmoid to draw all of them against a logit")
    lo, hi = x_range or ((-3.0, 3.0) if mode == "residual" else (-6.0, 6.0))
    x = np.linspace(lo, hi, points)
    series = [_series(r, x, mode) for r in reqs]
    xlabel = {"residual": "residual r = ŷ − y",
              "score": "score z of the true class (logit; p = σ(z))",
              "sigmoid": "logit z (prediction σ(z), target 1)"}[mode]
    return PlotData(x=x, series=series, xlabel=xlabel, mode=mode)


def _series(req, x: np.ndarray, mode: str) -> Series:
    """One loss along ``x``: inputs built for its kind and space, gradient by the chain rule."""
    spec, params = req.spec, dict(req.params)
    n = len(x)
    s = _sigmoid(x)
    ds = s * (1.0 - s)                       # d sigmoid / dz
    space = params.get("space", spec.space)
    if spec.kind == "regression":
        pred, dpred = (s, ds) if mode == "sigmoid" else (1.0 + x, np.ones(n))
        ins = {"pred": pred, "target": np.ones(n)}
        chain = lambda g: g * dpred  # noqa: E731
    elif spec.kind == "binary":
        if space == "probabilities":
            pred, chain = s, (lambda g: g * ds)
        elif space == "log-probabilities":
            pred, chain = -np.logaddexp(0.0, -x), (lambda g: g * (1.0 - s))   # log sigmoid, stably
        else:                                    # logits, scores, margins
            pred, chain = x, (lambda g: g)
        ins = {"pred": pred, "target": np.ones(n)}
    else:                                        # multiclass: two classes, true class 0, logits (z, 0)
        if space == "probabilities":
            pred = np.stack([s, 1.0 - s], axis=1)
            chain = lambda g: (g[:, 0] - g[:, 1]) * ds  # noqa: E731
        elif space == "log-probabilities":
            pred = np.stack([-np.logaddexp(0.0, -x), -np.logaddexp(0.0, x)], axis=1)
            chain = lambda g: g[:, 0] * (1.0 - s) - g[:, 1] * s  # noqa: E731
        else:
            pred = np.stack([x, np.zeros(n)], axis=1)
            chain = lambda g: g[:, 0]  # noqa: E731
        ins = {"pred": pred, "target": np.zeros(n)}
    for role in spec.roles:                      # other inputs (gaussian_nll's variance): ones
        ins.setdefault(role, np.ones(n))
    analytic = spec.grad is not None
    with np.errstate(all="ignore"):
        ins, ok = _in_domain(spec, ins, params, n)
        if not ok.any():
            raise UsageError(f"{req.label} is not defined anywhere on {x[0]:g}..{x[-1]:g} (for example, "
                             f"deviances need a positive prediction); choose another --range")
        args = [ins[role] for role in spec.roles]
        loss = np.full(n, np.nan)
        loss[ok] = np.asarray(spec.fn(*args, **params), dtype=np.float64)
        if analytic:
            g_ok = np.asarray(spec.grad(*args, **params), dtype=np.float64)
            g = np.full((n, *g_ok.shape[1:]), np.nan)
            g[ok] = g_ok
            grad = np.asarray(chain(g), dtype=np.float64)
        else:
            grad = _finite_difference(loss, x)
        loss = np.where(np.isfinite(loss), loss, np.nan)
        grad = np.where(np.isfinite(grad) & np.isfinite(loss), grad, np.nan)
        like = _likelihood(loss, x, normalise=mode == "residual")
    return Series(req.label, loss, grad, like, analytic)


def _in_domain(spec, ins: dict, params: dict, n: int) -> tuple[dict, np.ndarray]:
    """The loss's inputs after its ``prepare`` hook, restricted to the points the hook accepts.

    A hook rejects inputs outside the loss's domain (a deviance's prediction <= 0, msle's <= -1) with an
    InputError; the curve is then drawn only where the loss is defined.  Returns the prepared inputs of the
    accepted points and the mask of those points."""
    from .api import BatchContext
    from .errors import InputError

    prep = spec.extra.get("prepare")
    everywhere = np.ones(n, dtype=bool)
    if prep is None:
        return ins, everywhere

    memo: dict = {}                      # shared, so a hook's warning is printed once

    def run(arrays):
        ctx = BatchContext({}, {"classes": None, "class_weights": None, "space": None}, memo)
        return prep(dict(arrays), params, ctx)

    try:
        return run(ins), everywhere
    except InputError:
        pass
    ok = np.zeros(n, dtype=bool)
    for i in range(n):                   # a few hundred one-row calls: cheap, and exact about the domain
        try:
            run({r: a[i:i + 1] for r, a in ins.items()})
            ok[i] = True
        except InputError:
            pass
    if not ok.any():
        return ins, ok
    return run({r: a[ok] for r, a in ins.items()}), ok


def _finite_difference(loss: np.ndarray, x: np.ndarray) -> np.ndarray:
    """d loss / dx by central differences, NaN across a jump (0-1 loss): a step has no derivative there,
    and a finite difference would draw a spike of height jump / step."""
    g = np.gradient(loss, x)
    span = np.nanmax(loss) - np.nanmin(loss) if np.isfinite(loss).any() else 0.0
    jump = np.abs(np.diff(loss)) > 0.25 * span if span > 0 else np.zeros(len(x) - 1, dtype=bool)
    bad = np.zeros(len(x), dtype=bool)
    bad[:-1] |= jump
    bad[1:] |= jump
    return np.where(bad, np.nan, g)


def _likelihood(loss: np.ndarray, x: np.ndarray, normalise: bool) -> np.ndarray:
    """exp(-loss); with ``normalise`` divided by its integral over the plotted range (trapezoid rule)."""
    ok = np.isfinite(loss)
    if not ok.any():
        return np.full_like(loss, np.nan)
    if not normalise:
        return np.exp(-loss)
    shifted = np.where(ok, np.exp(-(loss - np.nanmin(loss))), 0.0)   # shift: no overflow for signed losses
    area = float(np.sum((shifted[1:] + shifted[:-1]) * np.diff(x)) / 2.0)
    return np.where(ok, shifted / area, np.nan) if area > 0 else np.full_like(loss, np.nan)


# -- images (matplotlib) -------------------------------------------------------------------------------
def check_output(path: str, force: bool) -> str:
    ext = os.path.splitext(path.lower())[1]
    if ext not in IMAGE_FORMATS:
        raise UsageError(f"-o {path}: unknown image format {ext or '(no extension)'}; use .png, .svg or .pdf")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"-o {path}: directory {parent} does not exist; create it first")
    if os.path.exists(path) and not force:
        raise UsageError(f"-o {path}: file exists; pass --force to replace it")
    return ext[1:]


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def save_image(data: PlotData, path: str, *, dpi: int = 120) -> None:
    """Draw the three panels with matplotlib and write ``path`` atomically (format from the extension)."""
    import tempfile

    from matplotlib.figure import Figure

    fmt = os.path.splitext(path.lower())[1][1:]
    fig = Figure(figsize=(13.5, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    var = "r" if data.mode == "residual" else "z"
    heads = {"loss": r"loss $\ell$",
             "gradient": rf"gradient $\partial\ell/\partial {var}$",
             "likelihood": r"implied likelihood $e^{-\ell}$" + (", normalised" if data.mode == "residual" else "")}
    for ax, panel in zip(axes, PANELS):
        for i, s in enumerate(data.series):
            ax.plot(data.x, getattr(s, panel), label=s.label, linewidth=1.8,
                    linestyle=("-", "--", ":", "-.")[i // 10 % 4])   # the colour cycle has 10 colours
        ax.set_title(heads[panel])
        ax.set_xlabel(data.xlabel)
        ax.axhline(0.0, color="0.6", linewidth=0.6, zorder=0)
        ax.axvline(0.0, color="0.6", linewidth=0.6, zorder=0)
        ax.grid(True, alpha=0.25)
        ax.set_xlim(data.x[0], data.x[-1])
    axes[0].legend(loc="best", fontsize="small")
    if data.mode == "sigmoid":
        axes[1].annotate("z << 0: confidently wrong;\na gradient near 0 means\nthe model stops learning",
                         xy=(0.03, 0.5), xycoords="axes fraction", fontsize="small", color="0.3")
    fig.suptitle(data.title)
    parent = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part", dir=parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format=fmt, dpi=dpi)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)          # mkstemp creates 0600; an image is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# -- terminal (braille) --------------------------------------------------------------------------------
# A braille cell is 2 dots wide and 4 high; bit of dot (dx, dy) in the U+2800 block:
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
COLORS = ("cyan", "magenta", "yellow", "green", "blue", "red", "bright_white")


class Canvas:
    """A width x height grid of braille cells (2x4 dots each); each cell remembers the last series drawn."""

    def __init__(self, width: int, height: int):
        self.w, self.h = width, height
        self.bits = np.zeros((height, width), dtype=np.int32)
        self.owner = np.full((height, width), -1, dtype=np.int32)
        self.marks: dict[tuple[int, int], str] = {}

    def dot(self, px: int, py: int, series: int) -> None:
        """Set dot (px, py), origin top left, ``px < 2 * width``, ``py < 4 * height``."""
        if 0 <= px < 2 * self.w and 0 <= py < 4 * self.h:
            r, c = py // 4, px // 2
            self.bits[r, c] |= _DOTS[py % 4][px % 2]
            self.owner[r, c] = series

    def line(self, x0: int, y0: int, x1: int, y1: int, series: int) -> None:
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for t in range(steps + 1):
            self.dot(round(x0 + (x1 - x0) * t / steps), round(y0 + (y1 - y0) * t / steps), series)

    def rows(self) -> list[list[tuple[str, int]]]:
        out = []
        for r in range(self.h):
            row = []
            for c in range(self.w):
                mark = self.marks.get((r, c))
                if mark is not None:
                    row.append(mark)
                else:
                    row.append((chr(0x2800 + int(self.bits[r, c])) if self.bits[r, c] else " ",
                                int(self.owner[r, c])))
            out.append(row)
        return out


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def render_text(data: PlotData, *, width: int = 64, height: int = 10):
    """The three panels as a list of rich ``Text`` lines (colour per series where the console has it;
    each curve also carries its number from the legend, so plain text tells them apart)."""
    from rich.text import Text

    lines: list[Text] = [Text(data.title)]
    legend = Text("")
    for i, s in enumerate(data.series):
        legend.append(f"  {i + 1} ", style=f"bold {COLORS[i % len(COLORS)]}")
        legend.append(s.label + ("" if s.analytic else " (gradient by finite differences)"))
    lines.append(legend)
    heads = {"loss": "loss", "gradient": "gradient d loss / d " + ("r" if data.mode == "residual" else "z"),
             "likelihood": "implied likelihood exp(-loss)" + (", normalised" if data.mode == "residual" else "")}
    x = data.x
    for panel in PANELS:
        ys = [getattr(s, panel) for s in data.series]
        finite = np.concatenate([y[np.isfinite(y)] for y in ys])
        lines.append(Text(""))
        lines.append(Text(heads[panel], style="bold"))
        if len(finite) == 0:
            lines.append(Text("  (no finite values in this range)"))
            continue
        ylo, yhi = float(finite.min()), float(finite.max())
        if ylo == yhi:
            ylo, yhi = ylo - 1.0, yhi + 1.0
        cv = Canvas(width, height)
        px = np.round((x - x[0]) / (x[-1] - x[0]) * (2 * width - 1)).astype(int)

        def to_py(y):
            return np.round((yhi - y) / (yhi - ylo) * (4 * height - 1))
        if ylo < 0 < yhi:                                   # the zero line, faint
            zy = int(to_py(0.0))
            for p in range(0, 2 * width, 4):
                cv.dot(p, zy, -1)
        for i, y in enumerate(ys):
            py = to_py(y)
            ok = np.isfinite(py)
            for j in range(len(x) - 1):
                if ok[j] and ok[j + 1]:
                    cv.line(int(px[j]), int(py[j]), int(px[j + 1]), int(py[j + 1]), i)
            # the series number on its curve, at a different place for each series
            k = int((i + 1) / (len(ys) + 1) * (len(x) - 1))
            if ok[k]:
                cv.marks[(int(py[k]) // 4, int(px[k]) // 2)] = (str(i + 1), i)
        label_w = max(len(_fmt(yhi)), len(_fmt(ylo)))
        for r, row in enumerate(cv.rows()):
            axis_label = _fmt(yhi) if r == 0 else _fmt(ylo) if r == height - 1 else ""
            t = Text(axis_label.rjust(label_w) + " ┤" if axis_label else " " * label_w + " │")
            for ch, owner in row:
                t.append(ch, style=COLORS[owner % len(COLORS)] if owner >= 0 else "dim")
            lines.append(t)
        lines.append(Text(" " * label_w + " └" + "─" * width))
        left, mid, right = _fmt(x[0]), _fmt((x[0] + x[-1]) / 2), _fmt(x[-1])
        gap = width - len(left) - len(right)
        axis = left + mid.center(gap) + right if gap > len(mid) + 1 else left + " " * max(gap, 1) + right
        lines.append(Text(" " * (label_w + 2) + axis))
    lines.append(Text(" " * 2 + data.xlabel))
    return lines

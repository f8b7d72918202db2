"""`lossctl plot`: the curves it computes, the images it writes (read back), the terminal rendering, and
what happens without matplotlib.

Expected curves are written here from the losses' definitions (Huber, squared error, cross-entropy through
a sigmoid), not taken from lossctl's output.  Images are checked by reading them back: PNG size and the
pixels of each series' colour in each panel, SVG as XML with one stroked path per curve.
"""
from __future__ import annotations

import os
import re
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from click.testing import CliRunner

from lossctl import plot, registry
from lossctl.cli import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# matplotlib's default colour cycle (tab10): the first four series
TAB10 = {"C0": (31, 119, 180), "C1": (255, 127, 14), "C2": (44, 160, 44), "C3": (214, 39, 40)}
FIG_PX = (504, 1620)           # 13.5 x 4.2 inches at 120 dpi


def run(*args):
    return CliRunner().invoke(cli, ["plot", *map(str, args)], catch_exceptions=False)


def _trapz(y, x):
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


# -- the numbers behind the curves --------------------------------------------------------------------
def test_residual_curves_huber_mse_mae():
    data = plot.compute(["huber:delta=0.5", "huber:delta=2", "mse", "mae"])
    x = data.x
    assert data.mode == "residual" and x[0] == -3 and x[-1] == 3
    h05, h2, mse, mae = data.series
    assert [s.label for s in data.series] == ["huber(delta=0.5)", "huber(delta=2.0)", "mse", "mae"]
    for s, dl in ((h05, 0.5), (h2, 2.0)):
        want = np.where(np.abs(x) < dl, 0.5 * x * x, dl * (np.abs(x) - 0.5 * dl))
        np.testing.assert_allclose(s.loss, want, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(s.gradient, np.clip(x, -dl, dl), rtol=1e-12, atol=1e-15)
        assert s.analytic
    np.testing.assert_allclose(mse.loss, x * x, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(mse.gradient, 2 * x, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(mae.gradient, np.sign(x), rtol=0, atol=0)
    # likelihood e^(-loss), normalised over the range: squared error is a Gaussian of variance 1/2,
    # absolute error a Laplace density of scale 1 (both truncated to [-3, 3])
    gauss = np.exp(-x * x)
    np.testing.assert_allclose(mse.likelihood, gauss / _trapz(gauss, x), rtol=1e-9)
    lap = np.exp(-np.abs(x))
    np.testing.assert_allclose(mae.likelihood, lap / _trapz(lap, x), rtol=1e-9)
    for s in data.series:
        assert _trapz(s.likelihood, x) == pytest.approx(1.0, rel=1e-12)


def test_sigmoid_story_bce_vs_mse():
    data = plot.compute(["bce", "mse"], sigmoid=True)
    z, (bce, mse) = data.x, data.series
    assert data.mode == "sigmoid" and z[0] == -6 and z[-1] == 6
    p = sigmoid(z)
    np.testing.assert_allclose(bce.loss, np.log1p(np.exp(-z)), rtol=1e-9)
    np.testing.assert_allclose(bce.gradient, p - 1, rtol=1e-9, atol=1e-15)      # d/dz -log sigmoid(z)
    np.testing.assert_allclose(mse.gradient, 2 * (p - 1) * p * (1 - p), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(bce.likelihood, p, rtol=1e-9)                      # e^(-CE) = p
    # the point of the plot: confidently wrong (z = -6), cross-entropy still pushes, squared error barely
    assert bce.gradient[0] < -0.99 and abs(mse.gradient[0]) < 0.01


def test_score_axis_for_classification_and_finite_differences_without_gradient():
    data = plot.compute(["bce_with_logits", "hinge", "zero_one"])
    z = data.x
    assert data.mode == "score"
    bce, hinge, zo = data.series
    np.testing.assert_allclose(bce.loss, np.logaddexp(0, -z), rtol=1e-12)
    np.testing.assert_allclose(hinge.loss, np.maximum(0, 1 - z), rtol=1e-12, atol=1e-15)
    assert bce.analytic and hinge.analytic and not zo.analytic
    # 0-1 loss: a step; its finite-difference gradient is 0 away from the step and undrawn (NaN) at it
    assert np.nanmax(np.abs(zo.gradient)) < 1e-12 and np.isnan(zo.gradient).sum() >= 1


PLOTTABLE = [s.name for s in registry.all_losses() if s.kind in ("regression", "binary", "multiclass")]


@pytest.mark.parametrize("name", PLOTTABLE)
@pytest.mark.parametrize("sig", [False, True], ids=["own-axis", "sigmoid"])
def test_every_plottable_loss_gradient_agrees_with_its_curve(name, sig):
    """The drawn gradient (analytic, through the chain rule of the plot axis) is the slope of the drawn
    loss: central differences agree except at the few points next to a kink."""
    data = plot.compute([name], sigmoid=sig)
    s, x = data.series[0], data.x
    defined = np.isfinite(s.loss)
    assert defined.mean() > 0.3, f"{name}: drawn on {defined.mean():.0%} of the axis"
    h = x[1] - x[0]
    fd = np.full_like(x, np.nan)
    fd[1:-1] = (s.loss[2:] - s.loss[:-2]) / (2 * h)
    fd2 = np.full_like(x, np.nan)                     # step 2h: |fd - fd2| estimates fd's own error
    fd2[2:-2] = (s.loss[4:] - s.loss[:-4]) / (4 * h)
    both = np.isfinite(fd) & np.isfinite(fd2) & np.isfinite(s.gradient)
    assert both.mean() > 0.3
    off = np.abs(s.gradient - fd) > 1e-3 * (1 + np.abs(s.gradient)) + 2 * np.abs(fd - fd2)
    assert (off & both).sum() <= 4, f"{name}: gradient differs from the curve's slope at {x[off & both]}"


def test_loss_drawn_only_where_defined():
    data = plot.compute(["gamma_deviance", "msle"])
    x = data.x
    gam, msle = data.series
    # prediction 1 + r: gamma deviance needs it > 0 (r > -1), msle > -1 (r > -2)
    assert np.isnan(gam.loss[x <= -1]).all() and np.isfinite(gam.loss[x > -1]).all()
    assert np.isnan(msle.loss[x <= -2]).all() and np.isfinite(msle.loss[x > -2]).all()
    mu = 1 + x[x > -1]                                  # gamma deviance at y = 1: 2 (log mu + 1/mu - 1)
    np.testing.assert_allclose(gam.loss[x > -1], 2 * (np.log(mu) - 1 + 1 / mu), rtol=1e-12, atol=1e-15)
    res = run("gamma_deviance", "--range", "-3,-1.5")
    assert res.exit_code == 2 and "not defined anywhere on -3..-1.5" in res.stderr


def test_range_and_mixing_errors():
    assert plot.compute(["mse"], x_range=(-1, 2)).x[[0, -1]].tolist() == [-1.0, 2.0]
    for args in (["mse", "bce"],                            # mixed axes without --sigmoid
                 ["triplet"],                               # not a regression/classification loss
                 ["mse", "--range", "2,1"], ["mse", "--range", "a,b"],
                 ["nope"], ["huber:delta=-1"]):
        res = run(*args)
        assert res.exit_code == 2, (args, res.stderr)
        assert res.stderr.startswith("lossctl: error: ") and res.stderr.count("\n") == 1, res.stderr
    assert run("mse", "bce", "--sigmoid").exit_code == 0


# -- images, read back -----------------------------------------------------------------------------------
def _colour_pixels(rgb: np.ndarray, colour, tol=40) -> np.ndarray:
    return np.abs(rgb - np.array(colour, dtype=float)).max(axis=2) <= tol


def _panels(path):
    import matplotlib.image as mpimg

    im = mpimg.imread(path)
    rgb = im[..., :3].astype(float) * 255
    w = rgb.shape[1]
    return im, [rgb[:, i * w // 3:(i + 1) * w // 3] for i in range(3)]


def test_png_has_every_curve_in_every_panel(tmp_path):
    out = tmp_path / "huber.png"
    res = run("huber:delta=0.5", "huber:delta=2", "mse", "mae", "-o", out)
    assert res.exit_code == 0, res.stderr
    assert res.stdout == "" and res.stderr == f"wrote {out}\n"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["huber.png"]          # no temporary file left behind
    im, panels = _panels(out)
    assert im.shape[:2] == FIG_PX
    for i, panel in enumerate(panels):
        # mostly background, and each of the four series drawn with its own colour
        white = (panel > 245).all(axis=2).mean()
        assert 0.5 < white < 0.99, (i, white)
        for name, colour in TAB10.items():
            n = int(_colour_pixels(panel, colour).sum())
            assert n > 300, f"panel {i}: series {name} has {n} pixels"
    # the four colours are distinct series, not one colour matched four times
    assert len({tuple(c) for c in TAB10.values()}) == 4


def test_png_curve_shapes_single_series(tmp_path):
    """mse alone: the gradient panel is a rising line, the likelihood panel a bell."""
    out = tmp_path / "mse.png"
    assert run("mse", "-o", out).exit_code == 0
    _, panels = _panels(out)
    for i, shape in ((1, "rising"), (2, "bell")):
        ys, xs = np.nonzero(_colour_pixels(panels[i], TAB10["C0"]))
        assert len(xs) > 300
        top = xs[ys <= ys.min() + 3]            # columns of the highest curve pixels
        bottom = xs[ys >= ys.max() - 3]         # and of the lowest
        left, right, mid = xs.min(), xs.max(), (xs.min() + xs.max()) / 2
        span = right - left
        if shape == "rising":
            assert top.min() > right - 0.1 * span and bottom.max() < left + 0.1 * span
        else:
            assert np.all(np.abs(top - mid) < 0.1 * span)
            assert np.all(np.abs(bottom - mid) > 0.35 * span)


def test_svg_parses_with_a_path_per_curve(tmp_path):
    out = tmp_path / "why-ce.svg"
    res = run("bce", "mse", "--sigmoid", "-o", out)
    assert res.exit_code == 0, res.stderr
    root = ET.parse(out).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("width") == "972pt" and root.get("height").startswith("302.4")
    paths = root.findall(".//{http://www.w3.org/2000/svg}path")
    strokes = [re.search(r"stroke:\s*(#[0-9a-f]{6})", p.get("style") or "") for p in paths]
    strokes = [m.group(1) for m in strokes if m]
    for colour in ("#1f77b4", "#ff7f0e"):               # bce, mse
        # three panels plus the legend line; each curve path has many vertices
        curves = [p for p in paths if f"stroke: {colour}" in (p.get("style") or "")]
        assert len(curves) >= 4, (colour, len(curves))
        assert sum(len(re.findall(r"L", p.get("d", ""))) > 20 for p in curves) >= 3
    assert len(strokes) >= 8


def test_pdf_and_existing_file_and_bad_extension(tmp_path):
    out = tmp_path / "h.pdf"
    assert run("huber", "-o", out).exit_code == 0
    assert out.read_bytes()[:5] == b"%PDF-"
    before = out.read_bytes()
    res = run("mse", "-o", out)                         # exists: refuse without --force, file untouched
    assert res.exit_code == 2 and "--force" in res.stderr and out.read_bytes() == before
    assert run("mse", "-o", out, "--force").exit_code == 0 and out.read_bytes() != before
    for bad in (tmp_path / "h.jpg", tmp_path / "h", tmp_path / "missing" / "h.png"):
        res = run("mse", "-o", bad)
        assert res.exit_code == 2 and not bad.exists(), res.stderr
        assert res.stderr.count("\n") == 1


# -- terminal ------------------------------------------------------------------------------------------
def _braille(line: str) -> list[int]:
    return [i for i, ch in enumerate(line) if 0x2800 < ord(ch) <= 0x28FF]


def test_terminal_plot_without_output():
    res = run("huber", "mse", "--width", "60")
    assert res.exit_code == 0 and res.stderr == ""
    out = res.stdout
    assert out.startswith("loss against the residual (y = 1)\n")
    assert "1 huber" in out and "2 mse" in out
    for head in ("\nloss\n", "\ngradient d loss / d r\n", "\nimplied likelihood exp(-loss), normalised\n"):
        assert head in out
    assert "\x1b[" not in out                           # NO_COLOR (conftest): no escape codes
    # the loss panel of mse alone: 10 canvas rows of 60 cells between its heading and the x axis; r^2
    # (max 9 at r = +-3) touches the top row at both ends, and the bottom row (values below ~1) only
    # for |r| < ~1, the middle third
    res = run("mse", "--width", "60")
    lines = res.stdout.split("\nloss\n", 1)[1].splitlines()[:10]
    assert lines[0].lstrip().startswith("9 ┤")
    body = [ln.split("┤" if "┤" in ln else "│", 1)[1] for ln in lines]
    assert all(len(b) == 60 for b in body), [len(b) for b in body]
    top, bottom = _braille(body[0]), _braille(body[-1])
    assert min(top) < 6 and max(top) > 53                # both ends of the parabola
    assert bottom and all(18 <= i <= 42 for i in bottom), bottom       # its minimum, in the middle


def test_terminal_plot_sigmoid_and_classification_labels():
    res = run("bce", "mse", "--sigmoid")
    assert res.exit_code == 0
    assert res.stdout.startswith("losses through a sigmoid: prediction sigmoid(z), target 1")
    assert "gradient d loss / d z" in res.stdout and "logit z (prediction σ(z), target 1)" in res.stdout
    res = run("zero_one", "bce_with_logits")
    assert res.exit_code == 0 and "zero_one (gradient by finite differences)" in res.stdout


# -- matplotlib is optional ----------------------------------------------------------------------------
@pytest.fixture
def no_matplotlib(monkeypatch):
    """Make `import matplotlib` fail as if it were not installed."""
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert not plot.have_matplotlib()


def test_without_matplotlib_output_is_a_clear_error(no_matplotlib, tmp_path):
    out = tmp_path / "huber.png"
    res = run("huber", "-o", out)
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr == (f"lossctl: error: -o {out}: writing images needs matplotlib, which is not installed: "
                          "pip install 'lossctl[plot]' (without -o, lossctl plot draws in the terminal)\n")
    assert not out.exists()


def test_without_matplotlib_terminal_plot_works(no_matplotlib):
    res = run("huber:delta=0.5", "mae")
    assert res.exit_code == 0 and res.stderr == ""
    assert "1 huber(delta=0.5)" in res.stdout and _braille(res.stdout)
    assert sys.modules["matplotlib"] is None            # nothing imported it behind our back


# -- the README's images ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name,series", [("huber.png", 4), ("why-ce.png", 2)])
def test_readme_images_are_drawn(name, series):
    path = os.path.join(ROOT, "docs", "img", name)
    im, panels = _panels(path)
    assert im.shape[:2] == FIG_PX
    for panel in panels:
        for colour in list(TAB10.values())[:series]:
            assert _colour_pixels(panel, colour).sum() > 300

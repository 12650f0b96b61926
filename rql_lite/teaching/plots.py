"""Static plots shared by the chapters (Matplotlib).

Conventions: point clouds are ``(n, 2)`` arrays, flow paths are ``(K + 1, n, 2)``
arrays as returned by :func:`rql_lite.flow.euler_path` (index 0 is the start).
Every helper draws on a Matplotlib ``Axes`` (or returns a ``Figure``) and gives it a
title, so a notebook only has to add its sentence of explanation. Pages show their figures with
:func:`show`, which first checks each figure's own layout (:func:`layout_problems`: legends inside
their axes, no literal backticks in its texts) and reports a problem on stderr, where the book's
browser test finds it. The interactive versions are
``rql_lite.teaching.widgets`` (ipywidgets, in a running kernel) and ``rql_lite.teaching.live``
(Vega-Lite, in the rendered book).
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from rql_lite.teaching.toys import euler_path_jit

# Colours used throughout the book.
DATA_COLOR = "0.75"  # grey: the data set
NOISE_COLOR = "tab:blue"  # noise / forward direction
REVERSE_COLOR = "tab:red"  # reversal direction
SAMPLE_COLOR = "tab:orange"  # generated samples


# --------------------------------------------------------------------------- showing, with a layout check

FIGURE_CHECK = "figure layout check"  # the prefix of a reported problem (tests/browser looks for it)


def _texts(fig) -> list:
    """Every text artist of a figure that a reader reads: titles, labels, legend entries, free texts."""
    texts = [t for t in (getattr(fig, "_suptitle", None), getattr(fig, "_supxlabel", None),
                         getattr(fig, "_supylabel", None)) if t is not None] + list(fig.texts)
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label] + list(ax.texts)
    for legend in [ax.get_legend() for ax in fig.axes] + list(fig.legends):
        if legend is not None:
            texts += [legend.get_title()] + list(legend.get_texts())
    return list({id(t): t for t in texts}.values())  # a suptitle is also among fig.texts


def layout_problems(fig, tolerance: float = 1.0) -> list[str]:
    """What is wrong with a figure's layout, read from the figure itself after laying it out.

    * a legend of an axes must lie inside that axes (a legend outside spills over its neighbours
      or off the figure);
    * a figure-level legend must lie inside the figure and overlap no axes, tick labels included;
    * no text may hold a literal backtick (Markdown's code quotes mean nothing in an image).

    ``tolerance`` is in pixels. Returns one sentence per problem (empty: none).
    """
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    problems = []

    def name(ax):
        return repr(ax.get_title() or ax.get_ylabel() or f"axes {fig.axes.index(ax) + 1}")

    def inside(inner, outer):
        return (inner.x0 >= outer.x0 - tolerance and inner.y0 >= outer.y0 - tolerance
                and inner.x1 <= outer.x1 + tolerance and inner.y1 <= outer.y1 + tolerance)

    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None and legend.get_visible() and ax.get_visible():
            if not inside(legend.get_window_extent(renderer), ax.get_window_extent(renderer)):
                problems.append(f"the legend of {name(ax)} lies outside its axes")
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        if not inside(box, fig.bbox):
            problems.append("a figure legend lies outside the figure")
        for ax in fig.axes:
            if ax.get_visible() and box.overlaps(ax.get_tightbbox(renderer)):
                problems.append(f"a figure legend overlaps {name(ax)}")
    for text in _texts(fig):
        if "`" in text.get_text():
            problems.append(f"a literal backtick in the text {text.get_text()!r}")
    return problems


def show(fig=None) -> None:
    """``plt.show()``, after checking the layout of ``fig`` (default: every open figure).

    A problem is written to stderr, prefixed with ``FIGURE_CHECK``: the page then shows it, and the
    browser test of the built book fails on it."""
    import sys

    figures = [fig] if fig is not None else [plt.figure(n) for n in plt.get_fignums()]
    for f in figures:
        title = f._suptitle.get_text() if getattr(f, "_suptitle", None) is not None else ""
        title = title or next((ax.get_title() for ax in f.axes if ax.get_title()), "a figure")
        for problem in layout_problems(f):
            print(f"{FIGURE_CHECK}: {title!r}: {problem}", file=sys.stderr)
    plt.show()


# --------------------------------------------------------------------------- basics


def grid_index(t: float, k: int) -> int:
    """Index of the last Euler grid time ``i / k`` at or before flow time ``t`` (clipped to ``[0, k]``)."""
    return int(min(max(np.floor(float(t) * k + 1e-6), 0), k))


def _square(ax, lim: float | None, title: str | None):
    """Equal aspect, limits ``[-lim, lim]`` on both axes (unless ``lim`` is None), and the title."""
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    if title is not None:
        ax.set_title(title)
    return ax


def scatter(ax, x, title: str | None = None, color=SAMPLE_COLOR, s: float = 2.0, alpha: float = 0.6,
            lim: float | None = 3.5, label: str | None = None, **kw):
    """Scatter an ``(n, 2)`` cloud on ``ax`` with equal aspect and fixed limits ``[-lim, lim]``."""
    x = np.asarray(x)
    ax.scatter(x[:, 0], x[:, 1], s=s, c=color, alpha=alpha, linewidths=0, label=label, **kw)
    return _square(ax, lim, title)


def plot_trajectories(ax, path, color=NOISE_COLOR, alpha: float = 0.5, lw: float = 0.8,
                      endpoints: bool = True, title: str | None = None, label: str | None = None,
                      linestyle: str = "-", lim: float | None = 3.5):
    """Draw each of the ``n`` paths in a ``(K + 1, n, 2)`` array as a polyline.

    The start of each path is marked with a small circle and its end with a cross.
    """
    path = np.asarray(path)
    for i in range(path.shape[1]):
        ax.plot(path[:, i, 0], path[:, i, 1], color=color, alpha=alpha, lw=lw, linestyle=linestyle,
                label=label if i == 0 else None)
    if endpoints:
        ax.scatter(path[0, :, 0], path[0, :, 1], s=10, facecolors="none", edgecolors=color, linewidths=0.8)
        ax.scatter(path[-1, :, 0], path[-1, :, 1], s=14, marker="x", c=color, linewidths=0.8)
    return _square(ax, lim, title)


def snapshot_row(path, times: Sequence[float], data=None, suptitle: str | None = None,
                 size: float = 2.4, color=SAMPLE_COLOR):
    """A row of scatter plots of a ``(K + 1, n, 2)`` path at the flow times ``times``.

    Each time is mapped to the last Euler grid index at or before it, ``floor(t * K)``; ``data``
    (optional, ``(m, 2)``) is drawn in grey underneath for reference.
    """
    path = np.asarray(path)
    k = path.shape[0] - 1
    fig, axes = plt.subplots(1, len(times), figsize=(size * len(times), size + 0.4), squeeze=False)
    for ax, t in zip(axes[0], times):
        i = grid_index(t, k)
        if data is not None:
            scatter(ax, data, color=DATA_COLOR, alpha=0.3)
        scatter(ax, path[i], title=f"t = {i / k:.2f}", color=color)
        ax.set_xticks([])
        ax.set_yticks([])
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def fit_loglog_slope(x, y) -> tuple[float, float]:
    """Least-squares fit of ``log y = slope * log x + intercept``; returns ``(slope, intercept)``."""
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    slope, intercept = np.polyfit(lx, ly, 1)
    return float(slope), float(intercept)


def loglog_with_slope(ax, x, y, label: str | None = None, color=None, marker: str = "o",
                      annotate: bool = True, fit_mask=None):
    """Plot ``y`` against ``x`` on log-log axes with its fitted slope; returns the slope.

    ``fit_mask`` (optional boolean array) selects the points used for the fit, e.g. to
    leave out a noise floor; the fitted line is drawn dashed over the fitted range and the
    slope is written into the legend label (or next to the line if there is no label).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    m = np.ones_like(x, dtype=bool) if fit_mask is None else np.asarray(fit_mask, dtype=bool)
    slope, intercept = fit_loglog_slope(x[m], y[m])
    text = f"slope {slope:.2f}"
    lines = ax.loglog(x, y, marker=marker, color=color, label=f"{label} ({text})" if label else None)
    c = lines[0].get_color()
    xf = np.array([x[m].min(), x[m].max()])
    ax.loglog(xf, np.exp(intercept) * xf ** slope, "--", color=c, lw=1, alpha=0.7)
    if annotate and not label:
        ax.annotate(text, (xf.mean(), np.exp(intercept) * xf.mean() ** slope), color=c,
                    textcoords="offset points", xytext=(5, 5))
    ax.grid(True, which="both", alpha=0.3)
    return slope


# --------------------------------------------------------------------------- static grids


def flow_time_grid(velocity: Callable, x0, ks: Sequence[int], times: Sequence[float], data=None,
                   size: float = 2.0, suptitle: str | None = None):
    """Grid of samples: one row per step count ``K``, one column per flow time ``t``.

    Row ``K`` integrates ``x0`` (``(n, 2)``) with ``K`` Euler steps from 0 to 1 and
    shows the particles at the last grid time at or before each ``t``.
    """
    fig, axes = plt.subplots(len(ks), len(times), figsize=(size * len(times), size * len(ks) + 0.5),
                             squeeze=False)
    for r, k in enumerate(ks):
        path = np.asarray(euler_path_jit(velocity, jnp.asarray(x0), 0.0, 1.0, int(k)))
        for c, t in enumerate(times):
            ax = axes[r, c]
            i = grid_index(t, k)
            if data is not None:
                scatter(ax, data, color=DATA_COLOR, alpha=0.3)
            scatter(ax, path[i], color=SAMPLE_COLOR)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t = {t:.2f}")
            if c == 0:
                ax.set_ylabel(f"K = {k}")
    fig.suptitle(suptitle or "Particles at flow time t (columns) for K Euler steps (rows)")
    fig.tight_layout()
    return fig


def _reverse_and_forward(velocity: Callable, point, k: int):
    """Reverse path of one point ``(2,)`` from t=1 to 0 and forward re-integration from its noise."""
    x1 = jnp.asarray(point, dtype=jnp.float32).reshape(1, 2)
    rev = np.asarray(euler_path_jit(velocity, x1, 1.0, 0.0, int(k)))  # (K+1, 1, 2), rev[-1] is the noise
    fwd = np.asarray(euler_path_jit(velocity, jnp.asarray(rev[-1]), 0.0, 1.0, int(k)))
    return rev, fwd


def draw_reverse_path(ax, velocity: Callable, point, k: int, data=None, title: str | None = None,
                      legend: bool = True):
    """Draw the reverse path of ``point`` back to noise and the forward path from that noise.

    Returns the gap ``|forward(reverse(point)) - point|`` (Euclidean).
    """
    rev, fwd = _reverse_and_forward(velocity, point, k)
    if data is not None:
        scatter(ax, data, color=DATA_COLOR, alpha=0.3)
    plot_trajectories(ax, rev, color=REVERSE_COLOR, alpha=0.9, lw=1.5, endpoints=False, label="reverse (t: 1 → 0)")
    ax.scatter(rev[:, 0, 0], rev[:, 0, 1], s=5, c=REVERSE_COLOR)
    plot_trajectories(ax, fwd, color=NOISE_COLOR, alpha=0.9, lw=1.2, endpoints=False, linestyle="--",
                      label="forward from recovered noise")
    ax.scatter([fwd[-1, 0, 0]], [fwd[-1, 0, 1]], s=50, marker="x", c=NOISE_COLOR, linewidths=1.5, zorder=6,
               label="forward end point")
    p = np.asarray(point).reshape(2)
    ax.scatter([p[0]], [p[1]], s=60, marker="*", c="k", zorder=5, label="data point")
    ax.scatter([rev[-1, 0, 0]], [rev[-1, 0, 1]], s=40, marker="o", facecolors="none", edgecolors=REVERSE_COLOR,
               linewidths=1.5, zorder=5, label="recovered noise")
    gap = float(np.linalg.norm(fwd[-1, 0] - p))
    ax.set_title(title or f"K = {k}: round-trip gap {gap:.2e}")
    if legend:
        ax.legend(loc="lower left", fontsize=7, framealpha=0.8)
    return gap


def reverse_path_grid(velocity: Callable, points, ks: Sequence[int], data=None, size: float = 2.6,
                      suptitle: str | None = None):
    """Grid of reverse paths: one row per data point in ``points`` (``(m, 2)``), one column per K."""
    points = np.asarray(points)
    fig, axes = plt.subplots(len(points), len(ks), figsize=(size * len(ks), size * len(points) + 0.5),
                             squeeze=False)
    for r, p in enumerate(points):
        for c, k in enumerate(ks):
            ax = axes[r, c]
            gap = draw_reverse_path(ax, velocity, p, int(k), data=data, title="", legend=False)
            ax.set_title(f"K = {k}, gap {gap:.1e}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8)
    fig.suptitle(suptitle or "Reverse paths (red) from data points back to noise, and forward re-integration (blue)")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


# --------------------------------------------------------------------------- values over partial actions (chapters 3-5)


def value_heatmap(ax, values, extent, title: str | None = None, vmin=None, vmax=None, points=None,
                  cmap: str = "viridis", colorbar: bool = False):
    """Draw a value grid ``values (ny, nx)`` over ``extent = (x0, x1, y0, y1)`` on ``ax``.

    ``points`` (optional ``(n, 2)``): particles drawn on top as small white dots.
    Returns the image (for a shared colour bar).
    """
    im = ax.imshow(np.asarray(values), origin="lower", extent=extent, vmin=vmin, vmax=vmax, cmap=cmap,
                   aspect="equal", interpolation="nearest")
    if points is not None:
        pts = np.asarray(points)
        ax.scatter(pts[:, 0], pts[:, 1], s=1.5, c="white", alpha=0.5, linewidths=0)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel("x[0]")
    ax.set_ylabel("x[1]")
    if title is not None:
        ax.set_title(title, fontsize=9)
    if colorbar:
        plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return im

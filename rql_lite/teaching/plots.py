"""Plotting helpers and widget builders shared by the notebooks.

Conventions: point clouds are ``(n, 2)`` arrays, flow paths are ``(K + 1, n, 2)``
arrays as returned by :func:`rql_lite.flow.euler_path` (index 0 is the start).
Every helper draws on a Matplotlib ``Axes`` (or returns a ``Figure``) and gives it a
title, so a notebook only has to add its sentence of explanation.

Widgets (``flow_time_widget``, ``reverse_path_widget``) only build and return an
``ipywidgets`` object: the figure inside is drawn once at construction and again
whenever a slider moves, so executing a notebook headless (nbmake, the book build)
never blocks.
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from rql_lite.flow import euler, euler_path

# Colours used throughout the book.
DATA_COLOR = "0.75"  # grey: the data set
NOISE_COLOR = "tab:blue"  # noise / forward direction
REVERSE_COLOR = "tab:red"  # reversal direction
SAMPLE_COLOR = "tab:orange"  # generated samples

# Jitted integrators: the velocity callable and the step count are static (hashable).
euler_jit = jax.jit(euler, static_argnums=(0, 4))
euler_path_jit = jax.jit(euler_path, static_argnums=(0, 4))


# --------------------------------------------------------------------------- basics


def _grid_index(t: float, k: int) -> int:
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
        i = _grid_index(t, k)
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
            i = _grid_index(t, k)
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


# --------------------------------------------------------------------------- widgets


def flow_time_widget(velocity: Callable, x0, data=None, ks: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
                     size: float = 4.0):
    """Sliders for flow time ``t`` and step count ``K``; shows the particles at time ``t``.

    ``x0``: ``(n, 2)`` noise; ``data``: optional ``(m, 2)`` reference cloud. Paths are
    computed once per ``K`` (cached), so moving ``t`` only redraws.
    Returns an ``ipywidgets.VBox``; display it (or leave it last in a cell).
    """
    import ipywidgets as widgets
    from IPython.display import display

    x0 = jnp.asarray(x0)

    @lru_cache(maxsize=None)
    def path_for(k):
        return np.asarray(euler_path_jit(velocity, x0, 0.0, 1.0, int(k)))

    t_slider = widgets.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.01, description="flow time t",
                                   continuous_update=False)
    k_slider = widgets.SelectionSlider(options=list(ks), value=ks[len(ks) // 2], description="steps K",
                                       continuous_update=False)

    def draw(t, k):
        path = path_for(k)
        i = _grid_index(t, k)
        fig, ax = plt.subplots(figsize=(size, size))
        if data is not None:
            scatter(ax, data, color=DATA_COLOR, alpha=0.3)
        scatter(ax, path[i], color=SAMPLE_COLOR, s=3)
        ax.set_title(f"K = {k}: particles at t = {i / k:.2f} (step {i} of {k})")
        ax.set_xlabel("x[0]")
        ax.set_ylabel("x[1]")
        display(fig)
        plt.close(fig)

    out = widgets.interactive_output(draw, {"t": t_slider, "k": k_slider})
    return widgets.VBox([widgets.HBox([t_slider, k_slider]), out])


def reverse_path_widget(velocity: Callable, data, ks: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
                        lim: float = 3.0, size: float = 4.5):
    """Pick a point (by data index, or by x/y sliders) and a step count ``K``; draw its reverse path.

    The red path runs the flow backward from the point (t = 1) to noise (t = 0) with ``K``
    Euler steps; the dashed blue path integrates forward again from the recovered noise.
    The title reports the round-trip gap. ``data``: ``(m, 2)``. Returns an ``ipywidgets.VBox``.
    """
    import ipywidgets as widgets
    from IPython.display import display

    data_np = np.asarray(data)
    mode = widgets.ToggleButtons(options=["data point", "free point"], value="data point", description="pick")
    index = widgets.IntSlider(value=0, min=0, max=len(data_np) - 1, description="index", continuous_update=False)
    xs = widgets.FloatSlider(value=1.0, min=-lim, max=lim, step=0.05, description="x", continuous_update=False)
    ys = widgets.FloatSlider(value=1.0, min=-lim, max=lim, step=0.05, description="y", continuous_update=False)
    k_slider = widgets.SelectionSlider(options=list(ks), value=ks[len(ks) // 2], description="steps K",
                                       continuous_update=False)

    def draw(mode, index, x, y, k):
        point = data_np[index] if mode == "data point" else np.array([x, y], dtype=np.float32)
        fig, ax = plt.subplots(figsize=(size, size))
        gap = draw_reverse_path(ax, velocity, point, k, data=data_np, title="")
        ax.set_title(f"K = {k}: reverse path of ({point[0]:.2f}, {point[1]:.2f}), gap {gap:.1e}", fontsize=9)
        ax.set_xlabel("x[0]")
        ax.set_ylabel("x[1]")
        display(fig)
        plt.close(fig)

    out = widgets.interactive_output(draw, {"mode": mode, "index": index, "x": xs, "y": ys, "k": k_slider})
    return widgets.VBox([mode, widgets.HBox([index, k_slider]), widgets.HBox([xs, ys]), out])


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


def value_slice_widget(grids, flow_times: Sequence[float], extent, points=None, size: float = 4.0,
                       vmin=None, vmax=None, label: str = "V(s, x, f)"):
    """A slider over flow time ``f`` showing the precomputed value grid at that ``f``.

    ``grids``: ``(F, ny, nx)``, one grid per entry of ``flow_times``; ``points`` (optional
    ``(F, n, 2)``): particles at each flow time. Nothing is computed on a slider move.
    Returns an ``ipywidgets.VBox``.
    """
    import ipywidgets as widgets
    from IPython.display import display

    grids = np.asarray(grids)
    vmin = float(grids.min()) if vmin is None else vmin
    vmax = float(grids.max()) if vmax is None else vmax
    options = [(f"{f:.2f}", i) for i, f in enumerate(flow_times)]
    slider = widgets.SelectionSlider(options=options, value=len(options) - 1, description="flow time f",
                                     continuous_update=False)

    def draw(i):
        fig, ax = plt.subplots(figsize=(size, size))
        value_heatmap(ax, grids[i], extent, title=f"{label} at f = {flow_times[i]:.2f}", vmin=vmin, vmax=vmax,
                      points=None if points is None else points[i], colorbar=True)
        display(fig)
        plt.close(fig)

    out = widgets.interactive_output(draw, {"i": slider})
    return widgets.VBox([slider, out])


# --------------------------------------------------------------------------- live figures (kernel-free, in the page)
#
# The widgets above need a running kernel. The builders below compute, at build time, only
# what an interaction can ask for and return a ``LiveFigure``: a Vega-Lite chart whose sliders
# and clicks are answered in the reader's browser. The book serves the Vega scripts from its
# own ``_static/`` (book/_ext/vega_offline.py), so nothing is fetched from the network.

LIVE_DECIMALS = 3  # coordinates and values are rounded to 3 decimals in the page


def _rounded(a) -> list:
    return np.round(np.asarray(a, dtype=np.float64), LIVE_DECIMALS).tolist()


def _log2_steps(ks: Sequence[int]) -> list[int]:
    """``ks`` must be 1, 2, 4, ..., 2**m: the step-count slider moves over log2 K."""
    ks = [int(k) for k in ks]
    if ks != [2 ** i for i in range(len(ks))]:
        raise ValueError(f"live figures take K = 1, 2, 4, ..., 2**m, got {ks}")
    return ks


class LiveFigure:
    """A Vega-Lite chart that runs in the rendered book without a kernel.

    ``spec`` is the chart as a Vega-Lite dict (its data inline), ``chart`` the Altair chart
    (display it in Jupyter or Colab to get the same figure live there). In the book the output
    is a ``<div>`` and a call of ``vegaEmbed`` on the page's own copy of Vega.
    """

    def __init__(self, chart, name: str, datasets: dict, selection_views: dict | None = None):
        self.chart, self.name = chart.properties(datasets=datasets), name
        self.spec = self.chart.to_dict()
        # Altair lists every named layer of a concatenated layer chart as a view of a selection;
        # each selection here belongs to one layer only.
        for param in self.spec.get("params", []):
            if param["name"] in (selection_views or {}):
                param["views"] = [v for v in param["views"] if v.split("_")[0] == selection_views[param["name"]]]
        self.json = json.dumps(self.spec, separators=(",", ":"))

    @property
    def data_bytes(self) -> int:
        """Size of the chart's inline data (bytes of JSON): what the page carries for it."""
        return sum(len(json.dumps(v, separators=(",", ":"))) for v in self.spec["datasets"].values())

    @property
    def html_bytes(self) -> int:
        """Size of the whole output in the page (data, chart description and the embedding call)."""
        return len(self.to_html().encode())

    def to_html(self) -> str:
        div = f"rql-live-{self.name}"
        spec = self.json.replace("</", "<\\/")
        return (f'<div class="rql-live" id="{div}" data-rql-live="{self.name}"></div>\n'
                f'<script type="module">\n'
                f'const el = document.getElementById("{div}");\n'
                f"if (window.vegaEmbed) {{\n"
                f'  vegaEmbed(el, {spec}, {{actions: false, renderer: "svg"}})\n'
                f'    .then((r) => {{ (window.rqlLive ||= {{}})["{self.name}"] = r.view; el.dataset.ready = "1"; }})\n'
                f'    .catch((e) => {{ el.textContent = "live figure failed: " + e; console.error(e); }});\n'
                f"}} else {{\n"
                f'  el.textContent = "(This live figure runs in the rendered book. In Jupyter or Colab, use the '
                f'widget above, or display the .chart attribute of this figure.)";\n'
                f"}}\n</script>")

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/html": self.to_html()}


def _plane(lim: float, title: str = "x[0]"):
    import altair as alt

    return alt.Scale(domain=[-lim, lim], nice=False, zero=False), alt.Axis(title=title)


def live_flow_time(velocity: Callable, x0, data=None, ks: Sequence[int] = (1, 2, 4, 8, 16, 32),
                   lim: float = 3.5, size: int = 380, name: str = "flow-time") -> LiveFigure:
    """Live version of :func:`flow_time_widget`: sliders for flow time ``t`` and ``log2 K``.

    The particles ``x0`` (``(n, 2)`` noise) are shown at the last Euler grid time ``k/K <= t``
    of a ``K``-step integration; clicking a particle draws its whole path for that ``K``.
    Precomputed: every grid point of every path, ``sum(K + 1) * n`` points.
    """
    import altair as alt

    ks = _log2_steps(ks)
    x0 = jnp.asarray(x0)
    rows = []
    for k in ks:
        path = np.asarray(euler_path_jit(velocity, x0, 0.0, 1.0, k))  # (K + 1, n, 2)
        rows += [{"id": i, "k": k, "x": _rounded(path[:, i, 0]), "y": _rounded(path[:, i, 1])}
                 for i in range(path.shape[1])]
    scale, axis_x = _plane(lim)
    _, axis_y = _plane(lim, "x[1]")
    t = alt.param(name="t", value=1.0, bind=alt.binding_range(min=0, max=1, step=0.01, name="flow time t "))
    logk = alt.param(name="logk", value=len(ks) // 2,
                     bind=alt.binding_range(min=0, max=len(ks) - 1, step=1, name="log2 K "))
    pick = alt.selection_point(name="pick", fields=["id"], on="click", nearest=True, toggle=False, empty=False)
    K = "pow(2, logk)"
    at_t = dict(K=K, i=f"clamp(floor(t * {K} + 1e-6), 0, {K})")
    particles = (alt.Chart(alt.Data(name="paths"), name="particles")
                 .transform_filter(f"datum.k == {K}").transform_calculate(**at_t)
                 .transform_calculate(px="datum.x[datum.i]", py="datum.y[datum.i]")
                 .mark_circle(size=14, color="#ff7f0e", opacity=0.7)
                 .encode(x=alt.X("px:Q", scale=scale, axis=axis_x), y=alt.Y("py:Q", scale=scale, axis=axis_y),
                         tooltip=[alt.Tooltip("px:Q", title="x[0]"), alt.Tooltip("py:Q", title="x[1]")])
                 .add_params(pick))
    path = (alt.Chart(alt.Data(name="paths")).transform_filter(f"datum.k == {K}").transform_filter(pick)
            .transform_flatten(["x", "y"]).transform_window(step="row_number()"))
    layers = [path.mark_line(color="#1f77b4", strokeWidth=1.5, clip=True).encode(x="x:Q", y="y:Q", order="step:Q"),
              path.properties(name="path").mark_point(color="#1f77b4", size=20, filled=True, clip=True)
              .encode(x="x:Q", y="y:Q")]
    datasets = {"paths": rows}
    if data is not None:
        datasets["data"] = [{"x": a, "y": b} for a, b in _rounded(np.asarray(data))]
        layers.insert(0, alt.Chart(alt.Data(name="data")).mark_circle(size=6, color="#bfbfbf", opacity=0.5)
                      .encode(x=alt.X("x:Q", scale=scale, axis=axis_x), y=alt.Y("y:Q", scale=scale, axis=axis_y)))
    title = alt.Title(alt.ExprRef(f"'K = ' + {K} + ': particles at t = ' + format(floor(t * {K} + 1e-6) / {K}, '.2f')"
                                  f" + ' (step ' + floor(t * {K} + 1e-6) + ' of ' + {K} + ')'"),
                      subtitle="drag the sliders; click a particle to draw its path (blue dots: the K + 1 grid points)")
    chart = (alt.layer(*layers, particles).add_params(t, logk)
             .properties(width=size, height=size, title=title))
    return LiveFigure(chart, name, datasets)


def live_reverse_path(velocity: Callable, data, ks: Sequence[int] = (1, 2, 4, 8, 16, 32), n_points: int = 150,
                      grid: int = 11, lim: float = 3.0, background=None, size: int = 400,
                      name: str = "reverse-path") -> LiveFigure:
    """Live version of :func:`reverse_path_widget`: click a start point, choose ``K`` with a slider.

    Start points are the first ``n_points`` rows of ``data`` (``(m, 2)``) and a ``grid x grid``
    lattice over ``[-lim, lim]^2``. For each start and each ``K`` the page holds the reverse path
    (``t: 1 -> 0``, red), the forward re-integration from the recovered noise (dashed blue) and
    the round-trip gap ``|forward(reverse(x)) - x|``. ``background``: the grey cloud (default ``data``).
    """
    import altair as alt

    ks = _log2_steps(ks)
    g = np.linspace(-lim, lim, grid, dtype=np.float32)
    lattice = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    starts = np.concatenate([np.asarray(data, np.float32)[:n_points], lattice])
    kinds = ["data point"] * min(n_points, len(data)) + ["grid point"] * len(lattice)
    rows = []
    for k in ks:
        rev = np.asarray(euler_path_jit(velocity, jnp.asarray(starts), 1.0, 0.0, k))  # rev[0]: the start
        fwd = np.asarray(euler_path_jit(velocity, jnp.asarray(rev[-1]), 0.0, 1.0, k))
        gaps = np.linalg.norm(fwd[-1] - starts, axis=1)
        rows += [{"id": i, "k": k, "rx": _rounded(rev[:, i, 0]), "ry": _rounded(rev[:, i, 1]),
                  "fx": _rounded(fwd[:, i, 0]), "fy": _rounded(fwd[:, i, 1]), "gap": float(f"{gaps[i]:.3g}")}
                 for i in range(len(starts))]
    start_rows = [{"id": i, "x": x, "y": y, "kind": kind}
                  for i, ((x, y), kind) in enumerate(zip(_rounded(starts), kinds))]
    scale, axis_x = _plane(lim + 0.5)
    _, axis_y = _plane(lim + 0.5, "x[1]")
    enc = dict(x=alt.X("x:Q", scale=scale, axis=axis_x), y=alt.Y("y:Q", scale=scale, axis=axis_y))
    logk = alt.param(name="logk", value=min(3, len(ks) - 1),
                     bind=alt.binding_range(min=0, max=len(ks) - 1, step=1, name="log2 K "))
    pick = alt.selection_point(name="pick", fields=["id"], on="click", nearest=True, toggle=False, empty=False,
                               value=[{"id": 0}])
    K = "pow(2, logk)"
    chosen = alt.Chart(alt.Data(name="paths")).transform_filter(f"datum.k == {K}").transform_filter(pick)

    def path(xf, yf, layer_name):
        return (chosen.transform_flatten([xf, yf], as_=["x", "y"]).transform_window(step="row_number()")
                .properties(name=layer_name))

    rev, fwd = path("rx", "ry", "reverse"), path("fx", "fy", "forward")
    back = data if background is None else background
    layers = [
        alt.Chart(alt.Data(name="data"))
        .mark_circle(size=6, color="#bfbfbf", opacity=0.5).encode(**enc),
        rev.mark_line(color="#d62728", strokeWidth=2, clip=True).encode(x="x:Q", y="y:Q", order="step:Q"),
        fwd.mark_line(color="#1f77b4", strokeWidth=1.5, strokeDash=[5, 3], clip=True)
        .encode(x="x:Q", y="y:Q", order="step:Q"),
        rev.properties(name="reverse_points").mark_circle(color="#d62728", size=18, clip=True).encode(x="x:Q", y="y:Q"),
        chosen.transform_calculate(x="datum.rx[datum.k]", y="datum.ry[datum.k]").properties(name="noise")
        .mark_point(shape="circle", size=90, color="#d62728", strokeWidth=2, clip=True).encode(x="x:Q", y="y:Q"),
        chosen.transform_calculate(x="datum.fx[datum.k]", y="datum.fy[datum.k]").properties(name="forward_end")
        .mark_point(shape="cross", size=90, color="#1f77b4", filled=True, clip=True).encode(x="x:Q", y="y:Q"),
        chosen.transform_calculate(label="'round-trip gap ' + format(datum.gap, '.2e')").properties(name="gap")
        .mark_text(align="left", baseline="top", fontSize=13, dx=4, dy=4).encode(
            x=alt.value(0), y=alt.value(0), text="label:N"),
        alt.Chart(alt.Data(name="starts"), name="starts")
        .mark_point(size=22, filled=True, opacity=0.8)
        .encode(**enc, shape=alt.Shape("kind:N", legend=alt.Legend(title="start points", orient="bottom")),
                color=alt.condition(pick, alt.value("black"), alt.Color(
                    "kind:N", scale=alt.Scale(range=["#555555", "#9467bd"]), legend=None)),
                size=alt.condition(pick, alt.value(120), alt.value(22)), tooltip=["x:Q", "y:Q"])
        .add_params(pick),
    ]
    title = alt.Title(alt.ExprRef(f"'K = ' + {K} + ': reverse path (red) and forward re-integration (dashed blue)'"),
                      subtitle="click near a start point (data or grid); the slider sets K")
    chart = alt.layer(*layers).add_params(logk).properties(width=size, height=size, title=title)
    datasets = {"paths": rows, "starts": start_rows, "data": [{"x": a, "y": b} for a, b in _rounded(np.asarray(back))]}
    return LiveFigure(chart, name, datasets)


def live_value_slices(grids, extent, paths, path_values, path_rewards=None, vmin: float = 0.0, vmax: float = 1.0,
                      max_side: int = 41, size: int = 260, label: str = "V(s, x, f)",
                      name: str = "value-slices") -> LiveFigure:
    """Live version of :func:`value_slice_widget`, with the flow path of a clicked particle.

    ``grids``: ``(K + 1, ny, nx)`` values at flow times ``k / K`` over ``extent = (x0, x1, y0, y1)``
    (subsampled to at most ``max_side`` cells a side); ``paths``: ``(K + 1, n, 2)`` the particles'
    flow paths; ``path_values``: ``(K + 1, n)`` the value at each path point; ``path_rewards``
    (optional ``(n,)``): the reward of each path's final action, drawn as the line the values
    should sit on. Left: the value at the slider's flow time with the particles; right: the value
    along the clicked particle's path against ``f``.
    """
    import altair as alt

    grids, paths, path_values = np.asarray(grids), np.asarray(paths), np.asarray(path_values)
    K = grids.shape[0] - 1
    stride = int(np.ceil(max(grids.shape[1:]) / max_side))
    x0, x1, y0, y1 = extent
    xs, ys = np.linspace(x0, x1, grids.shape[2])[::stride], np.linspace(y0, y1, grids.shape[1])[::stride]
    grids = grids[:, ::stride, ::stride]
    ny, nx = grids.shape[1:]
    # Half a cell, and 3% more so that neighbouring cells overlap instead of showing anti-aliased seams.
    half = tuple(1.03 * ((a[1] - a[0]) / 2 if len(a) > 1 else 0.5) for a in (xs, ys))
    cells = [{"x": round(float(xs[c]), 4), "y": round(float(ys[r]), 4), "v": _rounded(grids[:, r, c])}
             for r in range(ny) for c in range(nx)]
    rows = [{"id": i, "x": _rounded(paths[:, i, 0]), "y": _rounded(paths[:, i, 1]), "v": _rounded(path_values[:, i]),
             **({} if path_rewards is None else {"r": round(float(path_rewards[i]), LIVE_DECIMALS)})}
            for i in range(paths.shape[1])]
    step = alt.param(name="k", value=K, bind=alt.binding_range(min=0, max=K, step=1, name=f"flow step k (f = k/{K}) "))
    pick = alt.selection_point(name="pick", fields=["id"], on="click", nearest=True, toggle=False, empty=False,
                               value=[{"id": 0}])
    sx = alt.Scale(domain=[x0, x1], nice=False, zero=False)
    sy = alt.Scale(domain=[y0, y1], nice=False, zero=False)
    color = alt.Color("value:Q", scale=alt.Scale(scheme="viridis", domain=[vmin, vmax]), title=label,
                      legend=alt.Legend(orient="bottom", gradientLength=size - 60))
    heat = (alt.Chart(alt.Data(name="cells"), name="heat")
            .transform_calculate(value="datum.v[k]", xa=f"datum.x - {half[0]}", xb=f"datum.x + {half[0]}",
                                 ya=f"datum.y - {half[1]}", yb=f"datum.y + {half[1]}")
            .mark_rect(clip=True).encode(x=alt.X("xa:Q", scale=sx, axis=alt.Axis(title="x[0]", tickCount=5)), x2="xb:Q",
                                         y=alt.Y("ya:Q", scale=sy, axis=alt.Axis(title="x[1]", tickCount=5)), y2="yb:Q",
                                         color=color))
    particles = (alt.Chart(alt.Data(name="paths"), name="particles")
                 .transform_calculate(px="datum.x[k]", py="datum.y[k]", value="datum.v[k]")
                 .mark_circle(size=12, color="white", opacity=0.7)
                 .encode(x="px:Q", y="py:Q", tooltip=[alt.Tooltip("value:Q", format=".3f", title=label)])
                 .add_params(pick))
    chosen = (alt.Chart(alt.Data(name="paths")).transform_filter(pick)
              .transform_flatten(["x", "y", "v"]).transform_window(step="row_number()")
              .transform_calculate(f=f"(datum.step - 1) / {K}"))
    path = chosen.mark_line(color="#d62728", strokeWidth=1.5, clip=True).encode(x="x:Q", y="y:Q", order="step:Q")
    now = (chosen.transform_filter(f"datum.step - 1 == k").properties(name="current")
           .mark_point(color="#d62728", size=110, strokeWidth=2.5, clip=True).encode(x="x:Q", y="y:Q"))
    f_title = alt.ExprRef(f"{json.dumps(label)} + ' at f = ' + format(k / {K}, '.1f') + ', particles at f'")
    left = alt.layer(heat, path, now, particles).properties(width=size, height=size, title=alt.Title(
        f_title, subtitle="click a particle (white) to follow its flow path (red)"))
    fx = alt.X("f:Q", scale=alt.Scale(domain=[0, 1]), title="flow time f")
    vy = alt.Y("v:Q", scale=alt.Scale(domain=[vmin, vmax]), title=label)
    along = [chosen.mark_line(color="#d62728", clip=True).encode(x=fx, y=vy),
             chosen.properties(name="along").mark_circle(color="#d62728", size=30, clip=True).encode(x=fx, y=vy),
             chosen.transform_filter("datum.step - 1 == k")
             .mark_point(color="#d62728", size=110, strokeWidth=2.5, clip=True)
             .encode(x=fx, y=vy)]
    if path_rewards is not None:
        along.append(alt.Chart(alt.Data(name="paths")).transform_filter(pick)
                     .mark_rule(strokeDash=[4, 3], color="gray", clip=True)
                     .encode(y="r:Q"))
    right = alt.layer(*along).properties(width=int(size * 0.65), height=size, title=alt.Title(
        "value along its path", subtitle="dashed: reward of its action" if path_rewards is not None else ""))
    chart = alt.hconcat(left, right).add_params(step)
    return LiveFigure(chart, name, {"cells": cells, "paths": rows}, selection_views={"pick": "particles"})

"""Widgets (ipywidgets) for the chapters' flows and values: they need a running kernel (Jupyter, Colab).

Each builder only builds and returns an ``ipywidgets`` object: the figure inside is drawn once at
construction and again whenever a slider moves, so executing a notebook headless (nbmake, the
book build) never blocks. The rendered book shows the live figures of ``rql_lite.teaching.live``
instead, which need no kernel.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from rql_lite.teaching.plots import DATA_COLOR, SAMPLE_COLOR, draw_reverse_path, grid_index, scatter, value_heatmap
from rql_lite.teaching.toys import euler_path_jit


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
        i = grid_index(t, k)
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

"""Live figures: Vega-Lite charts (through Altair) whose sliders and clicks work in the rendered book.

The widgets of ``rql_lite.teaching.widgets`` need a running kernel. The builders here compute, at
build time, only what an interaction can ask for and return a ``LiveFigure``: a Vega-Lite chart
answered in the reader's browser. The book serves the Vega scripts from its own ``_static/``
(book/_ext/vega_offline.py), so nothing is fetched from the network. Altair is imported only when a
figure is built.
"""
from __future__ import annotations

import html
import json
from typing import Callable, Sequence

import jax.numpy as jnp
import numpy as np

from rql_lite.teaching.toys import euler_path_jit

LIVE_DECIMALS = 3  # coordinates and values are rounded to 3 decimals in the page


def _rounded(a) -> list:
    return np.round(np.asarray(a, dtype=np.float64), LIVE_DECIMALS).tolist()


def _steps_choice(ks: Sequence[int], default: int):
    """A row of radio buttons for the Euler step count: the signal ``K`` takes the values ``ks``
    themselves (any increasing list, e.g. the paper's 10 among powers of two). Returns the Altair
    parameter; Vega expressions read the choice as ``K``."""
    import altair as alt

    ks = [int(k) for k in ks]
    if not ks or any(k < 1 for k in ks) or ks != sorted(set(ks)):
        raise ValueError(f"live figures take an increasing list of step counts K >= 1, got {ks}")
    if default not in ks:
        raise ValueError(f"the default K = {default} is not among {ks}")
    return ks, alt.param(name="K", value=default, bind=alt.binding_radio(options=ks, name="Euler steps K: "))


# What a live figure's box says before its script has drawn it (no JavaScript ran), and when the
# page has no Vega (the figure's HTML shown outside the rendered book, e.g. in Jupyter or Colab).
NOT_DRAWN = ("(Live figure: it is drawn by JavaScript when the page loads, and no JavaScript ran here. "
             "In Jupyter or Colab, the widget below shows the same view with a running kernel.)")
NO_VEGA = ("(Live figure: its drawing library, Vega, is not on this page; the rendered book serves it from its own "
           "_static/vega/ folder. In Jupyter or Colab, the widget below shows the same view with a running kernel, "
           "and displaying this figure's .chart attribute draws it with Altair.)")


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
        """How many bytes of JSON the chart's inline data takes, which is what the page carries for it."""
        return sum(len(json.dumps(v, separators=(",", ":"))) for v in self.spec["datasets"].values())

    @property
    def html_bytes(self) -> int:
        """Size of the whole output in the page (data, chart description and the embedding call)."""
        return len(self.to_html().encode())

    def to_html(self) -> str:
        """A ``<div>`` and a classic inline script that draws into it with the page's ``vegaEmbed``.

        Classic, not a module script, so that the figure draws from disk (``file://``) as over HTTP;
        the book loads Vega as a classic script in the page's head (``book/_ext/vega_offline.py``),
        so it is there when this script runs. The ``<div>`` says what is true until it is drawn."""
        div = f"rql-live-{self.name}"
        spec = self.json.replace("</", "<\\/")
        return (f'<div class="rql-live" id="{div}" data-rql-live="{self.name}">{html.escape(NOT_DRAWN)}</div>\n'
                f"<script>\n(function () {{\n"
                f'  const el = document.getElementById("{div}");\n'
                f"  function draw() {{\n"
                f"    if (!window.vegaEmbed) {{ el.textContent = {json.dumps(NO_VEGA)}; return; }}\n"
                f'    el.textContent = "";\n'
                f'    vegaEmbed(el, {spec}, {{actions: false, renderer: "svg"}})\n'
                f'      .then((r) => {{ (window.rqlLive = window.rqlLive || {{}})["{self.name}"] = r.view; '
                f'el.dataset.ready = "1"; }})\n'
                f'      .catch((e) => {{ el.textContent = "(Live figure: drawing failed: " + e + ")"; '
                f"console.error(e); }});\n"
                f"  }}\n"
                f'  if (window.vegaEmbed || document.readyState === "complete") draw();\n'
                f'  else window.addEventListener("load", draw);\n'
                f"}})();\n</script>")

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/html": self.to_html()}


def _plane(lim: float, title: str = "x[0]"):
    import altair as alt

    return alt.Scale(domain=[-lim, lim], nice=False, zero=False), alt.Axis(title=title)


def live_flow_time(velocity: Callable, x0, data=None, ks: Sequence[int] = (1, 2, 4, 8, 16, 32),
                   lim: float = 3.5, size: int = 380, name: str = "flow-time", default_k: int = 8) -> LiveFigure:
    """Live version of :func:`rql_lite.teaching.widgets.flow_time_widget`: a slider for flow time ``t``
    and a choice of the step count ``K`` among ``ks``.

    The particles ``x0`` (``(n, 2)`` noise) are shown at the last Euler grid time ``k/K <= t``
    of a ``K``-step integration; clicking a particle draws its whole path for that ``K``.
    Precomputed: every grid point of every path, ``sum(K + 1) * n`` points.
    """
    import altair as alt

    ks, steps = _steps_choice(ks, default_k)
    x0 = jnp.asarray(x0)
    rows = []
    for k in ks:
        path = np.asarray(euler_path_jit(velocity, x0, 0.0, 1.0, k))  # (K + 1, n, 2)
        rows += [{"id": i, "k": k, "x": _rounded(path[:, i, 0]), "y": _rounded(path[:, i, 1])}
                 for i in range(path.shape[1])]
    scale, axis_x = _plane(lim)
    _, axis_y = _plane(lim, "x[1]")
    t = alt.param(name="t", value=1.0, bind=alt.binding_range(min=0, max=1, step=0.01, name="flow time t "))
    pick = alt.selection_point(name="pick", fields=["id"], on="click", nearest=True, toggle=False, empty=False)
    K = "K"
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
                      subtitle="drag the t slider, choose K; click a particle to draw its path (blue dots: its K + 1 grid points)")
    chart = (alt.layer(*layers, particles).add_params(t, steps)
             .properties(width=size, height=size, title=title))
    return LiveFigure(chart, name, datasets)


def live_reverse_path(velocity: Callable, data, ks: Sequence[int] = (1, 2, 4, 8, 16, 32), n_points: int = 150,
                      grid: int = 11, lim: float = 3.0, background=None, size: int = 400,
                      name: str = "reverse-path", default_k: int = 8) -> LiveFigure:
    """Live version of :func:`rql_lite.teaching.widgets.reverse_path_widget`: click a start point,
    choose ``K`` among ``ks`` (any increasing list, e.g. with the paper's 10).

    Start points are the first ``n_points`` rows of ``data`` (``(m, 2)``) and a ``grid x grid``
    lattice over ``[-lim, lim]^2``. For each start and each ``K`` the page holds the reverse path
    (``t: 1 -> 0``, red), the forward re-integration from the recovered noise (dashed blue) and
    the round-trip gap ``|forward(reverse(x)) - x|``. ``background``: the grey cloud (default ``data``).
    """
    import altair as alt

    ks, steps = _steps_choice(ks, default_k)
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
    pick = alt.selection_point(name="pick", fields=["id"], on="click", nearest=True, toggle=False, empty=False,
                               value=[{"id": 0}])
    K = "K"
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
                      subtitle="click near a start point (data or grid); the buttons set K")
    chart = alt.layer(*layers).add_params(steps).properties(width=size, height=size, title=title)
    datasets = {"paths": rows, "starts": start_rows, "data": [{"x": a, "y": b} for a, b in _rounded(np.asarray(back))]}
    return LiveFigure(chart, name, datasets)


def live_value_slices(grids, extent, paths, path_values, path_rewards=None, vmin: float = 0.0, vmax: float = 1.0,
                      max_side: int = 41, size: int = 260, label: str = "V(s, x, f)",
                      name: str = "value-slices") -> LiveFigure:
    """Live version of :func:`rql_lite.teaching.widgets.value_slice_widget`, with the flow path of a
    clicked particle.

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
    now = (chosen.transform_filter("datum.step - 1 == k").properties(name="current")
           .mark_point(color="#d62728", size=110, strokeWidth=2.5, clip=True).encode(x="x:Q", y="y:Q"))
    f_title = alt.ExprRef(f"{json.dumps(label)} + ' at f = ' + format(k / {K}, '.1f') + ', particles at f'")
    left = alt.layer(heat, path, now, particles).properties(width=size, height=size, title=alt.Title(
        f_title, subtitle="click a particle (white) to follow its flow path (red)"))
    # A margin beyond [0, 1], so that the markers at f = 0 and f = 1 are drawn whole.
    fx = alt.X("f:Q", scale=alt.Scale(domain=[-0.05, 1.05], nice=False), title="flow time f",
               axis=alt.Axis(values=[0, 0.2, 0.4, 0.6, 0.8, 1.0]))
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


def live_curves(curves: Sequence[dict], title: str, x_title: str = "gradient updates", y_title: str = "success rate",
                width: int = 520, height: int = 300, name: str = "curves") -> LiveFigure:
    """Learning curves whose groups the reader switches on and off by clicking the legend.

    ``curves``: one dict per seed's curve, ``{"group": str, "seed": int, "x": [...], "y": [...]}``; a group
    (a method, or a method at one setting) is drawn as its seeds' thin lines and their mean as a thick
    line with points. Clicking a legend entry shows that group alone (shift-click adds more);
    double-clicking the chart shows every group again.
    """
    import altair as alt

    groups = list(dict.fromkeys(c["group"] for c in curves))
    if not groups:
        raise ValueError("live_curves needs at least one curve")
    rows = [{"group": c["group"], "seed": int(c["seed"]), "x": float(x), "y": round(float(y), LIVE_DECIMALS)}
            for c in curves for x, y in zip(c["x"], c["y"])]
    pick = alt.selection_point(name="groups", fields=["group"], bind="legend")
    color = alt.Color("group:N", scale=alt.Scale(domain=groups), title="click to show one (shift: several)",
                      legend=alt.Legend(orient="bottom", columns=2, labelLimit=400))
    shown = alt.condition(pick, alt.value(1.0), alt.value(0.06))
    x = alt.X("x:Q", title=x_title)
    y = alt.Y("y:Q", title=y_title, scale=alt.Scale(domain=[0, 1]))
    base = alt.Chart(alt.Data(name="curves"))
    seeds = (base.mark_line(strokeWidth=1, clip=True)
             .encode(x=x, y=y, color=color, detail="seed:N", opacity=alt.condition(pick, alt.value(0.3), alt.value(0.03))))
    mean = (base.transform_aggregate(y="mean(y)", n="count()", groupby=["group", "x"])
            .mark_line(strokeWidth=2.5, point=True, clip=True)
            .encode(x=x, y=y, color=color, opacity=shown,
                    tooltip=[alt.Tooltip("group:N"), alt.Tooltip("x:Q", format=",", title=x_title),
                             alt.Tooltip("y:Q", format=".2f", title=f"mean {y_title}"), alt.Tooltip("n:Q", title="seeds")]))
    chart = alt.layer(seeds, mean.add_params(pick)).properties(width=width, height=height, title=title)
    return LiveFigure(chart, name, {"curves": rows})

"""The live figures' builders (rql_lite.teaching.plots.live_*): what the page carries, and that Vega can draw it.

An analytic flow (``toys.gaussian_flow``) stands in for a trained one, at the sizes the chapters use.
"""
import json

import jax
import numpy as np
import pytest

from rql_lite.teaching.live import live_flow_time, live_reverse_path, live_value_slices
from rql_lite.teaching.toys import euler_path_jit, gaussian_flow

KS = (1, 2, 4, 8, 16, 32)
PAGE_LIMIT = 1_500_000  # bytes of added data per chapter page


@pytest.fixture(scope="module")
def flow():
    velocity, solution = gaussian_flow(mean=(1.0, -0.5), std=0.5)
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (500, 2)))
    return velocity, z, np.asarray(solution(z, 1.0))


@pytest.fixture(scope="module")
def figures(flow):
    velocity, z, data = flow
    k = 10
    paths = np.stack([z[:300] * (1 - f) + data[:300] * f for f in np.arange(k + 1) / k])
    values = np.linspace(0, 1, (k + 1) * 300).reshape(k + 1, 300)
    return {
        "flow-time": live_flow_time(velocity, z[:400], data=data, ks=KS),
        "reverse-path": live_reverse_path(velocity, data, ks=KS, n_points=150, grid=11, background=data),
        "value-slices": live_value_slices(np.random.default_rng(0).random((k + 1, 81, 81)), (-2.5, 2.5, -2.5, 2.5),
                                              paths, values, path_rewards=values[-1]),
    }


def params(fig):
    return {p["name"]: p for p in fig.spec["params"]}


def test_sizes_stay_under_the_page_limit(figures):
    for name, fig in figures.items():
        assert 10_000 < fig.data_bytes < fig.html_bytes < PAGE_LIMIT, (name, fig.data_bytes, fig.html_bytes)


def test_flow_time_figure_holds_every_grid_point_of_every_path(flow, figures):
    velocity, z, _ = flow
    fig = figures["flow-time"]
    rows = fig.spec["datasets"]["paths"]
    assert len(rows) == 400 * len(KS)
    assert all(len(r["x"]) == len(r["y"]) == r["k"] + 1 for r in rows)
    row = next(r for r in rows if r["k"] == 8 and r["id"] == 3)
    path = np.asarray(euler_path_jit(velocity, z[:400], 0.0, 1.0, 8))[:, 3]
    np.testing.assert_allclose(np.stack([row["x"], row["y"]], 1), path, atol=1e-3)
    p = params(fig)
    assert p["t"]["bind"] == {"input": "range", "min": 0, "max": 1, "step": 0.01, "name": "flow time t "}
    assert p["K"]["bind"]["input"] == "radio" and p["K"]["bind"]["options"] == list(KS) and p["K"]["value"] == 8
    assert p["pick"]["select"]["on"] == "click" and p["pick"]["views"] == ["particles"]


def test_reverse_path_figure_starts_at_its_point_and_reports_the_gap(flow, figures):
    velocity, _, data = flow
    fig = figures["reverse-path"]
    starts, rows = fig.spec["datasets"]["starts"], fig.spec["datasets"]["paths"]
    assert len(starts) == 150 + 121 and {s["kind"] for s in starts} == {"data point", "grid point"}
    assert len(rows) == len(starts) * len(KS)
    by_id = {s["id"]: s for s in starts}
    for r in rows:
        assert len(r["rx"]) == len(r["fx"]) == r["k"] + 1
        assert (r["rx"][0], r["ry"][0]) == (by_id[r["id"]]["x"], by_id[r["id"]]["y"])  # the path starts at the point
        assert (r["rx"][-1], r["ry"][-1]) == (r["fx"][0], r["fy"][0])  # forward starts at the recovered noise
        gap = np.hypot(r["fx"][-1] - r["rx"][0], r["fy"][-1] - r["ry"][0])
        assert gap == pytest.approx(r["gap"], abs=3e-3, rel=1e-2)
    assert params(fig)["pick"]["value"] == [{"id": 0}]


def test_value_figure_is_subsampled_and_the_selection_belongs_to_the_particles(figures):
    fig = figures["value-slices"]
    cells, rows = fig.spec["datasets"]["cells"], fig.spec["datasets"]["paths"]
    assert len(cells) == 41 * 41 and all(len(c["v"]) == 11 for c in cells)
    np.testing.assert_allclose(sorted({c["x"] for c in cells}), np.linspace(-2.5, 2.5, 81)[::2], atol=1e-4)
    assert len(rows) == 300 and all(len(r["x"]) == len(r["v"]) == 11 for r in rows)
    p = params(fig)
    assert p["k"]["bind"]["max"] == 10 and p["k"]["value"] == 10
    assert [v.split("_")[0] for v in p["pick"]["views"]] == ["particles"]


def test_html_embeds_the_spec_with_the_pages_own_vega(figures):
    for name, fig in figures.items():
        html = fig.to_html()
        assert f'id="rql-live-{name}"' in html and "vegaEmbed(el, " in html
        assert "<script src" not in html and "cdn" not in html.lower()
        # A classic script (a module script is refused from disk), and a box that says what is true before
        # the script draws (no JavaScript) and where Vega is missing (outside the rendered book).
        assert "<script>" in html and 'type="module"' not in html
        assert "no JavaScript ran here" in html and "widget below" in html and "above" not in html
        spec = json.JSONDecoder().raw_decode(html[html.index("vegaEmbed(el, ") + 14:])[0]
        assert spec == fig.spec
        assert fig._repr_mimebundle_() == {"text/html": html}


def test_step_counts_are_any_increasing_list_with_the_default_among_them(flow):
    velocity, z, data = flow
    fig = live_reverse_path(velocity, data[:20], ks=(1, 2, 4, 8, 10, 16), n_points=5, grid=3, default_k=10)
    assert params(fig)["K"]["value"] == 10 and params(fig)["K"]["bind"]["options"] == [1, 2, 4, 8, 10, 16]
    assert {r["k"] for r in fig.spec["datasets"]["paths"]} == {1, 2, 4, 8, 10, 16}
    for bad in ((1, 4, 2), (0, 1), ()):
        with pytest.raises(ValueError):
            live_flow_time(velocity, z[:10], ks=bad)
    with pytest.raises(ValueError, match="default"):
        live_flow_time(velocity, z[:10], ks=(1, 2, 4))


def test_vega_draws_every_figure(figures):
    vlc = pytest.importorskip("vl_convert")  # the book's own Vega (the `book` extra)
    for name, fig in figures.items():
        svg = vlc.vegalite_to_svg(fig.spec)
        assert svg.startswith("<svg") and "path" in svg, name

"""The built book as a reader sees it, in headless Chromium, over HTTP and from disk.

Loads every page of the table of contents twice: served on localhost, and opened from disk
(``file://``), which is what the README tells a reader to do and where browsers refuse module scripts.
On each page: MathJax rendered its math without errors, every image loaded, no error or stderr output
is shown and the console holds no error from the book's own files. The introduction, chapter 2 and
chapter 7 must also show a minimum of formulas and figures. The live figures of chapters 1-3 are moved
and clicked, from both origins, and must redraw accordingly. The browser has no network but the local
server (fixtures in conftest.py).
"""
import os

import pytest

from browser_support import toc_pages

MINIMUMS = {
    "book/intro.html": dict(min_math=5, min_images=0),
    "notebooks/02_reversing_a_flow.html": dict(min_math=5, min_images=5),
    "notebooks/07_reproduction.html": dict(min_math=3, min_images=1),
}
PAGES = {page: MINIMUMS.get(page, dict(min_math=0, min_images=0)) for page in toc_pages()}


WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) { done("MathJax did not load"); return; }
MathJax.startup.promise.then(() => done("ok")).catch((e) => done("MathJax failed: " + e));
"""

WAIT_FOR_IMAGES = """
const done = arguments[arguments.length - 1];
Promise.all(Array.from(document.images).map((img) => img.complete ? null :
    new Promise((r) => { img.onload = img.onerror = r; }))).then(() => done(
    Array.from(document.images).map((img) => [img.getAttribute("src"), img.complete, img.naturalWidth])));
"""


@pytest.mark.parametrize("page", list(PAGES))
def test_page_renders_math_images_and_no_errors(base_url, browser, page):
    expect = PAGES[page]
    browser.get(f"{base_url}/{page}")
    mathjax = browser.execute_async_script(WAIT_FOR_MATHJAX)
    if expect["min_math"] or mathjax != "MathJax did not load":  # Sphinx adds MathJax only where there is math
        assert mathjax == "ok", mathjax
        math = browser.execute_script("return document.querySelectorAll('mjx-container').length")
        assert math >= expect["min_math"], f"only {math} rendered formulas"
        assert browser.execute_script("return document.querySelectorAll('mjx-merror').length") == 0, "a formula failed"
        # The math came from the book itself, not from a CDN.
        sources = browser.execute_script("return Array.from(document.scripts).map((s) => s.src).filter((s) => s)")
        assert any(s.startswith(base_url) and "mathjax" in s for s in sources), sources

    if page.startswith("notebooks/"):  # a chapter opens in Colab from its own page
        colab = browser.execute_script(
            "return Array.from(document.querySelectorAll('a')).map((a) => a.href)"
            ".filter((h) => h.startsWith('https://colab.research.google.com/github/'))")
        assert any(h.endswith(page.replace(".html", ".ipynb")) for h in colab), "no Colab launch button"

    images = browser.execute_async_script(WAIT_FOR_IMAGES)
    figures = [src for src, _, _ in images if src and "_images/" in src]
    assert len(figures) >= expect["min_images"], f"{len(figures)} figures on the page"
    broken = [src for src, complete, width in images if not (complete and width > 0)]
    assert not broken, f"images that did not load: {broken}"

    errors = browser.execute_script(
        "return Array.from(document.querySelectorAll('.output.traceback, .output.error, .output.stderr'))"
        ".map((e) => e.innerText.slice(0, 200))")
    assert not errors, f"error or stderr output on the page: {errors}"
    body = browser.execute_script("return document.body.innerText")
    assert "Traceback (most recent call last)" not in body
    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE" and base_url in e["message"]]
    assert not severe, f"console errors from the book's own files: {severe}"


def test_the_network_is_blocked(http_url, browser):
    base_url = http_url  # fetch() cannot read file:// at all, so this check runs over HTTP
    browser.get(f"{base_url}/book/intro.html")
    outcome = browser.execute_async_script("""
const done = arguments[arguments.length - 1];
const get = (url) => fetch(url, {cache: "no-store"}).then((r) => "status " + r.status, (e) => "failed");
Promise.all([get(arguments[0] + "/book/intro.html"), get("https://cdn.jsdelivr.net/npm/vega@6"),
             get("http://example.com/"), get("http://1.1.1.1/")]).then(done);
""", base_url)
    assert outcome == ["status 200", "failed", "failed", "failed"], outcome


# ----------------------------------------------------------------------------- live figures (chapters 1-3)

LIVE = {"notebooks/01_flow_matching.html": "flow-time", "notebooks/02_reversing_a_flow.html": "reverse-path",
        "notebooks/03_expanded_mdp.html": "value-slices"}

# Items of the marks of the layer named `name` in a live figure's Vega scenegraph (Vega-Lite names them
# name + "_marks", or name + "_<i>_marks" inside a concatenation), with their data and, for marks drawn one
# element per item, their centres on the screen (viewport pixels).
MARK_ITEMS = """
const [fig, name] = arguments;
const view = window.rqlLive[fig], out = [], pattern = new RegExp("^" + name + "(_[0-9]+)?_marks$");
(function walk(mark) {
  if (pattern.test(mark.name || "")) out.push(...mark.items);
  for (const item of mark.items) for (const child of item.items || []) walk(child);
})(view.scenegraph().root);
return out.map((item) => {
  const r = item._svg ? item._svg.getBoundingClientRect() : {left: NaN, top: NaN, width: 0, height: 0};
  const d = Object.fromEntries(Object.entries(item.datum).filter(([k]) => !k.startsWith("Symbol")));
  return {datum: d, cx: r.left + r.width / 2, cy: r.top + r.height / 2, fill: item.fill || null,
          text: item.text || null};
});
"""


class Live:
    """One live figure on the open page: its signals, its drawn marks, its sliders, clicks."""

    def __init__(self, browser, name):
        from selenium.webdriver.support.ui import WebDriverWait

        self.browser, self.name = browser, name
        WebDriverWait(browser, 60).until(lambda b: b.execute_script(
            "const e = document.getElementById(arguments[0]); return e && e.dataset.ready === '1'", f"rql-live-{name}"))
        browser.execute_script("document.getElementById(arguments[0]).scrollIntoView({block: 'center'})",
                               f"rql-live-{name}")

    def signal(self, name):
        return self.browser.execute_script("return window.rqlLive[arguments[0]].signal(arguments[1])", self.name, name)

    def items(self, mark):
        return self.browser.execute_script(MARK_ITEMS, self.name, mark)

    def until(self, condition, what):
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.browser, 30).until(lambda b: condition(), message=what)

    def slide(self, signal, *keys):
        """Move the slider bound to `signal` with the keyboard, as a reader would."""
        from selenium.webdriver.common.by import By

        slider = self.browser.find_element(By.CSS_SELECTOR, f"#rql-live-{self.name} input[type=range][name={signal}]")
        slider.send_keys(*keys)

    def choose(self, signal, value):
        """Click the radio button bound to `signal` that holds `value`, as a reader would."""
        from selenium.webdriver.common.by import By

        button = self.browser.find_element(
            By.CSS_SELECTOR, f"#rql-live-{self.name} input[type=radio][name={signal}][value='{value}']")
        button.click()

    def click_at(self, x, y):
        from selenium.webdriver.common.actions.action_builder import ActionBuilder

        actions = ActionBuilder(self.browser)
        actions.pointer_action.move_to_location(int(round(x)), int(round(y))).click()
        actions.perform()


def _open_live(base_url, browser, page):
    browser.get_log("browser")  # only this page's messages from here on
    browser.get(f"{base_url}/{page}")
    live = Live(browser, LIVE[page])
    sources = browser.execute_script("return Array.from(document.scripts).map((s) => s.src).filter((s) => s)")
    assert any(s.startswith(f"{base_url}/_static/vega/vega-bundle.js") for s in sources), sources
    assert browser.execute_script("return document.querySelectorAll('.rql-live').length") == 1
    return live


def _no_console_errors(browser):
    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, f"console errors: {severe}"


def test_live_flow_time_moves_with_its_controls_and_draws_a_clicked_path(base_url, browser):
    from selenium.webdriver.common.keys import Keys

    live = _open_live(base_url, browser, "notebooks/01_flow_matching.html")
    assert live.signal("t") == 1 and live.signal("K") == 8
    before = live.items("particles")
    assert len(before) == 400 and all(p["datum"]["px"] == p["datum"]["x"][8] for p in before)

    live.slide("t", Keys.HOME)  # t = 0: the particles are back at the noise
    live.until(lambda: live.signal("t") == 0, "t slider")
    at_zero = live.items("particles")
    assert all(p["datum"]["px"] == p["datum"]["x"][0] and p["datum"]["py"] == p["datum"]["y"][0] for p in at_zero)
    assert sum(abs(a["cx"] - b["cx"]) > 1 for a, b in zip(before, at_zero)) > 300, "the particles did not move"

    live.choose("K", 4)
    live.slide("t", Keys.END)
    live.until(lambda: live.signal("K") == 4 and live.signal("t") == 1, "K and the t slider")
    assert all(p["datum"]["px"] == p["datum"]["x"][4] and len(p["datum"]["x"]) == 5 for p in live.items("particles"))

    assert live.items("path") == []
    target = live.items("particles")[11]
    live.click_at(target["cx"], target["cy"])
    live.until(lambda: len(live.items("path")) == 5, "K + 1 = 5 path points after the click")
    path = [(p["datum"]["x"], p["datum"]["y"]) for p in live.items("path")]
    assert path[-1] == (target["datum"]["px"], target["datum"]["py"]), "the path ends at the clicked particle"
    assert path[0] == (target["datum"]["x"][0], target["datum"]["y"][0]), "and starts at its noise"

    live.choose("K", 2)  # the same particle's coarser path
    live.until(lambda: len(live.items("path")) == 3, "K + 1 = 3 path points")
    _no_console_errors(browser)


def test_live_reverse_path_follows_the_clicked_point_and_the_step_buttons(base_url, browser):
    live = _open_live(base_url, browser, "notebooks/02_reversing_a_flow.html")
    assert live.signal("K") == 10 and len(live.items("reverse_points")) == 11  # the paper's K by default
    gap_before = live.items("gap")[0]["text"]
    assert gap_before.startswith("round-trip gap ")

    live.choose("K", 2)
    live.until(lambda: live.signal("K") == 2, "K buttons")
    live.until(lambda: len(live.items("reverse_points")) == 3, "K + 1 = 3 reverse path points")
    assert len(live.items("forward")) == 3 and len(live.items("noise")) == 1 and len(live.items("forward_end")) == 1

    starts = live.items("starts")
    target = next(s for s in starts  # a grid point in the top-left corner, far from the data
                  if s["datum"]["kind"] == "grid point" and s["datum"]["x"] < -2 and s["datum"]["y"] > 2)
    live.click_at(target["cx"], target["cy"])
    start = (target["datum"]["x"], target["datum"]["y"])
    live.until(lambda: (live.items("reverse_points")[0]["datum"]["x"],
                        live.items("reverse_points")[0]["datum"]["y"]) == start, "the path starts at the clicked point")
    points = live.items("reverse_points")
    assert len(points) == 3 and all(p["datum"]["id"] == target["datum"]["id"] for p in points)
    noise = live.items("noise")[0]["datum"]
    assert (noise["x"], noise["y"]) == (points[-1]["datum"]["x"], points[-1]["datum"]["y"])
    gap = live.items("gap")[0]["text"]
    assert gap != gap_before and float(gap.split()[-1]) == pytest.approx(points[0]["datum"]["gap"], rel=1e-2)
    _no_console_errors(browser)


def test_live_value_slices_follow_the_flow_time_slider_and_the_clicked_particle(base_url, browser):
    from selenium.webdriver.common.keys import Keys

    live = _open_live(base_url, browser, "notebooks/03_expanded_mdp.html")
    k_max = live.signal("k")
    heat = live.items("heat")
    assert k_max == 10 and len(heat) >= 41 * 41 and all(c["datum"]["value"] == c["datum"]["v"][k_max] for c in heat)

    live.slide("k", Keys.ARROW_LEFT, Keys.ARROW_LEFT, Keys.ARROW_LEFT)  # f = 0.7
    live.until(lambda: live.signal("k") == 7, "flow-time slider")
    heat7 = live.items("heat")
    assert all(c["datum"]["value"] == c["datum"]["v"][7] for c in heat7)
    assert sum(a["fill"] != b["fill"] for a, b in zip(heat, heat7)) > len(heat) // 10, "the value map did not change"
    particles = live.items("particles")
    assert all(p["datum"]["px"] == p["datum"]["x"][7] for p in particles)

    target = particles[7] if particles[7]["datum"]["id"] != 0 else particles[8]
    live.click_at(target["cx"], target["cy"])
    live.until(lambda: live.items("current") and live.items("current")[0]["datum"]["id"] == target["datum"]["id"],
               "the clicked particle is followed")
    now = live.items("current")[0]["datum"]
    assert (now["x"], now["y"]) == (target["datum"]["px"], target["datum"]["py"])
    along = live.items("along")
    assert len(along) == k_max + 1 and [a["datum"]["f"] for a in along] == pytest.approx([i / 10 for i in range(11)])
    _no_console_errors(browser)

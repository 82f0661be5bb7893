"""The app in a real browser: headless Debian chromium driven by the pinned python playwright.

Never run `playwright install`: the pinned playwright (requirements-dev.txt) drives the system
chromium, and the first test checks their versions match. Screenshots go to tests/artifacts/
(or $EMPATHY_SCREENSHOTS). Where chromium is missing the tests skip, unless
EMPATHY_REQUIRE_BROWSER=1 (set by .ci/run), which turns that into a failure.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.real, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("EMPATHY_SCREENSHOTS") or Path(__file__).parent / "artifacts")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
TIMEOUT_MS = 120_000


def _need_chromium():
    if not Path(CHROMIUM).exists():
        msg = "Debian chromium is not installed (apt-get install -y chromium)."
        if os.environ.get("EMPATHY_REQUIRE_BROWSER") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


def _major(version: str) -> int:
    return int(re.search(r"(\d+)\.\d+\.\d+", version).group(1))


def test_pinned_playwright_matches_the_system_chromium():
    _need_chromium()
    import playwright

    browsers = Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
    bundled = next(b for b in json.loads(browsers.read_text())["browsers"] if b["name"] == "chromium")["browserVersion"]
    system = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=60).stdout
    assert _major(system) == _major(bundled), (f"Debian chromium is {system.strip()} but the pinned playwright targets "
                                              f"Chromium {bundled}: pin the playwright release made for this chromium.")


@pytest.fixture(scope="module")
def page(app_server):
    _need_chromium()
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(app_server[1])
        pg.get_by_text(re.compile(r"Ready: smollm2-135m")).wait_for()
        yield pg
        browser.close()


def _scroll_to(page, selector: str):
    """Scroll so ``selector`` sits near the top of the viewport (for useful screenshots)."""
    page.evaluate("s => window.scrollTo(0, document.querySelector(s).getBoundingClientRect().top + window.scrollY - 16)",
                  selector)


def _open_tab(page, name: str):
    page.get_by_role("tab", name=name).click()


def _svg_charts(page, elem_id: str) -> int:
    page.locator(f"#{elem_id} svg.main-svg").first.wait_for()
    return page.locator(f"#{elem_id} svg.main-svg").count()


def test_probe_tab_scores_an_example(page):
    _open_tab(page, "Probe: live scoring")
    page.locator("#probe-verdict").scroll_into_view_if_needed()
    page.get_by_role("button", name=re.compile("Food Delivery · empathic")).click()
    # the example fills the box through the server: score only once it is there
    page.wait_for_function("() => (document.querySelector('#probe-text textarea') || {}).value", timeout=TIMEOUT_MS)
    page.get_by_role("button", name="Score", exact=True).click()
    # the verdict's text, wherever Gradio's markdown puts it (a text locator's first match can be a hidden copy)
    page.wait_for_function("""() => /P\\(empathic\\)|Can't judge this/.test(
        (document.querySelector('#probe-verdict') || {}).innerText || '')""", timeout=TIMEOUT_MS)
    assert _svg_charts(page, "probe-chart") >= 1
    assert page.locator("#probe-heatmap span[title]").count() > 5
    _scroll_to(page, "#probe-verdict")
    page.screenshot(path=str(SHOTS / "probe.png"))


def test_steer_tab_slider_and_side_by_side_generation(page):
    _open_tab(page, "Steer: playground")
    slider = page.locator("#alpha-slider input[type=range]")
    slider.fill("0.35")
    page.locator("#raw-alpha").get_by_text("+0.35").wait_for()
    page.locator("#generate-btn").click()
    page.wait_for_function(
        """() => ['#baseline-text textarea', '#steered-text textarea'].every(
               s => document.querySelector(s) && document.querySelector(s).value.trim().length > 0)""",
        timeout=TIMEOUT_MS)
    page.get_by_text("Judge (MiniLM embedding classifier").nth(1).wait_for()
    base = page.locator("#baseline-text textarea").input_value()
    steered = page.locator("#steered-text textarea").input_value()
    assert base.strip() and steered.strip() and base != steered
    _scroll_to(page, "#generate-btn")
    page.screenshot(path=str(SHOTS / "steer.png"), full_page=False)


def test_stop_button_ends_a_long_generation(page):
    _open_tab(page, "Steer: playground")
    page.locator("#max-new-tokens input[type=range]").fill("256")
    page.locator("#generate-btn").click()
    page.get_by_text("generating…").first.wait_for()  # tokens are streaming in
    page.get_by_role("button", name="Stop", exact=True).click()
    page.get_by_text("stopped early").first.wait_for()
    n_words = len(page.locator("#steered-text textarea").input_value().split())
    assert 0 < n_words < 200


@pytest.mark.parametrize("tab,charts", [("Layers: replay", ["layers-plot"]), ("Cross-model", ["depth-plot", "agree-plot"]),
                                        ("Steering results: replay", ["dose-replay", "success-plot", "coherence-plot"])])
def test_replay_tabs_render_svg_charts(page, tab, charts):
    _open_tab(page, tab)
    for c in charts:
        assert _svg_charts(page, c) >= 1
    _scroll_to(page, f"#{charts[0]}")
    page.screenshot(path=str(SHOTS / (tab.split(":")[0].lower().replace(" ", "-") + ".png")))


def test_about_tab(page):
    _open_tab(page, "About")
    page.get_by_role("heading", name=re.compile("What a linear probe is")).wait_for()
    page.screenshot(path=str(SHOTS / "about.png"))


def test_token_heatmap_is_readable_in_the_dark_theme(app_server, page):
    """Dark text on light tints inside its own light box, whatever the page theme."""
    pg = page.context.browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        pg.set_default_timeout(TIMEOUT_MS)  # as the other pages: a loaded machine can take longer than playwright's 30 s
        pg.goto(app_server[1] + "?__theme=dark")
        pg.get_by_text(re.compile(r"Ready: smollm2-135m")).wait_for()
        assert pg.evaluate("document.body.classList.contains('dark') || "
                           "document.querySelector('.dark') !== null"), "the dark theme did not apply"
        pg.locator("#probe-verdict").scroll_into_view_if_needed()
        pg.get_by_role("button", name=re.compile("The Duel · empathic")).click()
        pg.get_by_role("button", name="Score", exact=True).click()
        pg.locator("#probe-heatmap span[title]").first.wait_for()
        colors = pg.evaluate("""() => {
            const box = document.querySelector('#probe-heatmap .token-heatmap');
            const span = box.querySelector('span[title]');
            const legend = box.querySelector('.heatmap-legend');
            return [getComputedStyle(span).color, getComputedStyle(legend).color, getComputedStyle(box).backgroundColor];
        }""")
        lum = [sum(int(v) for v in re.findall(r"\d+", c)[:3]) / (3 * 255) for c in colors]
        assert lum[0] < 0.25 and lum[1] < 0.25 and lum[2] > 0.9, colors
        assert _svg_charts(pg, "probe-chart") >= 1
        _scroll_to(pg, "#probe-verdict")
        pg.screenshot(path=str(SHOTS / "probe-dark.png"))
    finally:
        pg.close()


# ---------------------------------------------------------------- issue 14: a page that fits, in both themes
OVERFLOW_JS = """() => {
    const bad = [];
    const sel = 'h1, h2, h3, label, [data-testid="block-label"], [data-testid="block-info"], th, th *, button, '
              + '.tab-nav button, [role="tab"], .label-wrap span';
    for (const el of document.querySelectorAll(sel)) {
        if (!el.offsetParent || el.clientWidth === 0) continue;  // hidden
        const style = getComputedStyle(el);
        if (style.overflowX === 'visible' && style.textOverflow !== 'ellipsis' && el.tagName !== 'TH') continue;
        if (el.scrollWidth > el.clientWidth + 1) bad.push(el.tagName + ': ' + el.textContent.trim().slice(0, 60));
    }
    // Plotly: every title, tick label, legend entry and annotation inside its own chart's box; the legend
    // clear of the x tick labels; annotations clear of the legend.
    for (const svg of document.querySelectorAll('.js-plotly-plot svg.main-svg:first-of-type')) {
        if (!svg.getBoundingClientRect().width) continue;
        const box = svg.getBoundingClientRect();
        const root = svg.parentElement;
        const texts = root.querySelectorAll('.gtitle, .xtick text, .ytick text, .g-xtitle text, .g-ytitle text, '
                                            + '.x2tick text, .y2tick text, .g-x2title text, .g-y2title text, '
                                            + '.legendtext, .annotation-text');
        for (const t of texts) {
            const r = t.getBoundingClientRect();
            if (!r.width) continue;
            if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1)
                bad.push('plot text outside its chart: ' + t.textContent.slice(0, 60));
        }
        const legend = root.querySelector('.legend');
        if (legend) {
            const L = legend.getBoundingClientRect();
            const hit = r => r.width && r.left < L.right && r.right > L.left && r.top < L.bottom && r.bottom > L.top;
            for (const t of root.querySelectorAll('.xtick text, .gtitle, .annotation-text'))
                if (hit(t.getBoundingClientRect())) bad.push('legend overlaps: ' + t.textContent.slice(0, 60));
        }
    }
    return bad;
}"""

TABS = ["Probe: live scoring", "Steer: playground", "Layers: replay", "Cross-model", "Steering results: replay", "About"]


@pytest.mark.parametrize("width", [1280, 1024])
def test_no_text_overflows_its_box(app_server, page, width):
    pg = page.context.browser.new_page(viewport={"width": width, "height": 900})
    try:
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(app_server[1])
        pg.get_by_text(re.compile(r"Ready: smollm2-135m")).wait_for()
        found = {}
        for tab in TABS:
            _open_tab(pg, tab)
            pg.wait_for_timeout(400)
            if tab in ("Layers: replay", "Cross-model", "Steering results: replay"):
                pg.locator(".tabitem:visible svg.main-svg").first.wait_for()
                pg.wait_for_timeout(800)  # plotly lays out its legend after the first draw
            bad = pg.evaluate(OVERFLOW_JS)
            if bad:
                found[tab] = bad
        assert not found, found
        if width == 1024:
            _open_tab(pg, "Steering results: replay")
            _scroll_to(pg, "#success-plot")
            pg.screenshot(path=str(SHOTS / "steering-results-1024.png"))
    finally:
        pg.close()


def test_steer_first_screen_shows_scenario_controls_and_generate(app_server, page):
    pg = page.context.browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(app_server[1])
        pg.get_by_text(re.compile(r"Ready: smollm2-135m")).wait_for()
        _open_tab(pg, "Steer: playground")
        pg.locator("#generate-btn").wait_for()
        pg.evaluate("window.scrollTo(0, 0)")
        pg.screenshot(path=str(SHOTS / "steer-first-screen.png"))
        for sel in ("#scenario-select", "#alpha-slider", "#steer-layer", "#generate-btn", "#steer-content-note"):
            r = pg.locator(sel).bounding_box()
            assert r is not None and r["y"] >= 0 and r["y"] + r["height"] <= 800, (sel, r)
        # empty outputs stay hidden or collapsed before anything is generated
        assert not pg.locator("#steer-result-file").is_visible() and not pg.locator("#dose-plot").is_visible()
        assert "self-harm" in pg.locator("#scenario-note").inner_text()
    finally:
        pg.close()


@pytest.mark.parametrize("width,theme", [(1280, "light"), (1024, "dark")])
def test_the_live_dose_chart_reads_at_a_glance(app_server, page, width, theme):
    """Dose-response on the Steer tab: two stacked panels (probe score, judge probability), nothing clipped
    or under the legend, and the chart follows the page theme."""
    pg = page.context.browser.new_page(viewport={"width": width, "height": 900})
    try:
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(app_server[1] + ("?__theme=dark" if theme == "dark" else ""))
        pg.get_by_text(re.compile(r"Ready: smollm2-135m")).wait_for()
        _open_tab(pg, "Steer: playground")
        pg.locator("#max-new-tokens input[type=range]").fill("8")
        pg.get_by_role("button", name=re.compile(r"^Dose-response \(")).click()
        assert _svg_charts(pg, "dose-plot") >= 1
        pg.wait_for_timeout(800)  # plotly lays out its legend after the first draw
        assert pg.locator("#dose-plot text.ytitle").count() == 1 and pg.locator("#dose-plot text.y2title").count() == 1
        bad = pg.evaluate(OVERFLOW_JS)
        assert not bad, bad
        lum = _font_luminance(pg, "dose-plot")
        assert lum > 0.7 if theme == "dark" else lum < 0.5
        _scroll_to(pg, "#dose-plot")
        pg.screenshot(path=str(SHOTS / f"steer-dose-{theme}-{width}.png"))
    finally:
        pg.close()


def _font_luminance(pg, elem_id: str) -> float:
    color = pg.evaluate(f"document.querySelector('#{elem_id} .js-plotly-plot')._fullLayout.font.color")
    if color.startswith("#"):
        rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    else:
        rgb = [int(v) for v in re.findall(r"\d+", color)[:3]]
    return sum(rgb) / (3 * 255)


def test_charts_follow_the_dark_theme(app_server, page):
    _open_tab(page, "Layers: replay")
    page.locator("#layers-plot svg.main-svg").first.wait_for()
    assert _font_luminance(page, "layers-plot") < 0.5  # dark text on the light page
    pg = page.context.browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(app_server[1] + "?__theme=dark")
        pg.get_by_text(re.compile(r"Ready: smollm2-135m")).wait_for()
        _open_tab(pg, "Layers: replay")
        pg.locator("#layers-plot svg.main-svg").first.wait_for()
        assert _font_luminance(pg, "layers-plot") > 0.7  # light text on the dark page
        _scroll_to(pg, "#layers-plot")
        pg.screenshot(path=str(SHOTS / "layers-dark.png"))
    finally:
        pg.close()


def test_a_failed_model_choice_reverts_and_says_why(app_server, page):
    pg = page.context.browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(app_server[1])
        pg.get_by_text(re.compile(r"Ready: smollm2-135m")).wait_for()
        pg.locator("#model-select input").click()
        pg.get_by_role("option", name=re.compile(r"^phi3-mini")).click()
        pg.get_by_text(re.compile("phi3-mini cannot be used here")).first.wait_for()
        pg.wait_for_function("() => document.querySelector('#model-select input').value.startsWith('smollm2-135m')")
        pg.screenshot(path=str(SHOTS / "model-revert.png"))
    finally:
        pg.close()


def test_the_content_note_is_in_the_steer_tab_and_about(page):
    _open_tab(page, "Steer: playground")
    assert "self-harm" in page.locator("#steer-content-note").inner_text()
    _open_tab(page, "About")
    page.locator("text=Content note >> visible=true").first.wait_for()

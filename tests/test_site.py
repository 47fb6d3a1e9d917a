"""The website as readers meet it: every page of ``_toc.yml`` opened in Debian's Chromium
(Playwright), served from the site build over a local web server, offline.

For every page: the title and headings match the source; every figure loads and is not blank;
the Open-in-Colab link points at the page's notebook on the configured repository and branch;
the sidebar lists every page in ``_toc.yml`` order; the ipywidgets outputs render from the
notebook's stored widget state (a blank widget area fails), and moving a slider changes its
picture; nothing is fetched from outside and no script fails. A full-page screenshot of each
page is saved to ``test-artifacts/screenshots/``. Two controls check that the checks bite:
without the widget scripts the widget check must fail, and with a figure missing the figure
check must fail. Without a browser, the built HTML is also checked for hidden cells' source.

The widget scripts normally come from CDNs; ``tests/browser_setup.py`` answers those requests
with the same versions from npm. Chromium is installed with apt-get when missing; if that is
impossible, these tests fail under CI (``CI=true``) and are skipped elsewhere, saying what to
do. ``LESSON_SITE_HTML=path/to/_build/html`` checks an existing build instead of building.
"""

from __future__ import annotations

import contextlib
import html as html_lib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.bookfiles import CONFIG, ROOT, PageSource, page_source, toc_docnames
from tests.browser_setup import (
    BrowserSetupError,
    content_type,
    ensure_chromium,
    npm_file_for,
    npm_file_path,
    relax_integrity,
    serve,
)

PAGES = toc_docnames()
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
VIEWPORT = {"width": 1280, "height": 900}
WIDGET_TIMEOUT_MS = 30_000
COLAB = "https://colab.research.google.com"
# Not the book's doing, and harmless: sphinx-book-theme puts sphinx-thebe's configuration script
# on every page twice, so its second `const THEBE_JS_URL` throws.
KNOWN_PAGE_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",
                     # @jupyter-widgets/html-manager 1.0.x typesets widget labels through
                     # MathJax 2's MathJax.Hub.Queue; on a page with equations Sphinx loads
                     # MathJax 3, which has no Hub. Harmless: no widget label here holds
                     # maths, and the widgets still render (checked on every page).
                     "Cannot read properties of undefined (reading 'Queue')")
# @jupyter-widgets/html-manager 1.0.x's CSS names its icon fonts by paths relative to the page,
# not to the CDN, so no site finds them (online either); the course's widgets show no icons.
KNOWN_MISSING = re.compile(r"/@jupyter-widgets/(html-manager/dist/)?\w+\.(woff2?|ttf|eot|svg)$")

VIEW_SCRIPT = 'script[type="application/vnd.jupyter.widget-view+json"]'
# One entry per widget output: html-manager renders it into a div.widget-subarea placed just
# before the output's view script.
WIDGET_AREAS_JS = f"""() => [...document.querySelectorAll('{VIEW_SCRIPT}')].map(script => {{
    const area = script.previousElementSibling;
    const filled = !!area && area.classList.contains('widget-subarea') && area.children.length > 0;
    const box = filled ? area.getBoundingClientRect() : {{width: 0, height: 0}};
    return {{rendered: filled && box.width > 0 && box.height > 0,
             width: box.width, height: box.height}};
}})"""
WIDGETS_RENDERED_JS = f"n => {{ const a = ({WIDGET_AREAS_JS})(); " \
                      "return a.length >= n && a.every(x => x.rendered); }"
# Every image in the article: loaded (naturalWidth > 0) and not one flat colour.
IMAGES_JS = """async () => {
    const images = [...document.querySelectorAll('article.bd-article img')];
    images.forEach(img => { img.loading = 'eager'; });
    await Promise.all(images.map(img => img.decode().catch(() => null)));
    const canvas = document.createElement('canvas');
    const context = canvas.getContext('2d', {willReadFrequently: true});
    return images.map(img => {
        const r = {src: img.getAttribute('src') || '', widget: !!img.closest('.widget-subarea'),
                   width: img.naturalWidth, height: img.naturalHeight, blank: true};
        if (r.width > 0 && r.height > 0) {
            canvas.width = r.width; canvas.height = r.height;
            context.clearRect(0, 0, r.width, r.height);
            context.drawImage(img, 0, 0);
            const d = context.getImageData(0, 0, r.width, r.height).data;
            for (let k = 4; k < d.length && r.blank; k += 4) {
                r.blank = d[k] === d[0] && d[k + 1] === d[1] && d[k + 2] === d[2]
                          && d[k + 3] === d[3];
            }
        }
        return r;
    });
}"""
# A hash of an image's pixels, to see whether a slider changed the picture.
FINGERPRINT_JS = """img => {
    if (!img.complete || !img.naturalWidth) return null;
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const context = canvas.getContext('2d');
    context.drawImage(img, 0, 0);
    const d = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let h = 0;
    for (let k = 0; k < d.length; k++) h = (Math.imul(h, 31) + d[k]) >>> 0;
    return `${canvas.width}x${canvas.height}:${h}`;
}"""
HEADINGS_JS = """() => [...document.querySelectorAll(
        'article.bd-article :is(h1, h2, h3, h4, h5, h6)')].map(h => {
    const copy = h.cloneNode(true);
    copy.querySelectorAll('.headerlink').forEach(a => a.remove());
    return copy.textContent.replace(/\\s+/g, ' ').trim();
})"""
SIDEBAR_JS = """() => [...document.querySelectorAll('nav.bd-docs-nav a.reference.internal')]
    .map(a => [a.href.split('#')[0], a.textContent.replace(/\\s+/g, ' ').trim()])"""
SMART = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'",
                       "\u2013": "--", "\u2014": "---"})
# Code cells that scroll sideways: every code cell's <pre>, folded ones (hide-input) opened
# first, whose content is wider than its box at the test's 1280 px viewport.
WIDE_CODE_JS = """() => {
    document.querySelectorAll('article.bd-article details').forEach(d => { d.open = true; });
    return [...document.querySelectorAll('article.bd-article .cell_input pre')]
        .filter(pre => pre.scrollWidth > pre.clientWidth + 1)
        .map(pre => `${pre.scrollWidth} px in a ${pre.clientWidth} px box: `
                    + pre.textContent.split('\\n').reduce((a, b) => a.length >= b.length ? a : b));
}"""
COLAB_JS = f"""() => [...document.querySelectorAll('a[href^="{COLAB}"]')].map(a => a.href)"""
# Equations the build emitted (MyST $...$ becomes .math) and how many MathJax typeset; raw TeX
# delimiters or dollars left in the text; citations and their links to the references page.
MATH_JS = """() => {
  const main = document.querySelector('#main-content') || document.body;
  const text = main.innerText;
  return {math: main.querySelectorAll('.math').length,
          typeset: main.querySelectorAll('.math .MathJax, .math .MathJax_Display,'
                                         + ' .math mjx-container').length,
          raw: (text.match(/\\$|\\\\\\(|\\\\\\[/g) || []).length,
          cite_roles_left: text.includes('{cite'),
          citations: main.querySelectorAll('a[href^="references.html#"]').length};
}"""
# Exercises (sphinx-exercise) and their solutions: a solution is folded when sphinx-togglebutton
# has hidden everything after its title.
SOLUTIONS_JS = """() => [...document.querySelectorAll('article.bd-article .solution')].map(s => ({
  id: s.id,
  folded: s.classList.contains('toggle-hidden') && [...s.children].slice(1)
      .every(c => getComputedStyle(c).visibility === 'hidden'),
  code: s.querySelectorAll('.cell_input').length}))"""
EXERCISES_JS = "() => document.querySelectorAll('article.bd-article .exercise').length"
MATH_WAIT_JS = """() => {
  const main = document.querySelector('#main-content') || document.body;
  const math = main.querySelectorAll('.math').length;
  return math === 0 || main.querySelectorAll('.math .MathJax, .math .MathJax_Display,'
                                             + ' .math mjx-container').length >= math;
}"""


def _unavailable(reason: str) -> NoReturn:
    """Fail under CI, where the browser test must run; elsewhere skip, saying what to do."""
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _straight(text: str) -> str:
    """Undo Sphinx's smart quotes and dashes, to compare page text with its Markdown source."""
    return text.translate(SMART).replace("\u2026", "...")


def _short(url: str) -> str:
    return url if len(url) <= 90 else url[:60] + "..." + url[-20:]


# ---------------------------------------------------------------------------------------------
# Visiting a page
# ---------------------------------------------------------------------------------------------

@dataclass
class Network:
    """Routes a browser context's requests: the site from the local server, CDN files from the
    npm copies (unless ``serve_cdn`` is off), anything else refused and recorded. Local paths
    ending in one of ``missing`` get a 404, to test that a missing figure or script is noticed."""

    base_url: str
    serve_cdn: bool = True
    missing: tuple[str, ...] = ()
    refused: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def handle(self, route: Any) -> None:
        url = route.request.url
        try:
            if url.startswith(self.base_url):
                self._local(route, url)
            else:
                self._external(route, url)
        except BrowserSetupError as exc:
            self.refused.append(f"{_short(url)}: {exc}")
            route.abort()

    def _local(self, route: Any, url: str) -> None:
        if self.missing and url.split("?")[0].endswith(self.missing):
            route.fulfill(status=404, body="removed by the test")
        elif self.serve_cdn and url.split("?")[0].endswith(".html"):
            response = route.fetch()
            body, notes = relax_integrity(response.text())
            self.notes += [note for note in notes if note not in self.notes]
            route.fulfill(response=response, body=body)
        else:
            route.continue_()

    def _external(self, route: Any, url: str) -> None:
        file = npm_file_for(url) if self.serve_cdn else None
        path = npm_file_path(file) if file else None
        if path is None or not path.is_file():
            self.refused.append(_short(url) + (f" (no {file.path} in npm {file.spec})"
                                               if file else ""))
            route.abort()
            return
        route.fulfill(path=str(path), content_type=content_type(path),
                      headers={"Access-Control-Allow-Origin": "*"})


@dataclass
class Visit:
    """What one page showed in the browser."""

    source: PageSource
    url: str
    title: str = ""
    headings: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    colab_links: list[str] = field(default_factory=list)
    sidebar: list[tuple[str, str]] = field(default_factory=list)
    wide_code: list[str] = field(default_factory=list)
    widget_problems: list[str] = field(default_factory=list)
    math: dict = field(default_factory=dict)
    exercises: int = 0
    solutions: list[dict] = field(default_factory=list)  # as loaded: folded or not, code cells
    opened_on_click: bool | None = None  # the first solution, after a click on its button
    errors: list[str] = field(default_factory=list)
    screenshot: Path | None = None


def visit_page(browser: Any, base_url: str, docname: str, network: Network,
               screenshot: bool = True, sliders: bool = True,
               widget_timeout_ms: int = WIDGET_TIMEOUT_MS) -> Visit:
    """Open one page in a fresh context and gather everything the tests check."""
    context = browser.new_context(viewport=VIEWPORT)
    context.route("**/*", network.handle)
    page = context.new_page()
    visit = Visit(page_source(docname), f"{base_url}{docname}.html")
    page_errors: list[str] = []
    failed: list[str] = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    page.on("response", lambda r: failed.append(f"HTTP {r.status} {_short(r.url)}")
            if r.status >= 400 and not KNOWN_MISSING.search(r.url) else None)
    try:
        page.goto(visit.url, wait_until="load")
        visit.widget_problems = widget_problems(page, visit.source, widget_timeout_ms)
        visit.title = page.title()
        visit.headings = page.evaluate(HEADINGS_JS)
        visit.images = page.evaluate(IMAGES_JS)
        visit.colab_links = page.evaluate(COLAB_JS)
        with contextlib.suppress(Exception):  # a page whose MathJax never loads: checked below
            page.wait_for_function(MATH_WAIT_JS, timeout=20_000)
        visit.math = page.evaluate(MATH_JS)
        visit.sidebar = [(url.removeprefix(base_url).removesuffix(".html"), text)
                         for url, text in page.evaluate(SIDEBAR_JS)]
        if screenshot:
            visit.screenshot = SCREENSHOTS / f"{docname.replace('/', '_')}.png"
            visit.screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(visit.screenshot), full_page=True)
            print(f"screenshot: {visit.screenshot}")
        visit.exercises = page.evaluate(EXERCISES_JS)
        visit.solutions = page.evaluate(SOLUTIONS_JS)
        if visit.solutions:
            # its toggle button (the title's text is mostly a link to the exercise; an
            # unlabelled solution's id holds its page's path, "/" included)
            button = page.locator(
                f'[id="{visit.solutions[0]["id"]}"] .admonition-title .toggle-button')
            if button.count():  # none where sphinx-togglebutton's script did not run
                button.click()
                page.wait_for_timeout(500)
                visit.opened_on_click = not page.evaluate(SOLUTIONS_JS)[0]["folded"]
        visit.wide_code = page.evaluate(WIDE_CODE_JS)  # after the screenshot: opens folds
        if sliders and not visit.widget_problems:
            visit.widget_problems = slider_problems(page)
    finally:
        context.close()
    for note in network.notes:
        print(f"note: {note}")
    known = [e for e in page_errors if not any(k in e for k in KNOWN_PAGE_ERRORS)]
    visit.errors = ([f"script error: {e}" for e in known] + failed
                    + [f"refused (not on this machine): {url}" for url in network.refused])
    return visit


def widget_problems(page: Any, source: PageSource, timeout_ms: int) -> list[str]:
    """Wait for every widget output to render; say which are blank or missing parts."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    if source.widget_views:
        try:
            page.wait_for_function(WIDGETS_RENDERED_JS, arg=source.widget_views,
                                   timeout=timeout_ms)
        except PlaywrightTimeout:
            pass  # reported below, area by area
    areas = page.evaluate(WIDGET_AREAS_JS)
    problems = []
    if len(areas) != source.widget_views:
        problems.append(f"{len(areas)} widget outputs on the page, {source.widget_views} in "
                        f"{source.path.name}")
    blank = [i for i, area in enumerate(areas) if not area["rendered"]]
    if blank:
        problems.append(f"widget outputs {blank} of {len(areas)} are blank after "
                        f"{timeout_ms / 1000:.0f} s: the widget scripts did not render the "
                        "stored widget state")
    shown = {"sliders": page.locator(".widget-slider").count(),
             "progress bars": page.locator(".widget-hprogress, .widget-vprogress").count()}
    expected = {"sliders": source.sliders, "progress bars": source.progress_bars}
    problems += [f"{shown[kind]} {kind} rendered, {expected[kind]} in the widget state"
                 for kind in shown if shown[kind] != expected[kind]]
    return problems


def slider_problems(page: Any) -> list[str]:
    """Press the right arrow on every slider: its value must move and its picture change."""
    problems = []
    for i, slider in enumerate(page.locator(".widget-slider").all()):
        handle = slider.locator(".noUi-handle")
        picture = slider.locator("xpath=..").locator(".widget-image:visible")
        before = picture.first.evaluate(FINGERPRINT_JS) if picture.count() else None
        value = handle.get_attribute("aria-valuenow")
        handle.focus()
        handle.press("ArrowRight")
        for _ in range(50):  # up to 5 s for the value and the linked picture to follow
            moved = handle.get_attribute("aria-valuenow") != value
            after = picture.first.evaluate(FINGERPRINT_JS) if picture.count() else None
            if moved and after != before:
                break
            page.wait_for_timeout(100)
        if not moved:
            problems.append(f"slider {i}: the right arrow key did not move it from {value}")
        elif before is None:
            problems.append(f"slider {i}: no picture beside it")
        elif after == before:
            problems.append(f"slider {i} moved from {value}, but its picture did not change")
    return problems


def figure_problems(visit: Visit) -> list[str]:
    """Every image loads and is not one flat colour; as many figures as the source has."""
    figures = [image for image in visit.images if not image["widget"]]
    problems = []
    if len(figures) != visit.source.figures:
        problems.append(f"{len(figures)} figures on the page, {visit.source.figures} in "
                        f"{visit.source.path.name}")
    for image in visit.images:
        if not image["width"]:
            problems.append(f"image did not load: {_short(image['src'])}")
        elif image["blank"]:
            problems.append(f"image is blank (one colour): {_short(image['src'])}")
    return problems


def colab_link(docname: str) -> str:
    """The Open-in-Colab address of a chapter: its notebook on the configured repo and branch."""
    repo = CONFIG["repository"]
    slug = repo["url"].removeprefix("https://github.com/").strip("/")
    path = "/".join(p for p in (repo.get("path_to_book", "").strip("/"), f"{docname}.ipynb") if p)
    return f"{COLAB}/github/{slug}/blob/{repo['branch']}/{path}"


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site_html(request) -> Path:
    """The built site: ``LESSON_SITE_HTML`` if set, else the session's build."""
    override = os.environ.get("LESSON_SITE_HTML")
    if override:
        html = Path(override)
        log = f"LESSON_SITE_HTML={override}"
    else:
        build = request.getfixturevalue("site_build")
        html, log = build.html, build.log
    if not (html / "index.html").is_file():
        pytest.fail(f"no built site at {html}:\n{log}", pytrace=False)
    return html


@pytest.fixture(scope="module")
def base_url(site_html) -> Iterator[str]:
    with serve(site_html) as url:
        yield url


@pytest.fixture(scope="module")
def browser(request) -> Iterator[Any]:
    """Debian's Chromium under Playwright (installed with apt-get if missing)."""
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the browser test needs Playwright: pip install -r requirements-ci.txt")
    try:
        chromium = ensure_chromium()
    except BrowserSetupError as exc:
        _unavailable(str(exc))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium))
        yield browser
        browser.close()
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter and SCREENSHOTS.is_dir():
        reporter.write_line(f"\nbrowser test: screenshots of every page in {SCREENSHOTS}")


@pytest.fixture(scope="module", params=PAGES, ids=[d.rsplit("/", 1)[-1] for d in PAGES])
def visit(request, browser, base_url) -> Visit:
    """Each page opened once; the tests below check different parts of what it showed."""
    return visit_page(browser, base_url, request.param, Network(base_url))


# ---------------------------------------------------------------------------------------------
# Every page, in the browser
# ---------------------------------------------------------------------------------------------

def test_title_and_headings_match_the_source(visit):
    assert visit.source.title, f"{visit.source.path.name} has no heading"
    title, _, site = visit.title.rpartition(" \u2014 ")
    assert (_straight(title), site) == (visit.source.title, CONFIG["title"])
    assert [_straight(heading) for heading in visit.headings] == visit.source.headings


def test_every_figure_loads_and_is_not_blank(visit):
    assert not figure_problems(visit), figure_problems(visit)


def test_no_code_cell_scrolls_sideways(visit):
    """At 1280 px the code fits the content column (book/ruff.toml keeps lines short)."""
    assert not visit.wide_code, "\n".join(visit.wide_code)


def test_open_in_colab_link_points_at_the_notebook(visit):
    expected = [colab_link(visit.source.docname)] if visit.source.is_notebook else []
    assert visit.colab_links == expected


def test_sidebar_lists_every_page_in_toc_order(visit):
    expected = [(docname, page_source(docname).title) for docname in PAGES]
    assert [(docname, _straight(text)) for docname, text in visit.sidebar] == expected


def test_widgets_render_from_the_stored_state(visit):
    assert not visit.widget_problems, visit.widget_problems


def test_page_loads_offline_without_errors(visit):
    assert not visit.errors, visit.errors


def test_equations_are_typeset_and_citations_link_to_the_references(visit):
    """Every equation the build emitted is typeset by MathJax, no raw TeX or dollar is left,
    and every citation in the page's source became links to the references page."""
    math = visit.math
    assert math["typeset"] >= math["math"], math
    assert math["raw"] == 0, math
    assert not math["cite_roles_left"], math
    roles = len(re.findall(r"\{cite:[pt]\}`", visit.source.path.read_text()))
    assert math["citations"] >= roles, (math, roles)


def test_exercises_render_with_their_solutions_folded(visit):
    """A chapter's exercises (3-5, tests/test_chapter_sources.py counts them in the source)
    all render, each solution starts folded, one opens on a click on its button, and the
    solutions the notebook runs show their code."""
    if not visit.source.is_notebook:
        assert visit.exercises == 0 and not visit.solutions
        return
    assert 3 <= visit.exercises <= 5, visit.exercises
    assert len(visit.solutions) == visit.exercises, visit.solutions
    assert all(s["folded"] for s in visit.solutions), visit.solutions
    assert visit.opened_on_click, "a click on a solution's button did not open it"
    assert sum(s["code"] > 0 for s in visit.solutions) >= 2, visit.solutions


# ---------------------------------------------------------------------------------------------
# The checks bite: the same code must fail on a broken page
# ---------------------------------------------------------------------------------------------

def _first_page(predicate) -> str:
    pages = [docname for docname in PAGES if predicate(page_source(docname))]
    if not pages:
        pytest.skip("no page in _toc.yml has what this control needs")
    return pages[0]


def test_widget_check_fails_without_the_widget_scripts(browser, base_url):
    docname = _first_page(lambda source: source.sliders)
    visit = visit_page(browser, base_url, docname, Network(base_url, serve_cdn=False),
                       screenshot=False, widget_timeout_ms=5_000)
    assert any("blank" in problem for problem in visit.widget_problems), visit.widget_problems


def test_figure_check_fails_when_a_figure_is_missing(browser, base_url, site_html):
    docname = _first_page(lambda source: source.figures)
    page = (site_html / f"{docname}.html").read_text()
    figure = re.search(r'<img [^>]*src="[./]*(_images/[^"]+)"', page).group(1)
    visit = visit_page(browser, base_url, docname, Network(base_url, missing=(figure,)),
                       screenshot=False, sliders=False)
    assert any("did not load" in p and figure.split("/")[-1][:20] in p
               for p in figure_problems(visit)), figure_problems(visit)


def test_folded_check_fails_when_solutions_are_not_folded(browser, base_url):
    """Without sphinx-togglebutton's script the solutions stay open, and the check says so."""
    docname = _first_page(lambda source: source.is_notebook)
    visit = visit_page(browser, base_url, docname,
                       Network(base_url, missing=("_static/togglebutton.js",)),
                       screenshot=False, sliders=False)
    assert visit.solutions and not any(s["folded"] for s in visit.solutions), visit.solutions


# ---------------------------------------------------------------------------------------------
# The built HTML, no browser needed
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("docname", PAGES, ids=[d.rsplit("/", 1)[-1] for d in PAGES])
def test_hidden_cells_and_nbval_markers_stay_off_the_page(docname, site_html):
    """Setup and check cells are removed by tags, so neither their code nor nbval's comment
    markers reach readers."""
    source = page_source(docname)
    page = (site_html / f"{docname}.html").read_text()
    page = re.sub(r"<(script|style)\b.*?</\1>", "", page, flags=re.DOTALL)  # widget state
    text = " ".join(html_lib.unescape(re.sub(r"<[^>]+>", "", page)).split())
    markers = [text[max(0, m.start() - 30):m.end() + 30]
               for m in re.finditer(r"\bnbval", text, re.IGNORECASE)]
    # a hidden cell's line leaks when the page shows it as a line of code (a short line can
    # also occur inside a longer shown line, which is no leak)
    code_lines = {" ".join(line.split()) for block in re.findall(r"<pre\b.*?</pre>", page,
                                                                 flags=re.DOTALL)
                  for line in html_lib.unescape(re.sub(r"<[^>]+>", "", block)).splitlines()}
    leaked = [line for line in source.hidden_source if " ".join(line.split()) in code_lines]
    assert not markers, f"nbval markers on the page (hide with cell tags instead): {markers[:3]}"
    assert not leaked, f"source of hidden cells on the page: {leaked[:5]}"


def test_index_redirects_to_the_first_page(site_html):
    assert f"url={PAGES[0]}.html" in (site_html / "index.html").read_text()

"""The built site in a real browser: Playwright driving Debian's headless Chromium.

Every page is loaded from a local http.server and looked at two widths (1600 px: two
columns; 700 px: one) and must show no console error, load nothing from another host, leave no formula
unrendered, and lay out its sections correctly. On literate pages each copy button must
copy its section's code and each permalink must land on its section. Full-page screenshots
of the MLM page (or the fixture paper page when there is none) go to test-artifacts/.

Chromium: `sh scripts/install_browser.sh` (apt-get install chromium). Without it these tests
are skipped locally, and fail when CI=true.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from labnotes.site.render import load_site
from sitebuild import ROOT, SITES, TRANSLATIONS, package_dir, results_dir, served_site, site_pages

# Every test that needs a built site runs in one test process (`--dist loadgroup`), so the site is
# built once, not once in each process.
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("built-site")]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDE, NARROW = 1600, 700
ARTIFACTS = ROOT / "test-artifacts"

# Text nodes outside code and rendered math that still look like TeX delimiters.
RAW_MATH_JS = r"""() => {
  const root = document.querySelector('.md-content');
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) => node.parentElement.closest('pre, code, .katex, script, style')
      ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
  const raw = [];
  const pattern = /\$|\\\(|\\\)|\\\[|\\\]/;  // any $ left in prose (the pages quote no prices)
  while (walker.nextNode()) {
    if (pattern.test(walker.currentNode.textContent)) raw.push(walker.currentNode.textContent.trim().slice(0, 80));
  }
  const unrendered = [...document.querySelectorAll('.arithmatex')].filter((el) => !el.querySelector('.katex'));
  return {raw, unrendered: unrendered.map((el) => el.textContent.slice(0, 80)),
          errors: [...document.querySelectorAll('.katex-error')].map((el) => el.textContent.slice(0, 80))};
}"""

LAYOUT_JS = r"""() => [...document.querySelectorAll('.ln-section:not(.ln-section--no-code):not(.ln-section--results)')].map((section) => {
  const box = (el) => { const r = el.getBoundingClientRect(); return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width}; };
  return {anchor: section.dataset.anchor || 'header', notes: box(section.querySelector('.ln-notes')),
          code: box(section.querySelector('.ln-code .highlight') || section.querySelector('.ln-code'))};
})"""


# Sections that show stored results: their notes (tables, figures) against the page's width.
RESULTS_JS = r"""() => [...document.querySelectorAll('.ln-section--results')].map((section) => ({
  anchor: section.dataset.anchor, notes: section.querySelector('.ln-notes').getBoundingClientRect().width,
  page: document.querySelector('.ln-page').getBoundingClientRect().width,
  tables: [...section.querySelectorAll('table')].map((t) => {
    const wrap = t.closest('.md-typeset__scrollwrap') || t.parentElement;
    return {table: t.scrollWidth, visible: wrap.clientWidth, scrolls: getComputedStyle(wrap).overflowX};
  })}))"""


def _chromium_or_skip() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: run `sh scripts/install_browser.sh`"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (browser tests must run in CI)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Visit:
    """One page at one width, with its console errors and off-site requests recorded."""

    def __init__(self, browser, base: str, path: str, width: int) -> None:
        self.base = base
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        self.errors: list[str] = []
        self.external: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda message: self.errors.append(f"console {message.type}: {message.text}")
                     if message.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("requestfailed", lambda request: self.errors.append(
            f"request failed: {request.url} ({request.failure})")
            if request.url.startswith(base) else None)
        response = self.page.goto(f"{base}/{path}", wait_until="load")
        assert response is not None and response.ok, f"{path}: HTTP {response and response.status}"

    def _route(self, route) -> None:
        url = route.request.url
        if url.startswith(self.base + "/") or url == self.base or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            self.external.append(url)
            route.abort()

    def close(self) -> None:
        self.context.close()


def _pages() -> list[tuple[str, str]]:
    """Every page, in every language; a translated API reference page is left out (the same
    docstrings as the English one, which is tested; the link check still covers it)."""
    return [(kind, page) for kind in SITES for page in site_pages(kind)
            if not any(page.startswith(f"{lang}/reference/") for lang in TRANSLATIONS.get(kind, ()))]


@pytest.mark.parametrize("kind,path", _pages(), ids=[f"{k}:{p}" for k, p in _pages()])
def test_page_in_browser(browser, kind, path):
    base = served_site(kind)  # builds the site first: a failing build is the error to see
    literate = _literate_page(kind, path)
    visit = Visit(browser, base, path, WIDE)
    try:
        page = visit.page
        page.wait_for_load_state("networkidle")
        for width in (WIDE, NARROW):  # one load; the second width by resizing the window
            page.set_viewport_size({"width": width, "height": 900})
            where = f"{path} at {width}px"

            math = page.evaluate(RAW_MATH_JS)
            assert not math["unrendered"], f"{where}: unrendered formulas {math['unrendered']}"
            assert not math["errors"], f"{where}: KaTeX errors {math['errors']}"
            assert not math["raw"], f"{where}: raw TeX left in the text {math['raw']}"

            for box in page.evaluate(LAYOUT_JS):
                notes, code = box["notes"], box["code"]
                if width == WIDE:  # side by side, tops aligned
                    assert notes["right"] <= code["left"] + 1, f"{where}: {box['anchor']} not side by side"
                    assert abs(notes["top"] - code["top"]) <= 2, f"{where}: {box['anchor']} tops not aligned"
                    assert code["width"] >= 500, f"{where}: {box['anchor']} code column too narrow"
                else:  # stacked: code below its notes, same column
                    assert code["top"] >= notes["bottom"] - 1, f"{where}: {box['anchor']} not stacked"
                    assert abs(notes["left"] - code["left"]) <= 2, f"{where}: {box['anchor']} columns differ"

            for box in page.evaluate(RESULTS_JS):  # evidence is not squeezed into a column
                if width == WIDE:
                    assert box["notes"] >= 0.6 * box["page"], f"{where}: {box['anchor']} squeezed"
                for table in box["tables"]:  # a wider table scrolls sideways, it is never cut
                    assert table["table"] <= table["visible"] + 1 or table["scrolls"] == "auto", \
                        f"{where}: {box['anchor']} has a table that is cut off"

            if literate is not None and path in _screenshot_pages():
                ARTIFACTS.mkdir(exist_ok=True)
                name = path.removesuffix(".html").replace("/", "-")  # mlm-1600.png, zh-mlm-1600.png
                page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)

        if literate is not None:  # these scroll the page: after the screenshots, at full width
            page.set_viewport_size({"width": WIDE, "height": 900})
            _check_copy_buttons(page, literate, f"{path} at {WIDE}px")
            _check_permalinks(page, literate, f"{path} at {WIDE}px")

        page.wait_for_timeout(50)  # let late console messages arrive
        assert not visit.errors, f"{path}: " + "\n".join(visit.errors)
        assert not visit.external, f"{path}: requests to other hosts: {visit.external}"
    finally:
        visit.close()


def _literate_page(kind: str, path: str):
    """The LiteratePage behind `path` (in any language: the same sections, anchors and code), or
    None for hand-written and reference pages."""
    lang, _, rest = path.partition("/")
    if rest and lang in TRANSLATIONS.get(kind, ()):
        path = rest
    if "/" in path:
        return None
    name = path.removesuffix(".html")
    site = load_site(package_dir(kind), results_dir(kind), root=ROOT)
    return site.page(name) if name in site.names else None


def _screenshot_page() -> str:
    return "mlm.html" if "mlm.html" in site_pages("real") else "toypaper.html"


def _screenshot_pages() -> list[str]:
    """The MLM page in every language (screenshots at both widths go to test-artifacts/)."""
    page = _screenshot_page()
    return [page] + [f"{lang}/{page}" for lang in TRANSLATIONS.get("real", ()) if page == "mlm.html"]


def _check_copy_buttons(page, literate, where: str) -> None:
    expected = [section.code for section in literate.sections if section.code_cells]
    buttons = page.locator(".ln-section:not(.ln-header) .ln-code button.md-code__button[data-md-type=copy]")
    assert buttons.count() == len(expected), f"{where}: {buttons.count()} copy buttons for {len(expected)} sections"
    for index, code in enumerate(expected):
        page.evaluate("navigator.clipboard.writeText('')")
        buttons.nth(index).scroll_into_view_if_needed()
        buttons.nth(index).click()
        page.wait_for_function("async () => (await navigator.clipboard.readText()).length > 0", timeout=15000)
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied == code.rstrip(), f"{where}: copy button {index} copied {copied[:80]!r}..."


def _check_permalinks(page, literate, where: str) -> None:
    for section in literate.sections:
        link = page.locator(f'.ln-section[data-anchor="{section.anchor}"] a.headerlink').first
        href = urlsplit(link.get_attribute("href"))  # instant navigation makes links absolute
        assert href.fragment == section.anchor and href.path in ("", urlsplit(page.url).path), \
            f"{where}: permalink of {section.anchor} is {link.get_attribute('href')}"
        inside = page.evaluate(
            """(anchor) => { const el = document.getElementById(anchor);
                 return !!el && el.closest('.ln-section')?.dataset.anchor === anchor; }""", section.anchor)
        assert inside, f"{where}: #{section.anchor} is not in its section"
    # following a permalink scrolls its section to the top of the window (below the header),
    # or as far as the page goes when the section is near the end. The hash is cleared first:
    # navigation.tracking rewrites it as the page scrolls, and setting the hash the address
    # already holds scrolls nowhere (a flaky timeout near the end of a page).
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    for section in literate.sections[1:]:
        for attempt in range(2):  # a second try when a slow machine drops the first hash change
            page.evaluate("""(anchor) => { history.replaceState(null, '', location.pathname + location.search);
                                          window.scrollTo(0, 0); location.hash = anchor; }""", section.anchor)
            try:
                page.wait_for_function(
                    """(anchor) => { const top = document.getElementById(anchor).getBoundingClientRect().top;
                         const atEnd = Math.ceil(scrollY + innerHeight) >= document.documentElement.scrollHeight - 2;
                         return (top >= -2 && top < 200) || (atEnd && top >= 0 && top < innerHeight); }""",
                    arg=section.anchor, timeout=15000)
                break
            except PlaywrightTimeoutError:
                if attempt:
                    raise


def test_copy_and_layout_checks_cover_a_literate_page():
    """The browser test above must see at least one literate page with code (the fixture's)."""
    assert "toypaper.html" in site_pages("fixture")
    assert re.fullmatch(r"\w+\.html", _screenshot_page())


def _search(page, query: str) -> list[str]:
    page.locator("input.md-search__input").click()
    page.keyboard.type(query, delay=20)  # Material searches on key events
    page.wait_for_selector(".md-search-result__item", timeout=10000)
    return page.locator(".md-search-result__item").all_inner_texts()


def test_search_finds_a_literate_page(browser):
    visit = Visit(browser, served_site("fixture"), "index.html", WIDE)
    try:
        results = _search(visit.page, "scaled dot products")
        assert any("Scaled dot products" in text for text in results), results
        assert not visit.errors and not visit.external
    finally:
        visit.close()


def test_site_works_opened_as_plain_files(browser):
    """file://: styles, math fonts, copy buttons and search still work (no server at all)."""
    from sitebuild import built_site

    _chromium_or_skip()
    site = built_site("fixture")
    context = browser.new_context(viewport={"width": WIDE, "height": 900})
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto((site / "toypaper.html").as_uri(), wait_until="load")
        boxes = page.evaluate(LAYOUT_JS)
        assert boxes and all(b["notes"]["right"] <= b["code"]["left"] + 1 for b in boxes)  # CSS applied
        assert page.evaluate("document.fonts.ready.then(() => document.fonts.check('16px KaTeX_Main'))")
        assert page.locator(".ln-code button.md-code__button[data-md-type=copy]").count() >= 3
        results = _search(page, "hiding tokens")
        assert any("Hiding tokens" in text for text in results), results
        assert not errors, errors
    finally:
        context.close()


# --------------------------------------------------------------------------- the Chinese edition


def _chinese_edition_or_skip() -> None:
    if "zh/mlm.html" not in site_pages("real"):
        pytest.skip("the real site has no Chinese MLM page")


def test_language_switch_lands_on_the_same_page_and_section(browser):
    _chinese_edition_or_skip()
    section = next(section for section in _literate_page("real", "mlm.html").sections[2:] if section.heading)
    visit = Visit(browser, served_site("real"), f"mlm.html#{section.anchor}", WIDE)
    try:
        page = visit.page
        page.wait_for_load_state("networkidle")
        assert page.evaluate("document.documentElement.lang") == "en"
        # navigation.tracking keeps the address's #anchor on the section in view: take it as it is
        anchor = page.evaluate("location.hash").lstrip("#")
        assert anchor, "the page lost its #anchor"
        page.locator(".md-header__option .md-select").hover()
        page.locator('a.ln-language[hreflang="zh"]').click()
        page.wait_for_url(re.compile(r".*/zh/mlm\.html#" + re.escape(anchor) + "$"), timeout=30000)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("document.documentElement.lang") == "zh"
        heading = page.locator(f"#{anchor}").inner_text()
        assert re.search(r"[\u4e00-\u9fff]", heading), f"the section's heading is not in Chinese: {heading!r}"
        anchor = page.evaluate("location.hash").lstrip("#")
        page.locator(".md-header__option .md-select").hover()  # and back, to the same section
        page.locator('a.ln-language[hreflang="en"]').click()
        page.wait_for_url(re.compile(r".*/mlm\.html#" + re.escape(anchor) + "$"), timeout=30000)
        page.wait_for_load_state("load")
        assert "/zh/" not in page.url and page.evaluate("document.documentElement.lang") == "en"
        assert not visit.errors and not visit.external
    finally:
        visit.close()


def test_chinese_pages_are_chinese_with_chinese_interface(browser):
    _chinese_edition_or_skip()
    visit = Visit(browser, served_site("real"), "zh/mlm.html", WIDE)
    try:
        page = visit.page
        assert page.evaluate("document.documentElement.lang") == "zh"
        title = page.locator("h1").first.inner_text()
        assert re.search(r"[\u4e00-\u9fff]", title), title
        # Material's own words come in Chinese on Chinese pages (theme.language: zh)
        placeholder = page.locator("input.md-search__input").get_attribute("placeholder")
        assert re.search(r"[\u4e00-\u9fff]", placeholder or ""), placeholder
        assert page.evaluate("document.fonts.check('16px \"Noto Sans CJK SC\"', '掩码')") or \
            page.evaluate("document.fonts.check('16px sans-serif', '掩码')")
        assert not visit.errors and not visit.external
    finally:
        visit.close()


def test_search_finds_a_chinese_word(browser):
    _chinese_edition_or_skip()
    visit = Visit(browser, served_site("real"), "zh/index.html", WIDE)
    try:
        results = _search(visit.page, "掩码")
        # jieba cuts the indexed text into words with zero-width spaces, which the results show
        assert any("掩码语言模型" in text.replace("\u200b", "") for text in results), results
        assert not visit.errors and not visit.external
    finally:
        visit.close()

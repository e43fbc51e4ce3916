"""`mkdocs build --strict` of the site, and checks over the built files (no browser needed).

The build runs once per test process (tests/sitebuild.py) and is shared with test_browser.py.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from labnotes.site.render import discover_pages
from sitebuild import FIXTURES, ROOT, SITES, TRANSLATIONS, built_site, package_dir, run_mkdocs_build, site_pages

KINDS = list(SITES)
# With the browser tests in one test process (`--dist loadgroup`): the site is built once.
pytestmark = pytest.mark.xdist_group("built-site")


class _Links(HTMLParser):
    """Collects ids, and the URLs of links and loaded resources, of one HTML file."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[tuple[str, str]] = []      # (tag.attribute, url) of <a href>
        self.resources: list[tuple[str, str]] = []  # what the browser loads by itself

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if attrs.get(key):
                self.ids.add(attrs[key])
        if tag == "a" and attrs.get("href") is not None:
            self.links.append(("a.href", attrs["href"]))
        if tag == "link" and attrs.get("href"):
            (self.resources if attrs.get("rel") not in ("canonical", "alternate", "prev", "next")
             else self.links).append(("link.href", attrs["href"]))
        if tag in ("script", "img", "iframe", "source", "video", "audio") and attrs.get("src"):
            self.resources.append((f"{tag}.src", attrs["src"]))


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def _html_files(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


@pytest.mark.parametrize("kind", KINDS)
def test_strict_build_passes(kind):
    site = built_site(kind)  # raises with mkdocs' output when the strict build fails
    assert (site / "index.html").is_file()


@pytest.mark.parametrize("kind", KINDS)
def test_every_page_is_built(kind):
    site = built_site(kind)
    for page in site_pages(kind):
        assert (site / page).is_file(), page
    for name in discover_pages(package_dir(kind)):
        assert (site / "notebooks" / f"{name}.ipynb").is_file()
        for lang in TRANSLATIONS.get(kind, ()):
            assert (site / lang / "notebooks" / f"{name}.ipynb").is_file()


@pytest.mark.parametrize("kind", KINDS)
def test_no_broken_internal_links_or_anchors(kind):
    site = built_site(kind)
    parsed = {path: _parse(path) for path in _html_files(site)}
    broken = []
    for path, page in parsed.items():
        for source, url in page.links + page.resources:
            parts = urlsplit(url)
            if parts.scheme or parts.netloc or url.startswith(("mailto:", "javascript:")):
                continue
            if parts.path:
                base = site if parts.path.startswith("/") else path.parent
                target = (base / unquote(parts.path).lstrip("/")).resolve()
                if target.is_dir():
                    target = target / "index.html"
            else:
                target = path
            where = f"{path.relative_to(site)}: {source}={url!r}"
            if not target.is_file():
                broken.append(f"{where}: {target} does not exist")
            elif parts.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{where}: no element with id {parts.fragment!r}")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("kind", KINDS)
def test_nothing_is_loaded_from_another_host(kind):
    """No CDN, no Google fonts: every stylesheet, script, image and font is in the site."""
    site = built_site(kind)
    external = []
    for path in _html_files(site):
        for source, url in _parse(path).resources:
            if urlsplit(url).scheme or url.startswith("//"):
                external.append(f"{path.relative_to(site)}: {source}={url}")
        if "fonts.googleapis.com" in path.read_text(encoding="utf-8"):
            external.append(f"{path.relative_to(site)}: mentions fonts.googleapis.com")
    for css in site.rglob("*.css"):
        for url in re.findall(r"url\(\s*['\"]?([^'\")]+)", css.read_text(encoding="utf-8")):
            if urlsplit(url).scheme in ("http", "https") or url.startswith("//"):
                external.append(f"{css.relative_to(site)}: url({url})")
            elif not urlsplit(url).scheme:
                if not (css.parent / urlsplit(url).path).is_file():
                    external.append(f"{css.relative_to(site)}: url({url}) is missing from the site")
    assert not external, "\n".join(external)


def test_theme_loads_no_google_fonts_and_has_the_features():
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    theme = config["theme"]
    assert theme["font"] == "false"
    for feature in ("navigation.instant", "search.suggest", "content.code.copy"):
        assert feature in theme["features"]
    assert len(theme["palette"]) >= 2  # a light/dark toggle
    assert config["use_directory_urls"] == "false"


@pytest.mark.parametrize("kind", KINDS)
def test_math_is_rendered_at_build_time(kind):
    site = built_site(kind)
    assert (site / "assets" / "katex" / "katex.min.css").is_file()
    assert any((site / "assets" / "katex" / "fonts").glob("*.woff2"))
    for path in _html_files(site):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r'<(span|div) class="arithmatex">(.{0,40})', text):
            assert match.group(2).startswith('<span class="katex'), f"{path}: unrendered {match.group(0)}"


@pytest.mark.parametrize("kind", KINDS)
def test_search_works_from_files(kind):
    site = built_site(kind)
    index = (site / "search" / "search_index.js").read_text(encoding="utf-8")
    assert index.startswith("var __index = {")
    assert (site / "assets" / "javascripts" / "iframe-worker.js").is_file()


def test_fixture_site_shows_stored_results_and_links_names():
    site = built_site("fixture")
    paper = (site / "toypaper.html").read_text(encoding="utf-8")
    assert '<img alt="toypaper: loss" src="results/toypaper/loss.svg"' in paper
    assert "labnotes experiment toypaper --steps 20 --seed 0" in re.sub(r"<[^>]+>", "", paper)
    assert '<a class="ln-xref" href="toyshared.html#the-encoder"><span class="n">Encoder</span></a>' in paper
    results = (site / "results.html").read_text(encoding="utf-8")
    assert "toy encoder, no masking" in results and 'href="toypaper.html#results"' in results
    assert (site / "results" / "toypaper" / "loss.svg").is_file()
    home = (site / "index.html").read_text(encoding="utf-8")
    assert 'href="toyshared.html"' in home and 'href="toypaper.html"' in home


def test_real_site_nav_lists_every_page_in_order():
    site = built_site("real")
    home = (site / "index.html").read_text(encoding="utf-8")
    nav = home[home.index('md-nav--primary'):]
    positions = [nav.find(f'href="{name}.html"') for name in discover_pages(ROOT / "labnotes")]
    assert -1 not in positions and positions == sorted(positions)


# --------------------------------------------------------------------------- failing builds


def _failing_build(tmp_path: Path, package: Path, results: Path) -> str:
    result = run_mkdocs_build(tmp_path / "out", {"LABNOTES_SITE_PACKAGE": str(package),
                                                 "LABNOTES_SITE_RESULTS": str(results)})
    assert result.returncode != 0
    return result.stdout + result.stderr


def test_build_fails_on_a_malformed_page_naming_file_and_line(tmp_path):
    package = tmp_path / "brokenpkg"
    package.mkdir()
    (package / "__init__.py").write_text('PAGES = ["broken"]\n')
    (package / "broken.py").write_text('"""A page.\n\nSummary.\n"""\n\n# %%\nx = 1\n')
    output = _failing_build(tmp_path, package, FIXTURES / "results")
    assert f"{package / 'broken.py'}:7: code cell before any notes" in output


def test_build_fails_when_stored_results_are_missing(tmp_path):
    output = _failing_build(tmp_path, FIXTURES / "toypkg", tmp_path / "no-results")
    assert f"{FIXTURES / 'toypkg' / 'toypaper.py'}:" in output
    assert "results 'toypaper' are missing" in output and "labnotes experiment toypaper" in output

"""mkdocs hook (mkdocs.yml: `hooks: [labnotes/site/hook.py]`): literate files -> site pages.

    on_config     read every page in labnotes.PAGES (a malformed file stops the build here,
                  with `path:line: what is wrong`); fill the nav placeholders
                  `labnotes-shared`, `labnotes-papers`, `labnotes-experiments`, `labnotes-reference`
    on_files      add, in memory, <page>.md, reference/<page>.md, notebooks/<page>.ipynb and
                  KaTeX's stylesheet and fonts from node_modules (nothing is written to docs/)
    on_page_markdown   expand `<!-- results: NAME -->`, `<!-- results-index -->` and
                  `<!-- pages-index -->` on hand-written pages (literate pages: by the renderer)
    on_post_page  render math with KaTeX (server-side)
    on_post_build write search/search_index.js, so search also works from files (file://)

A translated build (mkdocs.zh.yml: `extra.labnotes_language: zh`, site_dir site/zh) renders the
same pages from the same sources with the notes of translations/zh/ (labnotes/site/i18n.py): a
missing or stale translation stops the build, naming the page and block. Both builds expand
`<!-- glossary -->` and `<!-- mistranslations -->` from translations/zh/glossary.toml.

Two environment variables point the hook elsewhere, for the renderer's own tests:
LABNOTES_SITE_PACKAGE (default: labnotes) and LABNOTES_SITE_RESULTS (default: docs/results).
A site built over another package leaves out the hand-written pages that are about labnotes'
own papers (REAL_SITE_ONLY: they link the paper pages by name), with their nav entries and
the lines of other hand-written pages that link them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files, InclusionLevel

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # mkdocs loads this file by path; make `labnotes` importable
    sys.path.insert(0, str(ROOT))

from labnotes.site import i18n  # noqa: E402
from labnotes.site.katex import MathError, MathRenderer  # noqa: E402
from labnotes.site.literate import RenderError  # noqa: E402
from labnotes.site.notebooks import notebook_text, repository_url  # noqa: E402
from labnotes.site.render import (  # noqa: E402
    PAGES_INDEX_MARKER, REAL_SITE_ONLY, RESULTS_INDEX_MARKER, Site, expand_results, load_site,
    page_kind, render_page, render_pages_index, render_reference, render_results_index)

NAV_PLACEHOLDERS = ("labnotes-shared", "labnotes-papers", "labnotes-experiments", "labnotes-reference")
IFRAME_WORKER = "assets/javascripts/iframe-worker.js"

_site: Site | None = None
_math: MathRenderer | None = None
_generated: set[str] = set()
_language: i18n.Localization | None = None


def _root(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def _other_package() -> bool:
    """True when the site is built over another package than labnotes (the renderer's tests)."""
    return os.environ.get("LABNOTES_SITE_PACKAGE", "labnotes") != "labnotes"


def _lang(config) -> str:
    return (config.extra or {}).get("labnotes_language", "en")


def on_config(config):
    global _site, _math, _language
    root = _root(config)
    package_dir = root / os.environ.get("LABNOTES_SITE_PACKAGE", "labnotes")
    results_dir = root / os.environ.get("LABNOTES_SITE_RESULTS", Path(config.docs_dir, "results"))
    _language = None
    try:
        _site = load_site(package_dir, results_dir, root=root)
        _math = MathRenderer(root)
        if _lang(config) != "en":
            _language = i18n.Localization.load(root, _lang(config), package_dir, Path(config.docs_dir),
                                               results_dir)
            _site.language = _language
    except (RenderError, MathError, ValueError) as error:
        raise PluginError(str(error)) from None

    groups = {kind: [{_site.title(page): f"{page.name}.md"} for page in _site.pages if page_kind(page) == kind]
              for kind in ("shared", "paper", "experiment")}
    reference = [{f"{_site.module_prefix}.{page.name}": f"reference/{page.name}.md"} for page in _site.pages]
    fill = dict(zip(NAV_PLACEHOLDERS, (groups["shared"], groups["paper"], groups["experiment"], reference)))
    nav = []
    for item in config.nav or []:
        if isinstance(item, dict) and len(item) == 1:
            (title, value), = item.items()
            if isinstance(value, str) and value in fill:
                if fill[value]:
                    nav.append({title: fill[value]})
                continue
            if _other_package() and value in REAL_SITE_ONLY:
                continue
        nav.append(item)
    config.nav = nav
    if _other_package():  # the renderer's fixture site has no other language to switch to
        config.extra["alternate"] = []

    # Site search from files (file://): Material runs its search worker through this shim.
    polyfills = config.extra.setdefault("polyfills", [])
    if IFRAME_WORKER not in polyfills:
        polyfills.append(IFRAME_WORKER)
    return config


def on_files(files: Files, config) -> Files:
    assert _site is not None
    root = _root(config)
    _generated.clear()

    def add_generated(uri: str, content: str) -> None:
        if files.get_file_from_path(uri) is not None:
            raise PluginError(f"{Path(config.docs_dir, uri)} clashes with the page generated from "
                              f"{_site.package_dir.name}/{Path(uri).stem}.py: rename or delete it")
        files.append(File.generated(config, uri, content=content))
        _generated.add(uri)

    if _other_package():
        for uri in REAL_SITE_ONLY:
            if (found := files.get_file_from_path(uri)) is not None:
                files.remove(found)

    repo_url = repository_url(root)
    try:
        for page in _site.pages:
            add_generated(f"{page.name}.md", render_page(_site, page))
            add_generated(f"reference/{page.name}.md", render_reference(_site, page))
            add_generated(f"notebooks/{page.name}.ipynb",
                          notebook_text(page.path, package=_site.package, repo_url=repo_url,
                                        page=page.name, language=_language))
    except RenderError as error:
        raise PluginError(str(error)) from None

    # KaTeX's stylesheet and fonts, and the search shim, straight from node_modules.
    katex_dist = root / "node_modules" / "katex" / "dist"
    for path in sorted([katex_dist / "katex.min.css", *(katex_dist / "fonts").iterdir()]):
        rel = path.relative_to(katex_dist).as_posix()
        files.append(_static(path, f"assets/katex/{rel}", config))
    files.append(_static(root / "node_modules" / "iframe-worker" / "shim" / "index.js", IFRAME_WORKER, config))

    # Stored results kept outside docs/ (only for the renderer's tests) are copied in too.
    docs_dir = Path(config.docs_dir).resolve()
    if not _site.results_dir.resolve().is_relative_to(docs_dir) and _site.results_dir.is_dir():
        for path in sorted(_site.results_dir.rglob("*")):
            if path.is_file() and path.suffix != ".md":
                files.append(_static(path, f"results/{path.relative_to(_site.results_dir).as_posix()}", config))
    return files


def _static(path: Path, dest_uri: str, config) -> File:
    if not path.is_file():
        raise PluginError(f"{path} is missing: run `npm ci` in {path.parents[-2]} (or `make build`)")
    return File.generated(config, dest_uri, abs_src_path=str(path), inclusion=InclusionLevel.NOT_IN_NAV)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri in _generated:
        return markdown  # literate pages had their markers expanded by the renderer
    source = Path(config.docs_dir, page.file.src_uri)
    if _other_package():  # drop the lines that link a page this site leaves out
        markdown = "\n".join(line for line in markdown.split("\n")
                              if not any(f"({uri})" in line for uri in REAL_SITE_ONLY))
    try:
        if _language is not None:  # the page's translation, headings keeping the English anchors
            title, markdown = _language.markdown_page(i18n.markdown_source(source, page.file.src_uri))
            page.meta["title"] = title
        markdown = i18n.expand_glossary(markdown, _root(config), _site.lang)
        markdown = PAGES_INDEX_MARKER.sub(lambda _: render_pages_index(_site), markdown)
        if RESULTS_INDEX_MARKER.search(markdown):
            markdown = RESULTS_INDEX_MARKER.sub(lambda _: render_results_index(_site, source=source), markdown)
        link_prefix = os.path.relpath("results", os.path.dirname(page.file.src_uri) or ".").replace(os.sep, "/")
        return expand_results(markdown, _site.results_dir, source=source, link_prefix=link_prefix,
                              language=_language)
    except (RenderError, ValueError) as error:
        raise PluginError(str(error)) from None


def on_post_page(output: str, page, config) -> str:
    try:
        return _math.render_html(output, where=page.file.src_uri)
    except MathError as error:
        raise PluginError(str(error)) from None


@event_priority(-100)  # after the search plugin wrote search_index.json
def on_post_build(config) -> None:
    index = Path(config.site_dir, "search", "search_index.json")
    if index.is_file():
        Path(index.parent, "search_index.js").write_text(
            "var __index = " + index.read_text(encoding="utf-8"), encoding="utf-8")

"""Turn the literate files of a package into Markdown pages for mkdocs.

    load_site(package_dir, results_dir)  -> Site: every page read and checked, plus the
                                            symbol index used to link identifiers
    render_page(site, page)              -> the page's Markdown (front matter + sections)
    render_reference(site, page)         -> its API reference page (mkdocstrings)
    expand_results(markdown, ...)        -> `<!-- results: NAME -->` replaced by stored results

A page is a list of sections. Each section becomes

    <section class="ln-section">
      <div class="ln-notes"> notes Markdown (math, heading with a permalink) </div>
      <div class="ln-code">  the section's code, highlighted, names linked </div>
    </section>

and docs/stylesheets/labnotes.css lays the two divs side by side on wide screens. Code is
highlighted here with Pygments (not by Markdown) so that names defined on a page, such as
`Encoder`, can be links to the section that defines them.
"""

from __future__ import annotations

import ast
import html
import json
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pygments.lexers.python import PythonLexer
from pygments.token import STANDARD_TYPES, Name

from .literate import LiteratePage, RenderError, read_page

# Never pages: the command line, the package's plumbing, and this renderer.
NOT_PAGES = {"__init__", "__main__", "cli", "registry", "site"}
EXPERIMENTS = "experiments"  # pages named `experiments.NAME` live in labnotes/experiments/NAME.py
# Hand-written pages about labnotes' own papers (they link the paper pages by name): a site
# built over another package (the renderer's tests) leaves them out.
REAL_SITE_ONLY = ("map.md", "glossary.md")
RESULTS_MARKER = re.compile(r"^[ \t]*<!--\s*results:\s*(?P<name>[A-Za-z0-9_.-]+)\s*-->[ \t]*$", re.M)
RESULTS_INDEX_MARKER = re.compile(r"^[ \t]*<!--\s*results-index\s*-->[ \t]*$", re.M)
PAGES_INDEX_MARKER = re.compile(r"^[ \t]*<!--\s*pages-index\s*-->[ \t]*$", re.M)
FIGURE_SUFFIXES = (".svg", ".png")
CONSTANT = re.compile(r"[A-Z][A-Z0-9_]*")

# The words the renderer itself writes on a page, per language (the notes come from the page or
# its translation, translations/<lang>/).
STRINGS = {
    "en": {
        "notebook": "Notebook", "reference": "API reference", "source": "Source", "paper": "Paper",
        "made_by": "Made by this command ([raw numbers]({href})):",
        "shared": "Shared pieces", "papers": "Papers", "experiments": "Experiments",
        "from": "From [{title}]({href})", "no_results": "No page shows stored results yet.",
        "no_pages": "No pages yet.",
        "reference_intro": "The functions and classes of [{title}](../{page}.md), generated from the "
                           "module's docstrings and signatures.",
        "permalink": "Permanent link",
    },
    "zh": {
        "notebook": "笔记本", "reference": "API 参考", "source": "源文件", "paper": "论文",
        "made_by": "由这条命令生成（[原始数据]({href})）：",
        "shared": "共享组件", "papers": "论文", "experiments": "实验",
        "from": "出自[{title}]({href})", "no_results": "还没有页面展示保存的结果。",
        "no_pages": "还没有页面。",
        "reference_intro": "[{title}](../{page}.md) 的函数和类，由模块的文档字符串和签名生成"
                           "（文档字符串是代码的一部分，保留英文）。",
        "permalink": "固定链接",
    },
}


@dataclass
class Site:
    package: str                                  # import name, e.g. "labnotes"
    module_prefix: str                            # dotted path for mkdocstrings, e.g. "labnotes"
    package_dir: Path
    results_dir: Path
    pages: list[LiteratePage]
    symbols: dict[str, dict[str, str | None]] = field(default_factory=dict)  # page -> name -> anchor
    language: Any = None                          # i18n.Localization for a translated site; None: English

    @property
    def lang(self) -> str:
        return self.language.lang if self.language is not None else "en"

    def text(self, key: str, **values: str) -> str:
        """A string the renderer writes, in the site's language."""
        return STRINGS[self.lang][key].format(**values)

    def title(self, page: LiteratePage) -> str:
        """The page's title in the site's language (the nav, indexes and links use it)."""
        return self.language.title(page) if self.language is not None else page.front.title

    def summary(self, page: LiteratePage) -> str:
        return self.language.summary(page) if self.language is not None else page.front.summary

    def page(self, name: str) -> LiteratePage:
        return next(page for page in self.pages if page.name == name)

    @property
    def names(self) -> list[str]:
        return [page.name for page in self.pages]


# --------------------------------------------------------------------------- loading


def discover_pages(package_dir: Path) -> list[str]:
    """The page list: `PAGES` in the package's __init__.py, read without importing it.

    Without a PAGES list (early in the project), every module that has a docstring and a
    notes cell is a page, in alphabetical order.
    """
    init = package_dir / "__init__.py"
    if init.exists():
        tree = ast.parse(init.read_text(encoding="utf-8"), filename=str(init))
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) else []
            if any(isinstance(t, ast.Name) and t.id == "PAGES" for t in targets):
                try:
                    names = ast.literal_eval(node.value)
                except ValueError:
                    raise RenderError(init, node.lineno, "PAGES must be a literal list of "
                                                         "module names") from None
                for name in names:
                    if name in NOT_PAGES or not page_path(package_dir, name).exists():
                        raise RenderError(init, node.lineno, f"PAGES names {name!r}, but "
                                                             f"{page_path(package_dir, name)} is not a page")
                return list(names)
    names = []
    for path in sorted(package_dir.glob("*.py")):
        if path.stem in NOT_PAGES:
            continue
        text = path.read_text(encoding="utf-8")
        try:
            has_docstring = ast.get_docstring(ast.parse(text)) is not None
        except SyntaxError:
            has_docstring = True  # let read_page report it with its line
        if has_docstring and re.search(r"^# %% \[(markdown|md)\]", text, re.M):
            names.append(path.stem)
    return names


def page_path(package_dir: Path, name: str) -> Path:
    """The file of a page: `mlm` -> labnotes/mlm.py, `experiments.mlm` -> labnotes/experiments/mlm.py."""
    return Path(package_dir, *name.split(".")).with_suffix(".py")


def is_experiment(page: LiteratePage) -> bool:
    """An experiment page (labnotes/experiments/...): how a paper's claim is measured."""
    return page.name.startswith(EXPERIMENTS + ".")


def page_kind(page: LiteratePage) -> str:
    """"experiment", "paper" or "shared": which group of the navigation a page belongs to."""
    return "experiment" if is_experiment(page) else "paper" if page.front.is_paper else "shared"


def load_site(package_dir: Path | str, results_dir: Path | str, *, root: Path | str | None = None,
              names: list[str] | None = None) -> Site:
    """Read every page of the package (in PAGES order) and index its top-level names."""
    package_dir, results_dir = Path(package_dir), Path(results_dir)
    root = Path(root) if root else package_dir.parent
    try:
        module_prefix = ".".join(package_dir.resolve().relative_to(root.resolve()).parts)
    except ValueError:
        module_prefix = package_dir.name
    names = discover_pages(package_dir) if names is None else names
    pages = [read_page(page_path(package_dir, name), name) for name in names]
    site = Site(package_dir.name, module_prefix, package_dir, results_dir, pages)
    for page in pages:
        site.symbols[page.name] = _top_level_names(page)
    return site


def _top_level_names(page: LiteratePage) -> dict[str, str | None]:
    """Top-level functions, classes and constants -> anchor of the section defining them."""
    names: dict[str, str | None] = {}
    for name in _defined_names(page.preamble):
        names[name] = None  # defined beside the title: link to the page itself
    for section in page.sections:
        for cell in section.code_cells:
            for name in _defined_names(cell.source):
                names[name] = section.anchor
    return names


def _defined_names(code: str) -> list[str]:
    """Top-level functions, classes and CONSTANTS (upper-case names) defined in the code."""
    names = []
    for node in ast.parse(code).body if code.strip() else []:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:  # NAME = ... and NAME_A, NAME_B = ...
            elements = target.elts if isinstance(target, ast.Tuple) else [target]
            names += [t.id for t in elements if isinstance(t, ast.Name) and CONSTANT.fullmatch(t.id)]
    return names


# --------------------------------------------------------------------------- code


@dataclass
class _Imports:
    """What a page imports from other pages of the same package."""
    names: dict[str, tuple[str, str]]  # local name -> (page, name on that page)
    modules: dict[str, str]            # local alias -> page


def _imports(site: Site, page: LiteratePage) -> _Imports:
    found = _Imports({}, {})
    tree = ast.parse(page.path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0 and module == site.package or node.level >= 1 and not module:
                for alias in node.names:  # from labnotes import transformer
                    if alias.name in site.symbols:
                        found.modules[alias.asname or alias.name] = alias.name
                continue
            if node.level == 0 and module.startswith(site.package + "."):
                module = module[len(site.package) + 1:]
            elif node.level == 0:
                continue
            if module in site.symbols:
                for alias in node.names:  # from labnotes.transformer import Encoder as E
                    found.names[alias.asname or alias.name] = (module, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:  # import labnotes.transformer as transformer
                prefix = site.package + "."
                if alias.asname and alias.name.startswith(prefix) and alias.name[len(prefix):] in site.symbols:
                    found.modules[alias.asname] = alias.name[len(prefix):]
    return found


def _css_class(token_type) -> str:
    while token_type not in STANDARD_TYPES:
        token_type = token_type.parent
    return STANDARD_TYPES[token_type]


def highlight(site: Site | None, page: LiteratePage | None, code: str) -> str:
    """Python code as Pygments-highlighted HTML; names from the site's pages become links.

    The markup matches what pymdownx.highlight produces, so mkdocs-material styles it and
    gives it a copy button (which copies the text, without the links).
    """
    imports = _imports(site, page) if site and page else _Imports({}, {})
    own = site.symbols.get(page.name, {}) if site and page else {}
    out: list[str] = []
    previous: list[str] = []            # the last two tokens that are not blank
    statement_is_from = False           # the current line started with "from"
    dotted = ""                         # "labnotes.transformer", read one namespace token at a time
    importing_from: str | None = None   # inside "from labnotes.<page> import ...": that page
    open_parens = 0
    for token_type, value in PythonLexer(ensurenl=False).get_tokens(code.rstrip()):
        href = None
        if site and token_type in Name.Namespace:              # from labnotes.transformer import
            dotted += value
            target = dotted.removeprefix(site.package + ".").lstrip(".")
            if target in site.symbols and (dotted.startswith(site.package + ".") or dotted.startswith(".")):
                href = _href(page, target, None)
                importing_from = target if statement_is_from else None
        elif site and token_type is Name:
            after_dot = previous[-1:] == ["."]
            if after_dot and len(previous) == 2 and previous[0] in imports.modules:
                target = imports.modules[previous[0]]           # transformer.Encoder
                if value in site.symbols[target]:
                    href = _href(page, target, site.symbols[target][value])
            elif after_dot:
                pass                                            # some_object.attribute
            elif importing_from and value in site.symbols[importing_from]:
                href = _href(page, importing_from, site.symbols[importing_from][value])
            elif value in imports.names:                        # Encoder, imported above
                target, name = imports.names[value]
                if name in site.symbols[target]:
                    href = _href(page, target, site.symbols[target][name])
            elif value in imports.modules:                      # transformer (the module)
                href = _href(page, imports.modules[value], None)
            elif own.get(value):                                # defined earlier on this page
                href = f"#{own[value]}"
        if token_type not in Name.Namespace:
            dotted = ""
        if value == "from" and not previous[-1:] == ["."]:
            statement_is_from = True

        text = html.escape(value, quote=False)
        css = _css_class(token_type)
        if css:
            text = f'<span class="{css}">{text}</span>'
        if href:
            text = f'<a class="ln-xref" href="{href}">{text}</a>'
        out.append(text)

        if importing_from:
            open_parens += value.count("(") - value.count(")")
        if "\n" in value and open_parens <= 0:
            importing_from, open_parens, statement_is_from = None, 0, False
        if value.strip():
            previous = (previous + [value])[-2:]
    return f'<div class="language-python highlight"><pre><code>{"".join(out)}\n</code></pre></div>'


def _href(page: LiteratePage | None, target: str, anchor: str | None) -> str:
    if page is not None and target == page.name:
        return f"#{anchor}" if anchor else "#"
    return f"{target}.html" + (f"#{anchor}" if anchor else "")


# --------------------------------------------------------------------------- results


def expand_results(markdown: str, results_dir: Path, *, source: Path, link_prefix: str = "results",
                   language: Any = None) -> str:
    """Replace each `<!-- results: NAME -->` line with the stored results of NAME.

    The results live in `results_dir/NAME/` (docs/results/NAME/ in the repository), written
    by `labnotes experiment NAME`:
        table.md      a Markdown table
        *.svg / *.png one or more figures (e.g. loss.svg), shown in name order
        command.txt   the exact command that made them
        results.json  the numbers the table and figures were drawn from
    The site never trains: missing files are a build error naming the page and line.
    """
    text = source.read_text(encoding="utf-8") if source.exists() else markdown

    def replace(match: re.Match) -> str:
        name = match.group("name")
        line = _line_of(text, match.group(0).strip())
        return render_results(name, results_dir, source=source, line=line, link_prefix=link_prefix,
                              language=language)

    return RESULTS_MARKER.sub(replace, markdown)


def render_results(name: str, results_dir: Path, *, source: Path, line: int,
                   link_prefix: str = "results", language: Any = None) -> str:
    folder = results_dir / name
    # a figure named lecture-* belongs to the paper's lecture, which links it where it teaches
    figures = sorted(path for path in folder.glob("*") if path.suffix in FIGURE_SUFFIXES
                     and not path.name.startswith("lecture-")) if folder.is_dir() else []
    missing = [file for file in ("table.md", "command.txt", "results.json") if not (folder / file).is_file()]
    if not figures:
        missing.append("a figure (loss.svg or loss.png)")
    if missing:
        raise RenderError(source, line, f"results {name!r} are missing {', '.join(missing)} in {folder}: "
                                        f"run `labnotes experiment {name}` and keep its output there "
                                        "(the site build never trains)")
    table = (folder / "table.md").read_text(encoding="utf-8").strip()
    if language is not None:  # headings and captions in the site's language
        table = language.table(table, where=f"{folder / 'table.md'}")
    command = (folder / "command.txt").read_text(encoding="utf-8").strip()
    prefix = posixpath.join(link_prefix, name)
    images = "\n".join(f"![{name}: {path.stem.replace('_', ' ')}]({prefix}/{path.name})" for path in figures)
    made_by = STRINGS[language.lang if language is not None else "en"]["made_by"].format(
        href=f"{prefix}/results.json")
    return (
        f'<div class="ln-results" markdown="1">\n\n{images}\n\n{table}\n\n'
        f'{made_by}\n\n'
        f"```console\n$ {command}\n```\n\n</div>"
    )


def _line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    return 1


def results_markers(page: LiteratePage) -> list[tuple[str, str]]:
    """(results name, anchor of the section showing them) for each results marker on a page."""
    return [(match.group("name"), section.anchor)
            for section in page.sections for match in RESULTS_MARKER.finditer(section.notes)]


def render_results_index(site: Site, *, source: Path) -> str:
    """What `<!-- results-index -->` becomes: every page's stored results, in page order."""
    parts = []
    for page in site.pages:
        for name, anchor in results_markers(page):
            title = site.title(page)
            parts.append(f"## {title}\n\n" + site.text("from", title=title, href=f"{page.name}.md#{anchor}")
                         + (f" ({page.front.paper}, arXiv:{page.front.arxiv})" if page.front.paper else "")
                         + ("。" if site.lang == "zh" else ".") + "\n\n"
                         + render_results(name, site.results_dir, source=page.path,
                                          line=_line_of(page.path.read_text(encoding="utf-8"), f"results: {name}"),
                                          language=site.language))
    if not parts:
        return site.text("no_results")
    return "\n\n".join(parts)


# --------------------------------------------------------------------------- pages


def render_pages_index(site: Site) -> str:
    """What `<!-- pages-index -->` becomes: the shared pages, then the papers, with summaries."""
    groups = [(site.text("shared"), [page for page in site.pages if page_kind(page) == "shared"]),
              (site.text("papers"), [page for page in site.pages if page_kind(page) == "paper"]),
              (site.text("experiments"), [page for page in site.pages if page_kind(page) == "experiment"])]
    colon = "：" if site.lang == "zh" else ": "
    parts = []
    for title, pages in groups:
        if pages:
            items = [f"- [{site.title(page)}]({page.name}.md)"
                     + (f" ({page.front.paper.split('.')[0]}, arXiv:{page.front.arxiv})" if page.front.paper else "")
                     + f"{colon}{site.summary(page)}" for page in pages]
            parts.append(f"### {title}\n\n" + "\n".join(items))
    return "\n\n".join(parts) or site.text("no_pages")


def _yaml(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # JSON strings are valid YAML


def render_page(site: Site, page: LiteratePage) -> str:
    """The Markdown of one literate page: front matter, a header, then one block per section."""
    front = page.front
    language = site.language
    display_title = language.display_title(page) if language is not None else page.display_title
    summary = site.summary(page)
    meta = [("title", site.title(page)), ("description", summary)]
    if front.is_paper:
        meta += [("paper", front.paper), ("arxiv", front.arxiv)]
    meta.append(("source", _relative_source(site, page)))
    lines = ["---", *(f"{key}: {_yaml(value)}" for key, value in meta), "---", ""]

    colon = "：" if site.lang == "zh" else ": "
    header = [f"# {display_title}", "", summary]
    if front.is_paper:
        header += ["", f'<p class="ln-paper" markdown="1">**{site.text("paper")}{colon.strip()}** {front.paper} · '
                       f"[arXiv:{front.arxiv}]({front.arxiv_url})</p>"]
    header += ["", f'<p class="ln-links" markdown="1">[{site.text("notebook")}](notebooks/{page.name}.ipynb) · '
                   f'[{site.text("reference")}](reference/{page.name}.md) · '
                   f'{site.text("source")}{colon}`{_relative_source(site, page)}`</p>']
    lines += ['<div class="ln-page" markdown="1">', ""]
    lines += _section_html("ln-section ln-header", "\n".join(header),
                           highlight(site, page, page.preamble) if page.preamble else "")
    for section in page.sections:
        heading_text, notes = (section.heading, section.notes) if language is None else \
            language.section(page, section)
        notes = expand_results(notes, site.results_dir, source=page.path, language=language)
        if section.heading is not None:  # the heading carries the id and its ¶ permalink
            heading = f"{'#' * section.heading_level} {heading_text} {{#{section.anchor}}}"
            notes = f"{heading}\n\n{notes}"
        else:  # no heading: an anchor of its own (not on <section>: Material names code blocks
               # after their closest ancestor with an id, which must not be shared)
            permalink = (f'<div class="ln-permalink" id="{section.anchor}"><a class="headerlink" '
                         f'href="#{section.anchor}" title="{site.text("permalink")}">¶</a></div>')
            notes = f"{permalink}\n\n{notes}"
        code = highlight(site, page, section.code) if section.code_cells else ""
        # a section that shows stored results spans the page: tables and figures need the width
        css = "ln-section ln-section--results" if RESULTS_MARKER.search(section.notes) else "ln-section"
        lines += _section_html(css, notes, code, anchor=section.anchor)
    lines += ["</div>", ""]
    return "\n".join(lines)


def _section_html(css: str, notes: str, code: str, anchor: str | None = None) -> list[str]:
    attributes = f'class="{css}{"" if code else " ln-section--no-code"}"'
    if anchor:
        attributes += f' data-anchor="{anchor}"'
    return [
        f"<section {attributes} markdown=\"1\">",
        '<div class="ln-notes" markdown="1">',
        "",
        notes.strip("\n"),
        "",
        "</div>",
        '<div class="ln-code">',
        code,
        "</div>",
        "</section>",
        "",
    ]


def _relative_source(site: Site, page: LiteratePage) -> str:
    root = site.package_dir.parent
    for candidate in (root, *root.parents):
        if (candidate / "mkdocs.yml").exists() or (candidate / "pyproject.toml").exists():
            root = candidate
            break
    try:
        return page.path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return page.path.name


def render_reference(site: Site, page: LiteratePage) -> str:
    """The API reference page of one literate module, rendered by mkdocstrings."""
    module = f"{site.module_prefix}.{page.name}"
    return "\n".join([
        "---", f"title: {_yaml('API: ' + module)}", "---", "",
        f"# `{module}`", "",
        site.text("reference_intro", title=site.title(page), page=page.name), "",
        f"::: {module}", "",
    ])

"""Read one literate file (jupytext py:percent) into a page: front matter and sections.

The format (see docs/how-to-read.md and the project spec):

    \"\"\"Title of the page.

    One or two sentences saying what the page is.

    Paper: Authors. Title (year)       <- paper pages only, together with arXiv:
    arXiv: 1810.04805
    \"\"\"
    import ...                         <- optional: the preamble, shown beside the title

    # %% [markdown]
    # ## A heading starts a section
    # Notes in Markdown, with $math$.

    # %%
    code()                             <- the code cell(s) after a notes cell belong to it

Everything here is plain parsing with line numbers, so that a malformed file fails with
`path:line: what is wrong` instead of a silently broken page.
"""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

# `# %%`, `# %% [markdown]`, `# %% [md]`, optionally followed by a title or metadata.
CELL_MARKER = re.compile(r"^# %%(?P<rest>.*)$")
MARKDOWN_TYPE = re.compile(r"^\s*\[(markdown|md)\]")
HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<text>.+?)\s*#*\s*$")
ARXIV_ID = re.compile(r"^\d{4}\.\d{4,5}(v\d+)?$")
FIELD = re.compile(r"^(?P<key>[A-Za-z][A-Za-z ]*):\s*(?P<value>.*)$")
KNOWN_FIELDS = ("Paper", "arXiv")
# "[SEP] [PAD]" or "[MASK][]" outside backticks: Markdown reads a reference link, which the
# site's cross-referencing then fails to resolve. Special tokens belong in backticks.
REFERENCE_TRAP = re.compile(r"\[[^\]\n]+\] ?\[(?:[A-Z][A-Z0-9_]*)?\]")
CODE_SPANS = re.compile(r"```.*?```|`[^`\n]*`", re.S)


class RenderError(Exception):
    """A literate file (or the results it points at) cannot be rendered.

    The message always starts with `path:line:` so an editor can jump to the problem.
    """

    def __init__(self, path: Path | str, line: int, message: str) -> None:
        self.path = Path(path)
        self.line = line
        self.message = message
        super().__init__(f"{path}:{line}: {message}")


@dataclass(frozen=True)
class Cell:
    kind: str    # "markdown" or "code"
    source: str  # markdown without the leading "# ", or the code as written
    line: int    # 1-based line of the cell's first content line in the file


@dataclass(frozen=True)
class FrontMatter:
    title: str
    summary: str
    paper: str | None = None
    arxiv: str | None = None

    @property
    def is_paper(self) -> bool:
        return self.paper is not None

    @property
    def arxiv_url(self) -> str | None:
        return f"https://arxiv.org/abs/{self.arxiv}" if self.arxiv else None


@dataclass(frozen=True)
class Section:
    anchor: str                     # permalink id, unique on the page
    heading: str | None             # text of the heading that opens the notes, if any
    heading_level: int              # 2 for "##", ...; 0 when there is no heading
    notes: str                      # notes Markdown, without the opening heading
    notes_line: int
    code_cells: tuple[Cell, ...]    # the code cell(s) after the notes, in order

    @property
    def code(self) -> str:
        """All code of the section, as one block (what its copy button copies)."""
        return "\n\n\n".join(cell.source for cell in self.code_cells)


@dataclass(frozen=True)
class LiteratePage:
    name: str                       # module name, e.g. "mlm"; the page is <name>.md
    path: Path
    front: FrontMatter
    display_title: str              # the H1: docstring title, or the first notes cell's "# Title"
    preamble: str                   # code of the docstring cell after the docstring
    sections: tuple[Section, ...]
    cells: tuple[Cell, ...]         # every cell, as jupytext sees them


# --------------------------------------------------------------------------- cells


def split_cells(text: str, path: Path) -> list[Cell]:
    """Split py:percent text into cells, checking each marker and markdown line."""
    lines = text.splitlines()
    start = _skip_jupytext_header(lines, path)
    cells: list[Cell] = []
    kind, first, body = "code", start + 1, []  # text before the first marker is a code cell

    def close() -> None:
        while body and not body[-1].strip():
            body.pop()
        offset = 0
        while offset < len(body) and not body[offset].strip():
            offset += 1
        if offset < len(body):
            cells.append(Cell(kind, "\n".join(body[offset:]), first + offset))

    for number, line in enumerate(lines[start:], start=start + 1):
        marker = CELL_MARKER.match(line)
        if marker is None and line.startswith("#") and "%%" in line[1:4]:
            raise RenderError(path, number, f"malformed cell marker {line.strip()!r}: "
                                            "write '# %%' or '# %% [markdown]'")
        if marker is not None:
            close()
            rest = marker.group("rest")
            if rest and not rest.startswith(" "):
                raise RenderError(path, number, f"malformed cell marker {line.strip()!r}: "
                                                "put a space after '# %%'")
            if rest.count("[") != rest.count("]"):
                raise RenderError(path, number, f"unterminated cell marker {line.strip()!r}: "
                                                "the cell type needs its closing ']'")
            kind = "markdown" if MARKDOWN_TYPE.match(rest) else "code"
            if kind == "code" and rest.strip().startswith("[") and not rest.strip().startswith("[code]"):
                cell_type = rest.strip().split("]")[0] + "]"
                raise RenderError(path, number, f"unknown cell type {cell_type!r}: "
                                                "use '# %%' for code or '# %% [markdown]' for notes")
            first, body = number + 1, []
            continue
        if kind == "markdown":
            if line.strip() and not line.startswith("#"):
                raise RenderError(path, number, "a notes cell line must start with '# ' "
                                                "(is a '# %%' code marker missing above it?)")
            body.append(line[2:] if line.startswith("# ") else line[1:])
        else:
            body.append(line)
    close()
    return cells


def _skip_jupytext_header(lines: list[str], path: Path) -> int:
    """Index of the first line after an optional `# ---` ... `# ---` jupytext header."""
    if not lines or lines[0].strip() != "# ---":
        return 0
    for index in range(1, len(lines)):
        if lines[index].strip() == "# ---":
            return index + 1
    raise RenderError(path, 1, "unterminated jupytext header: '# ---' is never closed")


# --------------------------------------------------------------------------- front matter


def parse_front_matter(docstring: str, path: Path, line: int) -> FrontMatter:
    """Parse the module docstring; `line` is where the docstring starts in the file."""
    lines = docstring.strip("\n").splitlines()
    title = lines[0].strip() if lines else ""
    if not title:
        raise RenderError(path, line, "bad docstring: its first line must be the page title")
    if len(lines) > 1 and lines[1].strip():
        raise RenderError(path, line + 1, "bad docstring: leave a blank line after the title line")
    if title.endswith("."):
        title = title[:-1].rstrip()

    fields: dict[str, str] = {}
    summary_lines: list[str] = []
    for offset, text in enumerate(lines[1:], start=1):
        field = FIELD.match(text.strip())
        if field and field.group("key") in KNOWN_FIELDS:
            key = field.group("key")
            if key in fields:
                raise RenderError(path, line + offset, f"bad docstring: '{key}:' appears twice")
            if not field.group("value").strip():
                raise RenderError(path, line + offset, f"bad docstring: '{key}:' has no value")
            fields[key] = field.group("value").strip()
        elif field and field.group("key").lower() in {k.lower() for k in KNOWN_FIELDS}:
            raise RenderError(path, line + offset, f"bad docstring: write {field.group('key')!r} "
                                                   f"as one of {', '.join(KNOWN_FIELDS)}")
        else:
            summary_lines.append(text)
    if ("Paper" in fields) != ("arXiv" in fields):
        raise RenderError(path, line, "bad docstring: a paper page needs both 'Paper:' and 'arXiv:' "
                                      "lines (shared pages have neither)")
    arxiv = fields.get("arXiv")
    if arxiv is not None:
        arxiv = arxiv.removeprefix("arXiv:").strip()
        if not ARXIV_ID.match(arxiv):
            offset = next(i for i, text in enumerate(lines) if text.strip().startswith("arXiv:"))
            raise RenderError(path, line + offset, f"bad docstring: {arxiv!r} is not an arXiv id "
                                                   "like 1810.04805")
    summary = " ".join(" ".join(summary_lines).split())
    return FrontMatter(title=title, summary=summary, paper=fields.get("Paper"), arxiv=arxiv)


# --------------------------------------------------------------------------- sections


def slugify(text: str) -> str:
    """Anchor for a heading: lower case words joined by '-' (markup and math dropped)."""
    text = re.sub(r"`([^`]*)`", r"\1", text)
    text = re.sub(r"\$[^$]*\$", "", text)
    text = re.sub(r"[^\w\s-]", "", text.lower())
    return re.sub(r"[\s_-]+", "-", text).strip("-") or "section"


def read_page(path: Path | str, name: str | None = None) -> LiteratePage:
    """Read and check one literate file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError as error:
        raise RenderError(path, error.lineno or 1, f"syntax error: {error.msg}") from None
    cells = split_cells(text, path)

    if not cells or cells[0].kind != "code":
        raise RenderError(path, cells[0].line if cells else 1,
                          "the file must start with the module docstring (a code cell), not notes")
    docstring_cell = cells[0]
    docstring = ast.get_docstring(tree, clean=False)
    if docstring is None or not tree.body:
        raise RenderError(path, docstring_cell.line, "bad docstring: the file must start with a module "
                                                     "docstring whose first line is the page title")
    node = tree.body[0]
    cell_end = docstring_cell.line + docstring_cell.source.count("\n")
    if node.lineno > cell_end:
        raise RenderError(path, node.lineno, "bad docstring: it must be in the first cell")
    if not docstring.split("\n", 1)[0].strip():
        raise RenderError(path, node.lineno, "bad docstring: its first line must be the page title, "
                                             'right after the opening """')
    front = parse_front_matter(inspect.cleandoc(docstring), path, node.lineno)
    preamble_lines = docstring_cell.source.splitlines()[node.end_lineno - docstring_cell.line + 1:]
    preamble = "\n".join(preamble_lines).strip("\n")

    display_title = front.title
    sections: list[Section] = []
    used: set[str] = set()
    last_heading_anchor: str | None = None
    for cell in cells[1:]:
        if cell.kind == "code":
            if not sections:
                raise RenderError(path, cell.line, "code cell before any notes: put a "
                                                   "'# %% [markdown]' cell explaining it first")
            _check_cell_parses(cell, path)
            previous = sections[-1]
            sections[-1] = Section(previous.anchor, previous.heading, previous.heading_level,
                                   previous.notes, previous.notes_line,
                                   previous.code_cells + (cell,))
            continue
        notes = cell.source
        if not sections:  # the first notes cell may open with the page's "# Title"
            first_line, _, rest = notes.partition("\n")
            heading = HEADING.match(first_line)
            if heading and len(heading.group("hashes")) == 1:  # "# Title" opening the page
                display_title = heading.group("text")
                notes = rest.strip("\n")
        first_line, _, rest = notes.partition("\n")
        heading = HEADING.match(first_line)
        if heading:
            level = len(heading.group("hashes"))
            text = re.sub(r"\s*\{[^}]*\}\s*$", "", heading.group("text"))  # drop "{#id}" if written
            anchor = _unique(slugify(text), used)
            last_heading_anchor = anchor
            sections.append(Section(anchor, text, level, rest.strip("\n"), cell.line, ()))
        else:
            base = last_heading_anchor or "section"
            anchor = _unique(f"{base}-2" if last_heading_anchor else "section-1", used, base)
            sections.append(Section(anchor, None, 0, notes, cell.line, ()))
    if not sections:
        raise RenderError(path, docstring_cell.line, "the page has no notes: add a "
                                                     "'# %% [markdown]' cell after the docstring")
    for cell in cells:
        if cell.kind == "markdown":
            _check_reference_traps(cell.source, path, cell.line)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            text = ast.get_docstring(node, clean=False)
            if text is not None:
                _check_reference_traps(text, path, node.body[0].lineno)
    return LiteratePage(name=name or path.stem, path=path, front=front, display_title=display_title,
                        preamble=preamble, sections=tuple(sections), cells=tuple(cells))


def _unique(anchor: str, used: set[str], base: str | None = None) -> str:
    """`anchor`, or the first free one of `base-2`, `base-3`, ... when it is taken."""
    candidate, number = anchor, 2
    while candidate in used:
        candidate = f"{base or anchor}-{number}"
        number += 1
    used.add(candidate)
    return candidate


def _check_reference_traps(markdown: str, path: Path, first_line: int) -> None:
    """Reject `[SEP] [PAD]`-like text outside backticks (see REFERENCE_TRAP), with its line."""
    text = CODE_SPANS.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), markdown)
    trap = REFERENCE_TRAP.search(text)
    if trap:
        line = first_line + text.count("\n", 0, trap.start())
        raise RenderError(path, line, f"{trap.group(0)!r} is Markdown for a reference link, which "
                                      "the site cannot resolve: put special tokens in backticks, "
                                      "e.g. `[SEP]`")


def _check_cell_parses(cell: Cell, path: Path) -> None:
    """Each code cell runs on its own in the notebook, so it must parse on its own."""
    try:
        ast.parse(cell.source)
    except SyntaxError as error:
        line = cell.line + (error.lineno or 1) - 1
        raise RenderError(path, line, f"this code cell is not valid Python on its own "
                                      f"({error.msg}); a notebook runs each cell separately") from None

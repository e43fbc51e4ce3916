"""Translations of the site: which English text each translated block renders, and whether it is
still the English that is there now.

A translation lives in `translations/<lang>/<page>.md`, named after the English page's file on
the site: `mlm.md` for the literate page labnotes/mlm.py, `experiments.mlm.md` for
labnotes/experiments/mlm.py, `index.md` for the hand-written docs/index.md. The file is a list of
blocks, each opened by a marker that names the English block it translates and a hash of that
English text:

    <!-- en: title 3f2a9c01de -->
    # 掩码语言模型
    一两句话说明这一页讲什么。

    <!-- en: choosing-what-to-hide 0a1b2c3d4e -->
    ## 选择要遮住的词元
    ……

The English blocks of a literate page are `title` (its H1 and the summary under it) and one block
per section, keyed by the section's anchor (its heading and notes; the code is never translated).
A hand-written page is split at its headings (levels 1 to 3, outside code fences): `top` is the
text before the first heading, and each heading's block is keyed by the heading's anchor. A
translated heading keeps the English anchor (the build adds `{#anchor}`), so that switching
languages lands on the same section.

When the English text of a block changes, its hash changes and the block's translation is
*stale*; `labnotes translations` lists what is stale or missing (the test suite fails on it),
`labnotes translations skeleton PAGE --write` adds the missing blocks to a page's file with the
English text to translate, and `labnotes translations stamp PAGE KEY` records that a block's
translation has been checked against the English that is there now.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from .literate import LiteratePage, read_page

LANGUAGES = {"zh": "中文"}
MARKER = re.compile(r"^<!--\s*en:\s*(?P<key>[\w.-]+)\s+(?P<hash>[0-9a-f]{10})\s*-->[ \t]*$", re.M)
TODO = "<!-- TODO: translate -->"
FENCE = re.compile(r"^\s*(```|~~~)")
MD_HEADING = re.compile(r"^(?P<hashes>#{1,3})\s+(?P<text>.+?)\s*#*\s*$")
# markers the build expands (stored results, indexes, the glossary): a translation keeps each one
MARKERS_KEPT = re.compile(r"<!--\s*(?:results:\s*[A-Za-z0-9_.-]+|results-index|pages-index|glossary|mistranslations)\s*-->")
EXPLICIT_ID = re.compile(r"\s*\{#(?P<id>[^}\s]+)\}\s*$")


def text_hash(text: str) -> str:
    """A short hash of English text, insensitive to trailing spaces and surrounding blank lines."""
    normal = "\n".join(line.rstrip() for line in text.strip("\n").splitlines())
    return hashlib.sha1(normal.encode("utf-8")).hexdigest()[:10]


@dataclass(frozen=True)
class Block:
    key: str            # "title", "top", or a section's anchor
    text: str           # the English (or translated) Markdown of the block
    heading_level: int  # level of the heading that opens the block; 0 when none
    line: int = 1       # where the block starts in its file

    @property
    def hash(self) -> str:
        return text_hash(self.text)


@dataclass(frozen=True)
class Source:
    """An English page as a list of blocks to translate."""
    name: str            # page file on the site, e.g. "mlm.md" or "index.md"
    path: Path           # the file the English text lives in
    blocks: tuple[Block, ...]

    def block(self, key: str) -> Block | None:
        return next((block for block in self.blocks if block.key == key), None)


@dataclass
class Translation:
    path: Path
    front_matter: str = ""                      # YAML front matter of the translated page, if any
    blocks: dict[str, tuple[str, Block]] = field(default_factory=dict)  # key -> (recorded hash, block)


# --------------------------------------------------------------------------- English sources


def literate_source(page: LiteratePage) -> Source:
    blocks = [Block("title", f"# {page.display_title}\n\n{page.front.summary}", 1, 1)]
    for section in page.sections:
        head = f"{'#' * section.heading_level} {section.heading}\n\n" if section.heading else ""
        blocks.append(Block(section.anchor, head + section.notes, section.heading_level, section.notes_line))
    return Source(f"{page.name}.md", page.path, tuple(blocks))


def toc_slug(text: str) -> str:
    """The anchor Python-Markdown's toc extension gives a heading (its default slugify)."""
    import markdown.extensions.toc as toc
    return toc.slugify(_plain_heading(text), "-")


def _plain_heading(text: str) -> str:
    text = EXPLICIT_ID.sub("", text)
    text = re.sub(r"`([^`]*)`", r"\1", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[*_]", "", text)


def split_markdown(text: str) -> tuple[str, list[Block]]:
    """Front matter and blocks of a Markdown page, split at headings of level 1 to 3."""
    front = ""
    lines = text.split("\n")
    start = 0
    if lines and lines[0].strip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
        if end is not None:
            front, start = "\n".join(lines[: end + 1]), end + 1
    blocks: list[Block] = []
    used: dict[str, int] = {}
    key, level, first, body, fenced = "top", 0, start + 1, [], False

    def close() -> None:
        content = "\n".join(body).strip("\n")
        if content or key != "top":
            blocks.append(Block(key, content, level, first))

    for number, line in enumerate(lines[start:], start=start + 1):
        if FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else MD_HEADING.match(line)
        if heading:
            close()
            explicit = EXPLICIT_ID.search(heading.group("text"))
            slug = explicit.group("id") if explicit else toc_slug(heading.group("text"))
            if slug in used and not explicit:  # toc numbers repeated anchors: x, x_1, x_2, ...
                used[slug] += 1
                slug = f"{slug}_{used[slug]}"
            else:
                used.setdefault(slug, 0)
            key, level, first, body = slug, len(heading.group("hashes")), number, [line]
        else:
            body.append(line)
    close()
    return front, blocks


def markdown_source(path: Path, name: str | None = None) -> Source:
    _, blocks = split_markdown(path.read_text(encoding="utf-8"))
    return Source(name or path.name, path, tuple(blocks))


def english_sources(package_dir: Path, docs_dir: Path) -> list[Source]:
    """Every English page of the site, literate pages first, then the hand-written ones."""
    from .render import discover_pages, page_path
    sources = [literate_source(read_page(page_path(package_dir, name), name))
               for name in discover_pages(package_dir)]
    sources += [markdown_source(path) for path in sorted(docs_dir.glob("*.md"))]
    return sources


# --------------------------------------------------------------------------- translations


def read_translation(path: Path) -> Translation:
    """Parse a translation file; a malformed one raises ValueError naming the file and line."""
    text = path.read_text(encoding="utf-8")
    translation = Translation(path)
    matches = list(MARKER.finditer(text))
    head = text[: matches[0].start()] if matches else text
    if head.strip():
        if head.lstrip().startswith("---"):
            translation.front_matter = head.strip()
        else:
            raise ValueError(f"{path}:1: text before the first block marker `<!-- en: KEY HASH -->`")
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        body = text[match.end(): end].strip("\n")
        line = text.count("\n", 0, match.start()) + 1
        key = match.group("key")
        if key in translation.blocks:
            raise ValueError(f"{path}:{line}: block {key!r} appears twice")
        first = body.split("\n", 1)[0]
        heading = MD_HEADING.match(first) or re.match(r"^(?P<hashes>#{4,6})\s+(?P<text>.+)$", first)
        level = len(heading.group("hashes")) if heading else 0
        translation.blocks[key] = (match.group("hash"), Block(key, body, level, line + 1))
    return translation


def translations_dir(root: Path, lang: str) -> Path:
    return root / "translations" / lang


@dataclass(frozen=True)
class Problem:
    page: str
    key: str | None
    message: str

    def __str__(self) -> str:
        return self.message


def _shown(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def check_page(source: Source, translation: Translation | None, lang: str, root: Path) -> list[Problem]:
    """What is missing, stale or malformed in one page's translation."""
    rel = (translations_dir(root, lang) / source.name).relative_to(root).as_posix()
    if translation is None:
        return [Problem(source.name, None, f"{rel} is missing: {len(source.blocks)} blocks of "
                        f"{_shown(source.path, root)} have no {LANGUAGES.get(lang, lang)} translation "
                        f"(start it with `labnotes translations skeleton {source.name} --write`)")]
    problems = []
    for block in source.blocks:
        where = f"{rel}: block {block.key!r} ({_shown(source.path, root)}:{block.line})"
        if block.key not in translation.blocks:
            problems.append(Problem(source.name, block.key, f"{where} has no translation "
                                    f"(`labnotes translations skeleton {source.name} --write` adds it)"))
            continue
        recorded, translated = translation.blocks[block.key]
        if TODO in translated.text:
            problems.append(Problem(source.name, block.key, f"{where} is not translated yet ({TODO})"))
            continue
        if recorded != block.hash:
            problems.append(Problem(source.name, block.key,
                                    f"{where} is stale: the English changed since it was translated "
                                    f"(hash {recorded}, now {block.hash}); update the translation, then "
                                    f"`labnotes translations stamp {source.name} {block.key}`"))
            continue
        if translated.heading_level != block.heading_level:
            problems.append(Problem(source.name, block.key,
                                    f"{where}: the English opens with a level-{block.heading_level} "
                                    f"heading, the translation with level {translated.heading_level} "
                                    "(0 = no heading)"))
        if sorted(MARKERS_KEPT.findall(translated.text)) != sorted(MARKERS_KEPT.findall(block.text)):
            problems.append(Problem(source.name, block.key,
                                    f"{where}: its `<!-- ... -->` build markers (results, indexes) differ "
                                    "from the English: keep each one"))
        if translated.text.count("$$") != block.text.count("$$"):
            problems.append(Problem(source.name, block.key,
                                    f"{where}: it has {translated.text.count('$$') // 2} display formulas, "
                                    f"the English {block.text.count('$$') // 2}: keep every formula"))
    extra = [key for key in translation.blocks if source.block(key) is None]
    for key in extra:
        problems.append(Problem(source.name, key, f"{rel}: block {key!r} translates nothing on "
                                f"{_shown(source.path, root)} (renamed or removed): move or delete it"))
    return problems


def check(root: Path, lang: str, sources: list[Source] | None = None) -> list[Problem]:
    """Every problem of the `lang` translation of the site (empty when it is complete and current)."""
    sources = sources if sources is not None else english_sources(root / "labnotes", root / "docs")
    folder = translations_dir(root, lang)
    problems: list[Problem] = []
    known = {source.name for source in sources}
    for source in sources:
        path = folder / source.name
        try:
            translation = read_translation(path) if path.is_file() else None
        except ValueError as error:
            problems.append(Problem(source.name, None, str(error)))
            continue
        problems += check_page(source, translation, lang, root)
    if folder.is_dir():
        for path in sorted(folder.glob("*.md")):
            if path.name not in known:
                problems.append(Problem(path.name, None, f"{path.relative_to(root).as_posix()} translates "
                                        "no page of the site: rename or delete it"))
    return problems


# --------------------------------------------------------------------------- editing


def skeleton(source: Source, translation: Translation | None) -> str:
    """The translation file with every block: kept translations as they are, the missing ones
    as the English text under a TODO marker (a stale block keeps its old hash: still stale)."""
    parts = [translation.front_matter] if translation and translation.front_matter else []
    for block in source.blocks:
        if translation and block.key in translation.blocks:
            recorded, translated = translation.blocks[block.key]
            parts.append(f"<!-- en: {block.key} {recorded} -->\n{translated.text}")
        else:
            parts.append(f"<!-- en: {block.key} {block.hash} -->\n{TODO}\n{block.text}")
    return "\n\n".join(parts).rstrip("\n") + "\n"


def stamp(path: Path, key: str, new_hash: str) -> None:
    """Record that the translation of block `key` in `path` matches the English with `new_hash`."""
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(rf"^<!--\s*en:\s*{re.escape(key)}\s+[0-9a-f]{{10}}\s*-->[ \t]*$", re.M)
    if not pattern.search(text):
        raise ValueError(f"{path}: no block {key!r}")
    path.write_text(pattern.sub(f"<!-- en: {key} {new_hash} -->", text, count=1), encoding="utf-8")


def find_source(sources: list[Source], name: str) -> Source:
    for candidate in (name, f"{name}.md"):
        for source in sources:
            if source.name == candidate:
                return source
    raise ValueError(f"no page {name!r}: pages are {', '.join(source.name for source in sources)}")


# --------------------------------------------------------------------------- results tables


TABLE_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def _cells(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") else inner
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", inner)]


def table_phrases(table: str) -> list[tuple[str, bool]]:
    """(text, required) for what a results table shows in words: each heading cell and each
    caption line (required), and each row's first cell (translated when the phrase book has it)."""
    lines = table.splitlines()
    found: list[tuple[str, bool]] = []
    for index, line in enumerate(lines):
        if not line.strip() or TABLE_SEPARATOR.match(line.strip()):
            continue
        if line.lstrip().startswith("|"):
            is_head = index + 1 < len(lines) and bool(TABLE_SEPARATOR.match(lines[index + 1].strip()))
            cells = _cells(line)
            found += [(cell, True) for cell in cells if cell] if is_head else [(cells[0], False)] if cells[0] else []
        else:
            found.append((line.strip(), True))
    return found


def translate_table(table: str, phrases: dict[str, str], where: str = "table.md") -> str:
    """A results table with its headings, captions (and row names the phrase book knows) translated;
    a heading or caption without a translation raises ValueError naming it."""
    lines = table.splitlines()
    out = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or TABLE_SEPARATOR.match(stripped):
            out.append(line)
            continue
        if stripped.startswith("|"):
            is_head = index + 1 < len(lines) and bool(TABLE_SEPARATOR.match(lines[index + 1].strip()))
            cells = _cells(line)
            for position, cell in enumerate(cells):
                if cell in phrases:
                    cells[position] = phrases[cell]
                elif is_head and cell:
                    raise ValueError(f"{where}: no translation for the table heading {cell!r}: add it to "
                                     "the phrase book (translations/<lang>/results.toml)")
            out.append("| " + " | ".join(cells) + " |")
        elif stripped in phrases:
            out.append(phrases[stripped])
        else:
            raise ValueError(f"{where}: no translation for the caption {stripped!r}: add it to the "
                             "phrase book (translations/<lang>/results.toml)")
    return "\n".join(out)


def read_phrases(root: Path, lang: str) -> dict[str, str]:
    import tomllib
    path = translations_dir(root, lang) / "results.toml"
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: {error}") from None
    return {str(key): str(value) for key, value in data.get("phrases", {}).items()}


def table_problems(root: Path, lang: str, results_dir: Path) -> list[Problem]:
    phrases = read_phrases(root, lang)
    problems = []
    for table in sorted(results_dir.glob("*/table.md")):
        for text, required in table_phrases(table.read_text(encoding="utf-8")):
            if required and text not in phrases:
                problems.append(Problem(f"results/{table.parent.name}", None,
                                        f"{_shown(table, root)}: no translation for {text!r} in "
                                        f"translations/{lang}/results.toml [phrases]"))
    return problems


# --------------------------------------------------------------------------- the translated site


CJK_CHARACTER = "\u3000-\u303f\u4e00-\u9fff\uff00-\uffef"  # CJK punctuation, ideographs, full-width forms
CJK_LINE_BREAK = re.compile(rf"(?<=[{CJK_CHARACTER}])[ \t]*\n[ \t]*(?=[{CJK_CHARACTER}])")


def join_cjk_lines(text: str) -> str:
    """Join a paragraph's lines where one ends and the next starts with Chinese: a browser shows a
    line break inside a paragraph as a space, which Chinese text does not have between characters.
    Code blocks are left alone."""
    parts = re.split(r"(^\s*```.*?^\s*```[ \t]*$)", text, flags=re.S | re.M)
    return "".join(part if index % 2 else CJK_LINE_BREAK.sub("", part) for index, part in enumerate(parts))


class TranslationError(ValueError):
    """The translation cannot be built: missing, stale or malformed blocks (all listed)."""


@dataclass
class Localization:
    """What a translated build of the site reads: every page's translation and the phrase book."""
    lang: str
    root: Path
    translations: dict[str, Translation]
    phrases: dict[str, str]

    @classmethod
    def load(cls, root: Path, lang: str, package_dir: Path | None = None, docs_dir: Path | None = None,
             results_dir: Path | None = None, *, tables: bool = True) -> "Localization":
        """Read and check the whole translation (with `tables`, the results tables' phrase book
        too); any problem stops the build, listing them all."""
        root = Path(root)
        sources = english_sources(package_dir or root / "labnotes", docs_dir or root / "docs")
        problems = check(root, lang, sources)
        if tables:
            problems += table_problems(root, lang, results_dir or root / "docs" / "results")
        if problems:
            shown = "\n  ".join(str(problem) for problem in problems[:40])
            more = f"\n  ... and {len(problems) - 40} more" if len(problems) > 40 else ""
            raise TranslationError(f"the {LANGUAGES.get(lang, lang)} ({lang}) translation is not complete "
                                   f"and current ({len(problems)} problems; `labnotes translations` lists "
                                   f"them):\n  {shown}{more}")
        folder = translations_dir(root, lang)
        translations = {source.name: read_translation(folder / source.name) for source in sources}
        return cls(lang, root, translations, read_phrases(root, lang))

    def _text(self, page_file: str, key: str) -> str:
        return join_cjk_lines(self.translations[page_file].blocks[key][1].text)

    def display_title(self, page: LiteratePage) -> str:
        first = self._text(f"{page.name}.md", "title").split("\n", 1)[0]
        return re.sub(r"^#\s+", "", first).strip()

    def title(self, page: LiteratePage) -> str:
        return self.display_title(page)

    def summary(self, page: LiteratePage) -> str:
        text = self._text(f"{page.name}.md", "title")
        return text.split("\n", 1)[1].strip() if "\n" in text else ""

    def section(self, page: LiteratePage, section) -> tuple[str | None, str]:
        """(heading text or None, notes) of a section in this language."""
        text = self._text(f"{page.name}.md", section.anchor)
        if section.heading is None:
            return None, text
        first, _, rest = text.partition("\n")
        heading = re.sub(r"^#+\s+", "", first).strip()
        return EXPLICIT_ID.sub("", heading), rest.strip("\n")

    def markdown_page(self, source: Source) -> tuple[str, str]:
        """(title, Markdown) of a hand-written page in this language; headings keep the English anchors."""
        translation = self.translations[source.name]
        parts, title = [], None
        for block in source.blocks:
            text = join_cjk_lines(translation.blocks[block.key][1].text)
            if block.heading_level:
                first, _, rest = text.partition("\n")
                first = EXPLICIT_ID.sub("", first.rstrip())
                if title is None and block.heading_level == 1:
                    title = re.sub(r"^#\s+", "", first).strip()
                text = f"{first} {{#{block.key}}}\n{rest}" if rest else f"{first} {{#{block.key}}}"
            parts.append(text)
        named = re.search(r"^title:\s*(.+?)\s*$", translation.front_matter, re.M)
        if named:  # a title of its own in the translation's front matter
            title = named.group(1).strip("\"'")
        return title or source.name, "\n\n".join(parts) + "\n"

    def table(self, table: str, where: str) -> str:
        return translate_table(table, self.phrases, where)


# --------------------------------------------------------------------------- the glossary


GLOSSARY_MARKER = re.compile(r"^[ \t]*<!--\s*glossary\s*-->[ \t]*$", re.M)
MISTRANSLATIONS_MARKER = re.compile(r"^[ \t]*<!--\s*mistranslations\s*-->[ \t]*$", re.M)


def read_glossary(root: Path, lang: str = "zh") -> dict:
    """translations/<lang>/glossary.toml: `term` entries (en, abbr, zh, en_definition,
    zh_definition, link) and `mistranslation` entries (en, wrong, right, why_en, why_zh)."""
    import tomllib
    path = translations_dir(root, lang) / "glossary.toml"
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path} is missing: the glossary page is made from it") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: {error}") from None


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_glossary(glossary: dict, lang: str) -> str:
    terms = sorted(glossary.get("term", []), key=lambda term: term["en"].lower())
    rows = []
    for term in terms:
        english = term["en"] + (f" ({term['abbr']})" if term.get("abbr") else "")
        chinese = term["zh"]
        if lang == "en":
            named = f"[{english}]({term['link']})" if term.get("link") else english
            rows.append(f"| {_cell(named)} | {_cell(chinese)} | {_cell(term['en_definition'])} |")
        else:
            named = f"[{chinese}]({term['link']})" if term.get("link") else chinese
            rows.append(f"| {_cell(named)} | {_cell(english)} | {_cell(term['zh_definition'])} |")
    head = "| Term | 中文 | Meaning |" if lang == "en" else "| 术语 | English | 释义 |"
    return "\n".join([head, "|---|---|---|", *rows])


def render_mistranslations(glossary: dict, lang: str) -> str:
    head = ("| Term | Wrong | Right | Why |" if lang == "en" else "| 术语 | 错误译法 | 正确译法 | 原因 |")
    why = "why_en" if lang == "en" else "why_zh"
    rows = [f"| {_cell(entry['en'])} | ~~{_cell(entry['wrong'])}~~ | {_cell(entry['right'])} | "
            f"{_cell(entry[why])} |" for entry in glossary.get("mistranslation", [])]
    return "\n".join([head, "|---|---|---|---|", *rows])


def expand_glossary(markdown: str, root: Path, lang: str) -> str:
    """`<!-- glossary -->` and `<!-- mistranslations -->` replaced by their tables."""
    if not (GLOSSARY_MARKER.search(markdown) or MISTRANSLATIONS_MARKER.search(markdown)):
        return markdown
    glossary = read_glossary(root)
    markdown = GLOSSARY_MARKER.sub(lambda _: render_glossary(glossary, lang), markdown)
    return MISTRANSLATIONS_MARKER.sub(lambda _: render_mistranslations(glossary, lang), markdown)


def mistranslations_used(root: Path, lang: str = "zh") -> list[str]:
    """Where a translation uses a word the glossary lists as a mistranslation (the glossary page,
    which names them on purpose, excepted)."""
    wrong = [entry["wrong"] for entry in read_glossary(root, lang).get("mistranslation", [])]
    found = []
    for path in sorted(translations_dir(root, lang).glob("*.md")):
        if path.name == "glossary.md":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            found += [f"{_shown(path, root)}:{number}: {word!r} is a mistranslation (see the glossary)"
                      for word in wrong if word in line]
    return found

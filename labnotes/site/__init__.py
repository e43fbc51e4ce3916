"""The labnotes site: literate files -> side-by-side Markdown pages for mkdocs.

Not a literate page itself (it is excluded from `labnotes.PAGES`). The pieces:

    literate.py   read one py:percent file into front matter + sections; RenderError
    render.py     the whole package -> Markdown pages, symbol links, stored results
    katex.py      server-side math with KaTeX from node_modules (no network, no JS needed)
    notebooks.py  notebooks/<page>.ipynb from the same files (jupytext)
    hook.py       the mkdocs hook that wires these into `mkdocs build` / `mkdocs serve`
"""

from .literate import FrontMatter, LiteratePage, RenderError, Section, read_page
from .render import Site, discover_pages, load_site, render_page, render_reference

__all__ = ["FrontMatter", "LiteratePage", "RenderError", "Section", "Site", "discover_pages",
           "load_site", "read_page", "render_page", "render_reference"]

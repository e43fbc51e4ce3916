"""Math rendered at build time: KaTeX (from node_modules, installed by `npm ci`) turns the
`\\(...\\)` / `\\[...\\]` spans that pymdownx.arithmatex leaves in a page into HTML.

The browser then needs only KaTeX's stylesheet and fonts (copied into the site by the hook),
no script, so formulas show the same from `mkdocs serve`, from files, and without JavaScript.
A formula KaTeX cannot parse is a build error that names the page and the formula.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).with_name("katex_render.js")
# What pymdownx.arithmatex (generic: true) emits for $...$ and $$...$$.
ARITHMATEX = re.compile(r'<(?P<tag>span|div) class="arithmatex">(?P<tex>.*?)</(?P=tag)>', re.S)


class MathError(Exception):
    pass


def katex_dir(root: Path) -> Path:
    """node_modules/katex, or a clear error saying how to install it."""
    path = root / "node_modules" / "katex"
    if not (path / "dist" / "katex.min.css").is_file():
        raise MathError(f"KaTeX is not installed in {path}: run `npm ci` in {root} (or `make build`), "
                        "which installs it from the npm registry as pinned in package-lock.json")
    if shutil.which("node") is None:
        raise MathError("node is not on PATH: it is needed at build time to render math with KaTeX")
    return path


class MathRenderer:
    """Renders every formula of a page in one `node` call; remembers formulas already seen."""

    def __init__(self, root: Path) -> None:
        self.katex = katex_dir(root).resolve()
        self.cache: dict[tuple[str, bool], str] = {}

    def render_html(self, page_html: str, where: str) -> str:
        matches = list(ARITHMATEX.finditer(page_html))
        wanted = {self._formula(m) for m in matches} - self.cache.keys()
        if wanted:
            self._render(sorted(wanted), where)
        return ARITHMATEX.sub(lambda m: self._wrap(m, self.cache[self._formula(m)]), page_html)

    @staticmethod
    def _formula(match: re.Match) -> tuple[str, bool]:
        tex = html.unescape(match.group("tex")).strip()
        display = match.group("tag") == "div"
        opening, closing = (r"\[", r"\]") if display else (r"\(", r"\)")
        if tex.startswith(opening) and tex.endswith(closing):
            tex = tex[2:-2]
        return tex.strip(), display

    @staticmethod
    def _wrap(match: re.Match, rendered: str) -> str:
        tag = match.group("tag")
        return f'<{tag} class="arithmatex">{rendered}</{tag}>'

    def _render(self, formulas: list[tuple[str, bool]], where: str) -> None:
        request = json.dumps([{"tex": tex, "display": display} for tex, display in formulas])
        process = subprocess.run(["node", str(SCRIPT), str(self.katex)], input=request,
                                 capture_output=True, text=True, encoding="utf-8")
        if process.returncode != 0:
            raise MathError(f"KaTeX failed while rendering {where}: {process.stderr.strip()}")
        for (tex, display), result in zip(formulas, json.loads(process.stdout)):
            if "error" in result:
                raise MathError(f"{where}: KaTeX cannot render the formula {tex!r}: {result['error']}")
            self.cache[(tex, display)] = result["html"]

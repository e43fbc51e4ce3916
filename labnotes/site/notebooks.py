"""notebooks/<page>.ipynb from the literate files, with jupytext.

A notebook is the page's cells (notes and code, no outputs) after one setup cell that says
how to install labnotes and picks the GPU when there is one. The text is deterministic (fixed
cell ids, no jupytext bookkeeping), so a test can regenerate it and compare byte for byte:
`make notebooks` (scripts/sync_notebooks.py) rewrites them.
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbformat

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def repository_url(root: Path) -> str | None:
    """The project's repository URL from pyproject.toml [project.urls], if it names one."""
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return None
    try:
        import tomllib
    except ImportError:  # Python 3.10: no TOML reader in the standard library
        found = re.search(r'^(?:Repository|Source|Homepage)\s*=\s*"([^"]+)"', pyproject.read_text(), re.M)
        return found.group(1) if found else None
    urls = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("urls", {})
    for key in ("Repository", "Source", "Homepage"):
        if key in urls:
            return urls[key]
    return None


def setup_cell_source(page: str, package: str = "labnotes", repo_url: str | None = None) -> str:
    source = f"{package}/{page.replace('.', '/')}.py"
    install = f'"git+{repo_url}"' if repo_url else f"-e /path/to/your/copy/of/{package}"
    return "\n".join([
        f"# Setup. This notebook is generated from {source} by `make notebooks`: edit that file, not this one.",
        f"# It needs the {package} package. In a clone of the repository: `pip install -e .`",
        "# Anywhere else (Colab, a fresh kernel), uncomment the next line and run this cell:",
        f"# %pip install {install}",
        "import importlib.util",
        "",
        f'if importlib.util.find_spec("{package}") is None:',
        "    raise ModuleNotFoundError(",
        f'        "{package} is not installed: run `pip install -e .` in a clone of the repository, "',
        '        "or uncomment the %pip line at the top of this cell")',
        "",
        "import torch",
        "",
        "# Compute on the GPU when there is one (CUDA, then Apple MPS, then the CPU). The page's code",
        "# picks the same device by itself; DEVICE is here for your own experiments.",
        'DEVICE = torch.device("cuda" if torch.cuda.is_available() else',
        '                      "mps" if torch.backends.mps.is_available() else "cpu")',
        'print(f"{package} is installed; computing on {DEVICE}")'.replace("{package}", package),
    ])


def notebook_text(path: Path, *, package: str = "labnotes", repo_url: str | None = None,
                  page: str | None = None, language=None) -> str:
    """The .ipynb text for one literate file (`page`: its page name, default the file's stem).

    With `language` (an i18n.Localization), the notes cells are the page's translation and a
    notes cell with the translated title and summary opens the notebook; the code is the same.
    """
    notebook = jupytext.read(path, fmt="py:percent")
    cells = [nbformat.v4.new_code_cell(setup_cell_source(page or path.stem, package, repo_url))]
    notes = iter(_translated_notes(path, page or path.stem, language)) if language is not None else None
    if language is not None:
        cells.insert(0, nbformat.v4.new_markdown_cell(next(notes)))
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(next(notes) if notes is not None else cell.source)
        else:
            new = nbformat.v4.new_code_cell(cell.source)
        if cell.metadata.get("tags"):
            new.metadata["tags"] = list(cell.metadata["tags"])
        cells.append(new)
    for index, cell in enumerate(cells):
        cell.id = f"cell-{index}"
    result = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": dict(KERNELSPEC),
        "language_info": {"name": "python"},
    })
    result.nbformat_minor = 5
    nbformat.validate(result)
    return nbformat.writes(result, version=4) + "\n"


def _translated_notes(path: Path, name: str, language) -> list[str]:
    """The title cell, then each notes cell of the page in the translation's language."""
    from .literate import read_page

    page = read_page(path, name)
    cells = [f"# {language.display_title(page)}\n\n{language.summary(page)}"]
    for section in page.sections:
        heading, notes = language.section(page, section)
        cells.append(f"{'#' * section.heading_level} {heading}\n\n{notes}" if heading is not None else notes)
    return cells

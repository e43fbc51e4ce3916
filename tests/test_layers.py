"""The layering the house guide asks for, checked over the imports (AST, nothing imported).

Shared pages import no paper and no experiment; paper pages import no experiment (and, of the
papers, only mlm, whose masking others reuse); library code imports neither the renderer, the
command line nor the registry. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "labnotes"
SHARED = {"data", "tokenizer", "transformer", "training", "downstream", "pairs"}
PAPERS = {"mlm", "nsp", "sop", "spanbert", "electra", "xlnet", "bart", "dim", "contrastive",
          "chinese_wwm"}
FRONT_END = {"cli", "registry", "site", "bench", "__main__"}


def imported_modules(path: Path) -> set[str]:
    """Every labnotes module a file imports, as a dotted name under labnotes ("mlm", "experiments.common")."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith("labnotes."):
                found.add(name.removeprefix("labnotes."))
    return found


def library_files() -> list[Path]:
    return [path for path in sorted(PACKAGE.rglob("*.py"))
            if path.relative_to(PACKAGE).parts[0] not in {"site"} and path.stem not in FRONT_END]


def top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_library_code_imports_no_front_end(path):
    bad = {name for name in imported_modules(path) if top(name) in FRONT_END}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("name", sorted(SHARED))
def test_shared_pages_import_no_paper_and_no_experiment(name):
    path = PACKAGE / f"{name}.py"
    if not path.exists():
        pytest.skip(f"{name}.py is not written yet")
    bad = {module for module in imported_modules(path) if top(module) in PAPERS | {"experiments"}}
    assert not bad, f"labnotes/{name}.py imports {sorted(bad)}"


@pytest.mark.parametrize("name", sorted(PAPERS))
def test_paper_pages_import_no_experiment_and_only_mlm_of_the_papers(name):
    modules = imported_modules(PACKAGE / f"{name}.py")
    bad = {module for module in modules if top(module) == "experiments"
           or (top(module) in PAPERS and top(module) not in {"mlm", name})}
    assert not bad, f"labnotes/{name}.py imports {sorted(bad)}"


def test_the_checker_sees_imports_inside_functions(tmp_path):
    path = tmp_path / "x.py"
    path.write_text("def f():\n    from labnotes.mlm import mask_tokens\n    import labnotes.cli\n")
    assert imported_modules(path) == {"mlm", "mlm.mask_tokens", "cli"}


def code_lines(path: Path) -> list[tuple[int, str]]:
    """(number, line) of the lines shown in the code column: not the module docstring (front
    matter) and not the notes cells (Markdown, which wraps)."""
    text = path.read_text(encoding="utf-8")
    body = ast.parse(text).body
    docstring_end = body[0].end_lineno if body and isinstance(body[0], ast.Expr) \
        and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str) else 0
    lines, in_notes = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("# %%"):
            in_notes = "[markdown]" in line or "[md]" in line
        elif number > docstring_end and not in_notes:
            lines.append((number, line))
    return lines


def test_code_lines_fit_the_code_column():
    """The site's code column clips lines longer than 100 characters."""
    long = [f"{path.relative_to(ROOT)}:{number}: {len(line)} characters"
            for path in sorted(PACKAGE.rglob("*.py")) if path.relative_to(PACKAGE).parts[0] != "site"
            for number, line in code_lines(path) if len(line) > 100]
    assert not long, "\n".join(long)


def test_code_lines_skip_notes_and_front_matter(tmp_path):
    path = tmp_path / "page.py"
    path.write_text('"""Title.\n\nPaper: ' + "x" * 120 + '\n"""\n\n# %% [markdown]\n# ' + "y" * 120
                    + "\n\n# %%\nz = 1\n")
    assert code_lines(path) == [(5, ""), (10, "z = 1")]

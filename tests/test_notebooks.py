"""notebooks/<page>.ipynb: in sync with the literate files, and they run top to bottom.

Regenerate with `make notebooks` (scripts/sync_notebooks.py). Execution uses this venv's
Python as the kernel (a kernelspec written to a temporary folder) with LABNOTES_QUICK=1, in
a temporary working directory so that demo runs leave nothing in the repository.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from traitlets.config import Config

from labnotes.site.notebooks import notebook_text
from labnotes.site.render import discover_pages

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
PAGES = discover_pages(ROOT / "labnotes")
KERNEL = "labnotes-venv"
CELL_TIMEOUT = 240

_spec = importlib.util.spec_from_file_location("sync_notebooks", ROOT / "scripts" / "sync_notebooks.py")
sync_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sync_notebooks)


def test_notebooks_are_in_sync_with_the_literate_files():
    problems = sync_notebooks.out_of_date(ROOT)
    assert not problems, "\n".join(problems) + "\nrun `make notebooks` to regenerate them"


def test_chinese_notebooks_are_in_sync_with_the_literate_files_and_translations():
    problems = sync_notebooks.out_of_date(ROOT, "zh")
    assert not problems, "\n".join(problems) + "\nrun `make notebooks` to regenerate them"


@pytest.mark.parametrize("name", PAGES)
def test_chinese_notebook_runs_the_same_code_with_chinese_notes(name):
    """notebooks/zh/<page>.ipynb: a Chinese title cell, then the English notebook's cells with the
    notes in Chinese and every code cell unchanged (so the execution tests below cover it)."""
    english = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    chinese = nbformat.read(ROOT / "notebooks" / "zh" / f"{name}.ipynb", as_version=4)
    assert chinese.cells[0].cell_type == "markdown" and chinese.cells[0].source.startswith("# ")
    rest = chinese.cells[1:]
    assert [cell.cell_type for cell in rest] == [cell.cell_type for cell in english.cells]
    assert [cell.source for cell in rest if cell.cell_type == "code"] == \
        [cell.source for cell in english.cells if cell.cell_type == "code"]
    notes = [cell.source for cell in chinese.cells if cell.cell_type == "markdown"]
    assert all(re.search(r"[\u4e00-\u9fff]", text) for text in notes), f"{name}: a notes cell has no Chinese"


@pytest.mark.parametrize("name", PAGES)
def test_first_cell_explains_install_and_picks_the_gpu(name):
    notebook = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    setup = notebook.cells[0]
    assert setup.cell_type == "code"
    assert "pip install -e ." in setup.source and "%pip install" in setup.source
    assert 'torch.cuda.is_available()' in setup.source
    assert f"labnotes/{name.replace('.', '/')}.py" in setup.source
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    assert notebook.cells[1].source.startswith('"""')  # then the module, docstring first


def test_notebook_text_is_deterministic_and_has_no_jupytext_bookkeeping():
    path = FIXTURES / "toypkg" / "toypaper.py"
    first = notebook_text(path, package="toypkg")
    assert first == notebook_text(path, package="toypkg")
    notebook = json.loads(first)
    assert [cell["id"] for cell in notebook["cells"]] == [f"cell-{i}" for i in range(len(notebook["cells"]))]
    assert "jupytext" not in notebook["metadata"]
    assert all(set(cell["metadata"]) <= {"tags"} for cell in notebook["cells"])
    assert [cell["cell_type"] for cell in notebook["cells"]] == [
        "code", "code", "markdown", "code", "markdown", "code", "markdown", "code"]


def test_sync_reports_drift_and_stale_notebooks(tmp_path):
    (tmp_path / "labnotes").mkdir()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "labnotes" / "__init__.py").write_text('PAGES = ["toyshared"]\n')
    source = (FIXTURES / "toypkg" / "toyshared.py").read_text()
    (tmp_path / "labnotes" / "toyshared.py").write_text(source)
    assert sync_notebooks.out_of_date(tmp_path) == ["notebooks/toyshared.ipynb is missing"]
    for path, text in sync_notebooks.expected_notebooks(tmp_path).items():
        path.write_text(text)
    (tmp_path / "notebooks" / "old.ipynb").write_text("{}")
    assert sync_notebooks.out_of_date(tmp_path) == ["notebooks/old.ipynb has no page in labnotes.PAGES"]
    (tmp_path / "notebooks" / "old.ipynb").unlink()
    (tmp_path / "labnotes" / "toyshared.py").write_text(source.replace("Scaled dot products", "Dot products"))
    assert sync_notebooks.out_of_date(tmp_path) == ["notebooks/toyshared.ipynb is out of date"]


# --------------------------------------------------------------------------- execution


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A kernelspec for this interpreter (the venv's), found through JUPYTER_PATH."""
    jupyter = tmp_path_factory.mktemp("jupyter")
    spec_dir = jupyter / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "labnotes (test venv)",
        "language": "python",
        "env": {"LABNOTES_QUICK": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "MPLBACKEND": "Agg", "PYTHONPATH": os.pathsep.join([str(ROOT), str(FIXTURES)])},
    }))
    previous = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(jupyter)
    yield KERNEL
    if previous is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = previous


# Kernels talk over Unix sockets, not TCP: a TCP kernel picks free ports by binding and
# releasing them, and another test process (or the site server of the browser tests) could take
# one before the kernel binds it ("Address already in use"; it failed CI once). The socket
# paths must be absolute (the kernel runs in `cwd`) and short (a Unix socket path has ~100 bytes).
def _execute(text: str, cwd: Path, kernel: str) -> nbformat.NotebookNode:
    notebook = nbformat.reads(text, as_version=4)
    sockets = tempfile.mkdtemp(prefix="kernel-")
    config = Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(sockets, "ipc")}})
    client = NotebookClient(notebook, kernel_name=kernel, timeout=CELL_TIMEOUT, config=config,
                            resources={"metadata": {"path": str(cwd)}})
    try:
        client.execute()
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    return notebook


def test_fixture_notebook_executes(kernel, tmp_path):
    notebook = _execute(notebook_text(FIXTURES / "toypkg" / "toypaper.py", package="toypkg"), tmp_path, kernel)
    outputs = "".join(output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", []))
    assert "toypkg is installed; computing on cpu" in outputs
    assert "[[0.7071067811865475, 0.0], [0.0, 0.7071067811865475]] 0.7071067811865475" in outputs


# A reader runs a notebook again: the second run must not trip over what the first left. How a
# notebook may write is checked statically below: a lecture page, outside its
# functions (the demo cell included) only through `train(..., overwrite=True)`, and an
# experiment page only through `train_arm`, which empties an arm's folder first. So one of each
# run twice stands for the rest, which run once (running every notebook twice cost CI about
# eight minutes of CPU): MLM's lecture and experiment, and ELECTRA's lecture, whose second run
# finds its warm start in the cache.
RUN_TWICE = {"mlm", "electra", "experiments.mlm"}


@pytest.mark.parametrize("name", PAGES)
def test_notebook_executes_top_to_bottom(kernel, tmp_path, name):
    text = (ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8")
    _execute(text, tmp_path, kernel)
    if name in RUN_TWICE:
        _execute(text, tmp_path, kernel)


def test_experiments_write_runs_only_through_train_arm():
    """What makes running one experiment notebook twice stand for all: no experiment page trains
    or writes files on its own (no `train` of the training page, no shutil, mkdir or writes)."""
    for path in sorted((ROOT / "labnotes" / "experiments").glob("*.py")):
        if path.name in ("__init__.py", "common.py"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "labnotes.training":
                assert "train" not in {alias.name for alias in node.names}, path.name
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [alias.name for alias in node.names] + [getattr(node, "module", "")]
                assert "shutil" not in modules, path.name
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("mkdir", "write_text", "write_bytes", "rmtree"), \
                    f"{path.name}:{node.lineno}: {node.attr}"


WRITES = ("open", "mkdir", "makedirs", "write_text", "write_bytes", "atomic_write_text", "dump",
          "rmtree", "remove", "unlink", "copy", "copyfile", "save", "savefig", "touch")


def test_lecture_pages_write_only_through_train_with_overwrite():
    """What makes running two lecture notebooks twice stand for all: what a lecture notebook runs
    outside functions (its top-level statements, the demo cell included) trains only with
    `train(..., overwrite=True)` and writes nothing else (no open, mkdir, save, dump...)."""
    assert RUN_TWICE <= set(PAGES)
    for name in PAGES:
        if name.startswith("experiments."):
            continue
        tree = ast.parse((ROOT / "labnotes" / f"{name}.py").read_text(encoding="utf-8"))
        for statement in tree.body:
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            for node in ast.walk(statement):
                if not isinstance(node, ast.Call):
                    continue
                called = ast.unparse(node.func).rsplit(".", 1)[-1]
                assert called not in WRITES, f"{name}:{node.lineno}: {ast.unparse(node.func)}"
                if called == "train":
                    overwrite = [k.value for k in node.keywords if k.arg == "overwrite"]
                    assert overwrite and ast.literal_eval(overwrite[0]) is True, \
                        f"{name}:{node.lineno}: train without overwrite=True"

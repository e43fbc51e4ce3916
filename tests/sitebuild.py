"""Shared helpers for the site tests: build the site once per test process, serve it locally.

Two sites are built (each at most once per process, whichever test asks first):
    "real"     the labnotes site exactly as `make build` makes it (labnotes.PAGES, docs/results):
               the English site, and the Chinese edition (mkdocs.zh.yml) in its zh/ folder
    "fixture"  the same mkdocs.yml over tests/fixtures/toypkg, a two-page package with stored
               results in tests/fixtures/results, so every renderer feature is exercised even
               before (or whatever) the real pages contain.
"""

from __future__ import annotations

import atexit
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
SITES = {
    "real": {},
    "fixture": {"LABNOTES_SITE_PACKAGE": "tests/fixtures/toypkg",
                "LABNOTES_SITE_RESULTS": "tests/fixtures/results"},
}
_TMP = Path(tempfile.mkdtemp(prefix="labnotes-site-tests-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)


def package_dir(kind: str) -> Path:
    return ROOT / SITES[kind].get("LABNOTES_SITE_PACKAGE", "labnotes")


def results_dir(kind: str) -> Path:
    return ROOT / SITES[kind].get("LABNOTES_SITE_RESULTS", "docs/results")


TRANSLATIONS = {"real": ("zh",)}  # the languages built beside a site's English pages, in <lang>/


def run_mkdocs_build(out_dir: Path, env_overrides: dict[str, str],
                     config: str = "mkdocs.yml") -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "OMP_NUM_THREADS": "1", **env_overrides}
    for key in ("LABNOTES_SITE_PACKAGE", "LABNOTES_SITE_RESULTS"):
        if key not in env_overrides:
            env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", config, "-d", str(out_dir)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def built_site(kind: str) -> Path:
    """Build the site with `mkdocs build --strict` (once per process) and return its folder."""
    error = _build(kind)
    if error:
        raise AssertionError(error)
    return _TMP / kind


@functools.cache
def _build(kind: str) -> str | None:
    """None when the build succeeded, else the failure (remembered: a failing build runs once)."""
    result = run_mkdocs_build(_TMP / kind, SITES[kind])
    if result.returncode != 0:
        return (f"mkdocs build --strict of the {kind} site failed (exit {result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}")
    for lang in TRANSLATIONS.get(kind, ()):  # after the English build, which empties its folder
        result = run_mkdocs_build(_TMP / kind / lang, SITES[kind], config=f"mkdocs.{lang}.yml")
        if result.returncode != 0:
            return (f"mkdocs build --strict -f mkdocs.{lang}.yml of the {kind} site failed "
                    f"(exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    return None


def site_pages(kind: str) -> list[str]:
    """Every page the site should have, as paths relative to its root (known before building)."""
    from labnotes.site.render import REAL_SITE_ONLY, discover_pages

    docs = ROOT / "docs"
    handwritten = sorted(path.relative_to(docs).with_suffix(".html").as_posix()
                         for path in docs.rglob("*.md") if "results" not in path.relative_to(docs).parts[:-1]
                         and not (kind != "real" and path.relative_to(docs).as_posix() in REAL_SITE_ONLY))
    names = discover_pages(package_dir(kind))
    english = handwritten + [f"{name}.html" for name in names] + [f"reference/{name}.html" for name in names]
    return english + [f"{lang}/{page}" for lang in TRANSLATIONS.get(kind, ()) for page in english]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@functools.cache
def served_site(kind: str) -> str:
    """Serve the built site on 127.0.0.1 (a thread of this process); returns its base URL."""
    directory = built_site(kind)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    atexit.register(server.shutdown)
    return f"http://127.0.0.1:{server.server_address[1]}"

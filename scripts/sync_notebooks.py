"""Regenerate notebooks/<page>.ipynb from labnotes/<page>.py (`make notebooks`), and the Chinese
notebooks notebooks/zh/<page>.ipynb from the same files with the notes of translations/zh/.

    python scripts/sync_notebooks.py           write every notebook, delete stale ones
    python scripts/sync_notebooks.py --check   exit 1 and list the notebooks that are out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labnotes.site.i18n import Localization, TranslationError  # noqa: E402
from labnotes.site.notebooks import notebook_text, repository_url  # noqa: E402
from labnotes.site.render import discover_pages, page_path  # noqa: E402


LANGUAGES = ("zh",)  # notebooks/<lang>/ for each translation of the site


def expected_notebooks(root: Path = ROOT, lang: str = "en") -> dict[Path, str]:
    """notebooks/<page>.ipynb (or notebooks/<lang>/<page>.ipynb) -> its text, for every page in
    labnotes.PAGES. A translation that is not complete and current raises TranslationError."""
    repo_url = repository_url(root)
    language = None if lang == "en" else Localization.load(root, lang, tables=False)
    folder = root / "notebooks" if lang == "en" else root / "notebooks" / lang
    return {folder / f"{name}.ipynb":
            notebook_text(page_path(root / "labnotes", name), package="labnotes", repo_url=repo_url, page=name,
                          language=language)
            for name in discover_pages(root / "labnotes")}


def out_of_date(root: Path = ROOT, lang: str = "en") -> list[str]:
    """What differs between notebooks/ (or notebooks/<lang>/) and the literate files (empty when in sync)."""
    expected = expected_notebooks(root, lang)
    folder = root / "notebooks" if lang == "en" else root / "notebooks" / lang
    problems = [f"{path.relative_to(root)} is {'out of date' if path.exists() else 'missing'}"
                for path, text in expected.items()
                if not path.exists() or path.read_text(encoding="utf-8") != text]
    problems += [f"{path.relative_to(root)} has no page in labnotes.PAGES"
                 for path in sorted(folder.glob("*.ipynb")) if path not in expected]
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report notebooks that are out of date")
    args = parser.parse_args()
    status = 0
    for lang in ("en", *LANGUAGES):
        try:
            if args.check:
                problems = out_of_date(ROOT, lang)
                for problem in problems:
                    print(problem, file=sys.stderr)
                if problems:
                    print("run `make notebooks` to regenerate them", file=sys.stderr)
                    status = 1
                continue
            expected = expected_notebooks(ROOT, lang)
        except TranslationError as error:
            print(f"notebooks/{lang}/ not written: {error}", file=sys.stderr)
            status = 1
            continue
        folder = ROOT / "notebooks" if lang == "en" else ROOT / "notebooks" / lang
        folder.mkdir(exist_ok=True)
        for path, text in expected.items():
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
                print(f"wrote {path.relative_to(ROOT)}")
        for path in sorted(folder.glob("*.ipynb")):
            if path not in expected:
                path.unlink()
                print(f"deleted {path.relative_to(ROOT)} (not in labnotes.PAGES)")
    return status


if __name__ == "__main__":
    sys.exit(main())

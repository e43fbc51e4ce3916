"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def labnotes_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One empty LABNOTES_CACHE per test session: nothing touches ~/.cache, and what one test
    builds (the embedded corpus, a tokenizer) is reused by the others."""
    path = tmp_path_factory.mktemp("labnotes-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LABNOTES_CACHE", str(path))
        yield path


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache folder (not yet created) for this test only."""
    path = tmp_path / "fresh-cache"
    monkeypatch.setenv("LABNOTES_CACHE", str(path))
    return path

"""Experiments: every stored table and figure is drawn from its results.json alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from labnotes.experiments.common import (in_order, markdown_table, mean_and_spread,
                                         percent_over_seeds, redraw, slug)
from labnotes.registry import PAPERS
from labnotes.training import make_quick

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


@pytest.mark.parametrize("name", sorted(PAPERS))
def test_stored_tables_and_figures_redraw_byte_identical_from_results_json(name, tmp_path):
    stored = RESULTS / name
    shutil.copy(stored / "results.json", tmp_path / "results.json")
    redraw(PAPERS[name].experiment_page(), tmp_path)
    drawn = sorted(path.name for path in tmp_path.iterdir() if path.name != "results.json")
    expected = sorted(path.name for path in stored.iterdir() if path.name not in ("results.json", "command.txt"))
    assert drawn == expected
    for file in drawn:
        assert (tmp_path / file).read_bytes() == (stored / file).read_bytes(), f"{name}/{file} differs"


def test_redraw_without_results_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the experiment first"):
        redraw(PAPERS["mlm"].experiment_page(), tmp_path)


def test_helpers():
    assert slug("BERT 80/10/10, dynamic") == "bert-80-10-10--dynamic"
    assert in_order({"b": 1, "a": 2, "z": 3}, ["b", "a"]) == ["b", "a", "z"]
    assert mean_and_spread([1.0]) == (1.0, 0.0)
    assert mean_and_spread([1.0, 3.0]) == pytest.approx((2.0, 2 ** 0.5))
    assert percent_over_seeds([0.5, 0.7]) == "60.0 ± 14.1"
    assert percent_over_seeds([0.5]) == "50.0"
    assert markdown_table(["a", "b"], [[1, 2]]) == "| a | b |\n|---|---|\n| 1 | 2 |\n"


def test_quick_mode_is_one_definition():
    from labnotes.mlm import MLMConfig
    from labnotes.nsp import PairConfig

    mlm = make_quick(MLMConfig())
    assert (mlm.train.steps, mlm.train.eval_every, mlm.train.checkpoint_every, mlm.eval_blocks) == (20, 20, 20, 64)
    pairs = make_quick(PairConfig())
    assert pairs.train.steps == 20 and pairs.eval_pairs == 64

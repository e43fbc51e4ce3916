"""Experiments: every stored table and figure is drawn from its results.json alone."""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from labnotes.experiments.common import (at_preset, in_order, in_processes, markdown_table,
                                         mean_and_spread, percent_over_seeds, redraw, run, slug)
from labnotes.registry import PAPERS, STUDIES, experiment_page
from labnotes.training import make_quick

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


EXPERIMENTS = sorted([*PAPERS, *STUDIES])  # every `labnotes experiment NAME`


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_stored_tables_and_figures_redraw_byte_identical_from_results_json(name, tmp_path):
    stored = RESULTS / name
    shutil.copy(stored / "results.json", tmp_path / "results.json")
    redraw(experiment_page(name), tmp_path)
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


def test_in_processes_gives_each_item_its_result_in_order_with_one_or_several_processes():
    """--jobs N: the same results, in the items' order, whether run here or in fresh processes."""
    import operator
    import os

    assert in_processes(operator.sub, [5, 7, 9], 2) == [3, 5, 7]
    assert in_processes(operator.sub, [5, 7, 9], 2, jobs=2) == [3, 5, 7]
    assert in_processes(operator.sub, [], 2, jobs=2) == []  # nothing to do: no process started
    here = os.getpid()
    assert all(pid != here for pid in in_processes(_process_id, [0, 1], jobs=2))
    assert in_processes(_process_id, [0]) == [here]
    assert in_processes(_threads, [0, 1], jobs=2) == [1, 1]  # each worker: one thread


def _process_id(_: int) -> int:
    import os

    return os.getpid()


def _threads(_: int) -> int:
    import torch

    return torch.get_num_threads()


def test_quick_mode_is_one_definition():
    from labnotes.mlm import MLMConfig
    from labnotes.nsp import PairConfig

    mlm = make_quick(MLMConfig())
    assert (mlm.train.steps, mlm.train.eval_every, mlm.train.checkpoint_every, mlm.eval_blocks) == (20, 20, 20, 64)
    pairs = make_quick(PairConfig())
    assert pairs.train.steps == 20 and pairs.eval_pairs == 64


# --- presets: the same arms, larger ------------------------------------------------------------

@functools.cache
def preset_costs():
    """scripts/preset_costs.py, whose `training_runs` lists every run an experiment trains."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("preset_costs",
                                                  ROOT / "scripts" / "preset_costs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def stored_size(paper: str, run_name: str) -> tuple[int, int | None]:
    """(steps, batch size or None) that docs/results/PAPER/results.json records for a run."""
    results = json.loads((RESULTS / paper / "results.json").read_text())
    if run_name == "MLM start":
        return results["start_steps"], None
    steps = results.get("steps")
    if steps is None:  # recorded in the run's own summary
        row = results if "summary" in results else results["rows"][run_name]
        steps = row["summary"]["steps"] if "summary" in row else row["steps"]
    return steps, results.get("batch_size")


SHAPE = ("dim", "layers", "heads", "ffn_dim")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_offers_the_cpu_and_gpu_presets(name):
    page = experiment_page(name)
    assert set(page.PRESETS) == {"cpu", "gpu"} and all(page.PRESETS.values())
    parameter = inspect.signature(page.run_experiment).parameters["preset"]
    assert parameter.default == "cpu" and parameter.kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("name", sorted(PAPERS))
def test_the_cpu_preset_builds_what_the_stored_results_were_made_with(name):
    runs = preset_costs().training_runs(name, "cpu")
    assert runs
    for run in runs:
        steps, batch_size = stored_size(name, run.name)
        assert run.config.train.steps == steps, run.name
        if batch_size is not None:
            assert run.config.train.batch_size == batch_size, run.name
        assert tuple(getattr(run.config.model, key) for key in SHAPE) == (128, 2, 2, 512)


@pytest.mark.parametrize("name", sorted(PAPERS))
def test_the_gpu_preset_trains_the_same_runs_larger(name):
    from labnotes.transformer import EncoderConfig

    costs = preset_costs()
    cpu = {run.name: run for run in costs.training_runs(name, "cpu")}
    gpu = {run.name: run for run in costs.training_runs(name, "gpu")}
    assert list(gpu) == list(cpu)
    for run_name, small in cpu.items():
        large, train = gpu[run_name].config, small.config.train
        assert gpu[run_name].seeds == small.seeds
        assert large.train.steps == 4 * train.steps
        assert large.train.lr == train.lr
        if run_name == "MLM start":  # the MLM page's recipe for 4 times the steps
            assert large.train.batch_size == train.batch_size
            continue
        assert (large.train.eval_every, large.train.warmup_steps) == (4 * train.eval_every,
                                                                      4 * train.warmup_steps)
        assert large.train.batch_size == 2 * train.batch_size
        assert tuple(getattr(large.model, key) for key in SHAPE) == (256, 4, 4, 1024)
        EncoderConfig(**dataclasses.asdict(large.model))  # a valid shape
        assert large.model.max_len >= large.corpus.seq_len


def test_a_gpu_preset_task_builds_and_quick_wins_over_a_preset():
    from labnotes.experiments import mlm
    from labnotes.mlm import MLMTask

    config = mlm.arm_config({}, quick=False, progress=False, preset="gpu")
    task = MLMTask(config)
    assert task.model.encoder.config.dim == 256
    assert mlm.arm_config({}, quick=True, preset="gpu") == mlm.arm_config({}, quick=True)


def test_at_preset_cpu_changes_nothing_and_an_unknown_preset_is_refused():
    from labnotes.electra import ElectraConfig

    config = ElectraConfig()
    assert at_preset(copy.deepcopy(config), "cpu") == config
    larger = at_preset(copy.deepcopy(config), "gpu")
    assert larger.warm_start_steps == 4 * config.warm_start_steps  # its MLM start, too
    with pytest.raises(ValueError, match="choose one of cpu, gpu"):
        at_preset(config, "tpu")


def test_run_records_the_preset_and_keeps_its_runs_apart(tmp_path):
    seen = {}

    def run_experiment(work_dir, *, quick, progress, preset="cpu"):
        seen["work_dir"], seen["preset"] = work_dir, preset
        return {"paper": "fake"}

    fake = SimpleNamespace(__name__="labnotes.experiments.fake", run_experiment=run_experiment,
                           draw=lambda results, out_dir: None)
    run(fake, tmp_path / "out", command="labnotes experiment fake --preset gpu", preset="gpu",
        work_dir=tmp_path / "runs")
    assert seen == {"work_dir": tmp_path / "runs" / "gpu", "preset": "gpu"}
    stored = json.loads((tmp_path / "out" / "results.json").read_text())
    assert stored["preset"] == "gpu" and stored["quick"] is False
    run(fake, tmp_path / "cpu", command="labnotes experiment fake", work_dir=tmp_path / "runs")
    assert seen["work_dir"] == tmp_path / "runs" / "full"
    assert "preset" not in json.loads((tmp_path / "cpu" / "results.json").read_text())

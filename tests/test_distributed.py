"""Data-parallel training (DDP, gloo on the CPU): two processes with a global batch B train the
run one process trains with batch B; a two-process run killed with -9 resumes to the weights
of one never stopped, with two processes or with one."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from labnotes.cli import build_parser, configure
from labnotes.electra import ElectraConfig, ElectraTask
from labnotes.mlm import MLMConfig, MLMTask
from labnotes.registry import PAPERS
from labnotes.spanbert import SpanBERTConfig, SpanBERTTask
from labnotes.tokenizer import CorpusConfig
from labnotes.training import (Processes, TrainConfig, latest_checkpoint, read_checkpoint_state,
                               read_metrics, train)
from labnotes.transformer import EncoderConfig
from tests.test_cli import write_small_corpus

# The loss curves of one and two processes agree to this relative tolerance: the same rows, the
# same masks, the same sums, but matrix products over 4 rows instead of 8 and an all-reduce
# round differently in the last bits, and 20 AdamW steps carry that along.
RELATIVE = 1e-5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> CorpusConfig:
    data = write_small_corpus(tmp_path_factory.mktemp("corpus") / "small.txt", documents=120)
    return CorpusConfig(data=str(data), seq_len=32, vocab_size=300)


def tiny_train(**changes) -> TrainConfig:
    base = TrainConfig(steps=20, batch_size=8, lr=3e-3, warmup_steps=2, log_every=1,
                       eval_every=20, checkpoint_every=10, device="cpu", progress=False)
    return dataclasses.replace(base, **changes)


def build(paper: str, corpus: CorpusConfig, **train_changes):
    model = EncoderConfig(dim=32, ffn_dim=64, layers=1, heads=2, dropout=0.0)
    train_config = tiny_train(**train_changes)
    if paper == "mlm":
        return MLMTask(MLMConfig(corpus=corpus, model=model, train=train_config, eval_blocks=16))
    if paper == "spanbert":
        return SpanBERTTask(SpanBERTConfig(corpus=corpus, model=model, train=train_config,
                                           eval_blocks=16))
    return ElectraTask(ElectraConfig(corpus=corpus, model=model, train=train_config,
                                     eval_blocks=16, warm_start_steps=0))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def one_process(rank: int, count: int, port: int, task, out: Path, resume: bool) -> None:
    """What torchrun does for each process: an environment that says who it is."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(count), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    train(task, task.config.train, out, resume=resume)


def train_in_processes(task, out: Path, count: int = 2, resume: bool = False) -> None:
    """Train `task` in `count` forked processes (its state as now: the caller's is untouched)."""
    context, port = multiprocessing.get_context("fork"), free_port()
    workers = [context.Process(target=one_process, args=(rank, count, port, task, out, resume))
               for rank in range(count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(180)
    assert [worker.exitcode for worker in workers] == [0] * count


def losses(out: Path) -> list[float]:
    return [row["loss"] for row in read_metrics(out / "metrics.jsonl") if "loss" in row]


def assert_close_weights(a: Path, b: Path, exact: bool = False, atol: float = 1e-5) -> None:
    mine, theirs = load_file(str(a)), load_file(str(b))
    assert mine.keys() == theirs.keys()
    for key in mine:
        if exact:
            assert torch.equal(mine[key], theirs[key]), key
        else:
            torch.testing.assert_close(mine[key], theirs[key], rtol=1e-4, atol=atol)


@pytest.mark.parametrize("paper", ["mlm", "electra"])
def test_two_processes_train_the_run_of_one(paper, corpus, tmp_path):
    task = build(paper, corpus)
    train_in_processes(task, tmp_path / "two")  # forks first: the task is still untrained
    train(task, task.config.train, tmp_path / "one")
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one) == len(two) == 20
    assert two == pytest.approx(one, rel=RELATIVE)
    assert one[-1] < one[0]
    assert_close_weights(tmp_path / "one" / "model.safetensors",
                         tmp_path / "two" / "model.safetensors")
    metrics = [row for row in read_metrics(tmp_path / "two" / "metrics.jsonl") if "loss" in row]
    assert metrics[0]["tokens_per_s"] > 0 and "eval_loss" in read_metrics(
        tmp_path / "two" / "metrics.jsonl")[-1]
    state = read_checkpoint_state(latest_checkpoint(tmp_path / "two"))
    assert state["processes"] == 2 and state["step"] == 20


def test_spanbert_slices_keep_each_span_with_its_row(corpus):
    task = build("spanbert", corpus)
    batch = task.make_batch(0, torch.Generator().manual_seed(0))
    halves = [Processes(rank=rank, count=2).share_of(task, batch) for rank in (0, 1)]
    assert sum(len(half["spans"]) for half in halves) == len(batch["spans"])
    for rank, half in enumerate(halves):
        assert len(half["input_ids"]) == 4
        for row, start, end in half["spans"].tolist():
            assert 0 <= row < 4
            original = batch["labels"][row + 4 * rank, start:end + 1]
            assert torch.equal(half["labels"][row, start:end + 1], original)
    counts = [task.loss_counts(half) for half in halves]
    assert sum(c["mlm"] for c in counts) == task.loss_counts(batch)["mlm"]


def test_a_batch_that_does_not_split_is_refused(corpus, tmp_path):
    task = build("mlm", corpus, batch_size=7)
    context, port = multiprocessing.get_context("fork"), free_port()
    workers = [context.Process(target=one_process, args=(rank, 2, port, task, tmp_path, False))
               for rank in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [1, 1]  # a ValueError in each
    assert not (tmp_path / "metrics.jsonl").exists()


def wait_for_group_to_end(group: int, timeout: float = 30.0) -> None:
    """SIGKILL reaches a group's processes asynchronously: wait until none of them still runs
    (a zombie waiting to be reaped writes nothing). Linux: reads /proc."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = False
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                state, _, process_group = stat.read_text().rsplit(")", 1)[1].split()[:3]
            except (OSError, ValueError):
                continue  # the process ended while we looked
            running = running or (int(process_group) == group and state != "Z")
        if not running:
            return
        time.sleep(0.01)
    raise AssertionError(f"process group {group} still runs {timeout} s after SIGKILL")


TINY = ["--steps", "40", "--batch-size", "8", "--seq-len", "32", "--device", "cpu",
        "--no-progress", "--set", "dim=32", "--set", "ffn_dim=64", "--set", "layers=1",
        "--set", "heads=2", "--set", "dropout=0", "--set", "corpus.vocab_size=300",
        "--set", "lr=3e-3", "--set", "warmup_steps=2", "--set", "log_every=1",
        "--set", "eval_every=40", "--set", "checkpoint_every=2", "--set", "eval_blocks=16"]


def test_killed_with_minus_9_under_torchrun_resumes_to_the_same_weights(corpus, tmp_path):
    args = ["train", "mlm", "--data", corpus.data, "--out", str(tmp_path / "killed"), *TINY]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", str(free_port()), "-m", "labnotes"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.Popen([*torchrun, *args], env=env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while latest_checkpoint(tmp_path / "killed") is None and time.monotonic() < deadline:
        assert run.poll() is None, run.stderr.read()
        time.sleep(0.01)
    os.killpg(run.pid, signal.SIGKILL)  # the machine dies: torchrun and both processes at once
    run.wait()
    wait_for_group_to_end(run.pid)  # the workers too, before their folder is copied
    stopped = read_checkpoint_state(latest_checkpoint(tmp_path / "killed"))["step"]
    assert stopped < 40
    shutil.copytree(tmp_path / "killed", tmp_path / "on-one")

    # the same run, never stopped, with two processes
    parser_args = build_parser().parse_args(args)
    config = configure(PAPERS["mlm"], parser_args)
    train_in_processes(PAPERS["mlm"].build_task(config), tmp_path / "whole")

    resumed = subprocess.run([*torchrun, *args, "--resume"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert_close_weights(tmp_path / "whole" / "model.safetensors",
                         tmp_path / "killed" / "model.safetensors", exact=True)
    assert losses(tmp_path / "killed") == losses(tmp_path / "whole")

    # and with one process: the same run up to rounding, which AdamW amplifies where a gradient
    # is near zero (its step is the gradient over its own running size): 1e-4 after 40 steps
    train(PAPERS["mlm"].build_task(config), config.train, tmp_path / "on-one", resume=True)
    assert_close_weights(tmp_path / "whole" / "model.safetensors",
                         tmp_path / "on-one" / "model.safetensors", atol=1e-4)
    assert losses(tmp_path / "on-one") == pytest.approx(losses(tmp_path / "whole"), rel=RELATIVE)


def test_bench_one_and_two_processes(capsys):
    from labnotes.bench import describe_scaling, run_scaling

    tiny = EncoderConfig(vocab_size=300, dim=16, layers=1, heads=2, ffn_dim=32, dropout=0.0)
    result = run_scaling("mlm", processes=[1, 2], steps=1, rounds=1, repeats=1, batch_size=8,
                         seq_len=16, device="cpu", config=tiny)
    assert set(result["processes"]) == {"1", "2"} and result["speedup"]["1"] == 1.0
    assert all(figure["tokens_per_s"] > 0 and figure["mfu"] is None
               for figure in result["processes"].values())
    assert result["flops_per_step"] > 0
    with_peak = {**result, "processes": {"2": {**result["processes"]["2"], "mfu": 0.5}}}
    assert "MFU 50.0%" in describe_scaling(with_peak)
    with pytest.raises(ValueError, match="does not split"):
        run_scaling("mlm", processes=[3], batch_size=8, device="cpu", config=tiny)


@pytest.mark.parametrize("counts", ["0", "1,x", "2,0"])
def test_bench_refuses_bad_process_counts(counts, capsys):
    from labnotes.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "mlm", "--processes", counts])
    assert exit_info.value.code == 2 and "--processes" in capsys.readouterr().err


def toy_process(rank: int, port: int, out: Path, resume: bool, signal_rank: int | None) -> None:
    """One of two processes training the toy task; `signal_rank` sends itself SIGTERM."""
    from labnotes.training import TrainingStopped
    from tests.test_interruption import SignalledTask
    from tests.test_training import ToyTask, config

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    task = SignalledTask(signal_at=13) if rank == signal_rank else ToyTask()
    try:
        train(task, config(steps=16), out, resume=resume)
    except TrainingStopped as stopped:
        os._exit(stopped.exit_code)


def run_toy(out: Path, resume: bool = False, signal_rank: int | None = None) -> list[int]:
    context, port = multiprocessing.get_context("fork"), free_port()
    workers = [context.Process(target=toy_process, args=(rank, port, out, resume, signal_rank))
               for rank in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    return [worker.exitcode for worker in workers]


def test_sigterm_to_one_process_stops_both_at_the_same_step(tmp_path):
    assert run_toy(tmp_path / "whole") == [0, 0]
    assert run_toy(tmp_path / "stopped", signal_rank=1) == [143, 143]  # only rank 1 was told
    assert latest_checkpoint(tmp_path / "stopped").name == "step-0000014"
    assert run_toy(tmp_path / "stopped", resume=True) == [0, 0]
    assert_close_weights(tmp_path / "whole" / "model.safetensors",
                         tmp_path / "stopped" / "model.safetensors", exact=True)


def test_a_loss_that_compares_rows_is_refused_on_two_processes(tmp_path):
    from tests.test_training import ToyTask, config

    class Contrastive(ToyTask):
        rows_interact = True

    def attempt(rank: int, port: int) -> None:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                          WORLD_SIZE="2", LOCAL_RANK=str(rank))
        try:
            train(Contrastive(), config(), tmp_path)
        except ValueError as error:
            assert "in-batch negatives" in str(error)
            os._exit(3)

    context, port = multiprocessing.get_context("fork"), free_port()
    workers = [context.Process(target=attempt, args=(rank, port)) for rank in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [3, 3]


def test_two_processes_train_one_warm_start_and_file_it_once(corpus, fresh_cache, tmp_path):
    out = tmp_path / "run"
    args = ["train", "electra", "--data", corpus.data, "--out", str(out), "--steps", "2",
            "--batch-size", "8", "--seq-len", "32", "--device", "cpu", "--no-progress",
            "--set", "dim=32", "--set", "ffn_dim=64", "--set", "layers=1",
            "--set", "corpus.vocab_size=300", "--set", "eval_blocks=16",
            "--set", "eval_every=2", "--set", "checkpoint_every=2",
            "--set", "warm_start_steps=2"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", str(free_port()), "-m", "labnotes"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LABNOTES_CACHE": str(fresh_cache)}
    done = subprocess.run([*torchrun, *args], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    starts = list((fresh_cache / "mlm-starts").iterdir())
    assert len(starts) == 1 and not starts[0].name.startswith(".")  # no scratch folder left
    assert read_checkpoint_state(latest_checkpoint(starts[0]))["step"] == 2
    assert json.loads((out / "summary.json").read_text())["warm_start_steps"] == 2

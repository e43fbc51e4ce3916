"""Runs that stop when asked (SIGTERM, Ctrl-C) and checkpoints that survive a write killed at any
point, or a full disk: `--resume` always finds a usable checkpoint and ends with the weights of
a run never stopped."""

from __future__ import annotations

import errno
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

import labnotes.training as training
from labnotes.cli import main
from labnotes.training import (CheckpointError, TrainingStopped, latest_checkpoint,
                               read_checkpoint_state, read_metrics, train)
from tests.test_cli import write_small_corpus
from tests.test_training import ToyTask, config, weights


class SignalledTask(ToyTask):
    """The toy task, which sends its own process `signal_number` while building `signal_at`."""

    def __init__(self, signal_at: int, signal_number: int = signal.SIGTERM, times: int = 1,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.signal_at, self.signal_number, self.times = signal_at, signal_number, times

    def make_batch(self, step, generator):
        if step == self.signal_at:
            for _ in range(self.times):
                os.kill(os.getpid(), self.signal_number)
        return super().make_batch(step, generator)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for key, value in weights(a).items():
        assert torch.equal(value, weights(b)[key]), key


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> ToyTask:
    task = ToyTask()
    train(task, config(), tmp_path_factory.mktemp("full"))
    return task


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_at_the_step_boundary_and_resume_ends_the_same(tmp_path, number,
                                                                        uninterrupted):
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingStopped) as stopped:
        train(SignalledTask(signal_at=13, signal_number=number), config(), tmp_path)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers
    assert stopped.value.exit_code == 128 + number and stopped.value.step == 14
    assert "--resume" in str(stopped.value) and signal.Signals(number).name in str(stopped.value)
    assert latest_checkpoint(tmp_path).name == "step-0000014"  # not a checkpoint_every step
    assert not (tmp_path / "summary.json").exists()
    resumed = ToyTask(seed=123)
    train(resumed, config(), tmp_path, resume=True)
    assert_same_weights(resumed.model, uninterrupted.model)
    steps = [row["step"] for row in read_metrics(tmp_path / "metrics.jsonl") if "loss" in row]
    assert steps == list(range(1, 31))


def test_a_second_ctrl_c_interrupts_at_once(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(SignalledTask(signal_at=13, signal_number=signal.SIGINT, times=2), config(),
              tmp_path)
    assert latest_checkpoint(tmp_path).name == "step-0000010"  # no checkpoint of its own


# A failing writer. A forked child resumes a run from its step-10 checkpoint and is killed
# (SIGKILL: no `except` or `finally` runs, as with kill -9 or a power cut) at the k-th file-system
# operation of writing the step-20 checkpoint, either just before it or, for a write, after half
# the file has reached the disk. For every k, the parent then resumes and must end with the
# weights of the uninterrupted run.

WRITES = {"save_model": 1, "save_file": 1, "write_text": 0}  # which argument is the file


def count_or_kill(out_dir: Path, kill_at: int, half: bool, count_file: Path) -> None:
    """In a forked child: resume the run in `out_dir` to step 30, killed at operation `kill_at`
    of the first checkpoint write (0: never; the number of operations goes to `count_file`)."""
    counted, armed, names = 0, False, []

    def watch(owner, name, path_argument=None):
        real = getattr(owner, name)

        def wrapper(*args, **kwargs):
            nonlocal counted
            if armed:
                counted += 1
                names.append(name)
                if counted == kill_at and half and path_argument is not None:
                    result = real(*args, **kwargs)
                    path = Path(args[path_argument])
                    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])
                    os.kill(os.getpid(), signal.SIGKILL)
                    return result
                if counted == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)
        setattr(owner, name, wrapper)

    for name in ("save_model", "save_file"):
        watch(training, name, WRITES[name])
    watch(Path, "write_text", WRITES["write_text"])  # args[0] is the path itself
    for owner, name in [(os, "replace"), (os, "fsync"), (os, "rename"), (os, "unlink"),
                        (shutil, "rmtree"), (tempfile, "mkdtemp"), (tempfile, "mkstemp")]:
        watch(owner, name)
    real_write_checkpoint = training.write_checkpoint

    def write_checkpoint(*args, **kwargs):
        nonlocal armed
        armed = True
        result = real_write_checkpoint(*args, **kwargs)
        armed = False
        count_file.write_text("\n".join(names))
        os._exit(0)  # the operations of one write are counted: that is all we wanted
    training.write_checkpoint = write_checkpoint
    train(ToyTask(), config(), out_dir, resume=True)


def run_child(*args) -> int:
    child = multiprocessing.get_context("fork").Process(target=count_or_kill, args=args)
    child.start()
    child.join(60)
    return child.exitcode


def test_a_checkpoint_write_killed_at_any_point_leaves_a_usable_one(tmp_path, uninterrupted):
    base = tmp_path / "base"
    with pytest.raises(KeyboardInterrupt):
        train(ToyTask(crash_at=15), config(), base)  # a run with its step-10 checkpoint
    shutil.copytree(base, tmp_path / "counted")
    assert run_child(tmp_path / "counted", 0, False, tmp_path / "count") == 0
    operations = (tmp_path / "count").read_text().split()
    assert len(operations) >= 10, "the writer has more steps than that"
    for kill_at, operation in enumerate(operations, start=1):
        for half in (False, True) if operation in WRITES else (False,):
            run = tmp_path / f"run-{kill_at}-{half}"
            shutil.copytree(base, run)
            assert run_child(run, kill_at, half, tmp_path / "unused") == -signal.SIGKILL
            found = latest_checkpoint(run)
            assert found is not None and found.name in ("step-0000010", "step-0000020")
            read_checkpoint_state(found)  # whole, with matching SHA-256s
            resumed = ToyTask(seed=123)
            train(resumed, config(), run, resume=True)
            assert_same_weights(resumed.model, uninterrupted.model)
            assert not list(run.rglob("*.tmp")), "the resumed run clears what the kill left"


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch, uninterrupted):
    real_save_file = training.save_file

    def disk_full(tensors, path):
        real_save_file(tensors, path)
        Path(path).write_bytes(Path(path).read_bytes()[:10])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    with monkeypatch.context() as patch:
        calls = {"n": 0}

        def second_write_fails(tensors, path):
            calls["n"] += 1
            return (disk_full if calls["n"] == 2 else real_save_file)(tensors, path)
        patch.setattr(training, "save_file", second_write_fails)
        with pytest.raises(CheckpointError, match="disk is full") as error:
            train(ToyTask(), config(), tmp_path)
    assert "step-0000010" in str(error.value) and "--resume" in str(error.value)
    assert latest_checkpoint(tmp_path).name == "step-0000010"
    assert not list(tmp_path.rglob("*.tmp"))
    assert not (tmp_path / "checkpoints" / "step-0000020").exists()
    resumed = ToyTask(seed=123)
    train(resumed, config(), tmp_path, resume=True)
    assert_same_weights(resumed.model, uninterrupted.model)


def test_cli_sigterm_exits_143_with_a_resume_hint_and_resumes(tmp_path):
    corpus = write_small_corpus(tmp_path / "small.txt", documents=60)
    out = tmp_path / "run"
    args = [sys.executable, "-m", "labnotes", "train", "mlm", "--data", str(corpus), "--out",
            str(out), "--steps", "100", "--batch-size", "4", "--seq-len", "32", "--no-progress",
            "--set", "dim=16", "--set", "ffn_dim=32", "--set", "layers=1", "--set", "heads=2",
            "--set", "corpus.vocab_size=200", "--set", "log_every=1", "--set", "eval_every=100",
            "--set", "checkpoint_every=100"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 120
    while (not read_metrics(out / "metrics.jsonl") and process.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert "stopped by SIGTERM" in stderr and "--resume" in stderr
    stopped_at = read_checkpoint_state(latest_checkpoint(out))["step"]
    assert 0 < stopped_at < 100
    assert main([*args[3:], "--resume"]) == 0  # in this process: one start of Python less
    steps = [row["step"] for row in read_metrics(out / "metrics.jsonl") if "loss" in row]
    assert steps == list(range(1, 101))

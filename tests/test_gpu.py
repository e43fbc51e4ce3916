"""The GPU path: autocast's dtype, TF32, the compile switch, NCCL between two GPUs.

Skipped where CUDA is absent (CI and the 2-core CPU machines); run them on a CUDA machine with
`python -m pytest tests/test_gpu.py`."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from labnotes.training import (latest_checkpoint, pick_precision, read_checkpoint_state,
                               read_metrics, train)
from tests.test_training import ToyTask, config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def losses(out) -> list[float]:
    return [row["loss"] for row in read_metrics(out / "metrics.jsonl") if "loss" in row]


def test_autocast_is_bf16_where_supported_else_fp16_with_a_scaler(tmp_path):
    device = torch.device("cuda")
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert pick_precision(device) == expected
    train(ToyTask(), config(device="cuda", steps=40, lr=2e-2), tmp_path)
    state = read_checkpoint_state(latest_checkpoint(tmp_path))
    assert state["precision"] == str(expected)
    assert (state["grad_scaler"] is not None) == (expected == torch.float16)
    assert losses(tmp_path)[-1] < losses(tmp_path)[0]


def test_fp16_with_its_scaler_trains(tmp_path):
    train(ToyTask(), config(device="cuda", precision="fp16", steps=40, lr=2e-2), tmp_path)
    state = read_checkpoint_state(latest_checkpoint(tmp_path))
    assert state["grad_scaler"]["scale"] > 0
    assert losses(tmp_path)[-1] < losses(tmp_path)[0]


@pytest.mark.parametrize("tf32", [True, False])
def test_tf32_switch(tmp_path, tf32):
    train(ToyTask(), config(device="cuda", steps=2, tf32=tf32), tmp_path)
    assert torch.backends.cuda.matmul.allow_tf32 is tf32


def test_compile_switch_trains_the_same_run(tmp_path):
    fp32 = config(device="cuda", precision="fp32", tf32=False)
    train(ToyTask(), fp32, tmp_path / "eager")
    train(ToyTask(), dataclasses.replace(fp32, compile=True), tmp_path / "compiled")
    assert losses(tmp_path / "compiled") == pytest.approx(losses(tmp_path / "eager"), rel=1e-4)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_nccl_two_gpus_train_the_run_of_one(tmp_path):
    """torchrun with NCCL (subprocesses: CUDA, once started here, does not survive a fork)."""
    import os
    import subprocess
    import sys

    from tests.test_cli import write_small_corpus
    from tests.test_distributed import TINY, free_port

    data = write_small_corpus(tmp_path / "small.txt", documents=120)
    settings = [*TINY, "--set", "precision=fp32", "--set", "tf32=false"]
    settings[settings.index("--device") + 1] = "cuda"
    runs = {"one": [sys.executable, "-m", "labnotes"],
            "two": [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                    "--master_port", str(free_port()), "-m", "labnotes"]}
    for name, launcher in runs.items():
        result = subprocess.run([*launcher, "train", "mlm", "--data", str(data), "--out",
                                 str(tmp_path / name), *settings], capture_output=True,
                                text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert result.returncode == 0, result.stderr
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=1e-4)

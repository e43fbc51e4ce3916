"""The training loop: reproducible, resumable bit for bit, refuses foreign or damaged checkpoints."""

import dataclasses
import json

import pytest
import torch
from torch import nn

from labnotes.cli import SettingError, apply_settings
from labnotes.training import (CheckpointError, TrainConfig, latest_checkpoint, learning_rate,
                               load_checkpoint, make_optimizer, read_metrics, train)


class ToyTask:
    """Regress a fixed random linear map, with dropout so that the global RNG matters too."""

    paper = "toy"

    def __init__(self, width: int = 8, seed: int = 0, crash_at: int | None = None) -> None:
        torch.manual_seed(seed)
        self.crash_at = crash_at
        self.width = width
        self.model = nn.Sequential(nn.Linear(width, 16), nn.Dropout(0.2), nn.LayerNorm(16), nn.Linear(16, 1))
        self.target = torch.randn(width, generator=torch.Generator().manual_seed(99))

    def settings(self):
        return {"width": self.width}

    def make_batch(self, step, generator):
        if step == self.crash_at:
            raise KeyboardInterrupt("simulated crash")
        x = torch.randn(16, self.width, generator=generator)
        return {"input_ids": x, "y": x @ self.target}

    def loss(self, model, batch):
        loss = ((model(batch["input_ids"]).squeeze(-1) - batch["y"]) ** 2).mean()
        return loss, {}

    def evaluate(self, model, device):
        x = torch.randn(64, self.width, generator=torch.Generator().manual_seed(5)).to(device)
        return {"eval_loss": ((model(x).squeeze(-1) - x @ self.target.to(device)) ** 2).mean().item()}


def config(**changes) -> TrainConfig:
    base = TrainConfig(steps=30, batch_size=16, lr=3e-3, warmup_steps=5, log_every=1, eval_every=10,
                       checkpoint_every=10, device="cpu", progress=False)
    return dataclasses.replace(base, **changes)


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_loss_goes_down_and_files_are_written(tmp_path):
    summary = train(ToyTask(), config(steps=100, lr=2e-2), tmp_path)
    rows = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "loss" in r]
    assert rows[-1]["loss"] < rows[0]["loss"] * 0.5
    assert json.loads((tmp_path / "summary.json").read_text())["eval_loss"] == summary["eval_loss"]
    assert (tmp_path / "model.safetensors").exists()
    assert latest_checkpoint(tmp_path).name == "step-0000100"
    assert not list(tmp_path.rglob("*.tmp")), "no temporary file left behind"


def test_same_seed_gives_bit_identical_losses(tmp_path):
    train(ToyTask(), config(), tmp_path / "a")
    train(ToyTask(), config(), tmp_path / "b")
    a = read_metrics(tmp_path / "a" / "metrics.jsonl")
    b = read_metrics(tmp_path / "b" / "metrics.jsonl")
    assert [r.get("loss") for r in a] == [r.get("loss") for r in b]
    c = read_metrics(train(ToyTask(), config(seed=1), tmp_path / "c") and tmp_path / "c" / "metrics.jsonl")
    assert [r.get("loss") for r in a] != [r.get("loss") for r in c]  # the seed matters


def test_resume_is_bit_exact(tmp_path):
    full = ToyTask()
    train(full, config(), tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        train(ToyTask(crash_at=25), config(), tmp_path / "part")  # dies after the step-20 checkpoint
    resumed = ToyTask(seed=123)  # different initial weights: the checkpoint must overwrite them
    train(resumed, config(), tmp_path / "part", resume=True)
    for key, value in weights(full.model).items():
        assert torch.equal(value, weights(resumed.model)[key]), key
    losses_full = [r["loss"] for r in read_metrics(tmp_path / "full" / "metrics.jsonl") if "loss" in r]
    losses_resumed = [r["loss"] for r in read_metrics(tmp_path / "part" / "metrics.jsonl") if "loss" in r]
    assert losses_full == losses_resumed


def test_refuses_to_overwrite_a_run_without_resume(tmp_path):
    train(ToyTask(), config(steps=10), tmp_path)
    with pytest.raises(CheckpointError, match="--resume"):
        train(ToyTask(), config(steps=10), tmp_path)


def test_fp16_resume_is_bit_exact_and_keeps_the_loss_scale(tmp_path):
    """fp16 on the CPU (autocast + GradScaler): the scaler's state travels with the checkpoint."""
    fp16 = config(precision="fp16")
    train(ToyTask(), fp16, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        train(ToyTask(crash_at=25), fp16, tmp_path / "part")
    state = json.loads((latest_checkpoint(tmp_path / "part") / "state.json").read_text())
    assert state["precision"] == "torch.float16" and state["grad_scaler"]["scale"] > 0
    assert "_growth_tracker" in state["grad_scaler"]
    train(ToyTask(seed=123), fp16, tmp_path / "part", resume=True)
    losses = [[r["loss"] for r in read_metrics(tmp_path / run / "metrics.jsonl") if "loss" in r]
              for run in ("full", "part")]
    assert losses[0] == losses[1]


def test_resume_in_another_precision_is_refused(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(ToyTask(crash_at=15), config(), tmp_path)
    other = config(precision="fp16")
    with pytest.raises(CheckpointError, match="precision"):
        train(ToyTask(), other, tmp_path, resume=True)


def test_more_steps_on_resume_keep_the_schedule_of_the_start(tmp_path, capsys):
    train(ToyTask(), config(steps=20), tmp_path)
    train(ToyTask(), config(steps=30), tmp_path, resume=True)
    assert "keeps the horizon of 20 steps" in capsys.readouterr().err
    rates = [r["lr"] for r in read_metrics(tmp_path / "metrics.jsonl") if "lr" in r]
    expected = [learning_rate(step, config(steps=20)) for step in range(30)]
    assert rates == pytest.approx(expected)
    assert rates[-1] == pytest.approx(config().lr * config().min_lr_ratio)


def test_overwrite_starts_afresh_and_leaves_other_files_alone(tmp_path):
    first = train(ToyTask(), config(steps=10), tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    second = train(ToyTask(), config(steps=10), tmp_path, overwrite=True)
    assert second["train_loss"] == first["train_loss"]  # the same run again, not a continuation
    assert (tmp_path / "notes.txt").read_text() == "mine"
    steps = [row["step"] for row in read_metrics(tmp_path / "metrics.jsonl") if "loss" in row]
    assert steps == sorted(set(steps)) and steps[-1] == 10


def test_resume_without_a_checkpoint_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint to resume"):
        train(ToyTask(), config(steps=10), tmp_path / "empty", resume=True)
    assert not (tmp_path / "empty" / "summary.json").exists()
    with pytest.raises(ValueError, match="choose one"):
        train(ToyTask(), config(steps=10), tmp_path / "empty", resume=True, overwrite=True)


@pytest.mark.parametrize("field", ["steps", "batch_size", "grad_accum", "eval_every"])
def test_counts_below_one_are_refused(field):
    with pytest.raises(ValueError, match=f"{field} must be at least 1"):
        TrainConfig(**{field: 0})


def test_foreign_checkpoint_is_refused(tmp_path):
    train(ToyTask(), config(steps=10), tmp_path)
    other = ToyTask(width=4)
    with pytest.raises(CheckpointError, match="width"):
        train(other, config(steps=20), tmp_path, resume=True)
    renamed = ToyTask()
    renamed.paper = "mlm"
    with pytest.raises(CheckpointError, match="labnotes train toy"):
        train(renamed, config(steps=20), tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="lr"):
        train(ToyTask(), config(steps=20, lr=1.0), tmp_path, resume=True)


@pytest.mark.parametrize("victim", ["model.safetensors", "optimizer.safetensors", "state.json"])
def test_corrupted_checkpoint_is_refused(tmp_path, victim):
    train(ToyTask(), config(steps=10), tmp_path)
    path = latest_checkpoint(tmp_path) / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        train(ToyTask(), config(steps=20), tmp_path, resume=True)


def test_load_checkpoint_into_fresh_model(tmp_path):
    task = ToyTask()
    train(task, config(steps=10), tmp_path)
    fresh = ToyTask(seed=5)
    load_checkpoint(latest_checkpoint(tmp_path), task=fresh, model=fresh.model, optimizer=None, config=None)
    for key, value in weights(task.model).items():
        assert torch.equal(value, weights(fresh.model)[key])


def test_gradient_accumulation_matches_a_large_batch():
    """Two micro-batches of 16 give the gradient of their 32 examples together."""
    task = ToyTask()
    task.model.eval()  # no dropout, so the two computations are comparable
    g = torch.Generator().manual_seed(0)
    first, second = task.make_batch(0, g), task.make_batch(1, g)
    for batch in (first, second):
        (task.loss(task.model, batch)[0] / 2).backward()
    accumulated = [p.grad.clone() for p in task.model.parameters()]
    task.model.zero_grad()
    joined = {k: torch.cat([first[k], second[k]]) for k in first}
    task.loss(task.model, joined)[0].backward()
    for a, b in zip(accumulated, [p.grad for p in task.model.parameters()]):
        torch.testing.assert_close(a, b)


def test_schedule_warms_up_and_decays():
    c = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    lrs = [learning_rate(s, c) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)


def test_no_weight_decay_on_biases_and_norms():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    groups = make_optimizer(model, TrainConfig()).param_groups
    decayed = {id(p) for p in groups[0]["params"]}
    assert decayed == {id(model[0].weight)}
    assert groups[1]["weight_decay"] == 0.0 and len(groups[1]["params"]) == 3


def test_settings_by_path_and_by_name():
    @dataclasses.dataclass
    class Inner:
        dim: int = 4
        name: str | None = None

    @dataclasses.dataclass
    class Outer:
        inner: Inner = dataclasses.field(default_factory=Inner)
        train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
        flag: bool = False

    outer = apply_settings(Outer(), ["inner.dim=8", "lr=0.5", "flag=true", "name=none", "steps=7"])
    assert outer.inner.dim == 8 and outer.train.lr == 0.5 and outer.flag is True and outer.train.steps == 7
    with pytest.raises(SettingError, match="unknown setting.*inner.dim"):
        apply_settings(Outer(), ["nope=1"])
    with pytest.raises(SettingError, match="expected a value of type int"):
        apply_settings(Outer(), ["dim=wide"])
    with pytest.raises(SettingError, match="key=value"):
        apply_settings(Outer(), ["dim"])


def test_written_files_and_folders_follow_the_umask(tmp_path):
    import os
    import stat

    from labnotes.training import write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "out.json", {"a": 1})
        train(ToyTask(), config(steps=10), tmp_path / "run")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == 0o644
    checkpoint = latest_checkpoint(tmp_path / "run")
    assert stat.S_IMODE(checkpoint.stat().st_mode) == 0o755, "checkpoint folders are not private either"
    assert stat.S_IMODE((checkpoint / "model.safetensors").stat().st_mode) == 0o644


def test_keep_freed_memory_on_glibc_and_its_switch(monkeypatch):
    import platform
    import sys

    from labnotes.training import keep_freed_memory

    monkeypatch.setenv("LABNOTES_KEEP_MEMORY", "0")
    assert keep_freed_memory() is False
    monkeypatch.delenv("LABNOTES_KEEP_MEMORY")
    assert keep_freed_memory() is (sys.platform == "linux" and platform.libc_ver()[0] == "glibc")

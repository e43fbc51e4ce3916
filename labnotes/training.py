"""The training loop.

The one loop every paper trains with: device and mixed precision, AdamW with warmup and
decay, clipping and accumulation, progress, metrics, evaluation, and checkpoints that
resume bit for bit.

"""

# %% [markdown]
# A paper page decides three things: how a batch is built (its masking or noising), what the
# model is, and what the loss is. Everything else about training is the same for all of them
# and lives on this page: picking the device, mixed precision, the optimiser and its schedule,
# logging, evaluation, checkpoints and resuming.
#
# The contract between a paper and this loop is a small **task** object:
#
# | member | what it does |
# |---|---|
# | `paper` | the paper's short name (`"mlm"`), stored in checkpoints |
# | `model` | the `nn.Module` to train |
# | `settings()` | a JSON-able dict of everything that defines the model and data |
# | `make_batch(step, generator)` | the batch for this step, on the CPU |
# | `loss(model, batch)` | `(loss, metrics)` for one batch |
# | `evaluate(model, device)` | validation metrics, a dict of floats |

# %%
from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import types
import typing
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import Tensor, nn
from tqdm.auto import tqdm

# %% [markdown]
# ## Configuration
#
# Defaults train the small models of this site on a 2-core CPU in minutes. The learning rate
# is higher than BERT's $10^{-4}$ (arXiv:1810.04805, App. A.2) because the model is tiny and
# the run short; $\beta_2 = 0.98$ follows RoBERTa (arXiv:1907.11692, §3.1), which found it
# steadier with large learning rates.

# %%
@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # the schedule decays to lr * min_lr_ratio
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.98
    grad_clip: float = 1.0
    grad_accum: int = 1  # micro-batches per optimiser step
    log_every: int = 10
    eval_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:1 | mps
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    progress: bool = True


# Settings that may change between a run and its resumption without changing the result.
RESUMABLE_CHANGES = {"steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
                     "device", "progress"}


class Task(Protocol):
    paper: str
    model: nn.Module

    def settings(self) -> dict[str, Any]: ...
    def make_batch(self, step: int, generator: torch.Generator) -> dict[str, Tensor]: ...
    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]: ...
    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]: ...


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: corrupted, foreign, or missing."""


# %% [markdown]
# ## Device and precision
#
# We take the fastest device present: CUDA, then Apple's MPS, then the CPU. On a GPU we run
# the forward pass under **autocast**: matrix products in 16-bit floats, reductions and the
# weights in 32-bit (Micikevicius et al., 2017, arXiv:1710.03740). bfloat16 has float32's
# exponent range and needs nothing else; float16 does not, so small gradients would round to
# zero — a **gradient scaler** multiplies the loss before `backward` and divides the gradients
# after. On the CPU we stay in float32: it is exact and, at this size, not slower.

# %%
def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu or auto")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"--device {name}: MPS is not available here; use --device cpu or auto")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_precision(device: torch.device, requested: str = "auto") -> torch.dtype:
    if requested == "fp32" or (requested == "auto" and device.type == "cpu"):
        return torch.float32
    if requested == "bf16" or (requested == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    if requested in ("auto", "fp16"):
        return torch.float16
    raise ValueError(f"precision {requested!r}: choose one of auto, fp32, bf16, fp16")


def autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# %% [markdown]
# ### Keeping freed memory on Linux
#
# PyTorch's CPU allocator asks the C library for every tensor and gives it back when the tensor
# dies. glibc serves big requests (above a threshold that starts at 128 KiB) with fresh pages
# from the kernel and returns them on `free`, so the next step's logits, activations and
# gradients fault their pages in again one by one, each page zeroed by the kernel. On a small
# model that is a fifth of the step (`/usr/bin/time -v` counted ~870,000 page faults in 130
# steps of the MLM page's default model).
# Raising glibc's two thresholds keeps freed blocks in the process for reuse: blocks of up to
# 32 MiB (glibc's ceiling) come from the heap, and the heap is never trimmed. The cost is
# that the process keeps its peak memory, which a training loop reaches every step anyway.
# Other platforms and C libraries are left as they are; `LABNOTES_KEEP_MEMORY=0` turns it off.

# %%
def keep_freed_memory() -> bool:
    """Tell glibc to recycle freed blocks instead of returning them to the kernel. True if applied."""
    if os.environ.get("LABNOTES_KEEP_MEMORY") == "0" or sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)) and bool(libc.mallopt(m_trim_threshold, 2**30))


# %% [markdown]
# ## The optimiser: AdamW, no decay on biases and norms
#
# AdamW (Loshchilov & Hutter, arXiv:1711.05101) applies weight decay directly to the weights
# instead of through the gradient. As in BERT, biases and LayerNorm parameters are not decayed:
# pulling a LayerNorm scale towards zero, or a bias towards zero, is not a sensible prior.
# In practice: decay the matrices (tensors with 2 or more dimensions), not the vectors.
#
# The **schedule** warms up linearly over `warmup_steps` (Adam's early estimates of the
# gradient's variance are noisy, so the first steps must be small) and then decays with a
# cosine to `min_lr_ratio` of the peak:
#
# $$\eta(s) = \begin{cases} \eta_{\max}\, s / s_w & s < s_w \\
#   \eta_{\max}\left(r + (1 - r)\tfrac{1}{2}\left(1 + \cos \pi \tfrac{s - s_w}{S - s_w}\right)\right) & s \ge s_w\end{cases}$$

# %%
def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for parameter in model.parameters():  # each shared (tied) parameter appears once
        if parameter.requires_grad:
            (decay if parameter.dim() >= 2 else no_decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2))


def learning_rate(step: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return config.lr * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine)


# %% [markdown]
# ## Randomness you can replay
#
# A run is reproducible when every random draw is a function of the seed and the step, not of
# how long the program has been running. So each step gets its own `torch.Generator`, seeded
# from `(seed, step)`, for everything the paper draws (which documents, which tokens to mask),
# and the global generator that dropout uses is re-seeded the same way before each step. A run
# stopped at step 500 and resumed draws exactly what an uninterrupted run would have drawn:
# that, plus saving the optimiser's state exactly, is what makes `--resume` bit-exact.

# %%
def step_seed(seed: int, step: int, micro: int = 0) -> int:
    digest = hashlib.sha256(f"{seed}/{step}/{micro}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def step_generator(seed: int, step: int, micro: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(step_seed(seed, step, micro))


# %% [markdown]
# ## Writing files so that a crash never leaves half of one
#
# A file is written to a temporary name in the same folder, flushed to disk, and then renamed
# over its final name. A rename within one file system is atomic: a reader (or a resumed run)
# sees the old file or the new one, never a torn one. Checkpoints are folders, written whole
# under a temporary name and renamed into place the same way.

# %%
def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(temporary))
        follow_umask(Path(temporary))  # mkstemp makes files private (0600)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def follow_umask(path: Path, mode: int = 0o666) -> None:
    """Give `path` the permissions a plain `open` would have: `mode` less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, mode & ~mask)


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# %% [markdown]
# ## Checkpoints: safetensors and JSON, never pickle
#
# `torch.save` pickles, and unpickling a file runs whatever code it contains. A checkpoint is
# therefore three plain files: the model's tensors and the optimiser's tensors in
# [safetensors](https://huggingface.co/docs/safetensors) (a header and raw bytes, nothing to
# execute), and `state.json` with the step, the settings that made the run, and a SHA-256 of
# each tensor file. Loading checks all three: a checkpoint from another paper or another model
# configuration, or with a damaged file, is refused with a message that says why.

# %%
CHECKPOINT_FORMAT = "labnotes-checkpoint/1"


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split the optimiser's state into tensors (for safetensors) and the rest (for JSON)."""
    state = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    plain: dict[str, Any] = {"param_groups": state["param_groups"], "scalars": {}}
    for index, slots in state["state"].items():
        for key, value in slots.items():
            if isinstance(value, Tensor):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain["scalars"][f"{index}.{key}"] = value
    return tensors, plain


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], plain: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *plain["scalars"].items()]:
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": plain["param_groups"]})


def save_checkpoint(folder: Path, *, task: Task, model: nn.Module, optimizer: torch.optim.Optimizer,
                    config: TrainConfig, step: int, scaler_scale: float | None) -> None:
    folder = Path(folder)
    temporary = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    follow_umask(temporary, 0o777)  # mkdtemp makes folders private (0700)
    try:
        save_model(model, str(temporary / "model.safetensors"))
        tensors, plain = optimizer_tensors(optimizer)
        save_file(tensors, str(temporary / "optimizer.safetensors"))
        state = {
            "format": CHECKPOINT_FORMAT,
            "paper": task.paper,
            "settings": task.settings(),
            "train_config": dataclasses.asdict(config),
            "step": step,
            "optimizer": plain,
            "grad_scaler_scale": scaler_scale,
            "sha256": {name: sha256_file(temporary / name) for name in ("model.safetensors", "optimizer.safetensors")},
        }
        (temporary / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
        for written in temporary.iterdir():  # safetensors writes its files private (0600)
            follow_umask(written)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(temporary, folder)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def read_checkpoint_state(folder: Path) -> dict[str, Any]:
    folder = Path(folder)
    try:
        state = json.loads((folder / "state.json").read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{folder} is not a labnotes checkpoint (no state.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{folder}/state.json is corrupted ({error}); delete the folder "
                              "and resume from an earlier checkpoint or start afresh") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{folder} is not a {CHECKPOINT_FORMAT} checkpoint")
    for name, expected in state["sha256"].items():
        path = folder / name
        if not path.exists() or sha256_file(path) != expected:
            raise CheckpointError(f"{path} is missing or corrupted (SHA-256 does not match state.json); "
                                  "delete the folder and resume from an earlier checkpoint or start afresh")
    return state


def check_compatible(state: dict[str, Any], task: Task, config: TrainConfig, folder: Path) -> None:
    if state["paper"] != task.paper:
        raise CheckpointError(f"{folder} was written by `labnotes train {state['paper']}`, not "
                              f"`{task.paper}`; resume it with that paper or use another --out")
    differing = diff_settings(state["settings"], task.settings())
    differing += [f"train.{key}" for key in diff_settings(state["train_config"], dataclasses.asdict(config))
                  if key.split(".")[0] not in RESUMABLE_CHANGES]
    if differing:
        raise CheckpointError(f"{folder} was trained with different settings ({', '.join(differing)}); "
                              "resume with the same settings or use another --out")


def diff_settings(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [d for k in keys for d in diff_settings(old.get(k), new.get(k), f"{prefix}{k}.")]
    new = list(new) if isinstance(new, tuple) else new
    return [] if old == new else [prefix.rstrip(".")]


def load_checkpoint(folder: Path, *, task: Task, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                    config: TrainConfig | None) -> dict[str, Any]:
    state = read_checkpoint_state(folder)
    if config is not None:
        check_compatible(state, task, config, folder)
    elif state["paper"] != task.paper:
        raise CheckpointError(f"{folder} holds a `{state['paper']}` model, not `{task.paper}`")
    try:
        load_model(model, str(Path(folder) / "model.safetensors"), strict=True)
        if optimizer is not None:
            restore_optimizer(optimizer, load_file(str(Path(folder) / "optimizer.safetensors")), state["optimizer"])
    except (SafetensorError, RuntimeError, KeyError, ValueError) as error:
        raise CheckpointError(f"{folder} does not fit this model: {error}") from None
    return state


def latest_checkpoint(out_dir: Path) -> Path | None:
    pointer = Path(out_dir) / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    return pointer.parent / pointer.read_text().strip()


# %% [markdown]
# ## Metrics
#
# One JSON object per line in `metrics.jsonl`: easy to append while training, easy to read
# with `pandas.read_json(..., lines=True)` or ten lines of Python. Training lines carry
# `step`, `loss`, `lr` and `tokens_per_s`; evaluation lines carry `eval_*` keys. When a run
# resumes, lines from steps after its checkpoint are dropped so the file matches the weights.

# %%
def pyplot() -> Any:
    """matplotlib.pyplot with a backend that draws to files (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def in_order(names: Any, order: Any) -> list[str]:
    """`names` in the order of `order` (results.json stores its keys sorted), then any others."""
    return [name for name in order if name in names] + sorted(set(names) - set(order))


def save_figure(figure: Any, path: Path) -> None:
    """Write a matplotlib figure as a reproducible SVG (fixed ids, no date), atomically."""
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "labnotes"
    write_atomic(path, lambda tmp: figure.savefig(tmp, format="svg", metadata={"Date": None}))
    plt.close(figure)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    rows = []
    if Path(path).exists():
        for line in Path(path).read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut short by a crash: everything after it is untrusted
    return rows


def truncate_metrics(path: Path, last_step: int) -> None:
    rows = [row for row in read_metrics(path) if row.get("step", 0) <= last_step]
    write_atomic(path, lambda tmp: tmp.write_text("".join(json.dumps(row) + "\n" for row in rows)))


# %% [markdown]
# ## The loop
#
# One optimiser step is `grad_accum` micro-batches: each loss is divided by `grad_accum`
# before `backward`, so the summed gradient is that of one large batch. Then the gradient
# norm is clipped to `grad_clip` (Pascanu et al., arXiv:1211.5063), the learning rate set for
# this step, and AdamW applied. Every `eval_every` steps the task evaluates on held-out
# documents; every `checkpoint_every` steps a checkpoint is written and the `latest` pointer
# moved to it. At the end the final model is saved as `model.safetensors` and the final
# evaluation as `summary.json`.

# %%
def train(task: Task, config: TrainConfig, out_dir: Path | str, *, resume: bool = False) -> dict[str, Any]:
    out_dir = Path(out_dir)
    device = pick_device(config.device)
    dtype = pick_precision(device, config.precision)
    keep_freed_memory()
    model = task.model.to(device)
    optimizer = make_optimizer(model, config)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    metrics_path = out_dir / "metrics.jsonl"

    start_step = prepare_out_dir(out_dir, resume)
    if resume and (checkpoint := latest_checkpoint(out_dir)) is not None:
        state = load_checkpoint(checkpoint, task=task, model=model, optimizer=optimizer, config=config)
        start_step = state["step"]
        if scaler is not None and state.get("grad_scaler_scale"):
            scaler.update(state["grad_scaler_scale"])
        truncate_metrics(metrics_path, start_step)
    elif metrics_path.exists():
        metrics_path.unlink()
    write_json(out_dir / "config.json", {"paper": task.paper, "settings": task.settings(),
                                        "train": dataclasses.asdict(config)})

    model.train()
    bar = tqdm(total=config.steps, initial=start_step, disable=not config.progress,
               desc=f"train {task.paper}", dynamic_ncols=True)
    started, tokens_seen, last_eval = time.perf_counter(), 0, {}
    with open(metrics_path, "a") as metrics_file:
        for step in range(start_step, config.steps):
            lr = learning_rate(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_total, step_metrics = 0.0, {}
            for micro in range(config.grad_accum):
                batch = task.make_batch(step * config.grad_accum + micro, step_generator(config.seed, step, micro))
                tokens_seen += count_tokens(batch)
                batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
                torch.manual_seed(step_seed(config.seed + 1, step, micro))  # dropout
                with autocast(device, dtype):
                    loss, metrics = task.loss(model, batch)
                scaled = loss / config.grad_accum
                (scaler.scale(scaled) if scaler else scaled).backward()
                loss_total += loss.item() / config.grad_accum
                for key, value in metrics.items():
                    step_metrics[key] = step_metrics.get(key, 0.0) + value / config.grad_accum
            if scaler:
                scaler.unscale_(optimizer)
            grad_norm = nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)

            done = step + 1
            elapsed = time.perf_counter() - started
            if done % config.log_every == 0 or done == config.steps:
                row = {"step": done, "loss": loss_total, "lr": lr, "grad_norm": float(grad_norm),
                       "tokens_per_s": tokens_seen / max(elapsed, 1e-9), **step_metrics}
                metrics_file.write(json.dumps(row) + "\n")
                metrics_file.flush()
                bar.set_postfix(loss=f"{loss_total:.3f}", tok_s=f"{row['tokens_per_s']:.0f}")
            if done % config.eval_every == 0 or done == config.steps:
                last_eval = run_evaluation(task, model, device, dtype)
                metrics_file.write(json.dumps({"step": done, **last_eval}) + "\n")
                metrics_file.flush()
            if done % config.checkpoint_every == 0 or done == config.steps:
                metrics_file.flush()
                write_checkpoint(out_dir, task=task, model=model, optimizer=optimizer, config=config,
                                 step=done, scaler_scale=scaler.get_scale() if scaler else None)
            bar.update(1)
    bar.close()

    if not last_eval:  # resumed a finished run: nothing trained, evaluate the weights we have
        last_eval = run_evaluation(task, model, device, dtype)
    write_atomic(out_dir / "model.safetensors", lambda tmp: save_model(model, str(tmp)))
    summary = {"paper": task.paper, "steps": config.steps, "device": str(device), "precision": str(dtype),
               "train_loss": last_train_loss(metrics_path), **last_eval}
    write_json(out_dir / "summary.json", summary)
    return summary


def count_tokens(batch: dict[str, Tensor]) -> int:
    if "padding_mask" in batch:
        return int(batch["padding_mask"].sum())
    return int(batch["input_ids"].numel())


def run_evaluation(task: Task, model: nn.Module, device: torch.device, dtype: torch.dtype) -> dict[str, float]:
    model.eval()
    with torch.no_grad(), autocast(device, dtype):
        result = task.evaluate(model, device)
    model.train()
    return result


def last_train_loss(metrics_path: Path, window: int = 5) -> float | None:
    losses = [row["loss"] for row in read_metrics(metrics_path) if "loss" in row]
    return sum(losses[-window:]) / len(losses[-window:]) if losses else None


def prepare_out_dir(out_dir: Path, resume: bool) -> int:
    """Refuse to overwrite a run by accident; create the folder."""
    if not resume and latest_checkpoint(out_dir) is not None:
        raise CheckpointError(f"{out_dir} already holds a run; pass --resume to continue it, "
                              "or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    return 0


def write_checkpoint(out_dir: Path, **kwargs: Any) -> None:
    folder = out_dir / "checkpoints" / f"step-{kwargs['step']:07d}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder, **kwargs)
    pointer = folder.parent / "latest"
    write_atomic(pointer, lambda tmp: tmp.write_text(folder.name + "\n"))
    keep = kwargs["config"].keep_checkpoints
    old = sorted(p for p in folder.parent.glob("step-*") if p.is_dir())
    for stale in old[:-keep] if keep > 0 else []:
        shutil.rmtree(stale, ignore_errors=True)


# %% [markdown]
# ## Settings from the command line
#
# A paper's configuration is a dataclass that may hold other dataclasses (the encoder, the
# training loop, the corpus). `--set key=value` reaches any field by its dotted path
# (`--set model.dim=256`) or, when the name is unambiguous, by the name alone (`--set dim=256`).
# The value is parsed by the field's declared type, and an unknown key is an error that lists
# the keys there are.

# %%
class SettingError(ValueError):
    pass


def field_paths(config: Any, prefix: str = "") -> dict[str, tuple[Any, dataclasses.Field, Any]]:
    """Every settable leaf field: dotted path -> (owning dataclass, field, declared type)."""
    paths: dict[str, tuple[Any, dataclasses.Field, Any]] = {}
    hints = typing.get_type_hints(type(config))
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if dataclasses.is_dataclass(value):
            paths.update(field_paths(value, f"{prefix}{item.name}."))
        else:
            paths[f"{prefix}{item.name}"] = (config, item, hints[item.name])
    return paths


def parse_value(text: str, kind: Any, key: str) -> Any:
    union = typing.get_origin(kind) in (typing.Union, types.UnionType)
    options = typing.get_args(kind) if union else (kind,)
    if type(None) in options and text.lower() in ("none", "null", ""):
        return None
    base = next(option for option in options if option is not type(None))
    try:
        if base is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if base in (int, float, str):
            return base(text)
    except ValueError:
        raise SettingError(f"--set {key}={text}: expected a value of type {base.__name__}") from None
    raise SettingError(f"--set {key}: cannot be set from the command line")


def apply_settings(config: Any, assignments: Sequence[str]) -> Any:
    paths = field_paths(config)
    for assignment in assignments:
        key, separator, text = assignment.partition("=")
        if not separator:
            raise SettingError(f"--set {assignment!r}: write it as key=value")
        matches = [path for path in paths if path == key or path.split(".")[-1] == key]
        exact = [path for path in matches if path == key]
        if exact:
            matches = exact
        if not matches:
            raise SettingError(f"--set {key}: unknown setting; valid keys: {', '.join(sorted(paths))}")
        if len(matches) > 1:
            raise SettingError(f"--set {key}: ambiguous; write one of {', '.join(matches)}")
        owner, item, kind = paths[matches[0]]
        setattr(owner, item.name, parse_value(text, kind, key))
        if hasattr(owner, "__post_init__"):
            try:
                owner.__post_init__()
            except ValueError as error:
                raise SettingError(f"--set {key}={text}: {error}") from None
    return config


def task_settings(config: Any) -> dict[str, Any]:
    """A paper's configuration as plain JSON values, for checkpoints and `config.json`; without
    `train`, the loop's own settings, which are checked separately."""
    settings = json.loads(json.dumps(dataclasses.asdict(config)))
    settings.pop("train", None)
    return settings


# %% [markdown]
# ## From a corpus to token blocks
#
# Every task starts the same way: load the corpus (the embedded default or `--data`), split
# it by document into training and validation parts, train (or load from the cache) a
# WordPiece tokenizer on the **training part only**, and encode both parts. Pages that train
# on single sequences then pack the encoded documents into fixed-length blocks; pages that
# need sentence pairs (NSP, SOP) build their own examples from the encoded documents.

# %%
@dataclass
class CorpusConfig:
    data: str | None = None  # None: the embedded corpus; a path; or a download name
    seq_len: int = 64
    vocab_size: int = 8192
    valid_fraction: float = 0.1


@dataclass
class PreparedCorpus:
    tokenizer: Any  # labnotes.tokenizer.Tokenizer
    train_documents: list  # documents -> sentences -> (token ids, word ids)
    valid_documents: list

    def blocks(self, split: str, seq_len: int, *, across_documents: bool = False) -> Any:
        from labnotes.data import pack_blocks
        from labnotes.tokenizer import CLS_ID, PAD_ID, SEP_ID

        documents = self.train_documents if split == "train" else self.valid_documents
        return pack_blocks(documents, seq_len, cls_id=CLS_ID, sep_id=SEP_ID, pad_id=PAD_ID,
                           source=f"the {split} split", across_documents=across_documents)


_PREPARED: dict[str, PreparedCorpus] = {}


def prepare_corpus(config: CorpusConfig) -> PreparedCorpus:
    from labnotes.data import load_corpus, split_corpus
    from labnotes.tokenizer import TokenizerConfig, train_tokenizer

    key = json.dumps([config.data, config.vocab_size, config.valid_fraction])
    if key not in _PREPARED:  # several tasks in one process (experiments, tests) share the work
        corpus = load_corpus(config.data)
        train_part, valid_part = split_corpus(corpus, config.valid_fraction)
        tokenizer = train_tokenizer(train_part, TokenizerConfig(vocab_size=config.vocab_size))
        _PREPARED[key] = PreparedCorpus(tokenizer, tokenizer.encode_corpus(train_part),
                                        tokenizer.encode_corpus(valid_part))
    return _PREPARED[key]


# %% [markdown]
# The single-sequence pages (MLM, SpanBERT, ELECTRA) all want the same three things from
# that: the tokenizer, the training blocks and the validation blocks. `prepare_blocks` also
# fits the encoder's configuration to them — its vocabulary to the tokenizer's, its position
# table to at least the block length — so that a `--set corpus.vocab_size=...` or a longer
# `--seq-len` never meets a model of the wrong shape.

# %%
def prepare_blocks(corpus: CorpusConfig, model: Any, *, across_documents: bool = False) -> tuple[Any, Any, Any]:
    """(tokenizer, training blocks, validation blocks); `model` (an EncoderConfig) is fitted to them."""
    prepared = prepare_corpus(corpus)
    model.vocab_size = prepared.tokenizer.vocab_size
    model.max_len = max(model.max_len, corpus.seq_len)
    return (prepared.tokenizer, prepared.blocks("train", corpus.seq_len, across_documents=across_documents),
            prepared.blocks("valid", corpus.seq_len, across_documents=across_documents))


# %% [markdown]
# ## Papers
#
# Each paper page ends by registering itself: a short name for the command line, its title
# and arXiv id, a default configuration, a function that builds its task, and (optionally)
# the experiment that makes the evidence shown on its page. `labnotes list` prints them.

# %%
@dataclass(frozen=True)
class Paper:
    name: str
    title: str
    arxiv: str
    default_config: Callable[[], Any]
    build_task: Callable[[Any], Task]
    experiment: Callable[..., dict[str, Any]] | None = None


def find_papers() -> dict[str, Paper]:
    """Every registered paper, by short name (the modules listed in `labnotes.PAPERS`)."""
    import importlib

    import labnotes

    found = {}
    for module_name in labnotes.PAPERS:
        paper = importlib.import_module(f"labnotes.{module_name}").PAPER
        found[paper.name] = paper
    return found


def config_from_dict(kind: type, values: dict[str, Any]) -> Any:
    """Rebuild a (nested) configuration dataclass from its JSON form."""
    hints = typing.get_type_hints(kind)
    kwargs = {}
    for item in dataclasses.fields(kind):
        if item.name in values:
            hint = hints[item.name]
            value = values[item.name]
            kwargs[item.name] = config_from_dict(hint, value) if dataclasses.is_dataclass(hint) else value
    return kind(**kwargs)


def load_run(folder: Path | str, *, paper: str | None = None) -> tuple[Paper, Any, Task]:
    """Rebuild the task of a `labnotes train` run folder and load its last checkpoint.

    Returns (paper, config, task); `task.model` holds the trained weights, and every paper's
    model exposes `.encoder`, the network kept after pretraining.
    """
    folder = Path(folder)
    try:
        saved = json.loads((folder / "config.json").read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{folder} is not a labnotes run folder ({error}); pass the --out folder "
                              "of a `labnotes train` run") from None
    papers = find_papers()
    if saved.get("paper") not in papers or (paper is not None and saved["paper"] != paper):
        raise CheckpointError(f"{folder} holds a {saved.get('paper')!r} run"
                              + (f", not {paper!r}" if paper else "") + f"; known papers: {', '.join(papers)}")
    found = papers[saved["paper"]]
    config = config_from_dict(type(found.default_config()), {**saved["settings"], "train": saved["train"]})
    task = found.build_task(config)
    checkpoint = latest_checkpoint(folder)
    if checkpoint is None:
        raise CheckpointError(f"{folder} has no checkpoint yet; let `labnotes train` finish or resume it")
    load_checkpoint(checkpoint, task=task, model=task.model, optimizer=None, config=None)
    return found, config, task

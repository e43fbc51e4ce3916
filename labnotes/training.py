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
# | `loss(model, batch, totals=None)` | `(loss, metrics)` for one batch (`totals`: see gradient accumulation) |
# | `evaluate(model, device)` | validation metrics, a dict of floats |
# | `loss_counts(batch)` | optional: how many items each term of the loss averages over |
# | `slice_batch(batch, start, stop)` | optional: rows `start:stop` of a batch (several processes) |
# | `skips_parameters` | optional: True if a loss may leave some parameters without a gradient |
# | `rows_interact` | optional: True if the loss compares rows (in-batch negatives): one process |
#
# The metrics of `loss` may be floats or detached 0-d tensors; the loop reads them (a wait for
# the GPU) only at the steps it logs.

# %%
from __future__ import annotations

import ctypes
import dataclasses
import errno
import gc
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import closing, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

# %% [markdown]
# ## Configuration
#
# Defaults train the small models of this site on a 2-core CPU in minutes. The learning rate
# is higher than BERT's $10^{-4}$ (arXiv:1810.04805, App. A.2) because the model is tiny and
# the run short; $\beta_2 = 0.98$ follows RoBERTa (arXiv:1907.11692, §3.1), which found it
# improves stability when training with large batches.

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
    compile: bool = False  # torch.compile the loss step (GPU: faster after a slow first step)
    tf32: bool = True  # CUDA: float32 matrix products on TensorFloat-32 tensor cores

    def __post_init__(self) -> None:
        counts = ("steps", "batch_size", "grad_accum", "log_every", "eval_every",
                  "checkpoint_every")
        for name, value in {name: getattr(self, name) for name in counts}.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1 (got {value})")
        if self.warmup_steps < 0 or self.keep_checkpoints < 0:
            raise ValueError("warmup_steps and keep_checkpoints must be 0 or more")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive (got {self.lr})")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise ValueError(f"device {self.device!r}: choose auto, cpu, cuda, cuda:N or mps")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision {self.precision!r}: choose auto, fp32, bf16 or fp16")


# Settings that may change between a run and its resumption (see "What may change on resume").
RESUMABLE_CHANGES = {"steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
                     "device", "progress", "compile", "tf32"}


class Task(Protocol):
    paper: str
    model: nn.Module

    def settings(self) -> dict[str, Any]: ...
    def make_batch(self, step: int, generator: torch.Generator) -> dict[str, Tensor]: ...
    def loss(self, model: nn.Module, batch: dict[str, Tensor],
             totals: dict[str, int] | None = None
             ) -> tuple[Tensor, dict[str, float | Tensor]]: ...
    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]: ...


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: corrupted, foreign, or missing."""


def task_settings(config: Any) -> dict[str, Any]:
    """A paper's configuration as plain JSON values, for checkpoints and `config.json`; without
    `train`, the loop's own settings, which are checked separately."""
    settings = json.loads(json.dumps(dataclasses.asdict(config)))
    settings.pop("train", None)
    return settings


# %% [markdown]
# ## Device and precision
#
# We take the fastest device present: CUDA, then Apple's MPS, then the CPU. On a GPU we run
# the forward pass under **autocast**: matrix products in 16-bit floats, reductions and the
# weights in 32-bit (Micikevicius et al., 2017, arXiv:1710.03740). bfloat16 has float32's
# exponent range and needs nothing else; float16 does not, so small gradients would round to
# zero — a **gradient scaler** multiplies the loss before `backward` and divides the gradients
# after. On the CPU we stay in float32: it is exact and, at this size, not slower.
#
# Three more things keep a GPU busy. Matrix products that stay in float32 (all of them under
# `--set precision=fp32`) may use **TF32** tensor cores, which round a product's inputs to 10
# bits of mantissa and sum in float32 (`--set tf32=false` turns it off). Batches
# are built on the CPU in **pinned** (page-locked) memory, so their copy to the GPU runs while
# the GPU still works on the previous step. And the loop never waits for the GPU in the middle
# of a step to read a number: the loss and the metrics stay tensors on the device and are read
# (`.item()`, `float()`) only at the steps it logs. A few waits remain inside the models, where
# a shape depends on the data (selecting the masked positions of a batch). `torch.compile`,
# which fuses the step's small kernels, is opt-in (`--set compile=true`): its first steps
# compile for a while, which pays off only on long runs on a GPU.
#
# One setting is for the CPU's memory, not its arithmetic: on Linux, `keep_freed_memory` asks
# the C library to keep the memory each step frees for the next one, instead of handing it back
# and faulting it in again (its docstring says how; the MLM page measures what it saves).

# %%
def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available here; "
                             "use --device cpu or auto")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"--device {name}: MPS is not available here; "
                             "use --device cpu or auto")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_precision(device: torch.device, requested: str = "auto") -> torch.dtype:
    if requested == "fp32" or (requested == "auto" and device.type == "cpu"):
        return torch.float32
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if requested == "bf16" or (requested == "auto" and cuda_bf16):
        return torch.bfloat16
    if requested in ("auto", "fp16"):
        return torch.float16
    raise ValueError(f"precision {requested!r}: choose one of auto, fp32, bf16, fp16")


def autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def use_fast_math(device: torch.device, config: TrainConfig) -> None:
    """On CUDA, let float32 matrix products use TF32 tensor cores (10 bits of mantissa for
    the inputs, float32 sums) unless `tf32` is off. Elsewhere it changes nothing."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = config.tf32
        torch.backends.cudnn.allow_tf32 = config.tf32


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks for reuse instead of returning them to the kernel.

    PyTorch's CPU allocator frees each step's large tensors; glibc hands big blocks back to the
    kernel, so the next step faults the same pages in again, zero-filled. Raising glibc's mmap
    and trim thresholds keeps them in the process. Linux with glibc only; `LABNOTES_KEEP_MEMORY=0`
    turns it off. True if applied.
    """
    if os.environ.get("LABNOTES_KEEP_MEMORY") == "0":
        return False
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    kept_mmap = libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)  # glibc's ceiling: 32 MiB
    return bool(kept_mmap) and bool(libc.mallopt(m_trim_threshold, 2**30))


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
# cosine to `min_lr_ratio` $= r$ of the peak. Step $s$ counts from 0, so the first step already
# has a learning rate above zero:
#
# $$\eta(s) = \begin{cases} \eta_{\max}\, (s + 1) / s_w & s < s_w \\
#   \eta_{\max}\left(r + (1 - r)\tfrac{1}{2}
#   \left(1 + \cos \pi \tfrac{s - s_w}{S - s_w}\right)\right) & s \ge s_w\end{cases}$$
#
# This departs from BERT, which decays *linearly to zero* (App. A.2; `optimization.py` in
# google-research/bert). A cosine that stops at 10% keeps learning in the last steps of a short
# run; `--set min_lr_ratio=0` decays to zero.

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


def learning_rate(step: int, config: TrainConfig, schedule_steps: int | None = None) -> float:
    """The learning rate at `step`; the schedule ends at `schedule_steps` (config.steps)."""
    horizon = config.steps if schedule_steps is None else schedule_steps
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, horizon - config.warmup_steps)
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
def step_seed(seed: int, step: int, micro: int = 0, rank: int = 0) -> int:
    key = f"{seed}/{step}/{micro}" + (f"/{rank}" if rank else "")  # rank: see "Several processes"
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def step_generator(seed: int, step: int, micro: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(step_seed(seed, step, micro))


# %% [markdown]
# ## Writing files so that a crash never leaves half of one
#
# A file is written to a temporary name in the same folder, flushed to disk, and then renamed
# over its final name. A rename within one file system is atomic: a reader (or a resumed run)
# sees the old file or the new one, never a torn one. Checkpoints are folders, written whole
# under a temporary name and renamed into place the same way. The folder that holds a rename is
# flushed too (`fsync_folder`), so that after a power cut the rename is either there or not.
# A process killed mid-write leaves only a temporary (`.NAME.xxxx.tmp`), which nothing reads
# and the next run that trains in that folder removes (`prepare_out_dir`), whether it
# resumes, overwrites or starts afresh.

# %%
def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(temporary))
        follow_umask(Path(temporary))  # mkstemp makes files private (0600)
        fsync_file(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as written:
        os.fsync(written.fileno())


def fsync_folder(path: Path) -> None:
    """Make the names in a folder durable (a rename, a new file). POSIX only: where a folder
    cannot be opened (Windows) this does nothing."""
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def remove_stale_temporaries(out_dir: Path) -> None:
    """Delete what a killed write left in a run folder: the temporaries of a run's own files
    (`.config.json.xxxx.tmp`, ...) and of its checkpoints; nothing else in the folder."""
    patterns = [(Path(out_dir), f".{name}.*.tmp") for name in RUN_FILES]
    patterns += [(Path(out_dir) / "checkpoints", pattern) for pattern in (".latest.*.tmp",
                                                                          ".step-*.tmp")]
    for parent, pattern in patterns:
        for stale in parent.glob(pattern) if parent.is_dir() else []:
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()


def follow_umask(path: Path, mode: int = 0o666) -> None:
    """Give `path` the permissions a plain `open` would have: `mode` less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, mode & ~mask)


def write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text))


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
#
# **What may change on resume** (`RESUMABLE_CHANGES`): settings that leave each step's data, loss
# and learning rate as they were. How often to log, evaluate and checkpoint, how many checkpoints
# to keep (`keep_checkpoints`) and the progress bar change no number. The device, `compile` and
# `tf32` change only how the arithmetic is done: another device, compiled kernels or TF32 products
# (on a GPU) round differently, so the resumed run continues the same run up to float rounding, not
# bit for bit. The device may change because the precision is stored *as resolved* (`auto` is
# float32 on a CPU but bfloat16 on most GPUs): a resumed run that would compute in another
# precision is refused. `steps` may grow, to train longer, but the learning-rate schedule keeps the
# horizon the run started with (stored as `schedule_steps`), so the steps already taken keep their
# rates; steps past it run at the floor, $r\,\eta_{\max}$. Under float16 the gradient scaler's
# state (the loss scale and how many steps it has gone without an overflow) is saved too, so a
# resumed fp16 run is the same run.

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


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor],
                      plain: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *plain["scalars"].items()]:
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": plain["param_groups"]})


def save_checkpoint(folder: Path, *, task: Task, model: nn.Module, optimizer: torch.optim.Optimizer,
                    config: TrainConfig, step: int, schedule_steps: int, precision: str,
                    grad_scaler: dict[str, Any] | None, processes: int = 1) -> None:
    folder = Path(folder)
    temporary = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
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
            "schedule_steps": schedule_steps,  # the horizon of the learning-rate schedule
            "precision": precision,  # as resolved: "auto" means another thing on another device
            "grad_scaler": grad_scaler,  # fp16 only: the loss scale and its growth tracker
            "processes": processes,  # for the record: a run may resume with another number
            "sha256": {name: sha256_file(temporary / name)
                       for name in ("model.safetensors", "optimizer.safetensors")},
        }
        (temporary / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
        for written in temporary.iterdir():  # safetensors writes its files private (0600)
            follow_umask(written)
            fsync_file(written)
        fsync_folder(temporary)
        if folder.exists():  # left by a run killed before it moved `latest` here; never latest
            shutil.rmtree(folder)
        os.replace(temporary, folder)
        fsync_folder(folder.parent)
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
            raise CheckpointError(f"{path} is missing or corrupted (SHA-256 does not match "
                                  "state.json); delete the folder and resume from an earlier "
                                  "checkpoint or start afresh")
    return state


def check_compatible(state: dict[str, Any], task: Task, config: TrainConfig, folder: Path) -> None:
    if state["paper"] != task.paper:
        raise CheckpointError(f"{folder} was written by `labnotes train {state['paper']}`, not "
                              f"`{task.paper}`; resume it with that paper or use another --out")
    differing = diff_settings(state["settings"], task.settings())
    train_changes = diff_settings(state["train_config"], dataclasses.asdict(config))
    differing += [f"train.{key}" for key in train_changes
                  if key.split(".")[0] not in RESUMABLE_CHANGES]
    if differing:
        raise CheckpointError(f"{folder} was trained with different settings "
                              f"({', '.join(differing)}); resume with the same settings "
                              "or use another --out")


def diff_settings(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [d for k in keys for d in diff_settings(old.get(k), new.get(k), f"{prefix}{k}.")]
    new = list(new) if isinstance(new, tuple) else new
    return [] if old == new else [prefix.rstrip(".")]


def load_checkpoint(folder: Path, *, task: Task, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None,
                    config: TrainConfig | None) -> dict[str, Any]:
    state = read_checkpoint_state(folder)
    if config is not None:
        check_compatible(state, task, config, folder)
    elif state["paper"] != task.paper:
        raise CheckpointError(f"{folder} holds a `{state['paper']}` model, not `{task.paper}`")
    try:
        load_model(model, str(Path(folder) / "model.safetensors"), strict=True)
        if optimizer is not None:
            tensors = load_file(str(Path(folder) / "optimizer.safetensors"))
            restore_optimizer(optimizer, tensors, state["optimizer"])
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
# `step`, `loss`, `lr`, `grad_norm` (the gradient norm before clipping), `tokens_per_s` and the
# metrics the task's `loss` returns (MLM's `accuracy`, say), averaged over the step;
# evaluation lines carry `step` and `eval_*` keys. When a run resumes, lines from steps after
# its checkpoint are dropped so the file matches the weights.

# %%
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
# ## Gradient accumulation: the mean over the whole step
#
# One optimiser step may be `grad_accum` micro-batches, whose gradients add up before the
# update, so that a large batch fits in memory a piece at a time. For that to *be* one large
# batch, each loss must be its share of the large batch's loss. A masked-word loss is a mean
# over the batch's $n_i$ hidden words, and $n_i$ varies from micro-batch to micro-batch; the
# mean over the step is
#
# $$\mathcal{L} = \frac{1}{N}\sum_i \sum_{j \le n_i} \ell_{ij} = \sum_i \frac{n_i}{N}\,\bar\ell_i,
#   \qquad N = \sum_i n_i,$$
#
# not the average of the $\bar\ell_i$, which is the same only when every $n_i$ is equal (BERT's
# `get_masked_lm_output` likewise takes one mean over all the targets of a batch). So before the
# first micro-batch of a step the loop asks the task how many items each term of its loss
# averages over (`loss_counts`), adds them up over the step, and hands the totals to `loss`,
# which weighs each term's mean by `share_of_step`. A loss of several terms (masked words plus a
# sentence label, say) gets each term right on its own. A task without `loss_counts` has each
# loss divided by `grad_accum`: exact when every micro-batch has as many items, as for a
# per-example loss at a fixed batch size.

# %%
def share_of_step(mean: Tensor, name: str, count: int | Tensor,
                  totals: dict[str, int] | None) -> Tensor:
    """A term's mean over one micro-batch as its share of the mean over the whole step
    (`totals`: the term's count over the step's micro-batches; None: one micro-batch)."""
    if totals is None:
        return mean
    if totals[name] == 0 or float(count) == 0:  # no item of this term here: the mean is NaN
        return mean.nan_to_num() * 0.0
    return mean * (float(count) / totals[name])


def step_totals(task: Task, batches: list[dict[str, Tensor]],
                processes: int = 1) -> dict[str, int] | None:
    """Each loss term's count over a step's micro-batches (whole, before they are split among
    `processes`); None when one process has one micro-batch or the task does not count."""
    counter = getattr(task, "loss_counts", None)
    if len(batches) * processes == 1 or counter is None:
        return None
    totals: dict[str, int] = {}
    for batch in batches:
        for name, count in counter(batch).items():
            totals[name] = totals.get(name, 0) + int(count)
    return totals


# %% [markdown]
# ## Stopping when asked
#
# Colab, spot instances and batch schedulers stop a program by sending it SIGTERM (and a person
# at the terminal presses Ctrl-C, SIGINT). While it trains, the loop catches both: the signal
# only raises a flag, the step under way finishes, a checkpoint of that step is written, and
# the run ends with `TrainingStopped`, whose message says how to continue. The command line
# then exits with 128 plus the signal's number, as a shell reports a process the signal ended:
# **143 for SIGTERM, 130 for Ctrl-C**. `--resume` continues from that checkpoint and, as after
# any checkpoint, ends with the same weights as a run never stopped. A second Ctrl-C does not
# wait for the step: it interrupts at once, and the run resumes from its previous checkpoint.

# %%
class TrainingStopped(Exception):
    """The run stopped on SIGTERM or SIGINT, after writing a checkpoint of its last step."""

    def __init__(self, signal_number: int, step: int, checkpoint: Path, paper: str) -> None:
        self.signal_number, self.step, self.checkpoint = signal_number, step, checkpoint
        self.exit_code = 128 + signal_number
        out_dir = checkpoint.parent.parent
        super().__init__(f"stopped by {signal.Signals(signal_number).name} after step {step}; "
                         f"checkpoint {checkpoint} written. Continue with the same command and "
                         f"--resume (`labnotes train {paper} --out {out_dir} --resume` with "
                         "the same settings; train(..., resume=True) in Python)")


class StopSignals:
    """While in use, SIGTERM and SIGINT set `received` instead of ending the program; a second
    SIGINT raises KeyboardInterrupt. Signals reach only the main thread, so elsewhere (a
    training thread) nothing is installed and the signals keep their usual effect."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self.previous[number] = signal.getsignal(number)
                signal.signal(number, self.handle)
        return self

    def __exit__(self, *exception: object) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)

    def handle(self, number: int, frame: object) -> None:
        if self.received is not None and number == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now, without a checkpoint
        self.received = number


# %% [markdown]
# ## Several processes: DistributedDataParallel under torchrun
#
# One process per device (per CPU socket, or per GPU) is how PyTorch scales a loop past one
# device: `torchrun --nproc_per_node N -m labnotes train mlm` starts N copies of this program
# and tells each, through its environment (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, and where to meet),
# who it is. Each copy builds the same model from the same seed, joins a process group (gloo on
# the CPU, NCCL between GPUs), and wraps the model in **DistributedDataParallel** (DDP), which,
# during `backward`, averages every gradient over the processes. After that every process holds
# the same gradients, takes the same AdamW step, and keeps the same weights.
#
# What each process trains on must add up to exactly the batch one process would see. Here
# every process builds the *whole* step's batch from `(seed, step)`, as a single process would,
# and keeps its own slice of the rows: `batch_size` is the global batch, rank $r$ of $N$ keeps
# rows $[rB/N, (r+1)B/N)$. Building the whole batch costs each process the (small) work of
# masking $B$ rows; in return the data of a step never depends on how many processes train it.
# The loss of a slice is weighed the way gradient accumulation weighs a micro-batch (above):
# each term's mean over the slice times its share of the step's count, which every process can
# count itself because it holds the whole batch. Summed over processes that is the step's loss,
# so each process multiplies its share by $N$ to undo DDP's average. A task whose batch holds
# something other than one row per example (SpanBERT's spans, which name their row) slices it
# with its own `slice_batch(batch, start, stop)`. A loss that compares the rows of a batch with
# each other (a contrastive loss with in-batch negatives) is not a sum over rows at all: each
# process would see fewer negatives and train another objective. Such a task says
# `rows_interact = True` and is refused on several processes (gathering every process's rows
# before the loss would be the way to support it).
#
# Only rank 0 logs, evaluates and writes files; the logged loss and metrics are summed over the
# processes at log steps only. Dropout draws its masks per process (seeded by step *and* rank),
# so with dropout on, $N$ processes are a different draw of the same run, not the same numbers;
# with dropout off they match one process to float rounding (the tests hold the loss curves of
# 1 and 2 processes to a relative $10^{-5}$ over 20 steps for MLM and ELECTRA; NSP, SOP,
# SpanBERT, XLNet and BART, checked once over 6 steps, agreed to $3 \times 10^{-7}$). A
# checkpoint holds nothing particular to a process, so a run **resumes with another number of
# processes** whenever the batch still splits evenly; it then continues the same run up to that
# rounding (and dropout's draws). Several machines work the same way through torchrun's
# rendezvous options (`--nnodes 2 --rdzv-backend c10d --rdzv-endpoint HOST:29500`), with the run
# folder on storage they share.
#
# **Parameters a step does not use.** DDP waits, in `backward`, for a gradient of every
# parameter; one that the step does not reach would leave it waiting, and DDP stops with an
# error that says so. ELECTRA's two networks are one module with one summed loss (the generator's
# and the discriminator's), so both get their gradients every step and one DDP wrapper averages
# them together; the replaced tokens come from the `noise` drawn with the whole batch, so each row
# is corrupted the same way however many processes there are. Every paper's loss reaches all its
# parameters in every step (checked for each), except one case: SpanBERT's boundary head gets
# no gradient from a slice that happens to hold no span. A task that can skip parameters says
# so with `skips_parameters = True`, and only then is the model wrapped with
# `find_unused_parameters=True`: after each forward DDP walks the graph and marks what it will
# not reach, at the cost of that walk. A parameter no process used keeps no gradient, as it
# would in one process, and AdamW leaves it alone.

# %%
class TaskLoss(nn.Module):
    """The task's loss as a module, so that DDP sees each micro-batch's forward and backward."""

    def __init__(self, task: Task, model: nn.Module) -> None:
        super().__init__()
        self.model, self.task = model, task

    def forward(self, batch: dict[str, Tensor],
                totals: dict[str, int] | None) -> tuple[Tensor, dict[str, Any]]:
        if totals is None:
            return self.task.loss(self.model, batch)
        return self.task.loss(self.model, batch, totals)


@dataclass
class Processes:
    """This process among those torchrun started: `rank` of `count`. Alone: rank 0 of 1, and
    every method does nothing."""

    rank: int = 0
    count: int = 1
    local_rank: int = 0
    control: Any = None  # a gloo group: stop flags and logged numbers travel on the CPU
    owns_group: bool = False

    def device_of(self, device: torch.device) -> torch.device:
        if device.type == "mps":
            raise ValueError("several processes need CUDA or the CPU; MPS has no process group")
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", self.local_rank)  # one GPU per process
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return device

    def wrap(self, task: Task, model: nn.Module, device: torch.device) -> nn.Module:
        module = TaskLoss(task, model)
        if self.count == 1:
            return module
        ids = [device.index] if device.type == "cuda" else None
        skips = getattr(task, "skips_parameters", False)  # see "Parameters a step does not use"
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=skips)

    def share_of(self, task: Task, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """This process's rows of a step's (micro-)batch."""
        if self.count == 1:
            return batch
        rows = len(batch["input_ids"])
        start, stop = rows * self.rank // self.count, rows * (self.rank + 1) // self.count
        slicer = getattr(task, "slice_batch", None)
        if slicer is not None:
            return slicer(batch, start, stop)
        other = [key for key, value in batch.items() if value.dim() == 0 or len(value) != rows]
        if other:
            raise ValueError(f"{task.paper}: batch entries {other} are not one row per example; "
                             "the task needs a slice_batch(batch, start, stop) to train on "
                             "several processes")
        return {key: value[start:stop] for key, value in batch.items()}

    def sync_gradients(self, module: nn.Module, last_micro: bool):
        """DDP averages once per step: micro-batches before the last only accumulate."""
        if self.count == 1 or last_micro:
            return nullcontext()
        return module.no_sync()

    def sum(self, values: list[Any]) -> list[float]:
        """Numbers summed over the processes (the one host sync of a logged step)."""
        numbers = torch.tensor([float(value) for value in values], dtype=torch.float64)
        if self.count > 1:
            dist.all_reduce(numbers, group=self.control)
        return numbers.tolist()

    def agree(self, received: int | None) -> int | None:
        """A signal any process received, so that all stop after the same step."""
        if self.count == 1:
            return received
        flag = torch.tensor([received or 0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.control)
        return int(flag) or None

    def barrier(self) -> None:
        if self.count > 1:
            dist.barrier(group=self.control)

    def leave(self) -> None:
        """Take down the process group this process set up, once every process is done.
        (After an error it is left to the end of the process: another process may be gone.)"""
        if self.owns_group and dist.is_initialized():
            gc.collect()  # DDP's last references to the group go while the group still works
            dist.barrier(group=self.control)  # no collective on a Python tensor still pending
            dist.destroy_process_group()


def join_processes(device: torch.device) -> Processes:
    """Join the process group torchrun set up in the environment (`WORLD_SIZE` > 1)."""
    count = int(os.environ.get("WORLD_SIZE", "1"))
    if count == 1:
        return Processes()
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    control = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
    return Processes(rank=dist.get_rank(), count=dist.get_world_size(),
                     local_rank=int(os.environ.get("LOCAL_RANK", "0")), control=control,
                     owns_group=owns)


# %% [markdown]
# ## The loop
#
# One optimiser step is `grad_accum` micro-batches, as above. Then the gradient
# norm is clipped to `grad_clip` (Pascanu et al., arXiv:1211.5063), the learning rate set for
# this step, and AdamW applied. Every `eval_every` steps the task evaluates on held-out
# documents; every `checkpoint_every` steps a checkpoint is written and the `latest` pointer
# moved to it. At the end the final model is saved as `model.safetensors` and the final
# evaluation as `summary.json`.
#
# The run folder is checked before anything is trained: a folder that holds a run is never
# trained over by accident (`resume=True` continues it, `overwrite=True` removes that run's files
# and nothing else), and `resume=True` with no checkpoint to resume from is an error.

# %%
def train(task: Task, config: TrainConfig, out_dir: Path | str, *, resume: bool = False,
          overwrite: bool = False) -> dict[str, Any]:
    """Train `task.model` into `out_dir`; `resume` continues the run there, `overwrite`
    replaces it. Under torchrun, every process calls this; rank 0 writes the files."""
    out_dir = Path(out_dir)
    device = pick_device(config.device)
    refuse_what_cannot_split(task, config, int(os.environ.get("WORLD_SIZE", "1")))
    processes = join_processes(device)
    try:
        summary = train_process(task, config, out_dir, device, processes, resume, overwrite)
    except TrainingStopped:
        processes.leave()  # every process stopped at the same step: a clean end
        raise
    processes.leave()
    return summary


def refuse_what_cannot_split(task: Task, config: TrainConfig, count: int) -> None:
    """Checked by every process before they join, so that all refuse alike (none is left
    waiting for a peer that has already gone)."""
    if count == 1:
        return
    if getattr(task, "rows_interact", False):
        raise ValueError(f"{task.paper}: its loss compares each example with the other rows "
                         "of the batch (in-batch negatives); split across processes, each "
                         "would see only its own rows. Train it in one process")
    if config.batch_size % count:
        raise ValueError(f"batch_size {config.batch_size} does not split evenly across "
                         f"{count} processes; choose a multiple of {count}")


def train_process(task: Task, config: TrainConfig, out_dir: Path, device: torch.device,
                  processes: Processes, resume: bool, overwrite: bool) -> dict[str, Any]:
    if processes.count > 1:
        device = processes.device_of(device)
    dtype = pick_precision(device, config.precision)
    use_fast_math(device, config)
    keep_freed_memory()  # on Linux: recycle freed memory, so steps stop faulting pages back in
    model = task.model.to(device)
    optimizer = make_optimizer(model, config)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    metrics_path = out_dir / "metrics.jsonl"
    main = processes.rank == 0

    check_out_dir(out_dir, resume, overwrite)  # every process, before any of them changes it
    processes.barrier()
    if main:
        prepare_out_dir(out_dir, resume, overwrite)
    processes.barrier()
    start_step, schedule_steps = 0, config.steps
    if resume and (checkpoint := latest_checkpoint(out_dir)) is not None:
        state = load_checkpoint(checkpoint, task=task, model=model, optimizer=optimizer,
                                config=config)
        start_step = state["step"]
        schedule_steps = state.get("schedule_steps", state["train_config"]["steps"])
        if state.get("precision", str(dtype)) != str(dtype):
            raise CheckpointError(f"{checkpoint} was trained in {state['precision']}, this run "
                                  f"would use {dtype} on {device}; resume with --set "
                                  "precision=... to match, or start a new run")
        if scaler is not None and state.get("grad_scaler"):
            scaler.load_state_dict(state["grad_scaler"])
        if schedule_steps != config.steps and main:
            print(f"labnotes: resuming to step {config.steps}; the learning-rate schedule keeps "
                  f"the horizon of {schedule_steps} steps the run started with", file=sys.stderr)
        if main:
            truncate_metrics(metrics_path, start_step)
    elif metrics_path.exists() and main:
        metrics_path.unlink()
    if main:
        write_json(out_dir / "config.json", {"paper": task.paper, "settings": task.settings(),
                                            "train": dataclasses.asdict(config)})

    model.train()
    distributed = processes.wrap(task, model, device)
    step_loss = torch.compile(distributed) if config.compile else distributed
    bar = tqdm(total=config.steps, initial=start_step, disable=not (config.progress and main),
               desc=f"train {task.paper}", dynamic_ncols=True)
    started, tokens_seen, last_eval = time.perf_counter(), 0, {}
    pin = device.type == "cuda"  # page-locked host memory: the copy to the GPU runs async
    wide = torch.float32 if device.type == "mps" else torch.float64  # sums (MPS has no float64)

    def checkpoint(done: int) -> Path:
        folder = out_dir / "checkpoints" / f"step-{done:07d}"
        if main:
            folder = write_checkpoint(out_dir, task=task, model=model, optimizer=optimizer,
                                      config=config, step=done, schedule_steps=schedule_steps,
                                      precision=str(dtype), processes=processes.count,
                                      grad_scaler=scaler.state_dict() if scaler else None)
        return folder

    log = open(metrics_path if main else os.devnull, "a")
    with log as metrics_file, StopSignals() as stop, closing(bar):
        for step in range(start_step, config.steps):
            lr = learning_rate(step, config, schedule_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_total = torch.zeros((), dtype=wide, device=device)
            step_metrics: dict[str, Any] = {}
            batches = [task.make_batch(step * config.grad_accum + micro,
                                       step_generator(config.seed, step, micro))
                       for micro in range(config.grad_accum)]
            totals = step_totals(task, batches, processes.count)
            for micro, batch in enumerate(batches):
                tokens_seen += count_tokens(batch)  # the whole global batch, on every process
                batch = processes.share_of(task, batch)
                batch = {key: (value.pin_memory() if pin else value).to(device, non_blocking=True)
                         for key, value in batch.items()}
                torch.manual_seed(step_seed(config.seed + 1, step, micro,
                                            processes.rank))  # dropout
                last_micro = micro == config.grad_accum - 1
                with processes.sync_gradients(distributed, last_micro):
                    with autocast(device, dtype):
                        loss, metrics = step_loss(batch, totals)
                        if totals is None:  # the task's mean; slices and micro-batches equal
                            scaled = loss / config.grad_accum
                        else:  # the task weighs each term by its share of the step
                            scaled = loss * processes.count if processes.count > 1 else loss
                    (scaler.scale(scaled) if scaler else scaled).backward()
                # this process's share of the step's loss: summed over processes, the loss
                parts = config.grad_accum * processes.count if totals is None else 1
                loss_total += loss.detach().to(wide) / parts
                for key, value in metrics.items():
                    value = value.detach().to(wide) if isinstance(value, Tensor) else value
                    step_metrics[key] = step_metrics.get(key, 0.0) + value / config.grad_accum
            if scaler:
                scaler.unscale_(optimizer)
            grad_norm = nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer_step(optimizer, scaler)

            done = step + 1
            if done % config.log_every == 0 or done == config.steps:  # the one host sync
                loss_value, *values = processes.sum([loss_total, *step_metrics.values()])
                averaged = {key: value / processes.count
                            for key, value in zip(step_metrics, values)}
                elapsed = time.perf_counter() - started
                row = {"step": done, "loss": loss_value, "lr": lr, "grad_norm": float(grad_norm),
                       "tokens_per_s": tokens_seen / max(elapsed, 1e-9), **averaged}
                metrics_file.write(json.dumps(row) + "\n")
                metrics_file.flush()
                bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{row['tokens_per_s']:.0f}")
            if (done % config.eval_every == 0 or done == config.steps) and main:
                last_eval = run_evaluation(task, model, device, dtype)
                metrics_file.write(json.dumps({"step": done, **last_eval}) + "\n")
                metrics_file.flush()
            if done % config.checkpoint_every == 0 or done == config.steps:
                metrics_file.flush()
                checkpoint(done)
            bar.update(1)
            received = processes.agree(stop.received)  # every process stops at the same step
            if received is not None and done < config.steps:
                metrics_file.flush()
                folder = checkpoint(done)
                processes.barrier()  # rank 0 has written it: now every process may end
                raise TrainingStopped(received, done, folder, task.paper)

    if not main:
        return {"paper": task.paper, "steps": config.steps, "rank": processes.rank}
    if not last_eval:  # resumed a finished run: nothing trained, evaluate the weights we have
        last_eval = run_evaluation(task, model, device, dtype)
    write_atomic(out_dir / "model.safetensors", lambda tmp: save_model(model, str(tmp)))
    summary = {"paper": task.paper, "steps": config.steps, "device": str(device),
               "precision": str(dtype), "train_loss": last_train_loss(metrics_path), **last_eval}
    if processes.count > 1:
        summary["processes"] = processes.count
    write_json(out_dir / "summary.json", summary)
    return summary


def optimizer_step(optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler | None) -> None:
    """The optimiser's step (through the gradient scaler under float16), then no gradients."""
    if scaler:
        scaler.step(optimizer)  # skipped if a gradient overflowed
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def count_tokens(batch: dict[str, Tensor]) -> int:
    if "padding_mask" in batch:
        return int(batch["padding_mask"].sum())
    return int(batch["input_ids"].numel())


def run_evaluation(task: Task, model: nn.Module, device: torch.device,
                   dtype: torch.dtype) -> dict[str, float]:
    model.eval()
    with torch.no_grad(), autocast(device, dtype):
        result = task.evaluate(model, device)
    model.train()
    return result


def last_train_loss(metrics_path: Path, window: int = 5) -> float | None:
    losses = [row["loss"] for row in read_metrics(metrics_path) if "loss" in row]
    return sum(losses[-window:]) / len(losses[-window:]) if losses else None


RUN_FILES = ("checkpoints", "metrics.jsonl", "config.json", "summary.json", "model.safetensors")


def prepare_out_dir(out_dir: Path, resume: bool, overwrite: bool = False) -> None:
    """Create the run folder. Never overwrite a run by accident, never resume from nothing."""
    check_out_dir(out_dir, resume, overwrite)
    remove_stale_temporaries(out_dir)  # a write killed midway left them; nothing reads them
    if overwrite and holds_run(out_dir):  # only a run's own files; nothing else is touched
        for name in RUN_FILES:
            path = out_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def holds_run(out_dir: Path) -> bool:
    """Whether a folder holds a `labnotes train` run (so that --overwrite may clear it)."""
    try:
        return "paper" in json.loads((Path(out_dir) / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return latest_checkpoint(out_dir) is not None


def check_out_dir(out_dir: Path, resume: bool, overwrite: bool = False) -> None:
    """Raise the error `prepare_out_dir` would, without touching anything."""
    out_dir = Path(out_dir)
    has_run = latest_checkpoint(out_dir) is not None or (out_dir / "summary.json").exists()
    if resume and overwrite:
        raise ValueError("--resume continues a run and --overwrite discards it: choose one")
    if resume and latest_checkpoint(out_dir) is None:
        raise CheckpointError(f"{out_dir} has no checkpoint to resume from; run without --resume "
                              "to start a new run there")
    if has_run and not resume and not overwrite:
        raise CheckpointError(f"{out_dir} already holds a run; pass --resume to continue it, "
                              "--overwrite to discard it and start afresh, or choose another --out")


def write_checkpoint(out_dir: Path, **kwargs: Any) -> Path:
    """Write the checkpoint of `kwargs['step']` and move `latest` to it; then drop the oldest
    beyond `keep_checkpoints`. A write that fails (a full disk) leaves `latest` where it was."""
    folder = out_dir / "checkpoints" / f"step-{kwargs['step']:07d}"
    previous = latest_checkpoint(out_dir)
    if previous == folder and folder.is_dir():
        return folder  # already the latest: a step's weights are the same whenever written
    folder.parent.mkdir(parents=True, exist_ok=True)
    pointer = folder.parent / "latest"
    try:
        save_checkpoint(folder, **kwargs)
        write_atomic(pointer, lambda tmp: tmp.write_text(folder.name + "\n"))
    except OSError as error:
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
        reason = "the disk is full" if full else f"{type(error).__name__}: {error}"
        kept = (f"the previous checkpoint, {previous}, is kept and --resume continues from it"
                if previous else "there is no earlier checkpoint to resume from")
        raise CheckpointError(f"could not write the checkpoint {folder} ({reason}); {kept}"
                              + ("; free some space first" if full else "")) from error
    keep = kwargs["config"].keep_checkpoints
    old = sorted(p for p in folder.parent.glob("step-*") if p.is_dir() and p != folder)
    for stale in old[:-(keep - 1) or None] if keep > 0 else []:
        shutil.rmtree(stale, ignore_errors=True)
    return folder


# %% [markdown]
# ## A quick mode, for checking that a notebook runs
#
# Every page's demo and every experiment can run in a **quick mode**: 20 steps and a few
# evaluation examples, a check that the whole pipeline runs, never a result. It is on when the
# environment says `LABNOTES_QUICK=1` (the tests run every notebook that way) and, for an
# experiment, with `labnotes experiment <paper> --quick`. This is its one definition.

# %%
QUICK = os.environ.get("LABNOTES_QUICK") == "1"
QUICK_STEPS = 20
QUICK_EVAL_EXAMPLES = 64
EVAL_SIZE_FIELDS = ("eval_blocks", "eval_pairs")  # how much held-out data a paper's task scores


def make_quick(config: Any) -> Any:
    """Shrink a paper's configuration to the quick mode, in place, and return it."""
    config.train.steps = config.train.eval_every = config.train.checkpoint_every = QUICK_STEPS
    for name in EVAL_SIZE_FIELDS:
        if hasattr(config, name):
            setattr(config, name, min(getattr(config, name), QUICK_EVAL_EXAMPLES))
    return config

"""What every experiment shares.

The lab bench behind the Evidence sections: a fresh folder per arm, one quick mode, seeds and
their spread, Markdown tables and reproducible figures, and the rule that results are stored
first and every table and figure is drawn from the stored file.
"""

# %% [markdown]
# A paper page is a lecture: it explains one objective and trains it once. The evidence it
# shows comes from an **experiment**: several training runs (*arms*) that differ in one setting
# each, scored on the same held-out data, sometimes over several seeds. Each paper has its
# experiment on a page of its own under `labnotes/experiments/`, and `labnotes experiment
# <paper>` runs it. This page holds what they all need.
#
# Every experiment page defines two functions:
#
# | function | what it does |
# |---|---|
# | `run_experiment(work_dir, *, quick, progress, preset)` | trains the arms; returns JSON values |
# | `draw(results, out_dir)` | writes `table.md` and the figures from the results alone |
#
# `run` below stores the results as `results.json` *before* anything is drawn, and draws from
# the file it just wrote. So a table on the site can always be redrawn from its JSON without
# training again (`labnotes experiment <paper> --redraw`), and a figure can never show a number
# that the JSON does not hold.

# %%
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import multiprocessing
import shutil
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from labnotes.training import (QUICK, read_metrics, step_generator, train, write_atomic,
                               write_json)


# %% [markdown]
# ## Running an experiment, and redrawing it
#
# Training runs go to `work_dir` (under `runs/`, never into `docs/`: checkpoints are large and
# not part of the site). `out_dir` gets `results.json`, `table.md`, one or more figures, and
# `command.txt`, the command that made them, which the page shows under the table.

# %%
def run(experiment: ModuleType, out_dir: Path | str, *, command: str, quick: bool = False,
        progress: bool = True, work_dir: Path | str | None = None,
        **options: Any) -> dict[str, Any]:
    """Run one experiment page; store its results, then draw them from the stored file.
    `options` (a `preset`, `jobs`) go to the page's `run_experiment` as they are."""
    out_dir = Path(out_dir)
    name = experiment.__name__.rsplit(".", 1)[-1]  # labnotes.experiments.mlm -> mlm
    preset = options.get("preset", "cpu")
    runs = "quick" if quick else "full" if preset == "cpu" else preset
    work_dir = Path(work_dir or f"runs/experiment-{name}") / runs
    results = experiment.run_experiment(work_dir, quick=quick, progress=progress, **options)
    recorded = {"preset": preset} if "preset" in options else {}
    write_json(out_dir / "results.json", {**results, "quick": quick, **recorded})
    redraw(experiment, out_dir)
    write_atomic(out_dir / "command.txt", lambda tmp: tmp.write_text(command + "\n"))
    return results


def run_in_notebook(experiment: ModuleType, name: str) -> None:
    """A notebook's run of an experiment: into runs/experiment-NAME/ (the quick mode under
    LABNOTES_QUICK=1), then its table."""
    out_dir = Path(f"runs/experiment-{name}/results")
    run(experiment, out_dir, command=f"labnotes experiment {name}", quick=QUICK,
        work_dir=f"runs/experiment-{name}")
    print((out_dir / "table.md").read_text())


def script_main(experiment: ModuleType, *, out: Path, command: str, work_dir: str) -> int:
    """The command line of a script that is an experiment of its own (`scripts/*_costs.py`):
    run it and store its results in `out` (or `--out`), or `--redraw` them from there; `--jobs`
    too when its `run_experiment` takes `jobs`."""
    parser = argparse.ArgumentParser(description=(experiment.__doc__ or "").split("\n\n")[0])
    parser.add_argument("--redraw", action="store_true", help="draw from the stored results.json")
    parser.add_argument("--out", type=Path, default=out)
    takes_jobs = "jobs" in inspect.signature(experiment.run_experiment).parameters
    if takes_jobs:
        parser.add_argument("--jobs", type=int, default=1,
                            help="runs at a time, each in a process of one thread")
    args = parser.parse_args()
    if args.redraw:
        redraw(experiment, args.out)
    else:
        run(experiment, args.out, command=command, work_dir=work_dir,
            **({"jobs": args.jobs} if takes_jobs else {}))
    return 0


def redraw(experiment: ModuleType, out_dir: Path | str) -> None:
    """Draw an experiment's tables and figures from its stored results.json alone."""
    out_dir = Path(out_dir)
    try:
        results = json.loads((out_dir / "results.json").read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{out_dir}/results.json does not exist: run the experiment first "
                                "(without --redraw)") from None
    experiment.draw(results, out_dir)


# %% [markdown]
# ## Presets: the same arms, larger
#
# Every experiment is sized for a 2-core CPU: that size (the preset `cpu`, the default) made
# the results the site shows. `--preset gpu` (`run_experiment(..., preset="gpu")`) trains the
# same arms larger, for one laptop or Colab GPU. A preset changes every training run of an
# experiment the same way, on the configuration the page has built:
#
# | | `cpu` | `gpu` |
# |---|---|---|
# | steps, with warmup, evaluation and checkpoint intervals; an MLM start's steps | ×1 | ×4 |
# | batch size | ×1 | ×2 |
# | encoder: layers, width, heads, FFN | the page's: 2, 128, 2, 512 | 4, 256, 4, 1024 |
#
# The `gpu` encoder is BERT-Mini, the 4-layer, 256-wide size of the compact BERTs of Turc et
# al. (arXiv:1908.08962, §2): twice as deep and twice as wide as the CPU one, with the same 64
# dimensions per head. A token costs about 7 times as much, and with twice the batch a step
# about 14 times (the MLM page's: 10.5 against 149 GFLOPs), a size at which a GPU's matrix
# units have work to do rather than wait for the next small kernel. Four times the steps (the
# whole schedule stretched: warmup, decay, evaluations) lets the larger model use them: 38 to
# 62 times the training compute in all (the table below). The learning rate stays the page's,
# so that only size changes; it has not been tuned for the larger model, as no GPU run has been
# made yet. The data stays too: the embedded corpus holds about half a million training
# tokens, which the `gpu` MLM arms read about 130 times over (16 at `cpu`), so watch the
# held-out curves for the point where they turn up. Evaluation, probes and downstream suites
# keep their sizes. The quick mode wins over a preset: `--quick --preset gpu` is the quick
# check.
#
# What each preset costs, counted by `python scripts/preset_costs.py` from every training run
# the experiment builds (nothing is trained to count it), and how long the `gpu` preset should
# take on a laptop GPU. Those times are estimates: no GPU has been lent to this project yet.
#
# <!-- results: presets -->

# %%
@dataclasses.dataclass(frozen=True)
class Preset:
    """How a preset resizes every training run: steps and batch multiplied, encoder set."""
    steps: int = 1
    batch: int = 1
    encoder: dict[str, int] = dataclasses.field(default_factory=dict)  # EncoderConfig fields


PRESET_SIZES = {
    "cpu": Preset(),
    "gpu": Preset(steps=4, batch=2, encoder={"dim": 256, "layers": 4, "heads": 4,
                                             "ffn_dim": 1024}),
}
PRESETS = {  # what `labnotes experiment NAME --preset P` offers, for every experiment page
    "cpu": "the size of the site's results, for a 2-core CPU (the default)",
    "gpu": "4x the steps, 2x the batch, a 4-layer 256-wide encoder: one laptop or Colab GPU",
}
SCALED_STEPS = ("steps", "warmup_steps", "eval_every", "checkpoint_every")  # of TrainConfig
START_STEPS = ("warm_start_steps", "start_steps")  # a page's MLM start (ELECTRA, SimCSE)


def at_preset(config: Any, preset: str) -> Any:
    """Resize a page's configuration to `preset`, in place, and return it (`cpu`: unchanged)."""
    if preset not in PRESET_SIZES:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESET_SIZES)}")
    size = PRESET_SIZES[preset]
    for name in SCALED_STEPS:
        setattr(config.train, name, getattr(config.train, name) * size.steps)
    config.train.batch_size *= size.batch
    for name in START_STEPS:
        if hasattr(config, name):
            setattr(config, name, getattr(config, name) * size.steps)
    if size.encoder:
        config.model = dataclasses.replace(config.model, **size.encoder)
    return config


# %% [markdown]
# ## One arm: a fresh folder, a run, its metrics
#
# An experiment always starts afresh: each arm trains into its own folder, emptied first, so a
# second run of the same experiment never resumes (or refuses) a leftover. The quick mode
# (`--quick` on the command line, `LABNOTES_QUICK=1` in the notebooks) is the training page's
# [`make_quick`](training.md#a-quick-mode-for-checking-that-a-notebook-runs): every arm a 20-step
# run on a few evaluation examples, a check that the whole pipeline runs, never a result.

# %%
def slug(name: str) -> str:
    """A folder name for an arm: "BERT 80/10/10, dynamic" -> "bert-80-10-10--dynamic"."""
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def train_arm(task: Any, config: Any, work_dir: Path | str,
              name: str) -> tuple[dict[str, Any], list[dict]]:
    """Train one arm from scratch in work_dir/<slug(name)>: (summary, metrics rows)."""
    run_dir = Path(work_dir) / slug(name)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    summary = train(task, config.train, run_dir)
    return summary, read_metrics(run_dir / "metrics.jsonl")


# %% [markdown]
# ## Independent runs side by side
#
# Seeds or arms that share nothing can train at the same time. With `--jobs N` an experiment
# hands them to `in_processes`: up to N worker processes, each started fresh ("spawn", so the
# same on Linux, macOS and Windows, and nothing half-initialised is inherited), each computing
# `function(item, *shared)` for the items it is given; the results come back in the order of
# the items. Each worker sets PyTorch to one thread before it starts, because on a small CPU
# several processes of several threads slow each other down. With `jobs = 1` everything runs
# here, one item after another, which is what the notebooks do.

# %%
def in_processes(function: Callable[..., Any], items: Sequence[Any], *shared: Any,
                 jobs: int = 1) -> list[Any]:
    """[function(item, *shared) for item in items], in up to `jobs` fresh processes if jobs > 1.
    `function` must be importable by name (defined at the top of a module)."""
    if jobs <= 1 or not items:
        return [function(item, *shared) for item in items]
    with ProcessPoolExecutor(max_workers=min(jobs, len(items)), initializer=one_thread,
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(function, items, *([value] * len(items) for value in shared)))


def one_thread() -> None:
    """Run first in every worker of `in_processes`."""
    torch.set_num_threads(1)


# %% [markdown]
# ## Counting compute
#
# Arms that cost different amounts per step (a generator beside a discriminator, a second
# attention stream) are compared at equal *compute*, not equal steps. We let PyTorch count the
# floating-point operations of one real training step, forward and backward
# (`torch.utils.flop_counter.FlopCounterMode`, which counts matrix products and attention), the
# same way for every arm.
#
# One gap to close first: on the CPU, PyTorch runs attention (`scaled_dot_product_attention`)
# as a fused kernel of its own, `_scaled_dot_product_flash_attention_for_cpu`, and the counter
# (torch 2.13) has no formula for it, so it silently counts attention as free. We give it the
# formula it already uses for the GPU kernels: $4 \cdot B \cdot H \cdot T_q \cdot T_k \cdot d$
# forward (scores and weighted sum), 2.5 times that backward (the kernel recomputes the scores). Without it an objective whose cost is
# mostly attention (XLNet's second stream, BART's cross-attention) would look cheaper than it
# is. A test checks the total against a count by hand.

# %%
def _cpu_attention(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    return sdpa_flop_count(query, key, value)  # shapes, not tensors (the counter passes shapes)


def _cpu_attention_backward(grad_out: Any, query: Any, key: Any, value: Any, *args: Any,
                            **kwargs: Any) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention,
                 torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward:
                     _cpu_attention_backward}


def flop_counter() -> FlopCounterMode:
    """PyTorch's FLOP counter, attention on the CPU included."""
    return FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION)


def flops_per_step(task: Any) -> float:
    """Training FLOPs of one step (forward + backward), counted by torch on one real batch."""
    batch = task.make_batch(0, step_generator(12345, 0))
    with flop_counter() as counter:
        loss, _ = task.loss(task.model, batch)
        loss.backward()
    task.model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


# %% [markdown]
# ## Seeds and their spread
#
# Where arms differ by less than the noise between seeds, one run per arm says nothing. We
# report the mean over seeds and the sample standard deviation $s$ (with $n - 1$), written
# `mean ± s`; with two or three seeds, $s$ is itself rough, so read it as a scale, not an
# interval.

# %%
def mean_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation); the spread of a single value is 0."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def percent(mean: float, spread: float | None = None) -> str:
    """A fraction as a table cell in percent: "62.3 ± 3.5", or "62.3" without a spread."""
    return f"{100 * mean:.1f}" if spread is None else f"{100 * mean:.1f} ± {100 * spread:.1f}"


def percent_over_seeds(values: Sequence[float]) -> str:
    mean, spread = mean_and_spread(values)
    return percent(mean, spread if len(values) > 1 else None)


# %% [markdown]
# ## Tables and figures
#
# `results.json` is written with sorted keys, so the arms come back in alphabetical order;
# `in_order` puts them back in the order the experiment defines. Figures are SVG with fixed
# ids and no date, so the same results draw the same bytes and a stored figure can be checked.

# %%
def in_order(names: Iterable[str], order: Iterable[str]) -> list[str]:
    """`names` in the order of `order`, then any others, sorted."""
    names, order = list(names), list(order)
    return [name for name in order if name in names] + sorted(set(names) - set(order))


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table: one header row, a rule, then the rows."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_table(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


def pyplot() -> Any:
    """matplotlib.pyplot with a backend that draws to files (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(figure: Any, path: Path) -> None:
    """Write a matplotlib figure as a reproducible SVG (fixed ids, no date), atomically."""
    plt = pyplot()
    plt.rcParams["svg.hashsalt"] = "labnotes"
    write_atomic(path, lambda tmp: figure.savefig(tmp, format="svg", metadata={"Date": None}))
    plt.close(figure)

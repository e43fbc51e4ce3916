"""What each experiment's presets cost to train, and how long the GPU preset should take.

    python scripts/preset_costs.py            # count, store docs/results/presets/, draw
    python scripts/preset_costs.py --redraw   # draw again from the stored results.json

For every experiment page and each of its presets, build every training run that
`labnotes experiment NAME --preset P` makes (arms, seeds, and an MLM start where the page trains
one), with the page's own configuration functions, count the FLOPs of one real training step of
each (`flops_per_step` on the experiments' common page: forward and backward, by PyTorch's FLOP
counter) and multiply by its steps. Nothing is trained. Evaluation, probes, fine-tuning and
downstream suites are not counted: they keep their size at every preset.

The time is an estimate, not a measurement: no GPU was lent to this project when it was made.
It divides the FLOPs by an assumed sustained throughput on a laptop GPU (ASSUMED_* below).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from labnotes.experiments.common import (PRESET_SIZES, at_preset, flops_per_step, in_order,
                                         markdown_table, pyplot, save_figure, script_main,
                                         write_table)
from labnotes.registry import PAPERS, STUDIES

OUT = Path("docs/results/presets")
COMMAND = "OMP_NUM_THREADS=1 python scripts/preset_costs.py"

# An RTX 4060 Laptop GPU: 24 Ada streaming multiprocessors at up to about 2.37 GHz; an Ada SM does
# 512 dense bfloat16 FLOPs per clock with float32 accumulation (the RTX 4090's 165 TFLOP/s over
# its 128 SMs at 2.52 GHz), so about 29 TFLOP/s at its peak. Small models rarely keep a GPU's
# matrix units busier than about a third of that; we assume 30%.
ASSUMED_GPU = "RTX 4060 Laptop GPU"
ASSUMED_PEAK_TFLOPS = 29.0
ASSUMED_UTILISATION = 0.30

# What the experiment pages say their CPU runs took (their "Run it" notes), for the table.
CPU_TIMES = {
    "mlm": "about 15 min, 2 cores",
    "nsp": "a few minutes, 2 cores",
    "sop": "3 x the NSP run",
    "spanbert": "18 min, 1 core",
    "electra": "46 min, 2 cores (--jobs 3)",
    "xlnet": "about 45 min, 2 cores",
    "bart": "about 95 min, 2 cores (--jobs 2)",
    "dim": "28 min, 1 shared core",
    "contrastive": "20 min, 1 shared core",
    "chinese_wwm": "28 min, 2 cores (--jobs 2)",
    "compare": "49 min, 2 cores (--jobs 3)",
}


@dataclasses.dataclass
class TrainingRun:
    """One training run an experiment makes: its name, configuration and task, how many seeds."""
    name: str
    config: Any
    build: Callable[[Any], Any]  # config -> task (building one trains nothing)
    seeds: int = 1


@functools.cache
def electra_plan() -> dict[str, Any]:
    """The ELECTRA page's plan (every arm's steps, counted from real steps): the same for every
    preset, so counted once (it builds seven tasks). Shared: read it, never change it."""
    return PAPERS["electra"].experiment_page().plan(False)


def training_runs(paper: str, preset: str) -> list[TrainingRun]:
    """Every training run of `labnotes experiment PAPER --preset PRESET`, as the page builds it.
    Seeds of one arm share one configuration here (their step costs the same)."""
    if paper == "compare":  # every arm spends the budget; the two starting arms share a start
        from labnotes.experiments import compare
        from labnotes.mlm import MLMTask
        budget = compare.budget_steps(False, preset)
        config = compare.configure("MLM", 0, quick=False, start=1, preset=preset)
        config.train.steps = len(compare.ARMS) * budget - round(compare.START_FRACTION * budget)
        return [TrainingRun("every arm, in MLM steps", config, MLMTask, len(compare.SEEDS))]
    page = PAPERS[paper].experiment_page()
    quiet = {"quick": False, "progress": False, "preset": preset}
    if paper == "mlm":
        from labnotes.mlm import MLMTask
        return [TrainingRun(name, page.arm_config(changes, **quiet), MLMTask)
                for name, changes in page.ARMS.items()]
    if paper == "nsp":
        from labnotes.nsp import NSPTask
        return [TrainingRun("MLM+NSP", page.experiment_config(**quiet), NSPTask)]
    if paper == "sop":
        return [TrainingRun(name, page.arm_config(losses, **quiet),
                            lambda config, make=make_task: make(config, test_sets=page.TEST_SETS))
                for name, (losses, make_task) in page.ARMS.items()]
    if paper == "spanbert":
        from labnotes.spanbert import SpanBERTTask
        return [TrainingRun(name, page.arm_config(changes, page.SEED, **quiet), SpanBERTTask)
                for name, changes in page.ARMS.items()]
    if paper == "electra":  # one MLM start per seed, then every arm's stage (steps by FLOPs)
        from labnotes.mlm import MLMTask, start_config
        planned = electra_plan()
        default = at_preset(page.stage_config(0.25, 0, quick=False, progress=False), preset)
        runs = [TrainingRun("MLM start", start_config(default, default.warm_start_steps), MLMTask,
                            len(page.SEEDS))]
        for name, (objective, fraction) in page.ALL_ARMS.items():
            config = page.stage_config(fraction, 0, quick=False, progress=False)
            config.train.steps = planned["steps"][name]
            config.train.eval_every = config.train.checkpoint_every = config.train.steps
            at_preset(config, preset)
            config.warm_start_steps = 0  # its start is the run above
            if objective == "bert":
                config = page.bert_config(config, config.train.steps)
            runs.append(TrainingRun(name, config, lambda config, objective=objective:
                                    electra_task(config, objective), len(page.SEEDS)))
        return runs
    if paper == "xlnet":
        from labnotes.mlm import MLMTask
        from labnotes.xlnet import XLNetTask
        return [TrainingRun(name, page.arm_config(name, 0, **quiet),
                            MLMTask if page.ARMS[name][0] == "mlm" else XLNetTask,
                            len(page.SEEDS[name])) for name in page.ARMS]
    if paper == "bart":
        from labnotes.bart import BARTTask
        return [TrainingRun(name, page.arm_config(noise, **quiet), BARTTask)
                for name, noise in page.ARMS.items()]
    if paper == "dim":
        from labnotes.dim import InfoWordTask
        return [TrainingRun(name, page.arm_config(weight, 0, False, False, preset), InfoWordTask,
                            len(page.SEEDS)) for name, weight in page.ARMS.items()]
    if paper == "contrastive":
        from labnotes.mlm import MLMTask, start_config
        default = page.start_of(preset, quick=False, progress=False)
        start = TrainingRun("MLM start", start_config(default, default.start_steps), MLMTask)
        return [start] + [TrainingRun(name, page.arm_config(name, 0, Path("start"), **quiet),
                                      contrastive_task, len(page.SEEDS))
                          for name in page.ARMS]
    if paper == "chinese_wwm":
        from labnotes.chinese_wwm import ChineseWWMTask
        return [TrainingRun(name, page.arm_config(masking, 0, **quiet), ChineseWWMTask,
                            len(page.SEEDS)) for name, masking in page.ARMS.items()]
    raise ValueError(f"no training runs listed for experiment {paper!r}")


def electra_task(config: Any, objective: str) -> Any:
    from labnotes.experiments.electra import HybridTask
    from labnotes.electra import ElectraTask
    from labnotes.mlm import MLMTask
    if objective == "bert":
        return MLMTask(config)
    return ElectraTask(config) if objective == "electra" else HybridTask(config, objective)


def contrastive_task(config: Any) -> Any:
    """A SimCSE arm's task without its start: the start's shape only (a reload's way), and no
    reference measures; its step costs what the real arm's does."""
    from labnotes.contrastive import ContrastiveTask
    return ContrastiveTask(dataclasses.replace(config, init=None), reference={},
                           from_checkpoint=Path("unused"))


def run_experiment(work_dir: Path, *, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for paper in [*PAPERS, *STUDIES]:
        rows[paper] = {}
        for preset in PRESET_SIZES:
            started = time.perf_counter()
            runs = []
            for each in training_runs(paper, preset):
                task = each.build(each.config)
                step_flops = flops_per_step(task)
                runs.append({"name": each.name, "seeds": each.seeds,
                             "steps": each.config.train.steps,
                             "batch_size": each.config.train.batch_size,
                             "parameters": sum(p.numel() for p in task.model.parameters()),
                             "flops_per_step": step_flops,
                             "flops": step_flops * each.config.train.steps * each.seeds})
            total = sum(one["flops"] for one in runs)
            rows[paper][preset] = {"runs": runs, "train_flops": total,
                                   "seconds_to_count": time.perf_counter() - started}
            if progress:
                print(f"{paper} {preset}: {total / 1e12:.1f} TFLOPs", file=sys.stderr)
    return {"torch": torch.__version__, "gpu": ASSUMED_GPU, "peak_tflops": ASSUMED_PEAK_TFLOPS,
            "utilisation": ASSUMED_UTILISATION, "cpu_times": CPU_TIMES, "rows": rows}


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def draw(results: dict[str, Any], out_dir: Path) -> None:
    sustained = results["peak_tflops"] * results["utilisation"] * 1e12
    names = in_order(results["rows"], [*PAPERS, *STUDIES])
    rows = {name: results["rows"][name] for name in names}
    lines = []
    for paper, presets in rows.items():
        cpu, gpu = presets["cpu"], presets["gpu"]
        count = sum(one["seeds"] for one in gpu["runs"])
        lines.append([f"[{paper}](experiments.{paper}.md)", str(count),
                      f"{cpu['train_flops'] / 1e12:,.0f}", results["cpu_times"][paper],
                      f"{gpu['train_flops'] / 1e12:,.0f}",
                      f"{gpu['train_flops'] / cpu['train_flops']:.0f}",
                      minutes(gpu["train_flops"] / sustained)])
    total = sum(presets["gpu"]["train_flops"] for presets in rows.values())
    table = markdown_table(
        ["experiment", "training runs", "cpu: train TFLOPs", "cpu: measured time (page)",
         "gpu: train TFLOPs", "gpu / cpu", "gpu: estimated time"], lines)
    write_table(out_dir / "table.md",
                "**What each preset trains** (training FLOPs of every run, MLM starts included, "
                "counted by `torch.utils.flop_counter`; evaluation and downstream suites not "
                "counted)\n\n" + table
                + f"\nEstimated, not measured (no GPU was lent): FLOPs over "
                f"{results['utilisation']:.0%} of the {results['peak_tflops']:.0f} TFLOP/s "
                f"bfloat16 peak of an {results['gpu']}, {sustained / 1e12:.1f} TFLOP/s; "
                f"all {len(names)} together {minutes(total / sustained)}. Small models often run slower: read them as "
                f"the least the runs will take.\n")
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 0.5 * len(names) + 1.2))
    places = range(len(names))
    for shift, preset, color in ((-0.2, "cpu", "#9e9e9e"), (0.2, "gpu", "#3f51b5")):
        axis.barh([place + shift for place in places],
                  [rows[name][preset]["train_flops"] / 1e12 for name in names], height=0.4,
                  color=color, label=f"--preset {preset}")
    axis.set_yticks(list(places), names)
    axis.invert_yaxis()
    axis.set_xscale("log")
    axis.set_xlabel("training TFLOPs of the whole experiment (log scale)")
    axis.legend()
    figure.tight_layout()
    save_figure(figure, out_dir / "costs.svg")


def main() -> int:
    return script_main(sys.modules[__name__], out=OUT, command=COMMAND, work_dir="runs/preset-costs")


if __name__ == "__main__":
    sys.exit(main())

"""What each task of the downstream suite measures: a bag of words, random-init encoders and the
comparison's MLM runs (at each checkpoint) on every task, the first suite's two included.

    labnotes experiment compare --jobs 3    # first: trains the MLM runs this reads
    python scripts/suite_tasks.py           # score, store docs/results/suite/, draw
    python scripts/suite_tasks.py --redraw  # draw again from the stored results.json

Every task is scored the suite's default way (fine-tuning, 60 steps, three seeds). A task earns
its place in the suite if the MLM run beats random init by far more than the spread of seeds.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from labnotes.downstream import (FIRST_SUITE, DownstreamConfig, bag_of_tokens, build_tasks,
                                 evaluate_encoder)
from labnotes.experiments.common import (markdown_table, pyplot, save_figure, script_main,
                                         write_table)
from labnotes.registry import load_run
from labnotes.tokenizer import prepare_corpus
from labnotes.training import load_checkpoint
from labnotes.transformer import Encoder

OUT = Path("docs/results/suite")
COMMAND = "python scripts/suite_tasks.py"
RUNS = Path("runs/experiment-compare/full")  # where `labnotes experiment compare` trains
TASKS = tuple(dict.fromkeys(DownstreamConfig().tasks + FIRST_SUITE))  # new suite, then the first's


def run_experiment(work_dir: Path, *, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    folders = sorted(RUNS.glob("seed-*/mlm"))
    if not folders:
        raise SystemExit(f"no MLM runs under {RUNS}; run `labnotes experiment compare` first")
    torch.set_num_threads(1)
    config = DownstreamConfig(tasks=TASKS)
    _, run_config, task = load_run(folders[0])
    tasks = build_tasks(prepare_corpus(run_config.corpus), config, run_config.model.max_len)
    encoders: dict[str, list[dict[str, Any]]] = {}
    for seed, folder in enumerate(folders):
        torch.manual_seed(seed)
        encoders.setdefault("random init", []).append(
            {"seed": seed, "scores": runs_of(evaluate_encoder(Encoder(run_config.model), tasks,
                                                              config))})
        _, _, task = load_run(folder)
        for checkpoint in sorted((folder / "checkpoints").glob("step-*")):
            state = load_checkpoint(checkpoint, task=task, model=task.model, optimizer=None,
                                    config=None)
            if progress:
                print(f"suite: {folder}, step {state['step']}", file=sys.stderr, flush=True)
            began = time.perf_counter()
            scores = runs_of(evaluate_encoder(task.model.encoder, tasks, config))
            encoders.setdefault(f"MLM, {state['step']} steps", []).append(
                {"seed": seed, "scores": scores, "seconds": time.perf_counter() - began})
    words = {name: bag_of_tokens(t, config.seeds, config)["runs"] for name, t in tasks.items()}
    return {"runs": str(RUNS), "suite": dataclasses.asdict(config), "bag_of_words": words,
            "encoders": encoders, "chance": {n: 1 / t.num_labels for n, t in tasks.items()},
            "torch": torch.__version__}


def runs_of(result: dict[str, Any]) -> dict[str, list[float]]:
    return {name: task["runs"] for name, task in result["tasks"].items()}


LABELS = {"word_order": "word order", "source": "source", "summary_match": "summary match",
          "acceptability": "acceptability (first suite)",
          "same_passage": "same passage (first suite)"}


def cell(values: list[float]) -> str:
    """Mean ± spread in %, over the values (seeds of fine-tuning, or of pretraining)."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.1f} ± {100 * spread:.1f}"


def steps_of(name: str) -> int:
    return int(name.split(", ")[1].split()[0]) if name.startswith("MLM") else -1  # random init: -1


def draw(results: dict[str, Any], out_dir: Path) -> None:
    names = [task for task in TASKS if task in results["chance"]]
    encoders = {name: results["encoders"][name] for name in sorted(results["encoders"],
                                                                    key=steps_of)}
    last = list(encoders)[-1]  # the MLM runs at their last checkpoint
    header = ["task", "chance", "bag of words", *encoders, f"{last} − random init"]
    rows = []
    for task in names:
        means = {e: [statistics.fmean(run["scores"][task]) for run in runs]
                 for e, runs in encoders.items()}
        gaps = [m - r for m, r in zip(means[last], means["random init"])]
        rows.append([LABELS.get(task, task), f"{100 * results['chance'][task]:.0f}",
                     cell(results["bag_of_words"][task]), *(cell(means[e]) for e in encoders),
                     f"**{cell(gaps)}**" if min(gaps) > 0.05 else cell(gaps)])
    seeds = len(encoders["random init"])
    write_table(out_dir / "table.md",
                f"**What each task measures** (fine-tuned accuracy in %; the bag of words is a "
                f"probe on token counts, mean ± spread over 3 seeds; each encoder mean ± spread "
                f"over {seeds} pretraining seeds, each the mean of 3 fine-tuning seeds; the MLM "
                f"runs are the comparison's, at each checkpoint; in bold, a gap over 5 points "
                f"for every seed)\n\n" + markdown_table(header, rows))
    plot_tasks(results, encoders, names, out_dir / "tasks_over_training.svg")


def plot_tasks(results: dict[str, Any], encoders: dict[str, Any], names: list[str],
               path: Path) -> None:
    """Each task's fine-tuned accuracy over the MLM runs' steps (random init at 0), with the bag
    of words as a dashed line of the same colour."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.2))
    steps = [max(steps_of(name), 0) for name in encoders]
    for task in names:
        means = [100 * statistics.fmean(statistics.fmean(run["scores"][task]) for run in runs)
                 for runs in encoders.values()]
        line, = axis.plot(steps, means, marker="o", label=LABELS.get(task, task))
        axis.axhline(100 * statistics.fmean(results["bag_of_words"][task]),
                     color=line.get_color(), linestyle="--", linewidth=0.8)
    axis.set_xlabel("MLM training steps (0: the random-init encoder)")
    axis.set_ylabel("fine-tuned accuracy (%); dashed: bag of words")
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    save_figure(figure, path)


def main() -> int:
    return script_main(sys.modules[__name__], out=OUT, command=COMMAND, work_dir="runs/suite-tasks")


if __name__ == "__main__":
    sys.exit(main())

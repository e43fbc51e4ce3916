"""SimCSE: the experiment.

The dropout ablation of SimCSE's Table 3 and the alignment-uniformity paths of its Figure 2,
at laptop scale: five arms from one shared MLM start, two seeds each, beside the raw MLM
embeddings and a bag of words, on held-out retrieval built without dropout.
"""

# %% [markdown]
# The claim, from the [SimCSE page](contrastive.md#evidence): with dropout as the only noise,
# a moderate rate works best, and identical views fail. SimCSE (arXiv:2104.08821, §3, Table 3,
# STS-B development Spearman with BERT-base): $p = 0$ gives 71.1, $p = 0.05$ 81.1, $p = 0.1$
# 82.5, $p = 0.2$ 80.5, and "fixed 0.1" (the same mask for both views) 43.6. Figure 2 says why:
# every arm improves uniformity, but with identical views alignment degrades, while
# $p = 0.1$ keeps it steady.
#
# Every arm starts from the **same** MLM checkpoint, the SimCSE page's default start (1200 steps
# of the MLM page's recipe, trained once and kept in the cache), and runs the page's recipe for
# the same number of steps; only the dropout rate, or whether the two views share a mask,
# changes. Two seeds per arm (the seed changes the batches, the dropout masks and the MLP's
# first weights, not the start). Every arm is scored on the same held-out retrieval sets, whose positives are never
# made by dropout: summary line → body, and one word deleted.

# %%
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import torch

from labnotes.contrastive import (ContrastiveConfig, ContrastiveTask, SentenceEncoder,
                                  bag_of_words, embed_texts, inverse_document_frequency, measure,
                                  quick_config, trained_start)
from labnotes.experiments.common import PRESETS, at_preset  # noqa: F401  (PRESETS: cpu, gpu)
from labnotes.experiments.common import (in_order, markdown_table, mean_and_spread, pyplot,
                                         run_in_notebook, save_figure, train_arm, write_table)

# %% [markdown]
# ## The arms
#
# Each arm is (dropout rate, views). The paper's Table 3 numbers sit beside ours in the table.

# %%
ARMS = {
    "p = 0": (0.0, "independent"),
    "p = 0.05": (0.05, "independent"),
    "p = 0.1": (0.1, "independent"),
    "p = 0.2": (0.2, "independent"),
    "fixed 0.1": (0.1, "shared"),
}
PAPER_TABLE_3 = {"p = 0": 71.1, "p = 0.05": 81.1, "p = 0.1": 82.5, "p = 0.2": 80.5,
                 "fixed 0.1": 43.6}  # arXiv:2104.08821, Table 3: STS-B dev, Spearman x 100
QUICK_ARMS = ("p = 0.1", "fixed 0.1")
SEEDS = (0, 1)
STEPS = 150  # per arm and seed: the ten runs took 20 minutes on one shared CPU thread
EVAL_EVERY = 30  # the points of each Figure 2 path
EVAL_QUERIES = 500  # per retrieval set
CURVE_KEYS = ("step", "eval_alignment", "eval_uniformity", "eval_retrieval_accuracy",
              "eval_deletion_accuracy")


def arm_config(name: str, seed: int, start: Path, *, quick: bool, progress: bool,
               preset: str = "cpu") -> ContrastiveConfig:
    dropout, views = ARMS[name]
    config = ContrastiveConfig(init=str(start), views=views, eval_queries=EVAL_QUERIES)
    config.model.dropout = dropout
    config.train = dataclasses.replace(config.train, steps=STEPS, eval_every=EVAL_EVERY,
                                       checkpoint_every=STEPS, seed=seed, progress=progress)
    return quick_config(config) if quick else at_preset(config, preset)


def start_of(preset: str, *, quick: bool, progress: bool) -> ContrastiveConfig:
    """The page's default configuration, whose MLM start every arm shares (its shape too)."""
    default = quick_config(ContrastiveConfig()) if quick else at_preset(ContrastiveConfig(), preset)
    default.train.progress = progress
    return default


# %% [markdown]
# ## Running the arms
#
# The start is the page's default one, found in the cache or trained once. The first arm
# measures it (both poolings), the bag of words and chance; the others reuse those numbers. Each
# run keeps its summary, its evaluation curve (the Figure 2 path) and the singular spectrum of
# its final embeddings; the spectra of the start and of the bag of words are kept too.

# %%
def run_experiment(work_dir: Path, *, quick: bool = False, progress: bool = True,
                   preset: str = "cpu") -> dict[str, Any]:
    started = time.perf_counter()
    default = start_of(preset, quick=quick, progress=progress)
    start = trained_start(default, default.start_steps)
    rows: dict[str, list[dict[str, Any]]] = {}
    reference = spectra = None
    for name in QUICK_ARMS if quick else ARMS:  # quick: a check that it runs, not a result
        for seed in SEEDS[:1] if quick else SEEDS:
            config = arm_config(name, seed, start, quick=quick, progress=progress,
                                preset=preset)
            task = ContrastiveTask(config, reference=reference)
            if reference is None:
                reference, spectra = task.reference, reference_spectra(task)
            arm_started = time.perf_counter()
            summary, metrics = train_arm(task, config, work_dir, f"{name} seed {seed}")
            curve = [{key: row[key] for key in CURVE_KEYS} for row in metrics
                     if "eval_alignment" in row]
            rows.setdefault(name, []).append({
                "seed": seed, "seconds": time.perf_counter() - arm_started,
                "summary": {key: value for key, value in summary.items()
                            if key.startswith("eval_") or key == "train_loss"},
                "curve": curve, "spectrum": final_spectrum(task)})
    return {"paper": "contrastive", "steps": config.train.steps,
            "seeds": [run["seed"] for run in rows[name]],
            "start_steps": default.start_steps, "rows": rows, "reference": reference,
            "spectra": spectra, "paper_table_3": PAPER_TABLE_3,
            "seconds": time.perf_counter() - started}


def reference_spectra(task: ContrastiveTask) -> dict[str, list[float]]:
    """The singular spectra of the start ([CLS] and mean) and of the bag of words."""
    cpu, result = torch.device("cpu"), {}
    start = SentenceEncoder(task.model.encoder.config)
    start.load_state_dict(task.model.state_dict())
    for pooling in ("cls", "mean"):
        start.pooling = pooling
        result[f"raw MLM, {pooling}"] = spectrum_of(lambda texts: embed_texts(start, texts, cpu),
                                                   task)
    idf = inverse_document_frequency(task.sentences, task.tokenizer.vocab_size)
    result["bag of words"] = spectrum_of(lambda texts: bag_of_words(texts, idf), task)
    return result


def spectrum_of(embed: Any, task: ContrastiveTask, keep: int = 128) -> list[float]:
    return measure(embed, {}, task.held_out_sentences)["spectrum"][:keep]


def final_spectrum(task: ContrastiveTask) -> list[float]:
    device = next(task.model.parameters()).device
    return spectrum_of(lambda texts: embed_texts(task.model, texts, device), task)


# %% [markdown]
# ## Table 3, Figure 2 and the spectra, from `results.json`
#
# The table gives each arm's mean ± standard deviation over the seeds, beside the paper's
# STS-B number, then the raw MLM embeddings, the bag of words and chance. The first figure is
# Figure 2's plane: uniformity across, alignment up, one path per arm (seed 0) from the start
# (the black point) to the end of training; lower-left is better. The second shows the singular
# spectra.

# %%
COLUMNS = [("eval_retrieval_accuracy", "summary → body top-1", 100),
           ("eval_retrieval_mrr", "summary → body MRR", 100),
           ("eval_deletion_accuracy", "one word deleted top-1", 100),
           ("eval_alignment", "alignment", 1), ("eval_uniformity", "uniformity", 1),
           ("eval_anisotropy", "anisotropy", 1)]


def draw(results: dict[str, Any], out_dir: Path) -> None:
    write_table(out_dir / "table.md", results_table(results))
    plot_paths(results, out_dir / "alignment_uniformity.svg")
    plot_spectra(results, out_dir / "spectrum.svg")


def cell(values: list[float], scale: float) -> str:
    mean, spread = mean_and_spread([scale * value for value in values])
    digits = 1 if scale == 100 else 3
    return f"{mean:.{digits}f} ± {spread:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def results_table(results: dict[str, Any]) -> str:
    rows, reference = results["rows"], results["reference"]
    lines = []
    for name in in_order(rows, ARMS):
        runs = rows[name]
        lines.append([f"SimCSE, {name}", f"{results['paper_table_3'].get(name, '—')}",
                      *(cell([run["summary"][key] for run in runs], scale)
                        for key, _, scale in COLUMNS)])
    for label, prefix in (("raw MLM, [CLS]", "start_cls"), ("raw MLM, mean", "start_mean"),
                          ("bag of words (TF-IDF)", "bow")):
        lines.append([label, "—", *(cell([reference[key.replace("eval", prefix, 1)]], scale)
                                    for key, _, scale in COLUMNS)])
    lines.append(["chance", "—", cell([reference["baseline_retrieval_accuracy"]], 100),
                  cell([reference["baseline_retrieval_mrr"]], 100),
                  cell([reference["baseline_deletion_accuracy"]], 100), "—", "—", "—"])
    header = ["embedding", "paper (STS-B)", *(label for _, label, _ in COLUMNS)]
    return ("**Held-out retrieval among "
            f"{reference['retrieval_candidates']} candidates, and geometry** (mean ± s over "
            f"{len(results['seeds'])} seeds; {results['steps']} steps per run from one "
            f"{results['start_steps']}-step MLM start; % for retrieval; alignment and uniformity "
            "lower is better)\n\n"
            + markdown_table(header, lines)
            + f"\nQueries: {reference['retrieval_queries']} summary lines, "
            f"{reference['deletion_queries']} one-word deletions, from held-out documents. "
            "\"paper\": SimCSE Table 3, STS-B development Spearman × 100 with BERT-base (another "
            "measure on another scale: compare the order of the rows, not the numbers).\n")


def plot_paths(results: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    reference = results["reference"]
    figure, axis = plt.subplots(figsize=(6.5, 4.5))
    origin = (reference["start_cls_uniformity"], reference["start_cls_alignment"])
    for name in in_order(results["rows"], ARMS):
        curve = results["rows"][name][0]["curve"]
        xs = [origin[0], *(row["eval_uniformity"] for row in curve)]
        ys = [origin[1], *(row["eval_alignment"] for row in curve)]
        line, = axis.plot(xs, ys, marker="o", markersize=3, label=name)
        axis.annotate("", xy=(xs[-1], ys[-1]), xytext=(xs[-2], ys[-2]),
                      arrowprops={"arrowstyle": "->", "color": line.get_color()})
    axis.plot(*origin, "ko", label="raw MLM [CLS] (start)")
    axis.set_xlabel("uniformity (held-out sentences; lower is better)")
    axis.set_ylabel("alignment (one-word deletions; lower is better)")
    axis.set_title(f"every {EVAL_EVERY} steps, seed {results['seeds'][0]}")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    save_figure(figure, path)


def plot_spectra(results: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4))
    curves = {**{f"SimCSE, {name}": results["rows"][name][0]["spectrum"]
                 for name in in_order(results["rows"], ARMS)}, **results["spectra"]}
    for name, values in curves.items():
        style = "--" if name in results["spectra"] else "-"
        axis.plot(range(1, len(values) + 1), values, style, label=name)
    axis.set_yscale("log")
    axis.set_xlabel("index of the singular value")
    axis.set_ylabel("singular value / largest")
    axis.set_title("held-out sentence embeddings, normalised")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    save_figure(figure, path)


# %% [markdown]
# ## Run it
#
# From a shell, `labnotes experiment contrastive` trains the ten runs and writes
# `docs/results/contrastive/`; `--redraw` redraws the table and figures from the stored
# `results.json`. The stored run took 20 minutes on one thread of a 2-core CPU shared with other
# jobs, its 1,200-step MLM start included (about two minutes on an idle 2-core CPU; later runs
# find it in the cache). The cost grows linearly with `STEPS` and `SEEDS`. `--quick`
# (and the notebook under `LABNOTES_QUICK=1`) runs two arms, one seed, 20 steps, from a 20-step
# start: a check that it runs, never a result. `--preset gpu` trains the same runs, and their
# start, larger, for one GPU ([how](experiments.common.md#presets-the-same-arms-larger)). In
# the notebook this cell runs it into `runs/experiment-contrastive/`.

# %%
if __name__ == "__main__":
    run_in_notebook(sys.modules[__name__], "contrastive")

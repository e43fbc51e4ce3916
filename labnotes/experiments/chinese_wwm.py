"""Chinese whole-word masking: the experiment.

Character masking, whole-word masking with jieba's words, and whole-word masking with the
corpus's gold words, trained at equal steps on People's Daily and scored on the same two
cloze tests (whole held-out words, and single characters), over two seeds, with intervals.
"""

# %% [markdown]
# The claim, from the [Chinese whole-word masking page](chinese_wwm.md#evidence): masking
# whole words instead of single characters makes a Chinese BERT better (Cui et al.,
# arXiv:1906.08101, their tables on reading comprehension, inference and classification). At
# our scale we test the mechanism behind it: a model trained with whole-word masking should
# predict a held-out word it cannot see any part of better than a model trained with
# character masking, which mostly practised with a sibling character in view; on single
# hidden characters the order may flip, since that is the test character masking trains for.
#
# Each arm is the page's default model and recipe (the MLM page's encoder) with one setting
# changed, `masking`, trained for the same number of steps on the same blocks, over two seeds.
# All arms are scored on the same cloze tests, built from the validation documents with the
# gold words and a fixed seed.

# %%
from __future__ import annotations

from pathlib import Path
from typing import Any

from labnotes.chinese_wwm import ChineseWWMConfig, ChineseWWMTask, visible_sibling_share
from labnotes.experiments.common import (in_order, markdown_table, mean_and_spread, pyplot,
                                         run_in_notebook, save_figure, train_arm, write_table)
from labnotes.experiments.xlnet import bootstrap_mean
from labnotes.mlm import IGNORE
from labnotes.training import make_quick

# %% [markdown]
# ## The arms and the budget
#
# `STEPS` steps of `BATCH_SIZE` blocks of 64 tokens per arm and seed. The budget is set by
# the machine this page was run on (2 shared CPU cores, one thread per run, about 20 minutes
# for all six runs); a longer run is one constant away, and a GPU runs the same code. The
# quick mode (a check that the pipeline runs, used by the tests) trains one seed of the
# character and gold arms only: segmenting the whole corpus with jieba takes about a minute.

# %%
ARMS = {  # row name -> masking
    "character masking": "character",
    "whole words, jieba": "jieba",
    "whole words, gold": "gold",
}
SEEDS = (0, 1)
STEPS = 500
BATCH_SIZE = 32
EVAL_EVERY = 100
EVAL_BLOCKS = 256  # validation blocks for the MLM page's own metrics
CLOZE_BLOCKS = 256  # validation blocks of the two cloze tests


def arm_config(masking: str, seed: int, *, quick: bool, progress: bool) -> ChineseWWMConfig:
    config = ChineseWWMConfig(masking=masking, eval_blocks=EVAL_BLOCKS, cloze_blocks=CLOZE_BLOCKS)
    config.train.steps, config.train.eval_every = STEPS, EVAL_EVERY
    config.train.checkpoint_every = STEPS
    config.train.batch_size, config.train.seed = BATCH_SIZE, seed
    config.train.progress = progress
    return make_quick(config) if quick else config


# %% [markdown]
# ## Running the arms
#
# Per run we keep the summary, the validation curves, and the NLL of every hidden character
# of both cloze tests. The per-character values are averaged over seeds before they are
# stored: the bootstrap below resamples words, and the spread over seeds is kept separately.

# %%
def run_experiment(work_dir: Path, *, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    cloze: dict[str, Any] = {}
    words: dict[str, list[int]] = {}
    leaks: dict[str, float] = {}
    quick_arms = {name: masking for name, masking in ARMS.items() if masking != "jieba"}
    for name, masking in (quick_arms if quick else ARMS).items():
        per_seed, per_seed_nll = [], []
        for seed in SEEDS[:1] if quick else SEEDS:
            config = arm_config(masking, seed, quick=quick, progress=progress)
            task = ChineseWWMTask(config)
            summary, metrics = train_arm(task, config, work_dir, f"{name} seed {seed}")
            scores = task.cloze_scores(task.model, next(task.model.parameters()).device)
            per_seed.append(summary)
            per_seed_nll.append({test: nll for test, (nll, _) in scores.items()})
            words = {test: word_list for test, (_, word_list) in scores.items()}
            curves[f"{name} seed {seed}"] = metrics
            leaks = {test: visible_sibling_share(task.cloze_blocks.word_ids,
                                                 item.labels != IGNORE)
                     for test, item in task.cloze.items()}
        rows[name] = per_seed
        cloze[name] = {test: [round(sum(values) / len(values), 5)
                              for values in zip(*(seed[test] for seed in per_seed_nll))]
                       for test in per_seed_nll[0]}
    return {"paper": "chinese_wwm", "rows": rows, "curves": curves, "cloze": cloze,
            "words": words, "visible_sibling_share": leaks,
            "steps": next(iter(rows.values()))[0]["steps"], "batch_size": BATCH_SIZE,
            "seeds": len(next(iter(rows.values())))}


# %% [markdown]
# ## The table and the curves, from `results.json`
#
# Each cell is the NLL in nats per hidden character, the mean over seeds, with its 95%
# interval from resampling held-out *words* (all characters of a word go together, as in
# the XLNet experiment's `bootstrap_mean`). The difference columns compare each arm with
# character masking on the same characters (paired). The last column is the spread of the
# whole-word cloze NLL over seeds. The first row is the unigram model (the MLM page's floor).

# %%
TESTS = {"word": "whole-word cloze", "character": "character cloze"}


def interval(result: dict[str, float]) -> str:
    return f"{result['mean']:.3f} [{result['low']:.3f}, {result['high']:.3f}]"


def results_table(results: dict[str, Any]) -> str:
    names = in_order(results["rows"], ARMS)
    reference = results["cloze"][names[0]]
    first = results["rows"][names[0]][0]
    lines = [["unigram baseline", f"{first['word_cloze_baseline']:.3f}",
              f"{first['character_cloze_baseline']:.3f}", "—", "—", "—"]]
    for name in names:
        values = results["cloze"][name]
        cells = [interval(bootstrap_mean(values[test], results["words"][test]))
                 for test in TESTS]
        differences = [interval(bootstrap_mean(
            [mine - theirs for mine, theirs in zip(values[test], reference[test])],
            results["words"][test])) if name != names[0] else "—" for test in TESTS]
        mean, spread = mean_and_spread([row["word_cloze_nll"] for row in results["rows"][name]])
        lines.append([name, *cells, *differences, f"{mean:.3f} ± {spread:.3f}"])
    header = ["arm", "whole-word cloze NLL", "character cloze NLL",
              "whole-word cloze − character masking", "character cloze − character masking",
              "whole-word cloze over seeds"]
    text = markdown_table(header, lines)
    counts = {test: len(set(results["words"][test])) for test in TESTS}
    text += (f"\n{results['seeds']} seed(s) × {results['steps']} steps × {results['batch_size']} "
             f"blocks of 64 tokens per arm. Hidden words: {counts['word']} (whole-word cloze), "
             f"{counts['character']} characters (character cloze). Hidden characters of the "
             "character cloze that have a visible character of their own gold word: "
             f"{results['visible_sibling_share']['character']:.0%} (whole-word cloze: "
             f"{results['visible_sibling_share']['word']:.0%}).\n")
    return text


def plot_curves(results: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for axis, (test, title) in zip(axes, TESTS.items()):
        for name in in_order(results["rows"], ARMS):
            runs = [rows for key, rows in results["curves"].items() if key.startswith(name + " ")]
            steps = [row["step"] for row in runs[0] if f"{test}_cloze_nll" in row]
            means = [sum(values) / len(values) for values in zip(
                *([row[f"{test}_cloze_nll"] for row in rows if f"{test}_cloze_nll" in row]
                  for rows in runs))]
            axis.plot(steps, means, marker="o", label=name)
        baseline = results["rows"][next(iter(results["rows"]))][0][f"{test}_cloze_baseline"]
        axis.axhline(baseline, color="gray", linestyle="--", label="unigram baseline")
        axis.set_title(title)
        axis.set_xlabel("step")
        axis.set_ylabel("NLL per hidden character (nats), mean over seeds")
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.tight_layout()
    save_figure(figure, path)


def draw(results: dict[str, Any], out_dir: Path) -> None:
    write_table(out_dir / "table.md", results_table(results))
    plot_curves(results, out_dir / "cloze.svg")


# %% [markdown]
# ## Run it
#
# From a shell, `labnotes experiment chinese_wwm` runs the six runs (about 20 minutes on 2 CPU
# cores) and writes `docs/results/chinese_wwm/`; `--redraw` redraws the table and figure from
# the stored `results.json`. It needs the Chinese extra: `pip install 'labnotes[zh]'`.

# %%
if __name__ == "__main__":
    import sys

    run_in_notebook(sys.modules[__name__], "chinese_wwm")

"""Chinese whole-word masking: the experiment.

Character masking, whole-word masking with jieba's words, and whole-word masking with the
corpus's gold words, trained at equal steps on People's Daily and scored on the same two
cloze tests (whole held-out words, and single characters) and on two tasks labelled by people
(review sentiment, part of speech), over two seeds, with intervals.
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
# gold words and a fixed seed, and on the same two labelled tasks: product-review sentiment
# and the part of speech of each character's word, each both by a frozen-feature probe (what
# pretraining alone put into the features) and by fine-tuning the whole encoder, as Cui et al.
# score their tasks (their sentiment set is ChnSentiCorp).

# %%
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from labnotes.chinese_wwm import (ChineseWWMConfig, ChineseWWMTask, labelled_scores,
                                  labelled_tasks, visible_sibling_share)
from labnotes.downstream import (DownstreamConfig, bag_of_tokens, most_frequent_label,
                                 quick_suite, seeded)
from labnotes.experiments.common import PRESETS, at_preset  # noqa: F401  (PRESETS: cpu, gpu)
from labnotes.experiments.common import (in_order, in_processes, markdown_table,
                                         mean_and_spread, pyplot, run_in_notebook, save_figure,
                                         train_arm, write_table)
from labnotes.experiments.xlnet import bootstrap_mean, bootstrap_ratio
from labnotes.mlm import IGNORE
from labnotes.training import make_quick, pick_device
from labnotes.transformer import Encoder

# %% [markdown]
# ## The arms and the budget
#
# `STEPS` steps of `BATCH_SIZE` blocks of 64 tokens per arm and seed: about 6 M tokens, four
# passes over the training text of People's Daily. (A first version trained 500 steps, two
# thirds of one pass, and every arm was still close to the unigram baseline: too early to
# compare them.) The budget is set by the machine this page was run on (2 CPU cores, two runs
# at a time of one thread each; the times are under [Run it](#run-it)); a longer run is one
# constant away, and a GPU runs the same code. The quick mode (a check that the pipeline runs,
# used by the tests) trains one seed of the character and gold arms only: segmenting the whole
# corpus with jieba takes about a minute.

# %%
ARMS = {  # row name -> masking
    "character masking": "character",
    "whole words, jieba": "jieba",
    "whole words, gold": "gold",
}
SEEDS = (0, 1)
STEPS = 3000
BATCH_SIZE = 32
EVAL_EVERY = 250
EVAL_BLOCKS = 256  # validation blocks for the MLM page's own metrics
CLOZE_BLOCKS = 256  # validation blocks of the two cloze tests


def arm_config(masking: str, seed: int, *, quick: bool, progress: bool,
               preset: str = "cpu") -> ChineseWWMConfig:
    config = ChineseWWMConfig(masking=masking, eval_blocks=EVAL_BLOCKS, cloze_blocks=CLOZE_BLOCKS)
    config.train.steps, config.train.eval_every = STEPS, EVAL_EVERY
    config.train.checkpoint_every = STEPS
    config.train.batch_size, config.train.seed = BATCH_SIZE, seed
    config.train.progress = progress
    return make_quick(config) if quick else at_preset(config, preset)


# %% [markdown]
# ## Running the arms
#
# Per run we keep the summary, the validation curves, and the NLL of every hidden character
# of both cloze tests. The per-character values are averaged over seeds before they are
# stored: the bootstrap below resamples words, and the spread over seeds is kept separately.
#
# Each trained encoder is then scored on the two labelled tasks of the
# [page](chinese_wwm.md#two-tasks-labelled-by-people), by the frozen-feature probe and by
# fine-tuning, over `PROBE_SEEDS` seeds each; so is a **randomly initialised encoder** of the
# same shape (one per pretraining seed), the floor that pretraining must rise above. The bag
# of characters (sentiment) and the most frequent tag of each character (part of speech) need
# no encoder. For these we store, per test review or sentence, the number of right answers
# averaged over all runs of an arm, and the accuracy of each run.
#
# The fine-tuning budget follows the paper's setting in kind, not in size: the whole encoder
# trained for `FINE_TUNING_EPOCHS` passes over the training split (BERT's recipe,
# arXiv:1810.04805 App. A.3, tries 2 to 4), with a sentiment training split of
# `SENTIMENT_TRAIN` reviews, the size of ChnSentiCorp's training set (9,600 train, 1,200
# development, 1,200 test reviews), on which Cui et al. report sentiment. The test split keeps
# up to `SENTIMENT_TEST` reviews; once balanced it holds 1,596, and all are used. Part of
# speech keeps every held-out sentence of People's Daily (1,557 training and 1,803 test).
#
# Every run, random-init encoders included, is one independent item: `--jobs 2` runs them in
# two processes of one thread each
# ([`in_processes`](experiments.common.md#independent-runs-side-by-side)).

# %%
PROBE_SEEDS = 3
FINE_TUNING_EPOCHS = 2
SENTIMENT_TRAIN, SENTIMENT_TEST = 9_600, 2_400
RANDOM_INIT = "random-init encoder"


def labelled_settings(quick: bool) -> DownstreamConfig:
    config = DownstreamConfig(mode="probe", seeds=PROBE_SEEDS, max_train_examples=SENTIMENT_TRAIN,
                              max_test_examples=SENTIMENT_TEST)
    return quick_suite(config) if quick else config


def labelled(scores: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs of one arm (one `labelled_scores` result per pretraining seed) -> per task: the
    accuracy of every run, and per test group (review, sentence) the right answers averaged
    over runs, with the group's size."""
    tasks: dict[str, Any] = {}
    for name in scores[0]:
        runs = [right for score in scores for right in score[name]["correct"]]
        groups = scores[0][name]["groups"]
        sums: dict[int, float] = {}
        sizes: dict[int, int] = {}
        for position, group in enumerate(groups):
            sums[group] = sums.get(group, 0.0) + sum(run[position] for run in runs) / len(runs)
            sizes[group] = sizes.get(group, 0) + 1
        tasks[name] = {"runs": [sum(run) / len(run) for run in runs],
                       "right": [round(sums[g], 4) for g in sizes], "size": list(sizes.values())}
    return tasks


def run_one(item: tuple[str, str, int], work_dir: Path, quick: bool, progress: bool,
            preset: str) -> dict[str, Any]:
    """One arm and seed trained, cloze-tested and scored; or, for RANDOM_INIT, an encoder of the
    same shape scored untrained (with the two floors, once, at seed 0)."""
    name, masking, seed = item
    config = arm_config(masking, seed, quick=quick, progress=progress, preset=preset)
    task = ChineseWWMTask(config)
    device = pick_device(config.train.device)  # where train() puts the model
    settings = labelled_settings(quick)
    epochs = None if quick else FINE_TUNING_EPOCHS
    tasks = labelled_tasks(task.tokenizer, config.corpus, settings,
                           task.model.encoder.config.max_len)
    if name == RANDOM_INIT:
        with seeded(seed):
            untrained = Encoder(task.model.encoder.config)
        out = {"scores": labelled_scores(untrained, tasks, settings, device, epochs)}
        if seed == SEEDS[0]:
            out["floors"] = floors_and_sizes(tasks, settings, out["scores"])
        return out
    summary, metrics = train_arm(task, config, work_dir, f"{name} seed {seed}")
    scores_of_cloze = task.cloze_scores(task.model, device)
    return {"summary": summary, "metrics": metrics, "batch_size": config.train.batch_size,
            "nll": {test: nll for test, (nll, _) in scores_of_cloze.items()},
            "words": {test: word_list for test, (_, word_list) in scores_of_cloze.items()},
            "leaks": {test: visible_sibling_share(task.cloze_blocks.word_ids,
                                                  hidden.labels != IGNORE)
                      for test, hidden in task.cloze.items()},
            "scores": labelled_scores(task.model.encoder, tasks, settings, device, epochs)}


def floors_and_sizes(tasks: dict[str, Any], settings: DownstreamConfig,
                     scores: dict[str, Any]) -> dict[str, Any]:
    """The two floors without an encoder, and what the table says of the tasks."""
    sentiment, pos = tasks["sentiment"], tasks["part of speech"]
    return {"floors": {"sentiment": bag_of_tokens(sentiment, settings.seeds, settings),
                       "part of speech": tag_lookup(pos, scores["part of speech"]["groups"])},
            "tag_count": pos.num_labels, "majority_tag_share": majority_share(pos),
            "labelled_sizes": {"sentiment": [len(sentiment.train), len(sentiment.test)],
                               "part of speech": [len(pos.train), len(pos.test)]}}


def tag_lookup(pos: Any, groups: list[int]) -> dict[str, Any]:
    """The most frequent tag of each character as a run: right or not on each test character."""
    guesses = most_frequent_label(pos) == pos.test.labels[pos.test.labels != IGNORE]
    return {"correct": [guesses.tolist()], "groups": groups}


def run_experiment(work_dir: Path, *, quick: bool = False, progress: bool = True,
                   preset: str = "cpu", jobs: int = 1) -> dict[str, Any]:
    seeds = SEEDS[:1] if quick else SEEDS
    # the quick mode skips jieba: segmenting the whole corpus with it takes about a minute
    arms = {name: masking for name, masking in ARMS.items() if not quick or masking != "jieba"}
    items = [(name, masking, seed) for name, masking in arms.items() for seed in seeds]
    items += [(RANDOM_INIT, "character", seed) for seed in seeds]
    done = dict(zip(items, in_processes(run_one, items, work_dir, quick, progress, preset,
                                        jobs=jobs)))
    rows, curves, cloze, scores = {}, {}, {}, {}
    for name in [*arms, RANDOM_INIT]:
        runs = [done[(name, arms.get(name, "character"), seed)] for seed in seeds]
        scores[name] = [run["scores"] for run in runs]
        if name == RANDOM_INIT:
            continue
        rows[name] = [run["summary"] for run in runs]
        curves.update({f"{name} seed {seed}": run["metrics"] for seed, run in zip(seeds, runs)})
        cloze[name] = {test: [round(sum(values) / len(values), 5)
                              for values in zip(*(run["nll"][test] for run in runs))]
                       for test in runs[0]["nll"]}
    first = done[items[0]]
    about = done[(RANDOM_INIT, "character", seeds[0])]["floors"]  # floors and task sizes
    return {"paper": "chinese_wwm", "rows": rows, "curves": curves, "cloze": cloze,
            "words": first["words"], "visible_sibling_share": first["leaks"],
            "labelled": {name: labelled(arm_scores) for name, arm_scores in scores.items()},
            "floors": labelled([about["floors"]]),
            "tag_count": about["tag_count"], "majority_tag_share": about["majority_tag_share"],
            "labelled_sizes": about["labelled_sizes"],
            "fine_tuning_epochs": None if quick else FINE_TUNING_EPOCHS,
            "steps": first["summary"]["steps"], "batch_size": first["batch_size"],
            "seeds": len(seeds), "jobs": jobs}


def majority_share(pos: Any) -> float:
    """Share of test characters whose tag is the most frequent tag of the training ones."""
    train, test = (part.labels[part.labels != IGNORE] for part in (pos.train, pos.test))
    return (test == torch.bincount(train).argmax()).float().mean().item()


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
             "character cloze in words of two or more characters that have a visible character "
             "of their own gold word: "
             f"{results['visible_sibling_share']['character']:.0%} (whole-word cloze: "
             f"{results['visible_sibling_share']['word']:.0%}).\n")
    return text


# %% [markdown]
# The second table holds the labelled tasks: test accuracy in %, the mean over all runs of an
# arm (pretraining seeds × seeds of the probe or the fine-tuning), with its 95% interval from
# resampling test reviews (sentiment) or test sentences (part of speech, all characters of a
# sentence together). The difference columns compare each arm with the random-init encoder on
# the same test items (paired); the caption gives the spread of the runs' accuracies.

# %%
LABELLED = {  # task -> (column, the floor's task)
    "sentiment": ("sentiment, probe (%)", "sentiment"),
    "sentiment, fine-tuned": ("sentiment, fine-tuned (%)", "sentiment"),
    "part of speech": ("part of speech, probe (%)", "part of speech"),
    "part of speech, fine-tuned": ("part of speech, fine-tuned (%)", "part of speech"),
}
FLOORS = {"sentiment": "bag of characters (no encoder)",
          "part of speech": "most frequent tag of each character"}


def accuracy(task: dict[str, Any], minus: dict[str, Any] | None = None) -> str:
    right = task["right"] if minus is None else [
        mine - theirs for mine, theirs in zip(task["right"], minus["right"])]
    result = bootstrap_ratio(right, task["size"])
    return (f"{100 * result['mean']:.1f} [{100 * result['low']:.1f}, "
            f"{100 * result['high']:.1f}]")


def labelled_table(results: dict[str, Any]) -> str:
    labelled, floors = results["labelled"], results["floors"]
    lines = []
    for floor, row_name in FLOORS.items():
        cells = [[accuracy(floors[floor]) if of == floor else "—", "—"]
                 for _, of in LABELLED.values()]
        lines.append([row_name, *(cell for pair in cells for cell in pair)])
    encoders = [RANDOM_INIT, *(arm for arm in ARMS if arm in labelled)]
    for name in encoders:
        cells = []
        for task_name in LABELLED:
            cells.append(accuracy(labelled[name][task_name]))
            cells.append("—" if name == RANDOM_INIT else
                         accuracy(labelled[name][task_name], labelled[RANDOM_INIT][task_name]))
        lines.append([name, *cells])
    header = ["encoder"] + [text for column, _ in LABELLED.values()
                            for text in (column, "− random init")]
    spreads = []
    for task_name, (column, _) in LABELLED.items():
        values = [100 * mean_and_spread(labelled[name][task_name]["runs"])[1] for name in encoders]
        spreads.append(f"{min(values):.1f}–{max(values):.1f} ({column.removesuffix(' (%)')})")
    sizes = results["labelled_sizes"]
    runs = len(labelled[RANDOM_INIT]["sentiment"]["runs"])
    epochs = results.get("fine_tuning_epochs")
    budget = (f"{epochs} passes over the training split" if epochs else "a fixed number of steps")
    return markdown_table(header, lines) + (
        f"\nAccuracy in %, with 95% intervals from resampling test reviews or sentences; "
        f"{runs} runs per encoder (pretraining seeds × seeds of the probe or the fine-tuning), "
        f"whose accuracies spread by s = {', '.join(spreads)} points. Fine-tuning: {budget}.\n\n"
        f"Sentiment: {sizes['sentiment'][0]} training and {sizes['sentiment'][1]} test reviews, "
        f"balanced. Part of speech: {sizes['part of speech'][0]} training and "
        f"{sizes['part of speech'][1]} test sentences of held-out documents, "
        f"{sum(floors['part of speech']['size'])} test characters, {results['tag_count']} tags; "
        f"always answering the most frequent tag: {100 * results['majority_tag_share']:.1f}%.\n")


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
    write_table(out_dir / "table.md", results_table(results) + "\n" + labelled_table(results))
    plot_curves(results, out_dir / "cloze.svg")


# %% [markdown]
# ## Run it
#
# From a shell, `labnotes experiment chinese_wwm --jobs 2` runs the six runs, scores them and
# two random-init encoders on the labelled tasks (28 minutes on 2 CPU cores, two at a time of
# one thread each; about half of it is the scoring, mostly fine-tuning on 9,600 reviews) and
# writes `docs/results/chinese_wwm/`; `--redraw` redraws the tables and figure from the stored
# `results.json`. It needs the Chinese extra: `pip install 'labnotes[zh]'`. Afterwards
# `python scripts/pos_fine_tuning.py --jobs 2` fine-tunes the trained encoders on part of
# speech for 2, 6 and 20 passes (`docs/results/chinese_wwm_pos/`, shown on the
# [page](chinese_wwm.md#evidence)). `--preset gpu` trains the same arms larger, for one GPU
# ([how](experiments.common.md#presets-the-same-arms-larger)).

# %%
if __name__ == "__main__":
    import sys

    run_in_notebook(sys.modules[__name__], "chinese_wwm")

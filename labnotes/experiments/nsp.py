"""NSP: the experiment.

The default MLM+NSP model beside classifiers that never read the text in order, all scored on
held-out NSP pairs whose negatives come from another document or from the same one.
"""

# %% [markdown]
# The claim, from the [NSP page](nsp.md#evidence-how-far-topic-alone-gets): NSP mixes topic
# and coherence, and topic, the easier of the two, carries most of its signal (ALBERT,
# arXiv:1909.11942, §3.1). If so, a classifier that knows only which words A and B share
# should do well on NSP's usual test pairs and fail once the negative comes from A's own
# document; and a classifier that knows only the two lengths should fail everywhere, unless
# the construction of the pairs leaks (BERT's own negatives do, see the NSP page).
#
# One model is trained: the NSP page's default, 2000 steps of MLM+NSP on the embedded corpus.
# Its head and the text-blind classifiers are scored on the same held-out test pairs.

# %%
from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from labnotes.experiments.common import PRESETS, at_preset  # noqa: F401  (PRESETS: cpu, gpu)
from labnotes.experiments.common import (in_order, markdown_table, pyplot,
                                         run_in_notebook, save_figure, train_arm, write_table)
from labnotes.nsp import NSP_TEST_SETS, NSPTask, nsp_example
from labnotes.pairs import (NEGATIVE, POSITIVE, Pair, PairConfig, PairSampler, Segment,
                            apply_plan, build_test_set, truncation_plan)
from labnotes.tokenizer import SPECIAL_TOKENS
from labnotes.training import make_quick

# %% [markdown]
# ## A linear probe on any features
#
# To ask whether some features *contain* what a task needs, we fit a **linear probe**: a
# logistic regression from the features to the label, trained on pairs from training documents
# and scored on the held-out test pairs. It is plain full-batch L-BFGS on standardised features
# with a small L2 penalty: deterministic, and a second or two for a few thousand vectors. Here
# it reads three overlap features; the [SOP experiment](experiments.sop.md) points it at each
# model's pooled vector.

# %%
def fit_logistic(features: Tensor, labels: Tensor, l2: float = 1e-3,
                 steps: int = 200) -> Callable[[Tensor], Tensor]:
    """A logistic regression on `features` [N, K]; returns a function giving P(NEGATIVE)."""
    mean, std = features.mean(0), features.std(0).clamp(min=1e-6)
    x = (features - mean) / std
    weight = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ weight + bias, labels.float()) \
            + l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    weight, bias = weight.detach(), bias.detach()
    return lambda new: torch.sigmoid(((new - mean) / std) @ weight + bias)


def probe_accuracy(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor) -> float:
    predict = fit_logistic(train_x, train_y)
    return ((predict(test_x) > 0.5).long() == test_y).float().mean().item()


def labels_of(pairs: Sequence[Pair]) -> Tensor:
    return torch.tensor([pair.label for pair in pairs])


# %% [markdown]
# ## Lengths only, on BERT's negatives and on ours
#
# If a classifier that sees nothing but $|A|$ and $|B|$ beats chance, the construction leaks.
# `length_only_accuracy` puts pairs in a 2-D histogram of the two lengths (cells of 4 tokens),
# predicts each cell's majority label from training pairs and scores held-out pairs: it can
# follow any pattern of lengths, not only a linear one. It is given pairs drawn as in training,
# with our negatives and with BERT's (`bert_nsp_example`: a random B starts at a random sentence
# of another document and grows until it has "target minus $|A|$" tokens; the NSP page says
# why that leaks).

# %%
def length_only_accuracy(train: Sequence[Pair], test: Sequence[Pair], bin_width: int = 4) -> float:
    def cell(pair: Pair) -> tuple[int, int]:
        return len(pair.first) // bin_width, len(pair.second) // bin_width

    votes: dict[tuple[int, int], int] = {}
    for pair in train:
        votes[cell(pair)] = votes.get(cell(pair), 0) + (1 if pair.label == NEGATIVE else -1)
    predictions = [NEGATIVE if votes.get(cell(pair), 0) > 0 else POSITIVE for pair in test]
    return sum(p == pair.label for p, pair in zip(predictions, test)) / len(test)


def bert_nsp_example(sampler: PairSampler, rng: random.Random) -> Pair:
    first, second, target = sampler.draw_positive(rng)
    if rng.random() < 0.5:
        plan = truncation_plan(len(first), len(second), target, rng)
        return apply_plan(first, second, plan, POSITIVE)
    document = rng.randrange(len(sampler.documents) - 1)
    document += document >= first.document  # any document but A's
    bounds = sampler.offsets[document]
    start = last = rng.randrange(len(bounds) - 1)
    while last < len(bounds) - 1 and bounds[last] - bounds[start] < max(1, target - len(first)):
        last += 1
    other = Segment(document, bounds[start], bounds[last])
    return apply_plan(first, other, truncation_plan(len(first), len(other), target, rng), NEGATIVE)


# %% [markdown]
# ## Bag of words
#
# If NSP is mostly topic, counting the words that A and B share should get far.
# `overlap_features` gives three numbers that ignore word order and are symmetric in A and B —
# the cosine of the two tf-idf vectors, the Jaccard overlap of their word sets, and the number
# of shared words — and the probe, fitted on test pairs from training documents, turns them
# into a classifier (ALBERT's argument, arXiv:1909.11942 §3.1; the idea of the test is ours).
# Being symmetric, it is at exactly 50% on swapped pairs.

# %%
def inverse_document_frequency(sampler: PairSampler, vocab_size: int) -> Tensor:
    counts = torch.zeros(vocab_size)
    for tokens in sampler.tokens:
        counts[torch.tensor(sorted(set(tokens)))] += 1
    return torch.log((1 + len(sampler.tokens)) / (1 + counts))


def tf_idf(tokens: list[int], idf: Tensor) -> Tensor:
    vector = torch.zeros(len(idf))
    if tokens:
        vector.index_add_(0, torch.tensor(tokens, dtype=torch.long), idf[tokens])
    return vector


def overlap_features(sampler: PairSampler, pairs: Sequence[Pair], idf: Tensor) -> Tensor:
    rows = []
    for pair in pairs:  # words only: the special tokens take the first ids
        a = [t for t in sampler.text(pair.first) if t >= len(SPECIAL_TOKENS)]
        b = [t for t in sampler.text(pair.second) if t >= len(SPECIAL_TOKENS)]
        shared, union = set(a) & set(b), set(a) | set(b)
        cosine = F.cosine_similarity(tf_idf(a, idf), tf_idf(b, idf), dim=0, eps=1e-8).item()
        rows.append([cosine, len(shared) / max(len(union), 1), float(len(shared))])
    return torch.tensor(rows)  # [N, 3]


# %% [markdown]
# ## Running it
#
# One training run, then the text-blind classifiers on its samplers and test pairs.

# %%
CLASSIFIERS = ["lengths only, BERT's negatives", "lengths only, our negatives",
               "bag-of-words overlap", "MLM+NSP Transformer (its NSP head)"]  # the table's rows
COLUMNS = {"nsp": "negatives from another document",
           "nsp_same_document": "negatives from the same document"}


def text_blind_baselines(task: NSPTask, count: int) -> dict[str, dict[str, float]]:
    train_pairs, valid_pairs, rng = task.train_pairs, task.valid_pairs, random.Random(7)
    rows: dict[str, dict[str, float]] = {}
    for name, example in ((CLASSIFIERS[0], bert_nsp_example), (CLASSIFIERS[1], nsp_example)):
        fit = [example(train_pairs, rng) for _ in range(20 * count)]
        held_out = [example(valid_pairs, rng) for _ in range(20 * count)]
        rows[name] = {"nsp": length_only_accuracy(fit, held_out)}
    idf = inverse_document_frequency(train_pairs, task.tokenizer.vocab_size)
    rows[CLASSIFIERS[2]] = {}
    for name, twins in NSP_TEST_SETS.items():
        fit, held_out = build_test_set(train_pairs, twins, 2 * count, seed=2000), \
            task.test_sets[name]
        rows[CLASSIFIERS[2]][name] = probe_accuracy(
            overlap_features(train_pairs, fit, idf), labels_of(fit),
            overlap_features(valid_pairs, held_out, idf), labels_of(held_out))
    return rows


def experiment_config(*, quick: bool = False, progress: bool = True,
                      preset: str = "cpu") -> PairConfig:
    config = PairConfig()
    config.train.progress = progress
    return make_quick(config) if quick else at_preset(config, preset)


def run_experiment(work_dir: Path, *, quick: bool = False, progress: bool = True,
                   preset: str = "cpu") -> dict[str, Any]:
    config = experiment_config(quick=quick, progress=progress, preset=preset)
    task = NSPTask(config)
    summary, metrics = train_arm(task, config, work_dir, "MLM+NSP")
    rows = text_blind_baselines(task, count=config.eval_pairs)
    rows[CLASSIFIERS[3]] = {key: summary[f"eval_{key}_accuracy"] for key in COLUMNS}
    return {"paper": "nsp", "rows": rows, "summary": summary,
            "curve": [row for row in metrics if "eval_nsp_accuracy" in row],
            "test_pairs": {name: len(pairs) for name, pairs in task.test_sets.items()}}


# %% [markdown]
# ## The table and the figures, from `results.json`
#
# The table and a bar chart of every classifier on both test sets, and the NSP head's
# held-out accuracy during training against the bag-of-words overlap. `bar_plot` also draws
# the SOP experiment's chart, with the paper's numbers as markers.

# %%
def draw(results: dict[str, Any], out_dir: Path) -> None:
    rows = {name: results["rows"][name] for name in in_order(results["rows"], CLASSIFIERS)}
    write_table(out_dir / "table.md", results_table(rows, results["test_pairs"]))
    bar_plot(rows, COLUMNS, out_dir / "accuracy.svg", title="held-out NSP accuracy")
    plot_curve(results["curve"], rows["bag-of-words overlap"], out_dir / "curve.svg")


def results_table(rows: dict[str, dict[str, float]], sizes: dict[str, int]) -> str:
    header = ["classifier", "NSP, other-document negatives", "NSP, same-document negatives"]
    cells = [[name] + [f"{100 * row[key]:.1f}%" if key in row else "—" for key in COLUMNS]
             for name, row in rows.items()]
    # text_blind_baselines scores 20 × eval_pairs pairs; a twin set holds 2 × eval_pairs
    note = (f"\nTest pairs: {sizes['nsp']} (other-document negatives) and "
            f"{sizes['nsp_same_document']} (same-document negatives), each set half positives and "
            "half their negative twins (a 95% interval of about ±2.2 points). The lengths-only "
            "classifiers are scored on "
            f"{10 * sizes['nsp']} held-out pairs drawn as in training instead: twins share "
            "their lengths by construction.\n")
    return markdown_table(header, cells + [["chance", "50.0%", "50.0%"]]) + note


def bar_plot(rows: dict[str, dict[str, float]], columns: dict[str, str], path: Path, title: str,
             reference: dict[str, dict[str, float]] | None = None,
             reference_label: str = "paper") -> None:
    """Grouped bars: one group per row, one bar per column, a dashed line at chance;
    `reference` values (a paper's) are drawn as black markers on their bars."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(8, 4.6))
    width = 0.8 / len(columns)
    for index, (key, label) in enumerate(columns.items()):
        xs = [i + (index - (len(columns) - 1) / 2) * width for i in range(len(rows))]
        bars = axis.bar(xs, [100 * row.get(key, math.nan) for row in rows.values()], width,
                        label=label)
        axis.bar_label(bars, fmt="%.0f", fontsize=8, padding=2)
        if reference:
            marks = [100 * reference.get(name, {}).get(key, math.nan) for name in rows]
            axis.scatter(xs, marks, marker="_", s=300, color="black", linewidths=2,
                         label=reference_label if index == 0 else None, zorder=3)
    axis.axhline(50, color="gray", linestyle="--", linewidth=1, label="chance")
    names = [name.replace(", ", ",\n").replace(" (", "\n(") for name in rows]
    axis.set_xticks(range(len(rows)), names, fontsize=8)
    axis.set_ylim(0, 105)
    axis.set_ylabel("accuracy (%)")
    axis.set_title(title)
    axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    figure.tight_layout()
    save_figure(figure, path)


def plot_curve(curve: list[dict[str, Any]], overlap: dict[str, float], path: Path) -> None:
    """The NSP head's held-out accuracy during training, on both kinds of negatives."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 3.6))
    steps = [row["step"] for row in curve]
    for (key, label), color in zip(COLUMNS.items(), ("C0", "C1")):
        axis.plot(steps, [100 * row[f"eval_{key}_accuracy"] for row in curve], marker="o",
                  color=color, label=label)
        axis.axhline(100 * overlap[key], color=color, linestyle=":", linewidth=1.5,
                     label=f"bag-of-words overlap, {label.split(' from ')[1]}")
    axis.axhline(50, color="gray", linestyle="--", linewidth=1, label="chance")
    axis.set_xlabel("training step")
    axis.set_ylabel("held-out NSP accuracy (%)")
    axis.set_title("MLM+NSP: the NSP head during training")
    axis.legend(fontsize=7, loc="upper left")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    save_figure(figure, path)


# %% [markdown]
# ## Run it
#
# From a shell, `labnotes experiment nsp` trains the model (a few minutes on 2 CPU cores) and
# writes `docs/results/nsp/`; `--redraw` redraws the table and figures from the stored
# `results.json`. `--preset gpu` trains it larger, for one GPU
# ([how](experiments.common.md#presets-the-same-arms-larger)). In the notebook this cell runs it
# into `runs/experiment-nsp/`.

# %%
if __name__ == "__main__":
    run_in_notebook(sys.modules[__name__], "nsp")

"""XLNet: the experiment.

Does predicting in an order let a target use the targets before it (the "New York" argument)?
Why predict only the last sixth of an order? And what does the permutation objective give an
encoder, next to BERT's MLM at the same size and budget?
"""

# %% [markdown]
# Three questions from the [XLNet page](xlnet.md#evidence), each measured on models trained
# here for 2000 steps of 64 blocks of 64 tokens on the embedded corpus:
#
# 1. **Dependency between targets** (XLNet, arXiv:1906.08237, §2.6). Hide a span of two to five
#    tokens made of whole words. An MLM predicts its tokens independently; an XLNet model can be
#    asked both ways: with a mask in which the span's tokens cannot see each other
#    (*independent*), and in an order where each sees the ones before it (*chain*). The paper's
#    argument is that the chain is what MLM leaves out; the gap chain − independent measures how
#    much it is worth, for pieces of one word and for words of their own.
# 2. **Why partial prediction** (§2.3): the same model trained with every token a target
#    ($K = 1$) and with one in six ($K = 6$), scored on the same held-out targets.
# 3. **What the encoder learns**: the [downstream suite](downstream.md) on the content stream
#    of XLNet ($K = 6$) and on BERT's MLM encoder, trained with the same encoder, data and steps.

# %%
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from labnotes.downstream import DownstreamConfig, build_tasks, evaluate_encoder, quick_suite
from labnotes.experiments.common import PRESETS, at_preset  # noqa: F401  (PRESETS: cpu, gpu)
from labnotes.experiments.common import (flops_per_step, in_order, markdown_table,
                                         mean_and_spread, percent, pyplot, run_in_notebook,
                                         save_figure, train_arm, write_table)
from labnotes.mlm import MLMConfig, MLMTask
from labnotes.tokenizer import CLS_ID, MASK_ID, PAD_ID, SEP_ID, prepare_corpus
from labnotes.training import make_quick
from labnotes.xlnet import (XLNetConfig, XLNetTask, factorization_ranks, span_targets,
                            stream_masks, word_starts_of)

# %% [markdown]
# ## The arms
#
# Every arm is its page's default model and recipe (2 layers × 128, no dropout, learning rate
# $2 \times 10^{-3}$, unigram output bias), for the same number of steps on the same blocks.
# MLM and XLNet with $K = 6$ run with two seeds each; $K = 1$ with one.

# %%
ARMS = {
    "BERT MLM": ("mlm", {}),
    "XLNet, K = 6": ("xlnet", {}),
    "XLNet, K = 1": ("xlnet", {"k": 1}),
}
SEEDS = {"BERT MLM": (0, 1), "XLNet, K = 6": (0, 1), "XLNet, K = 1": (0,)}
STEPS = 2000
EVAL_EVERY = 250
SPAN_ROWS = 1024  # validation blocks that each give one held-out span
ORDERS = 4  # chain orders averaged per span
BOOTSTRAP = 2000


def arm_config(name: str, seed: int, *, quick: bool, progress: bool,
               preset: str = "cpu") -> MLMConfig | XLNetConfig:
    kind, changes = ARMS[name]
    config = MLMConfig() if kind == "mlm" else XLNetConfig(**changes)
    config.train.steps, config.train.eval_every, config.train.seed = STEPS, EVAL_EVERY, seed
    config.train.checkpoint_every, config.train.progress = STEPS, progress
    return make_quick(config) if quick else at_preset(config, preset)


def build_arm(name: str, seed: int, *, quick: bool, progress: bool, preset: str = "cpu") -> Any:
    config = arm_config(name, seed, quick=quick, progress=progress, preset=preset)
    return MLMTask(config) if ARMS[name][0] == "mlm" else XLNetTask(config)


# %% [markdown]
# ## Held-out spans of whole words
#
# From each validation block we take one span: a length $L \in \{2, \dots, 5\}$ drawn uniformly,
# then a uniformly chosen run of $L$ ordinary tokens that starts at a word start and ends at a
# word end (so every word in it is whole). Every other token of the block is visible context,
# for every model. Each token of a span is labelled **piece of a longer word** if its word has
# two or more pieces (all of them inside the span), else **a word of its own**.

# %%
def held_out_spans(blocks: dict[str, Tensor], rows: int,
                   seed: int = 99) -> list[tuple[int, int, int]]:
    """[(row, start, end)]: at most one whole-word span of 2-5 tokens per validation block."""
    generator = torch.Generator().manual_seed(seed)
    starts = word_starts_of(blocks["word_ids"])
    ordinary = ~blocks["special_tokens_mask"]
    ends = torch.cat([starts[:, 1:] | ~ordinary[:, 1:],
                      torch.ones_like(starts[:, :1])], dim=1)  # the next token starts anew
    spans = []
    for row in range(min(rows, len(starts))):
        length = int(torch.randint(2, 6, (1,), generator=generator))
        seq_len = starts.shape[1]
        candidates = [s for s in range(seq_len - length + 1)
                      if starts[row, s] and ordinary[row, s:s + length].all()
                      and ends[row, s + length - 1]]
        if candidates:
            pick = int(torch.randint(len(candidates), (1,), generator=generator))
            spans.append((row, candidates[pick], candidates[pick] + length))
    return spans


def multi_piece(word_ids: Tensor, row: int, start: int, end: int) -> list[bool]:
    """For each token of a span: does its word have more than one piece?"""
    words = word_ids[row, start:end].tolist()
    return [words.count(word) > 1 for word in words]


# %% [markdown]
# ## Three ways to score a span
#
# All three give the per-token NLL of the span's tokens, with the rest of the block visible:
#
# - **MLM, span masked**: every span token replaced by `[MASK]`, all predicted at once;
# - **XLNet, independent**: every span token at the same rank $0$, so each query sees only the
#   context (ties never see each other: the query rule is $\operatorname{rank}(j) <
#   \operatorname{rank}(i)$);
# - **XLNet, chain**: the span's tokens at ranks $0, \dots, L - 1$ in a random order, averaged
#   over `ORDERS` orders; each token also sees the span tokens before it.

# %%
def span_batch(blocks: dict[str, Tensor], spans: list[tuple[int, int, int]]
               ) -> tuple[Tensor, Tensor]:
    """(input ids [S, T], bool [S, T] span positions), one row per span."""
    ids = blocks["input_ids"][[row for row, _, _ in spans]]
    inside = torch.zeros_like(ids, dtype=torch.bool)
    for index, (_, start, end) in enumerate(spans):
        inside[index, start:end] = True
    return ids, inside


def token_nll(logits: Tensor, answers: Tensor) -> Tensor:
    return F.cross_entropy(logits.float(), answers, reduction="none")


@torch.no_grad()
def mlm_span_nll(task: MLMTask, ids: Tensor, inside: Tensor) -> Tensor:
    """Per-token NLL [N] (row-major over the span positions), the whole span masked."""
    task.model.eval()
    masked = ids.masked_fill(inside, MASK_ID)
    labels = torch.where(inside, ids, torch.full_like(ids, -100))
    _, logits = task.model(masked, labels, ids != PAD_ID)
    task.model.train()
    return token_nll(logits, ids[inside])


@torch.no_grad()
def xlnet_span_nll(task: XLNetTask, ids: Tensor, inside: Tensor, ranks: Tensor) -> Tensor:
    """Per-token NLL [N] (row-major over the span positions) under the given ranks."""
    task.model.eval()
    logits, (slots, valid), _ = task.model(ids, ranks, ids != PAD_ID)
    task.model.train()
    answers = ids.gather(1, slots)[valid]
    return token_nll(logits, answers)


def span_scores(task: Any, blocks: dict[str, Tensor], spans: list[tuple[int, int, int]],
                chunk: int = 256) -> dict[str, list[float]]:
    """Per-token NLL of every span token, by method."""
    scores: dict[str, list[float]] = {}
    generator = torch.Generator().manual_seed(7)
    for first in range(0, len(spans), chunk):
        ids, inside = span_batch(blocks, spans[first:first + chunk])
        if isinstance(task, MLMTask):
            scores.setdefault("masked", []).extend(mlm_span_nll(task, ids, inside).tolist())
            continue
        tied = torch.where(inside, 0, -1)
        scores.setdefault("independent", []).extend(
            xlnet_span_nll(task, ids, inside, tied).tolist())
        chains = torch.stack([xlnet_span_nll(task, ids, inside,
                                             factorization_ranks(inside, generator))
                              for _ in range(ORDERS)])
        scores.setdefault("chain", []).extend(chains.mean(0).tolist())
    return scores


# %% [markdown]
# ## Intervals
#
# Tokens of one span are not independent, so the 95% intervals resample **spans** (a bootstrap
# with `BOOTSTRAP` draws): each draw takes as many spans as there are, with replacement, and
# recomputes the mean over their tokens.

# %%
def bootstrap_mean(values: list[float], groups: list[int], seed: int = 0
                   ) -> dict[str, float]:
    """Mean of `values` and its 95% interval, resampling whole groups (spans)."""
    by_group: dict[int, list[float]] = {}
    for value, group in zip(values, groups):
        by_group.setdefault(group, []).append(value)
    return bootstrap_ratio([sum(v) for v in by_group.values()],
                           [len(v) for v in by_group.values()], seed)


def bootstrap_ratio(group_sums: list[float], group_counts: list[int], seed: int = 0
                    ) -> dict[str, float]:
    """sum / count over groups, and its 95% interval from resampling whole groups."""
    sums = torch.tensor(group_sums, dtype=torch.float64)
    counts = torch.tensor(group_counts, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(sums), (BOOTSTRAP, len(sums)), generator=generator)
    means = sums[picks].sum(1) / counts[picks].sum(1)
    low, high = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64))
    return {"mean": float(sums.sum() / counts.sum()), "low": float(low), "high": float(high),
            "tokens": int(counts.sum()), "spans": len(sums)}


def dependency_table(per_seed: dict[str, list[dict[str, list[float]]]],
                     kinds: list[bool], groups: list[int]) -> dict[str, Any]:
    """Mean NLL per method and token kind (values averaged over seeds token by token), and the
    chain − independent gap."""
    averaged = {arm: {method: [sum(v) / len(v) for v in zip(*(seed[method] for seed in seeds))]
                      for method in seeds[0]}
                for arm, seeds in per_seed.items()}
    xlnet, mlm = averaged["XLNet, K = 6"], averaged["BERT MLM"]
    series = {"MLM, span masked": mlm["masked"], "XLNet, independent": xlnet["independent"],
              "XLNet, chain": xlnet["chain"],
              "chain − independent": [c - i for c, i in zip(xlnet["chain"], xlnet["independent"])],
              "XLNet independent − MLM": [i - m for i, m in zip(xlnet["independent"],
                                                                 mlm["masked"])]}
    table = {}
    for kind_name, keep in (("all span tokens", None), ("pieces of a longer word", True),
                            ("words of their own", False)):
        chosen = [i for i, kind in enumerate(kinds) if keep is None or kind == keep]
        table[kind_name] = {name: bootstrap_mean([values[i] for i in chosen],
                                                 [groups[i] for i in chosen])
                            for name, values in series.items()}
    return table


# %% [markdown]
# ## Running the arms
#
# Each arm trains afresh; we record its summary, curves, wall time and FLOPs per step (counted
# as on the [common page](experiments.common.md#counting-compute)), score its spans, and run the
# downstream suite on its encoder (the content stream, no mask, for XLNet). A random-init
# encoder is the downstream floor. The results also keep one short sentence with a sampled
# order, for the mask figure on the XLNet page.

# %%
MASK_SENTENCE = "the new york times reported the result"


def run_experiment(work_dir: Path, *, quick: bool = False, progress: bool = True,
                   preset: str = "cpu") -> dict[str, Any]:
    suite = DownstreamConfig()
    suite = quick_suite(suite) if quick else suite
    started = time.perf_counter()
    rows: dict[str, list[dict[str, Any]]] = {}
    span_per_seed: dict[str, list[dict[str, list[float]]]] = {}
    spans = kinds = groups = None
    tasks = baseline = example = None
    for name in ARMS:
        for seed in SEEDS[name][:1] if quick else SEEDS[name]:  # quick: one seed, a check
            task = build_arm(name, seed, quick=quick, progress=progress, preset=preset)
            if tasks is None:
                tasks = build_tasks(prepare_corpus(task.config.corpus), suite,
                                    task.config.model.max_len)
                baseline = evaluate_encoder(type(task.model.encoder)(task.config.model),
                                            tasks, suite)
                spans = held_out_spans(task.valid, 64 if quick else SPAN_ROWS)
                kinds = [kind for row, start, end in spans
                         for kind in multi_piece(task.valid["word_ids"], row, start, end)]
                groups = [index for index, (_, start, end) in enumerate(spans)
                          for _ in range(end - start)]
            if example is None and isinstance(task, XLNetTask):
                example = mask_example(task)
            step_flops = flops_per_step(task)
            arm_started = time.perf_counter()
            summary, metrics = train_arm(task, task.config, work_dir, f"{name} seed {seed}")
            seconds = time.perf_counter() - arm_started
            if name != "XLNet, K = 1":
                span_per_seed.setdefault(name, []).append(span_scores(task, task.valid, spans))
                downstream = evaluate_encoder(task.model.encoder, tasks, suite)
            else:
                downstream = None
            rows.setdefault(name, []).append({
                "seed": seed, "summary": summary, "curve": metrics, "train_seconds": seconds,
                "flops_per_step": step_flops, "downstream": downstream})
    return {"paper": "xlnet", "steps": task.config.train.steps, "rows": rows,
            "dependency": dependency_table(span_per_seed, kinds, groups),
            "suite": dataclasses.asdict(suite), "random_init": baseline,
            "mask_example": example, "seconds": time.perf_counter() - started}


def mask_example(task: XLNetTask) -> dict[str, Any]:
    """One short sentence, its targets (K = 6 spans, at least two) and one sampled order."""
    tokenizer = task.tokenizer
    ids = [CLS_ID] + tokenizer.encode(MASK_SENTENCE) + [SEP_ID]
    tokens = [tokenizer.id_to_token(i) for i in ids]
    words = torch.tensor([[-1] + tokenizer.encode_with_words(MASK_SENTENCE)[1] + [-1]])
    predictable = words >= 0
    for seed in range(100):  # the first draw with two or more targets, for a figure that teaches
        generator = torch.Generator().manual_seed(seed)
        targets = span_targets(predictable, word_starts_of(words), 3, generator)
        if targets.sum() >= 2:
            break
    ranks = factorization_ranks(targets, generator)
    content, query = stream_masks(ranks)
    return {"tokens": tokens, "ranks": ranks[0].tolist(), "k": 3,
            "content": content[0].int().tolist(), "query": query[0].int().tolist()}


# %% [markdown]
# ## Tables and figures, from `results.json`
#
# `table.md` holds the dependency table, the $K$ comparison and the downstream scores;
# `k_curves.svg` the held-out and training losses of $K = 1$ and $K = 6$ against steps; and
# `lecture-masks.svg`, which the XLNet page shows where it explains the masks (figures named
# `lecture-*` appear there, not under the results).

# %%
def draw(results: dict[str, Any], out_dir: Path) -> None:
    write_table(out_dir / "table.md", results_table(results))
    plot_k_curves(results, out_dir / "k_curves.svg")
    plot_masks(results["mask_example"], out_dir / "lecture-masks.svg")


def nats(cell: dict[str, float]) -> str:
    return f"{cell['mean']:.3f} [{cell['low']:.3f}, {cell['high']:.3f}]"


def last_eval(row: dict[str, Any]) -> dict[str, Any]:
    return [point for point in row["curve"] if "eval_loss" in point][-1]


def results_table(results: dict[str, Any]) -> str:
    dependency = results["dependency"]
    methods = ["MLM, span masked", "XLNet, independent", "XLNet, chain", "chain − independent",
               "XLNet independent − MLM"]
    kinds = list(dependency)
    first = dependency[kinds[0]][methods[0]]
    text = (f"**Dependency between targets** (per-token NLL in nats, mean [95% interval over "
            f"{first['spans']} held-out spans]; models averaged token by token over their seeds)"
            "\n\n" + markdown_table(
                ["span tokens", "tokens", *methods],
                [[kind, dependency[kind][methods[0]]["tokens"],
                  *(nats(dependency[kind][m]) for m in methods)] for kind in kinds]))
    lines = []
    for name in in_order(results["rows"], ARMS):
        runs = results["rows"][name]
        losses = [last_eval(run)["eval_loss"] for run in runs]
        accuracies = [last_eval(run)["eval_accuracy"] for run in runs]
        loss, loss_spread = mean_and_spread(losses)
        accuracy, accuracy_spread = mean_and_spread(accuracies)
        seconds = sum(run["train_seconds"] for run in runs) / len(runs)
        flops = runs[0]["flops_per_step"] * results["steps"] / 1e12
        single = len(runs) == 1
        lines.append([name, len(runs), f"{loss:.3f}" + ("" if single else f" ± {loss_spread:.3f}"),
                      percent(accuracy, None if single else accuracy_spread),
                      f"{runs[0]['summary']['baseline_entropy']:.3f}", f"{flops:.1f}",
                      f"{seconds:.0f}"])
    text += ("\n**Held-out loss at the end** (each objective on its own validation targets: "
             "MLM's 15% masked tokens; XLNet's K = 6 span targets for both K arms)\n\n"
             + markdown_table(["arm", "seeds", "loss (nats)", "top-1 (%)", "unigram entropy",
                               "train TFLOPs", "train seconds"], lines))
    baseline = results["random_init"]
    tasks = list(baseline["tasks"])
    down = [["random-init encoder", *(percent(baseline["tasks"][t]["mean"]) for t in tasks),
             percent(baseline["score"]["mean"])]]
    for name in in_order(results["rows"], ARMS):
        runs = [run for run in results["rows"][name] if run["downstream"]]
        if runs:
            per_task = [[run["downstream"]["tasks"][t]["mean"] for run in runs] for t in tasks]
            scores = [run["downstream"]["score"]["mean"] for run in runs]
            down.append([name, *(percent(*mean_and_spread(v)) for v in per_task),
                         percent(*mean_and_spread(scores))])
    text += ("\n**Downstream suite** (accuracy in %, mean ± std over pretraining seeds, each the "
             "mean of the suite's fine-tuning seeds)\n\n"
             + markdown_table(["encoder", *(t.replace("_", " ") for t in tasks), "mean"], down))
    return text


def plot_k_curves(results: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    figure, (held_out, by_compute, training) = plt.subplots(1, 3, figsize=(15, 4))
    for name in in_order(results["rows"], ARMS):
        if not name.startswith("XLNet"):
            continue
        run = results["rows"][name][0]
        evals = [point for point in run["curve"] if "eval_loss" in point]
        held_out.plot([p["step"] for p in evals], [p["eval_loss"] for p in evals], marker="o",
                      label=name)
        by_compute.plot([p["step"] * run["flops_per_step"] / 1e12 for p in evals],
                        [p["eval_loss"] for p in evals], marker="o", label=name)
        train_points = [point for point in run["curve"] if "loss" in point]
        training.plot([p["step"] for p in train_points], [p["loss"] for p in train_points],
                      label=name, alpha=0.8)
        baseline = run["summary"]["baseline_entropy"]
    for axis in (held_out, by_compute):
        axis.axhline(baseline, color="gray", linestyle="--", label="unigram entropy")
    held_out.set_title("held-out loss, the same K = 6 targets")
    by_compute.set_title("the same, against training compute")
    training.set_title("training loss, each on its own targets")
    for axis in (held_out, by_compute, training):
        axis.set_xlabel("step")
        axis.set_ylabel("NLL per target (nats)")
        axis.grid(alpha=0.3)
        axis.legend()
    by_compute.set_xlabel("training TFLOPs (counted by torch)")
    figure.suptitle("XLNet with every token a target (K = 1) and one in six (K = 6), seed 0")
    figure.tight_layout()
    save_figure(figure, path)


def plot_masks(example: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    tokens, ranks = example["tokens"], example["ranks"]
    labels = [f"{token}" + (f"  (step {rank + 1})" if rank >= 0 else "")
              for token, rank in zip(tokens, ranks)]
    figure, axes = plt.subplots(1, 2, figsize=(11, 5.4))
    for axis, key, title in ((axes[0], "content", "content stream h: may see itself"),
                             (axes[1], "query", "query stream g: never sees itself")):
        axis.imshow(example[key], cmap="Blues", vmin=0, vmax=1.4)
        axis.set_xticks(range(len(tokens)), tokens, rotation=60, ha="right")
        axis.set_yticks(range(len(tokens)), labels)
        axis.set_xlabel("may look at (key position)")
        axis.set_title(title)
        axis.set_xticks([x - 0.5 for x in range(1, len(tokens))], minor=True)
        axis.set_yticks([y - 0.5 for y in range(1, len(tokens))], minor=True)
        axis.grid(which="minor", color="white", linewidth=1.5)
        axis.tick_params(which="minor", length=0)
        for label, rank in zip(axis.get_yticklabels(), ranks):
            if rank >= 0:
                label.set_color("tab:orange")
                label.set_fontweight("bold")
    axes[0].set_ylabel("position asking (query); targets in orange, with their step")
    figure.suptitle("One sampled order: context tokens see each other, targets follow the order")
    figure.tight_layout()
    save_figure(figure, path)


# %% [markdown]
# ## Run it
#
# From a shell, `labnotes experiment xlnet` trains the five runs (about 45 minutes on 2 idle CPU
# cores; 100 on one thread beside another experiment) and writes `docs/results/xlnet/`;
# `--redraw` redraws from the stored `results.json`. `--preset gpu` trains the same runs larger, for one GPU
# ([how](experiments.common.md#presets-the-same-arms-larger)).

# %%
if __name__ == "__main__":
    import sys

    run_in_notebook(sys.modules[__name__], "xlnet")

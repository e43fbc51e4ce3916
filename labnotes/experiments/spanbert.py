"""SpanBERT: the experiment.

Four encoders that differ only in how they mask (scattered tokens, whole words, geometric
spans, and geometric spans with the span boundary objective), asked to fill in held-out gaps
of 3 to 6 words.
"""

# %% [markdown]
# The claim, from the [SpanBERT page](spanbert.md#evidence-filling-in-held-out-spans): hiding
# contiguous spans of whole words helps span-selection tasks more than hiding scattered tokens
# (SpanBERT, arXiv:1907.10529, §6, Table 6: SQuAD 2.0 85.4 vs 83.8 F1), and the span boundary
# objective puts what a span holds into the tokens just outside it (§3.2; Table 7:
# coreference 76.3 → 79.0 F1).
#
# Each arm is the paper page's default configuration with `masking` and `boundary_objective`
# set, trained for 700 steps of 64 blocks, once per pretraining seed. Every arm and seed is
# scored on the same held-out examples, built once.

# %%
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from labnotes.downstream import DownstreamConfig, build_tasks, evaluate_encoder, quick_suite
from labnotes.experiments.common import PRESETS, at_preset  # noqa: F401  (PRESETS: cpu, gpu)
from labnotes.experiments.common import (in_order, markdown_table, mean_and_spread,
                                         percent_over_seeds, pyplot, run_in_notebook, save_figure,
                                         train_arm, write_table)
from labnotes.mlm import IGNORE, evaluate_mlm, mask_tokens, unigram_baselines
from labnotes.spanbert import (SpanBERTConfig, SpanBERTModel, SpanBERTTask, block_words,
                               mask_spans, span_boundary_targets)
from labnotes.tokenizer import MASK_ID, PAD_ID, prepare_corpus
from labnotes.training import make_quick

# %% [markdown]
# ## The arms
#
# Each arm names the fields of `SpanBERTConfig` it sets. Every arm evaluates once, at the end.

# %%
ARMS = {
    "token masking (BERT)": {"masking": "token", "boundary_objective": False},
    "whole-word masking": {"masking": "word", "boundary_objective": False},
    "geometric spans": {"masking": "span", "boundary_objective": False},
    "geometric spans + SBO": {"masking": "span", "boundary_objective": True},
}
SEEDS = (0, 1)  # pretraining seeds; the quick mode trains the first only
STEPS = 700
BATCH_SIZE = 64
RECOVERY_LENGTHS = (3, 4, 5, 6)  # span lengths, in words, of the span-recovery test
RECOVERY_SEED = 4321  # where each test span sits
HELD_OUT_MASK_SEED = 99  # the validation blocks masked BERT's way and SpanBERT's way


def arm_config(changes: dict[str, Any], seed: int, *, quick: bool, progress: bool,
               preset: str = "cpu") -> SpanBERTConfig:
    config = SpanBERTConfig(**changes)
    config.train.seed, config.train.progress = seed, progress
    config.train.steps, config.train.batch_size = STEPS, BATCH_SIZE
    config.train.eval_every = config.train.checkpoint_every = STEPS
    return make_quick(config) if quick else at_preset(config, preset)


# %% [markdown]
# ## Span recovery
#
# In every validation block we hide one span of each length in `RECOVERY_LENGTHS` (one
# example each): whole words, all `[MASK]`, with a real word on each side, so neither boundary
# is `[CLS]` or `[SEP]`. The MLM head fills the span token by token; the SBO head, where the
# model has one, predicts it from the two boundaries alone. We score per-token accuracy, exact
# match (every token of the span right), both by span length, and the accuracy by distance
# from the nearer boundary (1 = next to it).

# %%
def span_recovery_set(blocks: Any, lengths: tuple[int, ...] = RECOVERY_LENGTHS,
                      seed: int = RECOVERY_SEED) -> dict[str, Tensor]:
    """One example per (block, length). Returns input_ids (masked), labels, padding_mask,
    spans [N, 3] (row = example), span_words [N] and block [N], the block it was cut from."""
    generator = torch.Generator().manual_seed(seed)
    picks = torch.rand((len(blocks), len(lengths)), generator=generator).tolist()
    examples, spans, span_words = [], [], []
    rows = zip(blocks.word_ids.tolist(), blocks.special_tokens_mask.tolist())
    for row, (word_row, special_row) in enumerate(rows):
        words, _ = block_words(word_row, special_row)
        for length, pick in zip(lengths, picks[row]):
            places = len(words) - length - 1  # start words 1 .. len - length - 1
            if places < 1:
                continue
            start = 1 + min(int(pick * places), places - 1)
            examples.append(row)
            spans.append([len(spans), words[start][0], words[start + length - 1][1]])
            span_words.append(length)
    block = torch.tensor(examples, dtype=torch.long)
    original = blocks.input_ids[block]
    spans_tensor = torch.tensor(spans, dtype=torch.long).reshape(-1, 3)
    positions = torch.arange(original.shape[1])
    inside = (positions >= spans_tensor[:, 1:2]) & (positions <= spans_tensor[:, 2:3])  # [N, T]
    return {"input_ids": original.masked_fill(inside, MASK_ID),
            "labels": torch.where(inside, original, torch.full_like(original, IGNORE)),
            "padding_mask": original != PAD_ID, "spans": spans_tensor,
            "span_words": torch.tensor(span_words, dtype=torch.long), "block": block}


@torch.no_grad()
def span_recovery(model: SpanBERTModel, recovery_set: dict[str, Tensor], device: torch.device,
                  batch_size: int = 256) -> dict[str, Any]:
    """recovery_scores of the MLM head and, if the model has one, of the SBO head."""
    model.eval()
    heads: dict[str, list[Tensor]] = {"mlm": [], "sbo": []}
    for start in range(0, len(recovery_set["input_ids"]), batch_size):
        part = slice(start, start + batch_size)
        ids, labels = (recovery_set[key][part].to(device) for key in ("input_ids", "labels"))
        spans = recovery_set["spans"][part] - torch.tensor([start, 0, 0])
        hidden = model.encoder(ids, padding_mask=recovery_set["padding_mask"][part].to(device))
        selected = labels != IGNORE
        correct = torch.zeros_like(labels, dtype=torch.bool)
        correct[selected] = model.head(hidden[selected]).argmax(-1) == labels[selected]
        heads["mlm"].append(correct.cpu())
        if model.boundary_head is not None:
            targets = span_boundary_targets(spans, labels, None,
                                            model.boundary_head.position.num_embeddings)
            sbo_correct = torch.zeros_like(correct)
            sbo_predictions = model.boundary_head(hidden, targets).argmax(-1)
            sbo_correct[targets.rows, targets.position] = sbo_predictions == targets.labels
            heads["sbo"].append(sbo_correct.cpu())
    model.train()
    return {head: recovery_scores(torch.cat(parts), recovery_set)
            for head, parts in heads.items() if parts}


def recovery_scores(correct: Tensor, recovery_set: dict[str, Tensor]) -> dict[str, Any]:
    labels, spans, span_words = (recovery_set[key] for key in ("labels", "spans", "span_words"))
    inside = labels != IGNORE  # [N, T]
    hits, sizes = (correct & inside).sum(1), inside.sum(1)
    positions = torch.arange(labels.shape[1])
    distance = torch.minimum(positions - spans[:, 1:2], spans[:, 2:3] - positions) + 1
    scores: dict[str, Any] = {"token_accuracy": (hits.sum() / sizes.sum()).item(),
                              "exact_match": (hits == sizes).float().mean().item(),
                              "by_length": {}, "by_distance": {}}
    for length in sorted(set(span_words.tolist())):
        chosen = span_words == length
        scores["by_length"][str(length)] = {
            "token_accuracy": (hits[chosen].sum() / sizes[chosen].sum()).item(),
            "exact_match": (hits[chosen] == sizes[chosen]).float().mean().item(),
            "spans": int(chosen.sum())}
    for d in range(1, 4):
        at = inside & (distance == d)
        scores["by_distance"][str(d)] = (correct & at).sum().item() / max(int(at.sum()), 1)
    return scores


# %% [markdown]
# ## Two checks that nothing else broke
#
# The validation blocks masked once BERT's way (15% scattered tokens) and once SpanBERT's way,
# scored with each model's MLM head; and the [downstream suite](downstream.md), fine-tuned
# with one seed per pretrained model (the two pretraining seeds give the spread).

# %%
def held_out_masks(task: SpanBERTTask) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """(inputs, labels, padding_mask) of the validation blocks, token-masked and span-masked."""
    ids, special = task.valid["input_ids"], task.valid["special_tokens_mask"]
    padding, vocab_size = ids != PAD_ID, task.tokenizer.vocab_size
    token_inputs, token_labels = mask_tokens(
        ids, special, vocab_size=vocab_size,
        generator=torch.Generator().manual_seed(HELD_OUT_MASK_SEED))
    span_inputs, span_labels, _ = mask_spans(
        ids, special, vocab_size=vocab_size, whole_word_ids=task.valid["word_ids"],
        generator=torch.Generator().manual_seed(HELD_OUT_MASK_SEED))
    return (token_inputs, token_labels, padding), (span_inputs, span_labels, padding)


def downstream_suite(task: SpanBERTTask, quick: bool) -> tuple[dict[str, Any], DownstreamConfig]:
    config = DownstreamConfig(seeds=1)
    config = quick_suite(config) if quick else config
    prepared = prepare_corpus(task.config.corpus)
    return build_tasks(prepared, config, task.config.model.max_len), config


# %% [markdown]
# ## Running the arms
#
# Every seed trains every arm afresh; the held-out examples come from the first task built.

# %%
def run_experiment(work_dir: Path, *, quick: bool = False, progress: bool = True,
                   preset: str = "cpu") -> dict[str, Any]:
    started = time.perf_counter()
    seeds = SEEDS[:1] if quick else SEEDS
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ARMS}
    recovery_set = None
    for seed in seeds:
        for name, changes in ARMS.items():
            config = arm_config(changes, seed, quick=quick, progress=progress, preset=preset)
            task = SpanBERTTask(config)
            if recovery_set is None:  # the same held-out examples for every arm and seed
                recovery_set = span_recovery_set(task.valid_blocks)
                token_masked, span_masked = held_out_masks(task)
                downstream_tasks, downstream_config = downstream_suite(task, quick)
            summary, metrics = train_arm(task, config, work_dir, f"{name} seed {seed}")
            device = next(task.model.parameters()).device
            task.model.eval()
            with torch.no_grad():
                for key, masked in (("token", token_masked), ("span", span_masked)):
                    scores = evaluate_mlm(task.model, *masked, device)
                    summary[f"{key}_masked_accuracy"] = scores["eval_accuracy"]
            summary["recovery"] = span_recovery(task.model, recovery_set, device)
            summary["downstream"] = evaluate_encoder(task.model.encoder, downstream_tasks,
                                                     downstream_config, device)
            summary["seed"] = seed
            summary["curve"] = [row for row in metrics if "loss" in row]
            runs[name].append(summary)
    baseline = unigram_baselines(task.train_blocks.input_ids, recovery_set["labels"],
                                 task.tokenizer.vocab_size)
    return {"paper": "spanbert", "seeds": list(seeds), "steps": config.train.steps,
            "batch_size": config.train.batch_size, "runs": runs,
            "recovery_examples": len(recovery_set["input_ids"]), "recovery_baseline": baseline,
            "downstream": "fine-tuned, one seed per pretrained model",
            "seconds": time.perf_counter() - started}


# %% [markdown]
# ## The tables and the figure, from `results.json`
#
# Two tables, span recovery and the checks, in %, mean ± standard deviation over the seeds;
# the figure shows span recovery by span length and by distance from the nearer boundary.

# %%
HEAD_NAMES = {"mlm": "MLM head", "sbo": "SBO head alone"}


def draw(results: dict[str, Any], out_dir: Path) -> None:
    write_table(out_dir / "table.md", results_table(results))
    plot_recovery(results, out_dir / "span_recovery.svg")


def over_seeds(runs: list[dict[str, Any]], value: Callable[[dict[str, Any]], float]) -> str:
    return percent_over_seeds([value(run) for run in runs])


def results_table(results: dict[str, Any]) -> str:
    runs_by_arm = {name: results["runs"][name] for name in in_order(results["runs"], ARMS)}
    first = next(iter(runs_by_arm.values()))[0]
    lengths = list(first["recovery"]["mlm"]["by_length"])
    baseline = results["recovery_baseline"]["baseline_accuracy"]
    recovery_rows = [["most frequent token", f"{100 * baseline:.1f}", "0.0"] + ["—"] * len(lengths)]
    for head, head_name in HEAD_NAMES.items():
        head_name += " (boundaries only)" if head == "sbo" else ""
        for name, runs in runs_by_arm.items():
            if head in runs[0]["recovery"]:
                scores = [run["recovery"][head] for run in runs]
                recovery_rows.append(
                    [f"{name}, {head_name}", over_seeds(scores, lambda s: s["token_accuracy"]),
                     over_seeds(scores, lambda s: s["exact_match"])]
                    + [over_seeds(scores, lambda s: s["by_length"][n]["token_accuracy"])
                       for n in lengths])
    tasks = list(first["downstream"]["tasks"])
    seeds = len(results["seeds"])
    check_rows = [[name, over_seeds(runs, lambda r: r["token_masked_accuracy"]),
                   over_seeds(runs, lambda r: r["span_masked_accuracy"])]
                  + [over_seeds(runs, lambda r: r["downstream"]["tasks"][t]["mean"]) for t in tasks]
                  + [over_seeds(runs, lambda r: r["downstream"]["score"]["mean"])]
                  for name, runs in runs_by_arm.items()]
    recovery_title = (f"**Filling in held-out spans of {lengths[0]}–{lengths[-1]} words** "
                      f"({results['recovery_examples']} spans, all `[MASK]`; token accuracy by "
                      "span length):")
    recovery_header = (["model, head", "token accuracy", "exact match"]
                       + [f"{n} words" for n in lengths])
    check_title = ("**Held-out masked-token accuracy** (validation blocks masked BERT's way and "
                   "SpanBERT's way, MLM head) **and the downstream suite** (fine-tuned accuracy):")
    check_header = (["model", "token-masked acc.", "span-masked acc."]
                    + [t.replace("_", " ") for t in tasks] + ["downstream mean"])
    footer = (f"Accuracies in %, mean ± standard deviation over {seeds} pretraining "
              f"seed{'s' if seeds != 1 else ''}, {results['steps']} steps of "
              f"{results['batch_size']} blocks each. Downstream suite: {results['downstream']}.")
    return (f"{recovery_title}\n\n{markdown_table(recovery_header, recovery_rows)}\n"
            f"{check_title}\n\n{markdown_table(check_header, check_rows)}\n{footer}\n")


def plot_recovery(results: dict[str, Any], path: Path) -> None:
    """Span recovery by span length (left) and by distance from the nearer boundary (right)."""
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for axis, key, label in (
            (axes[0], "by_length", "length of the hidden span (words)"),
            (axes[1], "by_distance", "distance from the nearer boundary (tokens; 1 = next to it)")):
        for name in in_order(results["runs"], ARMS):
            runs = results["runs"][name]
            for head in [h for h in HEAD_NAMES if h in runs[0]["recovery"]]:
                points = list(runs[0]["recovery"][head][key])
                values = [[run["recovery"][head][key][x] for run in runs] for x in points]
                values = [[v["token_accuracy"] if isinstance(v, dict) else v for v in per_run]
                          for per_run in values]
                stats = [mean_and_spread(v) for v in values]
                axis.errorbar([int(x) for x in points], [100 * m for m, _ in stats],
                              yerr=[100 * d for _, d in stats], marker="o", capsize=3,
                              linestyle="--" if head == "sbo" else "-",
                              label=f"{name}: {HEAD_NAMES[head]}")
        axis.axhline(100 * results["recovery_baseline"]["baseline_accuracy"], color="gray",
                     linestyle=":", label="most frequent token")
        axis.set_xlabel(label)
        axis.set_xticks([int(x) for x in points])
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("per-token accuracy on the hidden span (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.14, 1, 1))
    save_figure(figure, path)


# %% [markdown]
# ## Run it
#
# From a shell, `labnotes experiment spanbert` trains the four arms for both seeds (30 to 40
# minutes on one CPU core) and writes `docs/results/spanbert/`; `--redraw` redraws the tables
# and the figure from the stored `results.json`. `--preset gpu` trains the same arms larger,
# for one GPU ([how](experiments.common.md#presets-the-same-arms-larger)). In the notebook this
# cell runs the arms into `runs/experiment-spanbert/` and prints the tables.

# %%
if __name__ == "__main__":
    import sys

    run_in_notebook(sys.modules[__name__], "spanbert")

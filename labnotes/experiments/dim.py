"""InfoWord: the experiment.

Two studies. The three MI estimators with learned critics on Gaussians whose mutual
information is known, for two batch sizes. Then MLM against MLM + InfoWord's DIM term at equal
steps and two seeds: the MI estimate over training against its log N cap, in-batch n-gram
retrieval with both models scored fairly, linear probes with little and much labelled data, and
the MLM head's recovery of whole hidden spans (the SpanBERT page's test).
"""

# %% [markdown]
# The claims, from the [InfoWord page](dim.md#evidence):
#
# 1. the bounds behave as the theory says: InfoNCE is steady and capped at $\log N$, DV is
#    uncapped and noisy, a JSD-trained critic is steady and reads the MI through DV
#    (Deep InfoMax, arXiv:1808.06670; Poole et al., arXiv:1905.06922);
# 2. adding the DIM term to MLM makes the sentence's first-token state predictive of its
#    hidden n-gram, beyond what MLM alone gives (InfoWord, arXiv:1910.08350), and helps most
#    when labelled data is scarce (the paper's figure of SQuAD F1 against the fraction of
#    training data);
# 3. (our question, not the paper's) a term that asks the sentence to point at a hidden
#    n-gram might also help the MLM head fill such a hole: the
#    [SpanBERT experiment](experiments.spanbert.md)'s whole-span test on both arms.
#
# Each arm is the [InfoWord page](dim.md)'s default model and inputs; the arms differ only in
# $\lambda$ (`dim_weight`): 0 for MLM alone, 1 for MLM + DIM.

# %%
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from labnotes.dim import (ESTIMATORS, InfoWordConfig, InfoWordTask, InfoWordViews, fit_critic,
                          held_out_order, infonce_estimate, ngram_scores, retrieved, rho_for)
from labnotes.downstream import DownstreamConfig, build_tasks, pair_features, probe, seeded
from labnotes.mlm import IGNORE
from labnotes.experiments.common import PRESETS, at_preset  # noqa: F401  (PRESETS: cpu, gpu)
from labnotes.data import Blocks
from labnotes.experiments.common import (in_order, markdown_table, mean_and_spread, pyplot,
                                         run_in_notebook, save_figure, train_arm, write_table)
from labnotes.experiments.spanbert import interval, span_profile, span_recovery_set, token_nll
from labnotes.tokenizer import MASK_ID, PAD_ID, prepare_corpus
from labnotes.training import make_quick

# %% [markdown]
# ## Study 1: the estimators on correlated Gaussians
#
# For each estimator, each batch size $N \in \{16, 128\}$ and each target MI, a fresh critic is
# trained for 500 steps with that estimator's loss on $d = 10$ correlated Gaussians (the
# [page's testbed](dim.md#a-testbed-with-a-known-answer-correlated-gaussians)), then read on 20
# fresh batches: mean and standard deviation over those batches.

# %%
GAUSSIAN_DIM = 10
TRUE_MIS = (0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0)
BATCH_SIZES = (16, 128)
CRITIC_STEPS = 500


def run_estimators(quick: bool) -> dict[str, Any]:
    true_mis = TRUE_MIS[::3] if quick else TRUE_MIS
    steps = 20 if quick else CRITIC_STEPS
    curves: dict[str, Any] = {}
    for estimator in ESTIMATORS:
        for batch_size in BATCH_SIZES:
            curves[f"{estimator}/{batch_size}"] = [
                {**fit_critic(estimator, dim=GAUSSIAN_DIM, rho=rho_for(mi, GAUSSIAN_DIM),
                              batch_size=batch_size, steps=steps, seed=index),
                 "rho": rho_for(mi, GAUSSIAN_DIM)}
                for index, mi in enumerate(true_mis)]
    return {"dim": GAUSSIAN_DIM, "steps": steps, "curves": curves}


# %% [markdown]
# ## Study 2: the arms
#
# Equal steps, equal inputs: both arms see the same views of the same blocks (the MLM-only arm
# trains on the n-gram slot as an MLM target, like the DIM arm). The DIM arm costs more per
# step (a second, short forward pass over the n-grams, about 20% here). Batches of 32 blocks
# of 64 tokens, 1,200 steps, two seeds: sized to one CPU core, where the four runs took about
# 27 minutes (beside another experiment on a 2-core machine) and the whole experiment, with
# study 1's critics and the measures, 28. (The first version trained 400 steps; the MLM-only
# and DIM models were then too close to word frequencies for the probes to tell them apart.)

# %%
ARMS = {"MLM": 0.0, "MLM + DIM": 1.0}  # name -> dim_weight
SEEDS = (0, 1)
STEPS = 1200
BATCH_SIZE = 32
EVAL_BLOCKS = 512


def arm_config(dim_weight: float, seed: int, quick: bool, progress: bool,
               preset: str = "cpu") -> InfoWordConfig:
    config = InfoWordConfig(dim_weight=dim_weight, eval_blocks=EVAL_BLOCKS)
    config.train.steps, config.train.batch_size, config.train.seed = STEPS, BATCH_SIZE, seed
    config.train.eval_every, config.train.checkpoint_every = STEPS // 5, STEPS
    config.train.progress = progress
    return make_quick(config) if quick else at_preset(config, preset)


# %% [markdown]
# ## Retrieval, scored fairly for both models
#
# Held-out batches of 32 blocks, shuffled, each with its views drawn from a fixed seed (other
# seeds than the evaluation batches), so every model answers the same questions: which of the
# batch's 32 n-grams fills this sentence's hole? Three scorers:
#
# - **dot product**: the DIM critic, first-token state of the masked sentence against the
#   n-gram's first-token state; an MLM-only model has the same vectors, untrained for this;
# - **MLM, slot all masked**: the MLM head's log-probability of each candidate's tokens at the
#   hole, every position of the hole still `[MASK]` (one pass per sentence; the positions are
#   scored independently);
# - **MLM, pseudo-log-likelihood**: candidate $c$ written into the hole, then each of its
#   tokens masked in turn and scored given the others (Salazar et al., arXiv:1910.14659, use
#   this score for sentences): $\sum_k \log p(c_k \mid \text{sentence}, c_{\ne k})$. It costs
#   $L$ passes per sentence and candidate, so it runs on the first two batches only.
#
# A row counts as retrieved when its own n-gram scores strictly above every other candidate
# (duplicates left out, as in training); chance is about 1/32.

# %%
RETRIEVAL_BATCHES = 4
PSEUDO_LIKELIHOOD_BATCHES = 2


def retrieval_sets(task: InfoWordTask, count: int, size: int) -> list[InfoWordViews]:
    blocks = task.valid_blocks
    order = held_out_order(len(blocks), seed=8765)  # shuffled, as the evaluation batches
    return [task.views(blocks, torch.Generator().manual_seed(5000 + index),
                       order[index * size:(index + 1) * size])
            for index in range(min(count, len(blocks) // size))]


def slot_all_masked_scores(model: Any, views: InfoWordViews) -> torch.Tensor:
    """[B, B]: sum over the hole of log p(candidate j's token | sentence i, hole masked)."""
    out = model(views.global_inputs, views.labels, views.padding_mask)
    in_hole = views.ngram_mask[views.labels != IGNORE]  # which MLM outputs are the hole's
    batch, length = views.local_inputs.shape[0], views.local_inputs.shape[1] - 2
    log_probs = out.mlm_logits[in_hole].float().log_softmax(-1).view(batch, length, -1)
    candidates = views.local_inputs[:, 1:-1]  # [B, L]
    index = candidates.T[None].expand(batch, length, batch)  # [i, k, j] = token k of n-gram j
    return log_probs.gather(2, index).sum(1)  # [B, B]


def pseudo_likelihood_scores(model: Any, views: InfoWordViews) -> torch.Tensor:
    """[B, B]: sum over k of log p(token k of n-gram j | sentence i holding n-gram j, k masked)."""
    candidates = views.local_inputs[:, 1:-1]
    batch, length = candidates.shape
    scores = torch.empty(batch, batch)
    each = torch.arange(batch * length)
    for row in range(batch):
        hole = views.ngram_mask[row].nonzero().flatten()  # [L]
        inputs = views.global_inputs[row].repeat(batch * length, 1)  # [(j, k), T]
        inputs[:, hole] = candidates.repeat_interleave(length, 0)
        masked_at = hole.repeat(batch)  # position k of each (j, k)
        inputs[each, masked_at] = MASK_ID
        wanted = torch.zeros_like(inputs, dtype=torch.bool)
        wanted[each, masked_at] = True
        hidden = model.encoder(inputs, padding_mask=inputs != PAD_ID, output_positions=wanted)
        log_probs = model.head(hidden).float().log_softmax(-1)  # [(j, k), V]
        scores[row] = log_probs[each, candidates.flatten()].view(batch, length).sum(1)
    return scores


def retrieval_scores(model: Any, sets: list[InfoWordViews]) -> dict[str, float]:
    model.eval()
    found: dict[str, list[torch.Tensor]] = {"dot product": [], "MLM, slot all masked": [],
                                            "MLM, pseudo-log-likelihood": []}
    bounds: dict[str, list[float]] = {name: [] for name in found}
    with torch.no_grad():
        for index, views in enumerate(sets):
            out = model(views.global_inputs, views.labels, views.padding_mask,
                        views.local_inputs)
            scorers = {"dot product": ngram_scores(out.global_vectors, out.local_vectors),
                       "MLM, slot all masked": slot_all_masked_scores(model, views)}
            if index < PSEUDO_LIKELIHOOD_BATCHES:
                scorers["MLM, pseudo-log-likelihood"] = pseudo_likelihood_scores(model, views)
            for name, scores in scorers.items():
                found[name].append(retrieved(scores.float(), views.candidates))
                bounds[name].append(infonce_estimate(scores.float(), views.candidates).item())
    model.train()
    result = {name: torch.cat(values).mean().item() for name, values in found.items()}
    result.update({f"{name} (InfoNCE bound)": sum(values) / len(values)
                   for name, values in bounds.items()})
    result["queries"] = sum(len(views.candidates) for views in sets)
    result["chance"] = torch.cat([1 / views.candidates.sum(1).float() for views in sets]
                                 ).mean().item()
    return result


# %% [markdown]
# ## Linear probes with 1%, 10% and 100% of the labels
#
# InfoWord's low-data argument, in our setting: the [downstream suite](downstream.md)'s three
# tasks, a linear probe on frozen features fitted on a random 1%, 10% or all of each task's
# training examples (at least 4), scored on the whole test half; three probe seeds, each with
# its own subset. The features are the **first-token state**, the vector the DIM term trains
# (the MLM term never takes a loss there); for summary match, whose two sentences are encoded
# apart, the two first-token states $u, v$ joined as the suite joins its pairs,
# $[u;\ v;\ |u - v|;\ u \odot v]$. The suite's own probe reads the mean over tokens
# instead (its page says why); `labnotes eval downstream --probe` gives that for any run.

# %%
FRACTIONS = (0.01, 0.1, 1.0)
PROBE_SEEDS = 3


def first_token_features(encoder: Any, input_ids: torch.Tensor) -> torch.Tensor:
    """[N, D]: the encoder's final state at position 0 ([CLS]) of each example."""
    encoder.eval()
    with torch.no_grad():
        parts = [encoder(rows, padding_mask=rows != PAD_ID)[:, 0]
                 for rows in input_ids.split(256)]
    encoder.train()
    return torch.cat(parts).float()


def task_features(encoder: Any, examples: Any) -> torch.Tensor:
    """First-token states of a task's inputs; of both sentences, joined, for a pair task."""
    first = first_token_features(encoder, examples.input_ids)
    if examples.second_ids is None:
        return first
    return pair_features(first, first_token_features(encoder, examples.second_ids))


def low_data_probes(encoder: Any, tasks: dict[str, Any],
                    suite: DownstreamConfig) -> dict[str, float]:
    """{fraction: mean accuracy over tasks and probe seeds} of first-token probes."""
    runs: dict[str, list[float]] = {str(fraction): [] for fraction in FRACTIONS}
    for task in tasks.values():
        train_x, test_x = (task_features(encoder, part) for part in (task.train, task.test))
        for fraction in FRACTIONS:
            count = max(4, round(fraction * len(train_x)))
            for seed in range(PROBE_SEEDS):
                with seeded(seed):
                    rows = torch.randperm(len(train_x))[:count]
                runs[str(fraction)].append(probe(train_x[rows], task.train.labels[rows], test_x,
                                                 task.test.labels, task.num_labels, seed, suite))
    return {fraction: sum(values) / len(values) for fraction, values in runs.items()}


# %% [markdown]
# ## Whole spans, as the SpanBERT page measures them
#
# The DIM term asks the first-token state of a sentence with a contiguous n-gram hidden to
# pick that n-gram out. Does training it help the MLM head fill such a hole? The
# [SpanBERT experiment](experiments.spanbert.md#test-3-whole-spans-by-length-and-by-position)'s
# whole-span test answers per token: in every held-out block (at most `RECOVERY_BLOCKS`)
# one span of 1, 2, 4, 6 and 8 whole words is hidden (all `[MASK]`, a real word on each side)
# and the MLM head's NLL of every hidden token is read, with a 95% interval from resampling
# blocks. The two arms of a seed answer the same spans, so their difference is taken token by
# token, DIM minus MLM, with its own interval: below zero, the DIM term helped.

# %%
RECOVERY_BLOCKS = 1024


def recovery_examples(task: InfoWordTask, count: int) -> dict[str, torch.Tensor]:
    """The whole-span test on the first `count` held-out blocks (fixed spans)."""
    blocks = task.valid_blocks
    first = Blocks(*(part[:count] for part in (blocks.input_ids, blocks.word_ids,
                                               blocks.special_tokens_mask)))
    return span_recovery_set(first)


def span_nll(model: Any, spans: dict[str, torch.Tensor]) -> torch.Tensor:
    """[N, T]: the MLM head's NLL of each hidden token of the whole-span test (NaN elsewhere)."""
    device = next(model.parameters()).device
    return token_nll(model, spans["input_ids"], spans["labels"], spans["padding_mask"],
                     device)["mlm"]


def span_differences(nll: torch.Tensor, reference: torch.Tensor,
                     spans: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Mean of nll − reference over the hidden tokens, overall and by span length (words),
    each with its block-bootstrap interval."""
    inside, block = spans["labels"] != IGNORE, spans["block"]
    words = spans["span_words"][:, None]
    return {"all": interval(nll - reference, inside, block),
            "by_length": {str(length): interval(nll - reference, inside & (words == length),
                                                block)
                          for length in sorted(set(spans["span_words"].tolist()))}}


# %% [markdown]
# ## Running it all
#
# Each arm and seed trains afresh; its summary, its curve of evaluations, its retrieval, its
# probes and its whole-span profile go into the results, and each seed's DIM − MLM difference
# on the whole spans.

# %%
def run_experiment(work_dir: Path, *, quick: bool = False, progress: bool = True,
                   preset: str = "cpu") -> dict[str, Any]:
    estimators = run_estimators(quick)  # every preset: a minute of small critics on a CPU
    runs: dict[str, dict[str, Any]] = {name: {} for name in ARMS}
    suite = DownstreamConfig(mode="probe")
    tasks, spans, nll = None, None, {}
    for name, dim_weight in ARMS.items():
        for seed in SEEDS:
            config = arm_config(dim_weight, seed, quick, progress, preset)
            task = InfoWordTask(config)
            summary, metrics = train_arm(task, config, work_dir, f"{name} seed {seed}")
            if tasks is None:
                tasks = build_tasks(prepare_corpus(config.corpus), suite,
                                    config.model.max_len)
                if quick:
                    tasks = {key: tasks[key] for key in list(tasks)[:1]}
                spans = recovery_examples(task, 64 if quick else RECOVERY_BLOCKS)
            sets = retrieval_sets(task, 1 if quick else RETRIEVAL_BATCHES,
                                  config.train.batch_size)
            nll[name, seed] = span_nll(task.model, spans)
            runs[name][str(seed)] = {
                "summary": summary,
                "curve": [row for row in metrics if "eval_mlm_loss" in row],
                "retrieval": retrieval_scores(task.model, sets),
                "probes": low_data_probes(task.model.encoder, tasks, suite),
                "spans": span_profile(nll[name, seed], spans)}
    reference, other = ARMS  # MLM, MLM + DIM
    return {"paper": "dim", "estimators": estimators, "runs": runs,
            "span_differences": {str(seed): span_differences(nll[other, seed],
                                                             nll[reference, seed], spans)
                                 for seed in SEEDS},
            "recovery_spans": len(spans["input_ids"]), "steps": config.train.steps,
            "batch_size": config.train.batch_size, "vocab_size": task.tokenizer.vocab_size}


# %% [markdown]
# ## Tables and figures, from `results.json`
#
# `lecture-estimators.svg` is the estimator figure the [InfoWord page](dim.md) shows where it
# explains the bounds; `mi.svg` the MI estimates over training; `table.md` the rest.

# %%
def draw(results: dict[str, Any], out_dir: Path) -> None:
    plot_estimators(results["estimators"], out_dir / "lecture-estimators.svg")
    plot_training_curves(results, out_dir / "mi.svg")
    write_table(out_dir / "table.md", results_table(results))


def over_seeds(results: dict[str, Any], arm: str, read: Any) -> str:
    mean, spread = mean_and_spread([read(run) for run in results["runs"][arm].values()])
    return f"{mean:.3f} ± {spread:.3f}"


def percent_over(results: dict[str, Any], arm: str, read: Any) -> str:
    mean, spread = mean_and_spread([read(run) for run in results["runs"][arm].values()])
    return f"{100 * mean:.1f} ± {100 * spread:.1f}"


def results_table(results: dict[str, Any]) -> str:
    arms = in_order(results["runs"], ARMS)
    first_run = next(iter(results["runs"][arms[0]].values()))
    summary_rows = [
        ["MLM loss (nats)", lambda run: run["summary"]["eval_mlm_loss"], over_seeds],
        ["MLM accuracy (%)", lambda run: run["summary"]["eval_mlm_accuracy"], percent_over],
        ["DIM InfoNCE loss (nats)", lambda run: run["summary"]["eval_infonce_loss"], over_seeds],
        ["MI estimate, log N − loss (nats)", lambda run: run["summary"]["eval_mi_estimate"],
         over_seeds],
        ["retrieval in batches of 32 (%): dot product",
         lambda run: run["retrieval"]["dot product"], percent_over],
        ["retrieval: MLM, slot all masked",
         lambda run: run["retrieval"]["MLM, slot all masked"], percent_over],
        ["retrieval: MLM, pseudo-log-likelihood",
         lambda run: run["retrieval"]["MLM, pseudo-log-likelihood"], percent_over],
    ]
    rows = [[label, *(show(results, arm, read) for arm in arms)]
            for label, read, show in summary_rows]
    summary = first_run["summary"]
    retrieval = first_run["retrieval"]
    probe_rows = [[f"{100 * float(fraction):g}% of the labels",
                   *(percent_over(results, arm, lambda run, f=fraction: run["probes"][f])
                     for arm in arms)]
                  for fraction in first_run["probes"]]
    return ("**MLM against MLM + DIM** (held-out; mean ± standard deviation over seeds "
            f"{', '.join(results['runs'][arms[0]])}; {results['steps']} steps of "
            f"{results['batch_size']} blocks)\n\n"
            + markdown_table(["", *arms], rows)
            + f"\nBaselines: unigram cross-entropy {summary['baseline_entropy']:.3f} nats and "
            f"most-frequent-token accuracy {100 * summary['baseline_accuracy']:.1f}% on the MLM "
            f"targets; the MI estimate is capped at log N = "
            f"{summary['eval_log_candidates']:.3f} (batches of "
            f"{results['batch_size']}); retrieval chance {100 * retrieval['chance']:.1f}% on "
            f"{retrieval['queries']} queries (pseudo-log-likelihood: the first "
            f"{min(retrieval['queries'], PSEUDO_LIKELIHOOD_BATCHES * results['batch_size'])})."
            "\n\n"
            "**Linear probe on the frozen first-token state** (downstream suite, mean accuracy "
            "over its tasks and three probe seeds, %)\n\n"
            + markdown_table(["probe fitted on", *arms], probe_rows)
            + "\n" + spans_table(results, arms))


def spans_table(results: dict[str, Any], arms: list[str]) -> str:
    """Whole-span NLL by span length for each arm, and the paired difference per seed."""
    seeds = list(results["span_differences"])
    first_run = next(iter(results["runs"][arms[0]].values()))
    lengths = list(first_run["spans"]["by_length"])

    def cell(arm: str, length: str | None) -> str:
        values = [(run["spans"]["all"] if length is None else run["spans"]["by_length"][length])
                  ["mean"] for run in results["runs"][arm].values()]
        return f"{sum(values) / len(values):.3f}"

    def difference(seed: str, length: str | None) -> str:
        found = results["span_differences"][seed]
        found = found["all"] if length is None else found["by_length"][length]
        return f"{found['mean']:+.3f} [{found['low']:+.3f}, {found['high']:+.3f}]"

    rows = [[f"{length} word{'s' if length != '1' else ''}" if length else "all spans",
             *(cell(arm, length) for arm in arms),
             *(difference(seed, length) for seed in seeds)]
            for length in [*lengths, None]]
    return ("**Whole spans hidden** (the SpanBERT page's whole-span test: the MLM head's NLL "
            f"per hidden token, nats, mean over seeds; {results['recovery_spans']} spans; "
            f"{arms[1]} − {arms[0]} token by token on the same spans, per seed, with its 95% "
            "block-bootstrap interval: below zero, the DIM term helped)\n\n"
            + markdown_table(["span", *arms, *(f"difference, seed {seed}" for seed in seeds)],
                             rows))


def plot_estimators(study: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(1, len(BATCH_SIZES), figsize=(10, 4), sharey=True)
    colours = {"infonce": "tab:blue", "jsd": "tab:green", "dv": "tab:red"}
    labels = {"infonce": "InfoNCE", "jsd": "JSD critic, read by DV", "dv": "DV"}
    for axis, batch_size in zip(axes, BATCH_SIZES):
        top = 0.0
        for estimator in ESTIMATORS:
            points = study["curves"][f"{estimator}/{batch_size}"]
            truth = [point["true"] for point in points]
            axis.errorbar(truth, [point["estimate"] for point in points],
                          yerr=[point["spread"] for point in points], color=colours[estimator],
                          marker="o", markersize=3, capsize=2, label=labels[estimator])
            top = max(top, *truth)
        axis.plot([0, top], [0, top], color="black", linewidth=0.8, label="true MI")
        axis.axhline(math.log(batch_size), color="tab:blue", linestyle=":",
                     label=f"log N = {math.log(batch_size):.2f}")
        axis.set_title(f"batches of N = {batch_size}")
        axis.set_xlabel("true mutual information (nats)")
    axes[0].set_ylabel("estimate (nats), ± sd over 20 batches")
    axes[0].legend(fontsize=8)
    figure.suptitle(f"MI estimators with a learned critic, correlated Gaussians "
                    f"(d = {study['dim']}, {study['steps']} critic steps)")
    figure.tight_layout()
    save_figure(figure, path)


def plot_training_curves(results: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    colours = {"MLM": "tab:gray", "MLM + DIM": "tab:orange"}
    for arm in in_order(results["runs"], ARMS):
        for seed, run in results["runs"][arm].items():
            steps = [row["step"] for row in run["curve"]]
            label = arm if seed == "0" else None
            left.plot(steps, [row["eval_mi_estimate"] for row in run["curve"]],
                      color=colours.get(arm), marker="o", markersize=3, label=label)
            right.plot(steps, [row["baseline_entropy"] - row["eval_mlm_loss"]
                               for row in run["curve"]],
                       color=colours.get(arm), marker="o", markersize=3, label=label)
    first = next(iter(next(iter(results["runs"].values())).values()))["curve"][0]
    left.axhline(first["eval_log_candidates"], color="black", linestyle=":", label="log N")
    right.axhline(0.0, color="black", linestyle=":", label="word frequencies alone")
    left.set_title("DIM term: log N − InfoNCE loss")
    right.set_title("MLM: H(W) − MLM loss (nats learned)")
    for axis in (left, right):
        axis.set_xlabel("training step")
        axis.set_ylabel("nats")
        axis.legend(fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)


# %% [markdown]
# ## Run it
#
# From a shell, `labnotes experiment dim` runs both studies and writes `docs/results/dim/`;
# `--redraw` redraws the tables and figures from the stored `results.json`. `--preset gpu`
# trains study 2's arms larger, for one GPU
# ([how](experiments.common.md#presets-the-same-arms-larger)). In the notebook this cell runs
# it into `runs/experiment-dim/`.

# %%
if __name__ == "__main__":
    run_in_notebook(sys.modules[__name__], "dim")

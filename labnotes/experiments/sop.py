"""SOP: the experiment.

ALBERT's Table 5 at laptop scale: three models that differ only in their sentence loss (none,
NSP, SOP), each scored on NSP, SOP and same-document NSP test pairs, with a linear probe on
their pooled vectors and classifiers that never read the text in order.
"""

# %% [markdown]
# The claim, from the [SOP page](sop.md#evidence-alberts-table-5-small): a model trained with
# NSP learns topic but not order, so it is near chance on SOP, while a model trained with SOP
# also does well on NSP (ALBERT, arXiv:1909.11942, §4.6, Table 5: 52.0% SOP accuracy for the
# NSP model; 78.9% NSP and 86.5% SOP accuracy for the SOP model).
#
# Each arm is the pairs page's default model and recipe, 2000 steps on the embedded corpus,
# with one setting changed: the sentence loss. Every model is scored on the same held-out test
# pairs of three kinds, the NSP page's two and the SOP page's, so the numbers compare directly.

# %%
from __future__ import annotations

import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labnotes.experiments.common import PRESETS, at_preset  # noqa: F401  (PRESETS: cpu, gpu)
from labnotes.experiments.common import (in_order, markdown_table, percent,
                                         run_in_notebook, train_arm, write_table)
from labnotes.experiments.nsp import (bar_plot, inverse_document_frequency, labels_of,
                                      length_only_accuracy, overlap_features, probe_accuracy)
from labnotes.nsp import NSP_TEST_SETS, NSPTask
from labnotes.pairs import (PairConfig, PairSampler, SentencePairTask, build_test_set,
                            encode_pairs, pooled_vectors)
from labnotes.sop import SOP_TEST_SETS, SOPTask, sop_example
from labnotes.training import make_quick

# %% [markdown]
# ## The arms and the test pairs
#
# The MLM-only arm has a sentence head that no loss trains, and sees only positives. The test
# sets are built in this order from fixed seeds, so every arm gets the same pairs.

# %%
ARMS = {  # row name -> (losses, task)
    "MLM only": ("mlm", SOPTask),
    "MLM + NSP": ("mlm+sentence", NSPTask),
    "MLM + SOP": ("mlm+sentence", SOPTask),
}
TEST_SETS: dict[str, Callable] = {**NSP_TEST_SETS, **SOP_TEST_SETS}
PAPER_TABLE_5 = {  # arXiv:1909.11942, Table 5 (ALBERT-base): intrinsic accuracy, %
    "MLM only": {"mlm": 54.9, "nsp": 52.4, "sop": 53.3},
    "MLM + NSP": {"mlm": 54.5, "nsp": 90.5, "sop": 52.0},
    "MLM + SOP": {"mlm": 54.0, "nsp": 78.9, "sop": 86.5},
}
COLUMNS = {"nsp": "NSP", "sop": "SOP", "nsp_same_document": "NSP, same-document negatives"}

# %% [markdown]
# ## What the pooled vector contains
#
# A head answers only the question it was trained on. The [NSP experiment's linear
# probe](experiments.nsp.md#a-linear-probe-on-any-features) on each model's frozen pooled
# vector asks what it *contains*: one probe per test set, fitted on pairs from training
# documents.

# %%
def probe_all(task: SentencePairTask, count: int) -> dict[str, float]:
    device = next(task.model.parameters()).device
    task.model.eval()
    result = {}
    for index, (name, twins) in enumerate(TEST_SETS.items()):
        fit = build_test_set(task.train_pairs, twins, count, seed=3000 + index)
        held_out = task.test_sets[name]
        result[name] = probe_accuracy(
            pooled_vectors(task.model, encode_pairs(task.train_pairs, fit), device),
            labels_of(fit),
            pooled_vectors(task.model, encode_pairs(task.valid_pairs, held_out), device),
            labels_of(held_out))
    task.model.train()
    return result


# %% [markdown]
# ## Classifiers that never read the text in order
#
# Lengths only, with our chunks and with BERT's and ALBERT's forward-grown ones (the SOP page
# says why they differ on this corpus), and the bag-of-words overlap on every test set.

# %%
BASELINES = ["lengths only", "lengths only, chunks grown forward", "bag-of-words overlap"]


def order_blind_baselines(task: SentencePairTask, count: int) -> dict[str, dict[str, float]]:
    result: dict[str, dict[str, float]] = {name: {} for name in BASELINES}
    for row, grow in ((BASELINES[0], "both"), (BASELINES[1], "forward")):
        samplers = [PairSampler(sampler.documents, sampler.max_tokens, grow=grow, index_runs=False)
                    for sampler in (task.train_pairs, task.valid_pairs)]
        rng = random.Random(11)
        fit, held_out = ([sop_example(sampler, rng) for _ in range(20 * count)]
                         for sampler in samplers)
        result[row]["sop"] = length_only_accuracy(fit, held_out)
    idf = inverse_document_frequency(task.train_pairs, task.tokenizer.vocab_size)
    for index, (name, twins) in enumerate(TEST_SETS.items()):
        fit = build_test_set(task.train_pairs, twins, count, seed=4000 + index)
        held_out = task.test_sets[name]
        result[BASELINES[2]][name] = probe_accuracy(
            overlap_features(task.train_pairs, fit, idf), labels_of(fit),
            overlap_features(task.valid_pairs, held_out, idf), labels_of(held_out))
    return result


# %% [markdown]
# ## Running the arms
#
# One fresh run per arm; its summary and its probes go into the results. The order-blind
# classifiers need only the corpus, so they run once, on the last arm's samplers.

# %%
def arm_config(losses: str, *, quick: bool = False, progress: bool = True,
               preset: str = "cpu") -> PairConfig:
    config = PairConfig(losses=losses)
    config.train.progress = progress
    return make_quick(config) if quick else at_preset(config, preset)


def run_experiment(work_dir: Path, *, quick: bool = False, progress: bool = True,
                   preset: str = "cpu") -> dict[str, Any]:
    rows, probes = {}, {}
    for name, (losses, make_task) in ARMS.items():
        config = arm_config(losses, quick=quick, progress=progress, preset=preset)
        task = make_task(config, test_sets=TEST_SETS)
        rows[name], _ = train_arm(task, config, work_dir, name)
        probes[name] = probe_all(task, count=config.eval_pairs)
    return {"paper": "sop", "rows": rows, "probes": probes,
            "baselines": order_blind_baselines(task, count=config.eval_pairs),
            "paper_table_5": PAPER_TABLE_5,
            "test_pairs": {name: len(pairs) for name, pairs in task.test_sets.items()}}


# %% [markdown]
# ## Table 5 and the figure, from `results.json`
#
# The first table is each model's own head, with the paper's numbers in brackets; the second
# the probes and the order-blind classifiers. The figure shows the first, with the paper's
# numbers as black markers.

# %%
def draw(results: dict[str, Any], out_dir: Path) -> None:
    write_table(out_dir / "table.md", results_table(results))
    heads = {name: {key: results["rows"][name][f"eval_{key}_accuracy"] for key in COLUMNS}
             for name in in_order(results["rows"], ARMS)}
    paper = {name: {key: value / 100 for key, value in row.items() if key in COLUMNS}
             for name, row in results["paper_table_5"].items()}
    bar_plot(heads, COLUMNS, out_dir / "accuracy.svg",
             title="held-out accuracy of each model's own sentence head",
             reference=paper, reference_label="ALBERT, Table 5")


def results_table(results: dict[str, Any]) -> str:
    rows, probes, baselines = results["rows"], results["probes"], results["baselines"]
    paper_table, sizes = results["paper_table_5"], results["test_pairs"]

    def with_paper(name: str, key: str) -> str:  # "70.3 (86.5)": ours, then the paper's
        paper = f"{paper_table[name][key]:.1f}" if name in paper_table else "—"
        return f"{percent(rows[name][f'eval_{key}_accuracy'])} ({paper})"

    heads = [[name, *(with_paper(name, key) for key in ("mlm", "nsp", "sop")),
              percent(rows[name]["eval_nsp_same_document_accuracy"])]
             for name in in_order(rows, ARMS)]
    readouts = [[f"pooled vector, {name}", *(percent(probes[name][key]) for key in COLUMNS)]
                for name in in_order(probes, ARMS)]
    readouts += [[name, *(percent(baselines[name][key]) if key in baselines[name] else "—"
                          for key in COLUMNS)]
                 for name in in_order(baselines, BASELINES)]
    interval = 100 * 1.96 * (0.25 / sizes["nsp"]) ** 0.5  # a 95% interval at 50%
    return ("**Each model's own sentence head** (held-out accuracy, %; in brackets: ALBERT "
            "Table 5)\n\n"
            + markdown_table(["trained with", "MLM", "NSP", "SOP", COLUMNS["nsp_same_document"]],
                             heads)
            + "\n**Linear probe on the frozen pooled vector, and classifiers that never read the "
            "text in order** (held-out accuracy, %)\n\n"
            + markdown_table(["features", *COLUMNS.values()], readouts)
            + f"\nTest pairs from held-out documents: NSP {sizes['nsp']}, SOP {sizes['sop']}, "
            f"same-document NSP {sizes['nsp_same_document']}, half of them negatives; a 95% "
            f"interval is about ±{interval:.1f} points. Chance is 50.0.\n")


# %% [markdown]
# ## Run it
#
# From a shell, `labnotes experiment sop` trains the three arms (each as long as the NSP page's
# default run) and writes `docs/results/sop/`; `--redraw` redraws the tables and the figure from
# the stored `results.json`. `--preset gpu` trains the same arms larger, for one GPU
# ([how](experiments.common.md#presets-the-same-arms-larger)). In the notebook this cell runs it
# into `runs/experiment-sop/`.

# %%
if __name__ == "__main__":
    run_in_notebook(sys.modules[__name__], "sop")

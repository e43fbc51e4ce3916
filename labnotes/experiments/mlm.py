"""MLM: the experiment.

Three masked language models that differ in one setting each — BERT's 80/10/10, 100%
`[MASK]`, and a static mask — trained alike and scored on the same held-out targets.
"""

# %% [markdown]
# The claim, from the [MLM page](mlm.md#evidence): BERT's 80/10/10 rule keeps the model honest
# about tokens it can see (BERT, arXiv:1810.04805, App. C.2, Table 8: feature-based NER falls
# from 94.9 to 94.0 F1 with 100% `[MASK]`), and a mask drawn afresh each time beats one fixed
# mask per sequence (RoBERTa, arXiv:1907.11692, §4.1, Table 1).
#
# Each arm is the MLM page's default model and recipe with one setting changed, trained for
# 2000 steps on the embedded corpus. All three are scored on the same validation targets
# (masked 80/10/10 with a fixed seed), so their numbers compare directly.

# %%
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from labnotes.experiments.common import PRESETS, at_preset  # noqa: F401  (PRESETS: cpu, gpu)
from labnotes.experiments.common import (in_order, markdown_table, pyplot,
                                         run_in_notebook, save_figure, train_arm, write_table)
from labnotes.mlm import MLMConfig, MLMTask, fill_in_the_blanks
from labnotes.tokenizer import PAD_ID
from labnotes.training import make_quick

# %% [markdown]
# ## The arms
#
# Each arm names the fields of `MLMConfig` it changes; everything else is the page's default.

# %%
ARMS = {
    "BERT 80/10/10, dynamic": {},
    "100% [MASK], dynamic": {"mask_token_prob": 1.0, "random_token_prob": 0.0},
    "80/10/10, static": {"static_masking": True},
}
STEPS = 2000  # per arm: the three arms fit in about a quarter of an hour on 2 CPU cores
EVAL_EVERY = 250
DEMO_SENTENCES = [
    "return a new [MASK] with the same elements.",
    "the file is opened in [MASK] mode.",
    "raise an [MASK] if the path does not exist.",
    "this function is deprecated and will be [MASK] in a future release.",
]

# %% [markdown]
# ## Recovering the tokens it can see
#
# Masked-token accuracy scores only the hidden positions. To see the Table 8 mismatch we also
# run the head at every *unmasked* real token of the validation blocks and ask whether it
# predicts the token that is there: a model that was never asked about a visible token has no
# reason to keep it.

# %%
def clean_token_recovery(task: MLMTask, rows: int = 256) -> float:
    """Accuracy of the MLM head at every unmasked real token of the first validation blocks."""
    device = next(task.model.parameters()).device
    ids = task.valid["input_ids"][:rows].to(device)
    special = task.valid["special_tokens_mask"][:rows].to(device)
    task.model.eval()
    with torch.no_grad():
        logits = task.model.predict_all(ids, padding_mask=ids != PAD_ID)  # [B, T, V]
    task.model.train()
    return (logits.argmax(-1) == ids)[~special].float().mean().item()


# %% [markdown]
# ## Running the arms
#
# One fresh run per arm. Each run's summary, its clean-token recovery and its validation curve
# go into the results; the BERT arm also fills in a few blanks.

# %%
def arm_config(changes: dict[str, Any], *, quick: bool = False, progress: bool = True,
               preset: str = "cpu") -> MLMConfig:
    config = MLMConfig(**changes)
    config.train.steps, config.train.eval_every = STEPS, EVAL_EVERY
    config.train.progress = progress
    return make_quick(config) if quick else at_preset(config, preset)


def run_experiment(work_dir: Path, *, quick: bool = False, progress: bool = True,
                   preset: str = "cpu") -> dict[str, Any]:
    rows, curves = {}, {}
    for name, changes in ARMS.items():
        config = arm_config(changes, quick=quick, progress=progress, preset=preset)
        task = MLMTask(config)
        summary, metrics = train_arm(task, config, work_dir, name)
        summary["clean_token_recovery"] = clean_token_recovery(task)
        if name.startswith("BERT"):
            summary["fill_in"] = {text: fill_in_the_blanks(task.model, task.tokenizer, text)
                                  for text in DEMO_SENTENCES}
        rows[name], curves[name] = summary, metrics
    return {"paper": "mlm", "rows": rows, "curves": curves}


# %% [markdown]
# ## The table and the curves, from `results.json`
#
# The first row is the floor: always guessing the most frequent token, and the unigram
# cross-entropy (the MLM page defines both). The figure is the validation loss of each arm
# against steps, with the unigram baseline as a dashed line.

# %%
def draw(results: dict[str, Any], out_dir: Path) -> None:
    write_table(out_dir / "table.md", results_table(results))
    plot_curves(results, out_dir / "loss.svg")


def results_table(results: dict[str, Any]) -> str:
    rows = {name: results["rows"][name] for name in in_order(results["rows"], ARMS)}
    first = next(iter(rows.values()))
    lines = [["most frequent token / unigram baseline", f"{first['baseline_accuracy']:.3f}",
              f"{first['baseline_entropy']:.2f}", f"{first['baseline_perplexity']:.0f}", "—"]]
    lines += [[name, f"{row['eval_accuracy']:.3f}", f"{row['eval_loss']:.2f}",
               f"{row['eval_perplexity']:.0f}", f"{row['clean_token_recovery']:.3f}"]
              for name, row in rows.items()]
    text = markdown_table(["run", "masked-token accuracy", "loss (nats)", "perplexity",
                           "token recovery on clean text"], lines)
    fill_in = next((row["fill_in"] for row in rows.values() if "fill_in" in row), {})
    if fill_in:
        guesses = [[sentence.replace("[MASK]", "`[MASK]`"), ", ".join(fill_in[sentence][0])]
                   for sentence in in_order(fill_in, DEMO_SENTENCES)]
        header = ["sentence (BERT 80/10/10 model)", "top guesses for `[MASK]`"]
        text += "\n" + markdown_table(header, guesses)
    return text


def plot_curves(results: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    curves = {name: results["curves"][name] for name in in_order(results["curves"], ARMS)}
    figure, axis = plt.subplots(figsize=(7, 4))
    for name, rows in curves.items():
        evals = [row for row in rows if "eval_loss" in row]
        axis.plot([row["step"] for row in evals], [row["eval_loss"] for row in evals],
                  marker="o", label=name)
    baseline = next(row["baseline_entropy"] for rows in curves.values() for row in rows
                    if "baseline_entropy" in row)
    axis.axhline(baseline, color="gray", linestyle="--", label="unigram baseline")
    axis.set_xlabel("step")
    axis.set_ylabel("validation MLM loss (nats)")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    save_figure(figure, path)


# %% [markdown]
# ## Run it
#
# From a shell, `labnotes experiment mlm` runs all three arms (about a quarter of an hour on 2
# CPU cores) and writes `docs/results/mlm/`; `labnotes experiment mlm --redraw` redraws the table
# and figure from the stored `results.json`. `--preset gpu` trains the same arms larger, for one
# GPU ([how](experiments.common.md#presets-the-same-arms-larger)). In the notebook this cell
# runs the arms into `runs/experiment-mlm/` and prints the table.

# %%
if __name__ == "__main__":
    import sys

    run_in_notebook(sys.modules[__name__], "mlm")

"""BART: the experiment.

BART's Table 1 in shape: one model per noise, and text infilling with sentence permutation,
trained alike; each judged on its own noise, on one shared infilling set, on a small
generation task after a short fine-tuning, and by the downstream suite.
"""

# %% [markdown]
# The claim, from the [BART page](bart.md#evidence): of the five noises, **text infilling** is the
# most consistent, token deletion does well on generation, and **document rotation** and
# **sentence permutation** are poor on their own (BART, arXiv:1910.13461, §4.3 and Table 1).
# Table 1 judges each noise by fine-tuned tasks (SQuAD, MNLI, ELI5, XSum, ConvAI2, CNN/DM) after
# 1M steps; we train the same encoder-decoder once per noise for `STEPS` steps on the embedded
# corpus and judge it four ways:
#
# 1. its loss on **its own noise** (held out): how hard that task is, not how useful;
# 2. its loss on **one shared text-infilling set**: can a model repair spans it was not trained
#    to repair?
# 3. a **generation task** the corpus has: write a docstring's first sentence (its summary line)
#    from the rest of the docstring, after `FINETUNE_STEPS` steps of fine-tuning, scored by
#    perplexity on held-out docstrings, with a random-init model fine-tuned the same way as the
#    floor;
# 4. the **downstream suite**, with BART's own classification recipe (§3.1): the same tokens
#    into encoder and decoder, and the decoder's state at the last token as the features.

# %%
from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from labnotes.bart import (IGNORE, BARTConfig, BARTTask, evaluate_seq2seq, generate,
                           ordinary_tokens, pad_rows, seq2seq_loss)
from labnotes.downstream import DownstreamConfig, build_tasks, evaluate_encoder, quick_suite
from labnotes.experiments.common import PRESETS, at_preset  # noqa: F401  (PRESETS: cpu, gpu)
from labnotes.experiments.common import (flops_per_step, in_order, in_processes, markdown_table,
                                         percent, pyplot, run_in_notebook, save_figure, train_arm,
                                         write_table)
from labnotes.tokenizer import CLS_ID, PAD_ID, SEP_ID, prepare_corpus
from labnotes.training import make_quick
from labnotes.transformer import EncoderDecoder

# %% [markdown]
# ## The arms
#
# The BART page's default model and recipe; only `noise` changes. Each noise that hides
# information hides 30% (of tokens, or of words for infilling).

# %%
ARMS = {
    "token masking": "masking",
    "token deletion": "deletion",
    "text infilling": "infilling",
    "sentence permutation": "permutation",
    "document rotation": "rotation",
    "text infilling + sentence permutation": "infilling+permutation",
}
STEPS = 1500
FINETUNE_STEPS = 150
SUMMARY_EXAMPLES = 256  # held-out docstrings scored in the generation task
# Table 1 (BART, arXiv:1910.13461): SQuAD 1.1 F1, MNLI accuracy, XSum perplexity
PAPER_TABLE_1 = {"token masking": (90.4, 84.1, 7.08), "token deletion": (90.4, 84.1, 6.90),
                 "text infilling": (90.8, 84.0, 6.61), "sentence permutation": (85.4, 81.5, 10.93),
                 "document rotation": (77.2, 75.3, 17.14),
                 "text infilling + sentence permutation": (90.8, 83.8, 6.62)}


def arm_config(noise: str, *, quick: bool, progress: bool, preset: str = "cpu") -> BARTConfig:
    config = BARTConfig(noise=noise)
    config.train.steps, config.train.checkpoint_every = STEPS, STEPS
    config.train.eval_every, config.train.progress = STEPS // 4, progress
    return make_quick(config) if quick else at_preset(config, preset)


def build_arm(noise: str, *, quick: bool, progress: bool, preset: str = "cpu") -> BARTTask:
    return BARTTask(arm_config(noise, quick=quick, progress=progress, preset=preset))


# %% [markdown]
# ## One shared infilling set
#
# The validation chunks noised once by text infilling with a fixed seed; every arm is scored on
# exactly these inputs and targets.

# %%
def shared_infilling(task: BARTTask, count: int) -> dict[str, Tensor]:
    chunks = task.valid_chunks[:count]
    return task.batch_of(chunks, torch.Generator().manual_seed(4321), noise="infilling")


# %% [markdown]
# ## A generation task: the summary line of a docstring
#
# The embedded corpus is documentation: most documents are docstrings whose first sentence
# says what the rest explains. The task: given the other sentences (up to the block length),
# write the first. Documents with at least two sentences make examples; training documents
# fine-tune, validation documents score. Fine-tuning is a plain loop: AdamW at $10^{-3}$, batch
# 32, `FINETUNE_STEPS` steps, on a copy of the pretrained model, the same for every arm and
# for the random-init floor.

# %%
def summary_examples(documents: list, seq_len: int) -> list[tuple[Tensor, Tensor]]:
    """(source [CLS] rest [SEP], target first sentence [SEP]) for each document of 2+ sentences."""
    examples = []
    for document in documents:
        if len(document) < 2:
            continue
        rest = [token for ids, _ in document[1:] for token in ids][:seq_len - 2]
        first = document[0][0][:seq_len - 1]
        examples.append((torch.tensor([CLS_ID, *rest, SEP_ID]),
                         torch.tensor([*first, SEP_ID])))
    return examples


def summary_batch(examples: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    return (pad_rows([source for source, _ in examples], PAD_ID),
            pad_rows([target for _, target in examples], IGNORE))


def finetune_summaries(model: EncoderDecoder, train_examples: list, steps: int,
                       seed: int = 0) -> EncoderDecoder:
    model = copy.deepcopy(model).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        rows = torch.randint(len(train_examples), (32,), generator=generator).tolist()
        source, labels = summary_batch([train_examples[row] for row in rows])
        loss, _, _ = seq2seq_loss(model, source, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return model.eval()


def summary_scores(model: EncoderDecoder, train_examples: list, test_examples: list,
                   tokenizer: Any, steps: int, show: int = 0) -> dict[str, Any]:
    tuned = finetune_summaries(model, train_examples, steps)
    source, labels = summary_batch(test_examples)
    scores = evaluate_seq2seq(tuned, {"input_ids": source, "labels": labels},
                              torch.device("cpu"))
    shown = []
    for source_ids, target in test_examples[:show]:
        written = generate(tuned, source_ids, max_new_tokens=32, beam_size=4)
        shown.append({"rest": tokenizer.decode(ordinary_tokens(source_ids.tolist()))[:160],
                      "true": tokenizer.decode(ordinary_tokens(target.tolist())),
                      "written": tokenizer.decode(ordinary_tokens(written))})
    return {"loss": scores["eval_loss"], "perplexity": scores["eval_perplexity"],
            "examples": shown}


# %% [markdown]
# ## BART's classification recipe, for the downstream suite
#
# The [downstream suite](downstream.md) takes any module that maps token ids to one vector per
# position and averages them over the real tokens. BART classifies from its decoder instead
# (§3.1): the same tokens go into the encoder and the decoder, and the decoder's state at the
# last token, which has seen the whole input through both, feeds the classifier. This wrapper
# returns that one state at every position, so the suite's average is exactly it.

# %%
class DecoderFeatures(nn.Module):
    def __init__(self, model: EncoderDecoder) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    def forward(self, input_ids: Tensor, padding_mask: Tensor | None = None,
                segment_ids: Tensor | None = None) -> Tensor:
        if padding_mask is None:
            padding_mask = input_ids != PAD_ID
        memory = self.model.encoder(input_ids, padding_mask=padding_mask)
        states = self.model.decoder(input_ids, memory, padding_mask)  # [B, T, D]
        last = padding_mask.sum(1) - 1  # the final real token, [SEP]
        final = states[torch.arange(len(states)), last]  # [B, D]
        return final[:, None, :].expand_as(states)


# %% [markdown]
# ## Running the arms
#
# One fresh run per arm; then the shared infilling set, the generation task and the suite. A
# random-init model of the same size is the floor for the last two. The arms are independent,
# so `--jobs 2` trains them in two processes of one thread each, one per core on a 2-core CPU
# (as on the [comparison](experiments.compare.md)'s page, where `--jobs 3` runs three seeds);
# each process builds the same held-out sets from the same seeds.

# %%
def judged_on(task: BARTTask, suite: DownstreamConfig, quick: bool) -> dict[str, Any]:
    """What every model is judged on: the suite's tasks, the summary examples (train, test) and
    the shared infilling set, all from the arm's corpus and fixed seeds."""
    prepared = prepare_corpus(task.config.corpus)
    seq_len = task.config.corpus.seq_len
    return {"tasks": build_tasks(prepared, suite, task.config.model.max_len),
            "summaries": (summary_examples(prepared.train_documents, seq_len),
                          summary_examples(prepared.valid_documents, seq_len)[
                              :64 if quick else SUMMARY_EXAMPLES]),
            "shared": shared_infilling(task, task.config.eval_examples)}


def experiment_suite(quick: bool) -> DownstreamConfig:
    suite = DownstreamConfig()
    return quick_suite(suite) if quick else suite


def run_arm(name: str, work_dir: Path, quick: bool, progress: bool,
            preset: str) -> dict[str, Any]:
    suite, finetune_steps = experiment_suite(quick), 5 if quick else FINETUNE_STEPS
    task = build_arm(ARMS[name], quick=quick, progress=progress, preset=preset)
    judged = judged_on(task, suite, quick)
    step_flops = flops_per_step(task)
    arm_started = time.perf_counter()
    summary, metrics = train_arm(task, task.config, work_dir, name)
    seconds = time.perf_counter() - arm_started
    return {"noise": ARMS[name], "summary": summary, "curve": metrics, "train_seconds": seconds,
            "flops_per_step": step_flops,
            "infilling": evaluate_seq2seq(task.model, judged["shared"], torch.device("cpu")),
            "summary_task": summary_scores(task.model, *judged["summaries"], task.tokenizer,
                                           finetune_steps, show=3),
            "downstream": evaluate_encoder(DecoderFeatures(task.model), judged["tasks"], suite),
            "paper": PAPER_TABLE_1[name]}


def run_experiment(work_dir: Path, *, quick: bool = False, progress: bool = True,
                   preset: str = "cpu", jobs: int = 1) -> dict[str, Any]:
    suite, finetune_steps = experiment_suite(quick), 5 if quick else FINETUNE_STEPS
    started = time.perf_counter()
    names = list(ARMS)
    names = [names[0], names[-1]] if quick else names  # quick: two arms check the pipeline
    work_dir = Path(work_dir)
    runs = in_processes(run_arm, names, work_dir, quick, progress, preset, jobs=jobs)
    task = build_arm(ARMS[names[0]], quick=quick, progress=False, preset=preset)
    judged = judged_on(task, suite, quick)
    torch.manual_seed(0)  # the floor's weights, the same whatever ran before
    random_model = EncoderDecoder(task.config.model)
    floor = {"infilling": evaluate_seq2seq(random_model, judged["shared"], torch.device("cpu")),
             "summary": summary_scores(random_model, *judged["summaries"], task.tokenizer,
                                       finetune_steps),
             "downstream": evaluate_encoder(DecoderFeatures(random_model), judged["tasks"],
                                            suite)}
    return {"paper": "bart", "steps": task.config.train.steps,
            "batch_size": task.config.train.batch_size, "finetune_steps": finetune_steps,
            "suite": dataclasses.asdict(suite), "random_init": floor,
            "rows": dict(zip(names, runs)), "jobs": jobs,
            "threads": 1 if jobs > 1 else torch.get_num_threads(),
            "seconds": time.perf_counter() - started}


# %% [markdown]
# ## The table and the figure, from `results.json`
#
# One row per arm: the loss on its own noise, on the shared infilling set, the summary-line
# perplexity after fine-tuning, the downstream scores, and Table 1's SQuAD, MNLI and XSum
# columns beside them. The figure is each arm's held-out loss on its own noise during training
# (own noise) and its score on the two shared measures.

# %%
def draw(results: dict[str, Any], out_dir: Path) -> None:
    write_table(out_dir / "table.md", results_table(results))
    plot_shared(results, out_dir / "shared_measures.svg")


def results_table(results: dict[str, Any]) -> str:
    floor = results["random_init"]
    tasks = list(floor["downstream"]["tasks"])
    header = ["noise", "own-noise loss", "infilling-set loss", "summary-line perplexity",
              *(task.replace("_", " ") for task in tasks), "downstream mean",
              "paper SQuAD / MNLI / XSum ppl"]
    lines = [["random-init model", "—", f"{floor['infilling']['eval_loss']:.2f}",
              f"{floor['summary']['perplexity']:.1f}",
              *(percent(floor["downstream"]["tasks"][t]["mean"]) for t in tasks),
              percent(floor["downstream"]["score"]["mean"]), "—"]]
    for name in in_order(results["rows"], ARMS):
        row = results["rows"][name]
        squad, mnli, xsum = row["paper"]
        lines.append([name, f"{row['summary']['eval_loss']:.2f}",
                      f"{row['infilling']['eval_loss']:.2f}",
                      f"{row['summary_task']['perplexity']:.1f}",
                      *(percent(row["downstream"]["tasks"][t]["mean"],
                                row["downstream"]["tasks"][t]["std"]) for t in tasks),
                      percent(row["downstream"]["score"]["mean"],
                              row["downstream"]["score"]["std"]),
                      f"{squad} / {mnli} / {xsum}"])
    text = (f"**Table 1 in shape** ({results['steps']} steps × batch {results['batch_size']} per "
            f"arm; losses in nats per target token on held-out text; summary lines after "
            f"{results['finetune_steps']} fine-tuning steps; downstream accuracy in %, mean ± std "
            "over fine-tuning seeds)\n\n" + markdown_table(header, lines))
    main = results["rows"].get("text infilling + sentence permutation")
    if main and main["summary_task"]["examples"]:
        text += ("\n**Summary lines written** by the infilling + permutation model after "
                 "fine-tuning (beam 4), on held-out docstrings\n\n"
                 + markdown_table(["the rest of the docstring (start)", "true first sentence",
                                   "written"],
                                  [[example["rest"] + " …", example["true"], example["written"]]
                                   for example in main["summary_task"]["examples"]]))
    return text


def plot_shared(results: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    names = in_order(results["rows"], ARMS)
    figure, (own, shared) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in names:
        evals = [p for p in results["rows"][name]["curve"] if "eval_loss" in p]
        own.plot([p["step"] for p in evals], [p["eval_loss"] for p in evals], marker="o",
                 label=name)
    own.set_xlabel("step")
    own.set_ylabel("held-out loss on its own noise (nats)")
    own.set_title("how hard each noise is to undo")
    own.grid(alpha=0.3)
    own.legend(fontsize=8)
    positions = range(len(names))
    infilling = [results["rows"][n]["infilling"]["eval_loss"] for n in names]
    summary = [results["rows"][n]["summary_task"]["loss"] for n in names]
    shared.bar([p - 0.2 for p in positions], infilling, width=0.4, label="shared infilling set")
    shared.bar([p + 0.2 for p in positions], summary, width=0.4,
               label="summary line, fine-tuned")
    shared.axhline(results["random_init"]["summary"]["loss"], color="tab:orange",
                   linestyle="--", label="summary line, random init")
    shared.set_xticks(list(positions), [n.replace(" + ", " +\n") for n in names], rotation=30,
                      ha="right", fontsize=8)
    shared.set_ylabel("loss (nats per token)")
    shared.set_title("the same two tests for every model")
    shared.legend(fontsize=8)
    shared.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    save_figure(figure, path)


# %% [markdown]
# ## Run it
#
# From a shell, `labnotes experiment bart --jobs 2` trains the six arms (about 95 minutes on 2
# CPU cores, beside another one-thread run) and writes `docs/results/bart/`; `--redraw` redraws
# from the stored `results.json`. `--preset gpu` trains the same arms larger, for one GPU
# ([how](experiments.common.md#presets-the-same-arms-larger)).

# %%
if __name__ == "__main__":
    import sys

    run_in_notebook(sys.modules[__name__], "bart")


"""ELECTRA: the experiment.

Table 5's efficiency analysis at laptop scale: BERT's MLM, ELECTRA and three hybrids of the
two, then ELECTRA with wider generators, each judged by the downstream suite against the
training compute it took.
"""

# %% [markdown]
# The claim, from the [ELECTRA page](electra.md#evidence-the-efficiency-analysis-at-laptop-scale):
# most of ELECTRA's gain over BERT comes from learning from *all* tokens, a smaller part from
# not showing the pretraining network `[MASK]`, which fine-tuning never shows it (ELECTRA,
# arXiv:2003.10555, §3.5, Table 5: GLUE at base size, ELECTRA 85.0, All-Tokens MLM 84.3,
# Replace MLM 82.4, ELECTRA 15% 82.4, BERT 82.2). And a generator 1/4 to 1/2 the
# discriminator's width works best, one as wide worse (§3.2, Figure 3).
#
# Every arm trains an encoder of the same size (the ELECTRA page's discriminator) for 800
# steps of 64 blocks; the [downstream suite](downstream.md) scores it at a few checkpoints.

# %%
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labnotes.downstream import DownstreamConfig, build_tasks, evaluate_encoder, quick_suite
from labnotes.electra import (ELECTRA, ElectraConfig, ElectraTask, discriminator_loss,
                              quick_config, replaced_auc)
from labnotes.experiments.common import PRESETS, at_preset  # noqa: F401  (PRESETS: cpu, gpu)
from labnotes.experiments.common import (flops_per_step, in_order, markdown_table, percent,
                                         pyplot, run_in_notebook, save_figure, slug, train_arm,
                                         write_table)
from labnotes.mlm import IGNORE, MLMConfig, MLMTask, start_config
from labnotes.tokenizer import prepare_corpus
from labnotes.training import TrainConfig, load_checkpoint, make_quick
from labnotes.transformer import Encoder, EncoderConfig, LMHead, init_weights

# %% [markdown]
# ## Three hybrids of BERT and ELECTRA
#
# §3.5 separates ELECTRA's two changes to BERT — a loss on *all* tokens, and no `[MASK]` in
# the pretraining network's input — with three hybrids. All keep ELECTRA's generator and its
# corrupted input (`ELECTRA.corrupt`); each changes what the encoder is asked about it:
#
# - **ELECTRA 15%**: the discriminator's loss only at the selected positions
#   (`weights = selected`). Same input as ELECTRA, 15% of the signal.
# - **Replace MLM**: no discriminator; the encoder does ordinary MLM with BERT's tied head,
#   but the selected positions hold generator samples instead of `[MASK]`. Loss on 15%, no
#   `[MASK]`.
# - **All-Tokens MLM**: Replace MLM that predicts the identity of *every* token, with a copy
#   mechanism: a sigmoid gate $D_t$ puts its weight on the token in the input, the rest on the
#   MLM softmax, averaged as $-\log p(x_t)$ over every non-pad token. Loss on all tokens, no
#   `[MASK]`:
#
# $$p(x_t) = D_t\,\mathbb{1}[x_t = x^{\text{corrupt}}_t]
#   + (1 - D_t)\,\mathrm{softmax}(\text{logits}_t)[x_t].$$
#
# The two MLM hybrids add their token loss with weight 1 (two cross-entropies of the same
# scale); $\lambda = 50$ belongs to the binary loss. All-Tokens MLM runs the $|V|$-way head at
# every position, so a step costs more compute than the others': the figure plots against
# compute. We write $\log p$ with `logaddexp` so that the copy term, $-\infty$ where the input
# token is wrong, never turns into a NaN.

# %%
def replace_mlm_loss(head: LMHead, hidden: Tensor, labels: Tensor) -> Tensor:
    selected = labels != IGNORE
    return F.cross_entropy(head(hidden[selected]).float(), labels[selected])


def all_tokens_mlm_loss(head: LMHead, copy_gate: nn.Linear, hidden: Tensor, corrupted: Tensor,
                        original: Tensor, real: Tensor) -> Tensor:
    h = hidden[real]  # [M, D], every non-pad token
    log_softmax = head(h).float().log_softmax(dim=-1)  # [M, V]
    log_model = log_softmax.gather(1, original[real].unsqueeze(1)).squeeze(1)  # [M]
    gate = copy_gate(h).float().squeeze(-1)  # [M], logit of D_t
    copy = torch.where(corrupted[real] == original[real], F.logsigmoid(gate),
                       torch.full_like(gate, float("-inf")))
    return -torch.logaddexp(copy, F.logsigmoid(-gate) + log_model).mean()


def add_main_loss(out: dict[str, Tensor], main_loss: Tensor, positions: Tensor,
                  mlm_weight: float, weight: float) -> dict[str, Tensor]:
    """Complete `out` as `ELECTRA.forward` does: the main loss, its positions, the total."""
    out.update(main_loss=main_loss, main_count=positions.sum(), main_weight=torch.tensor(weight),
               loss=mlm_weight * out["mlm_loss"] + weight * main_loss)
    return out


class Electra15(ELECTRA):
    """ELECTRA 15%: replaced token detection graded at the selected positions only."""

    main_positions = "selected"

    def forward(self, masked_ids: Tensor, labels: Tensor, padding_mask: Tensor | None,
                noise: Tensor) -> dict[str, Tensor]:
        out = self.corrupt(masked_ids, labels, padding_mask, noise)
        out["disc_logits"] = self.head(self.encoder(out["corrupted"], padding_mask=padding_mask))
        loss = discriminator_loss(out["disc_logits"], out["replaced"], out["selected"])
        return add_main_loss(out, loss, out["selected"], self.mlm_weight, self.disc_weight)


class ReplaceMLM(ELECTRA):
    """Replace MLM: BERT's MLM on the corrupted input, graded at the selected positions."""

    main_positions = "selected"

    def make_head(self, config: EncoderConfig) -> nn.Module:
        return LMHead(config, self.encoder.embeddings.token)  # BERT's head, tied

    def forward(self, masked_ids: Tensor, labels: Tensor, padding_mask: Tensor | None,
                noise: Tensor) -> dict[str, Tensor]:
        out = self.corrupt(masked_ids, labels, padding_mask, noise)
        hidden = self.encoder(out["corrupted"], padding_mask=padding_mask)  # [B, T, D]
        loss = replace_mlm_loss(self.head, hidden, labels)
        return add_main_loss(out, loss, out["selected"], self.mlm_weight, 1.0)


class AllTokensMLM(ReplaceMLM):
    """All-Tokens MLM: every token's identity, with a gate that may copy the input token."""

    main_positions = "real"

    def __init__(self, config: EncoderConfig, **settings: Any) -> None:
        super().__init__(config, **settings)  # generator_fraction, mlm_weight, disc_weight
        self.copy_gate = nn.Linear(config.dim, 1)
        init_weights(self.copy_gate)

    def forward(self, masked_ids: Tensor, labels: Tensor, padding_mask: Tensor | None,
                noise: Tensor) -> dict[str, Tensor]:
        out = self.corrupt(masked_ids, labels, padding_mask, noise)
        hidden = self.encoder(out["corrupted"], padding_mask=padding_mask)  # [B, T, D]
        loss = all_tokens_mlm_loss(self.head, self.copy_gate, hidden, out["corrupted"],
                                   out["original"], out["real"])
        return add_main_loss(out, loss, out["real"], self.mlm_weight, 1.0)


# %% [markdown]
# A hybrid trains through the ELECTRA page's task with the hybrid in place of `ELECTRA`: the
# same blocks, masks and sampling noise. The task builds an `ELECTRA` first; re-seeded before
# the hybrid replaces it, the hybrid starts from the same encoder and generator weights.

# %%
HYBRIDS = {"electra_15": Electra15, "replace_mlm": ReplaceMLM, "all_tokens_mlm": AllTokensMLM}


class HybridTask(ElectraTask):
    def __init__(self, config: ElectraConfig, objective: str) -> None:
        super().__init__(config)
        self.objective = objective
        torch.manual_seed(config.train.seed)
        self.model = HYBRIDS[objective](config.model, generator_fraction=config.generator_fraction,
                                        mlm_weight=config.mlm_weight,
                                        disc_weight=config.disc_weight)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "objective": self.objective}


# %% [markdown]
# ## The arms and their cost
#
# Each arm names its objective and its generator's width; "bert" is the MLM page's task, with
# a zero output bias like every ELECTRA arm. A step's compute is counted by PyTorch's FLOP
# counter on one real batch, forward and backward, generator included (the paper's way,
# Table 1).

# %%
ARMS = {  # name -> (objective, generator fraction)
    "BERT (MLM)": ("bert", None),
    "ELECTRA": ("electra", 0.25),
    "ELECTRA 15%": ("electra_15", 0.25),
    "Replace MLM": ("replace_mlm", 0.25),
    "All-Tokens MLM": ("all_tokens_mlm", 0.25),
}
GENERATOR_ARMS = {"ELECTRA, generator 1/2": 0.5, "ELECTRA, generator 1/1": 1.0}
PAPER_TABLE_5 = {"BERT (MLM)": 82.2, "ELECTRA": 85.0, "ELECTRA 15%": 82.4, "Replace MLM": 82.4,
                "All-Tokens MLM": 84.3}
STEPS, BATCH_SIZE = 800, 64  # the MLM page's batch and learning rate


def experiment_train_config(progress: bool) -> TrainConfig:
    return TrainConfig(steps=STEPS, batch_size=BATCH_SIZE, eval_every=STEPS // 4,
                       checkpoint_every=STEPS // 2, keep_checkpoints=10, lr=2e-3,
                       progress=progress)


def arm_config(objective: str, fraction: float | None, *, quick: bool, progress: bool,
               preset: str = "cpu") -> MLMConfig | ElectraConfig:
    train_config = experiment_train_config(progress)
    if objective == "bert":
        config = MLMConfig(train=train_config, unigram_bias=False)
    else:  # pinned to the joint recipe from random weights, the one this table was run with
        config = ElectraConfig(train=train_config, generator_fraction=fraction,
                               warm_start_steps=0)
    return make_quick(config) if quick else at_preset(config, preset)


def build_arm(objective: str, fraction: float | None, *, quick: bool, progress: bool,
              preset: str = "cpu") -> Any:
    config = arm_config(objective, fraction, quick=quick, progress=progress, preset=preset)
    if objective == "bert":
        return MLMTask(config)
    return ElectraTask(config) if objective == "electra" else HybridTask(config, objective)


# %% [markdown]
# ## Running the arms
#
# One fresh run per arm. The five arms of Table 5 are scored downstream at every checkpoint,
# the two wider generators at the last only; a random-init encoder of the same size is the
# floor. Every ELECTRA arm and hybrid trains by the joint recipe from random weights
# (`warm_start_steps=0`, pinned in `build_arm`): the ELECTRA page's recipe when this table was
# run. The page's default now starts the discriminator from an MLM; Table 5 with that start is
# still to be re-run.

# %%
def run_experiment(work_dir: Path, *, quick: bool = False, progress: bool = True,
                   preset: str = "cpu") -> dict[str, Any]:
    suite = quick_suite(DownstreamConfig()) if quick else DownstreamConfig()
    started = time.perf_counter()
    arms = {name: (*spec, True) for name, spec in ARMS.items()}
    arms.update({name: ("electra", fraction, False) for name, fraction in GENERATOR_ARMS.items()})
    rows: dict[str, dict[str, Any]] = {}
    tasks = None
    for name, (objective, fraction, every_checkpoint) in arms.items():
        task = build_arm(objective, fraction, quick=quick, progress=progress, preset=preset)
        if tasks is None:
            tasks = build_tasks(prepare_corpus(task.config.corpus), suite,
                                task.config.model.max_len)
            baseline = evaluate_encoder(Encoder(task.config.model), tasks, suite)
        step_flops = flops_per_step(task)
        arm_started = time.perf_counter()
        summary, _ = train_arm(task, task.config, work_dir, name)
        seconds = time.perf_counter() - arm_started
        checkpoints = sorted((Path(work_dir) / slug(name) / "checkpoints").glob("step-*"))
        points = []
        for checkpoint in checkpoints if every_checkpoint else checkpoints[-1:]:
            state = load_checkpoint(checkpoint, task=task, model=task.model, optimizer=None,
                                    config=None)
            scores = evaluate_encoder(task.model.encoder, tasks, suite)
            points.append({"step": state["step"], "train_flops": step_flops * state["step"],
                           **scores})
        rows[name] = {"objective": objective, "generator_fraction": fraction,
                      "flops_per_step": step_flops, "train_seconds": seconds,
                      "summary": summary, "checkpoints": points, "downstream": points[-1],
                      "paper_glue": PAPER_TABLE_5.get(name)}
    return {"paper": "electra", "steps": task.config.train.steps,
            "batch_size": task.config.train.batch_size, "suite": dataclasses.asdict(suite),
            "random_init": baseline, "rows": rows, "seconds": time.perf_counter() - started}


# %% [markdown]
# ## The tables and the figure, from `results.json`
#
# Downstream accuracy in %, mean ± standard deviation over the fine-tuning seeds; the
# detector's accuracy, precision and recall on held-out text where the arm has one; the
# paper's GLUE score beside each Table 5 arm. The figure is the downstream score against
# training compute, with the random-init encoder as a dashed line.

# %%
TASK_LABELS = {"acceptability": "acceptability", "source": "source",
               "same_passage": "same passage"}


def draw(results: dict[str, Any], out_dir: Path) -> None:
    write_table(out_dir / "table.md", results_table(results))
    plot_compute(results, out_dir / "downstream_vs_compute.svg")


def score_cell(scores: dict[str, Any], key: str) -> str:
    return percent(scores[key]["mean"], scores[key]["std"])


def results_table(results: dict[str, Any]) -> str:
    baseline = results["random_init"]
    rows = {name: results["rows"][name]
            for name in in_order(results["rows"], [*ARMS, *GENERATOR_ARMS])}
    tasks = in_order(baseline["tasks"], TASK_LABELS)
    labels = [TASK_LABELS.get(task, task) for task in tasks]
    lines = [["random-init encoder", *(score_cell(baseline["tasks"], t) for t in tasks),
              percent(baseline["score"]["mean"]), "0", "—", "—"]]
    lines += [table_line(name, row, tasks) for name, row in rows.items()
              if name not in GENERATOR_ARMS]
    widths = [table_line({0.25: "1/4", 0.5: "1/2", 1.0: "1/1"}[row["generator_fraction"]], row,
                         tasks, last=f"{row['summary']['eval_generator_accuracy']:.3f}")
              for row in rows.values() if row["objective"] == "electra"]
    return (f"**Table 5 at laptop scale** ({results['steps']} steps × batch "
            f"{results['batch_size']}, same encoder for every arm; downstream accuracy in %, "
            "mean ± std over fine-tuning seeds)\n\n"
            + markdown_table(["model", *labels, "mean", "train TFLOPs", "disc. acc / P / R",
                              "paper GLUE"], lines)
            + "\n**Generator size** (ELECTRA; the paper finds 1/4–1/2 best and 1/1 worse, "
            "Figure 3)\n\n"
            + markdown_table(["generator width", *labels, "mean", "train TFLOPs",
                              "disc. acc / P / R", "generator MLM acc"], widths))


def table_line(name: str, row: dict[str, Any], tasks: list[str],
               last: str | None = None) -> list[str]:
    scores, summary = row["downstream"], row["summary"]
    detection = "—"
    if "eval_disc_accuracy" in summary:
        detection = (f"{summary['eval_disc_accuracy']:.3f} / {summary['eval_disc_precision']:.2f}"
                     f" / {summary['eval_disc_recall']:.2f}")
    paper = last if last is not None else (f"{row['paper_glue']:.1f}" if row["paper_glue"]
                                           else "—")
    return [name, *(score_cell(scores["tasks"], t) for t in tasks),
            percent(scores["score"]["mean"], scores["score"]["std"]),
            f"{row['checkpoints'][-1]['train_flops'] / 1e12:.1f}", detection, paper]


def plot_compute(results: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.2))
    for name in in_order(results["rows"], ARMS):
        row = results["rows"][name]
        if name in GENERATOR_ARMS:
            continue
        points = [{"train_flops": 0.0, "score": results["random_init"]["score"]},
                  *row["checkpoints"]]
        axis.errorbar([p["train_flops"] / 1e12 for p in points],
                      [100 * p["score"]["mean"] for p in points],
                      yerr=[100 * p["score"]["std"] for p in points], marker="o", capsize=3,
                      label=name)
    axis.axhline(100 * results["random_init"]["score"]["mean"], color="gray", linestyle="--",
                 label="random-init encoder")
    axis.set_xlabel("training compute (TFLOPs, generator included)")
    axis.set_ylabel("downstream score (mean accuracy, %)")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    save_figure(figure, path)


# %% [markdown]
# ## Does the discriminator learn? Held-out AUC of the candidate recipes
#
# Table 5's discriminators end at the constant answer. Precision and recall at a threshold of
# 0.5 cannot tell a detector that ranks replaced tokens a little above originals from one that
# ignores its input, so this second, smaller experiment follows the held-out **AUC** (the
# official code's `disc_auc`) and the detector's loss beside the constant answer's, over
# training, for four recipes: the joint recipe from random weights; two of the paper's levers
# for it (the official small model's lower learning rate with a longer warmup, and the large
# model's 25% masking; a generator half as wide as the default, 1/8, with 25% masking); and the
# warm start, the ELECTRA page's default (an MLM of 1200 steps, then 400 ELECTRA steps,
# evaluated every 50). The joint arms train 600 steps each, evaluated every 100. Every arm
# trains on batches of 64 blocks of 64 tokens, one seed, and is evaluated on all 763 held-out
# blocks of the embedded corpus (`eval_blocks` would cap them at 1024) with the same noise, the
# masks drawn at each arm's own rate. The detector is judged only where the generator could
# have put a fake: `[CLS]` and `[SEP]` are never replaced, and a detector that merely learned
# where they sit would otherwise beat the constant answer's loss. The figure's left panel plots the AUC against
# training compute, the MLM stage included; the right panel plots the same points against the
# generator's held-out MLM accuracy at that evaluation, since a detector is only as good as
# the fakes it is shown are hard: an untrained generator writes nearly random tokens.
#
# The last AUC gets an interval: a bootstrap over held-out *blocks* (tokens of one block are
# not independent), 200 resamples, the 2.5th and 97.5th percentiles.

# %%
AUC_SCRATCH_STEPS = 600  # per joint arm; the warm start's ELECTRA stage is the page default
AUC_ARMS: dict[str, dict[str, Any]] = {  # name -> settings over ElectraConfig()
    "joint from scratch (lr 2e-3)": {"warm_start_steps": 0, "lr": 2e-3},
    "joint, lr 5e-4, warmup 300, 25% masking": {"warm_start_steps": 0, "lr": 5e-4,
                                                "warmup_steps": 300, "mask_rate": 0.25},
    "joint, generator 1/8, 25% masking": {"warm_start_steps": 0, "lr": 2e-3,
                                          "generator_fraction": 0.125, "mask_rate": 0.25},
    "warm start (page default)": {},
}


def auc_arm_config(settings: dict[str, Any], *, quick: bool, progress: bool) -> ElectraConfig:
    config = ElectraConfig()
    for name, value in settings.items():
        if name in ("lr", "warmup_steps"):
            setattr(config.train, name, value)
        else:
            setattr(config, name, value)
    if not config.warm_start_steps:
        config.train.steps = AUC_SCRATCH_STEPS
        config.train.eval_every = AUC_SCRATCH_STEPS // 6
    config.train.checkpoint_every = config.train.steps
    config.train.progress = progress
    return quick_config(config) if quick else config


def held_out_scores(task: ElectraTask) -> tuple[Tensor, Tensor, Tensor]:
    """(logits, replaced, block index) at the ranked held-out positions of the trained model."""
    model = task.model
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        out = model(task.valid_inputs.to(device), task.valid_labels.to(device),
                    task.valid_padding.to(device), task.valid_noise.to(device))
    model.train()
    ranked = task.valid_candidates & out["real"].cpu()
    blocks = torch.arange(len(ranked)).unsqueeze(1).expand_as(ranked)
    return (out["disc_logits"].float().cpu()[ranked], out["replaced"].cpu()[ranked],
            blocks[ranked])


def bootstrap_auc(scores: Tensor, replaced: Tensor, blocks: Tensor, *, resamples: int = 200,
                  seed: int = 0) -> tuple[float, float]:
    """(2.5%, 97.5%) of the AUC over resamples of whole blocks."""
    generator = torch.Generator().manual_seed(seed)
    count = int(blocks.max()) + 1
    members = [torch.nonzero(blocks == b).squeeze(1) for b in range(count)]
    values = []
    for _ in range(resamples):
        picked = torch.randint(count, (count,), generator=generator)
        rows = torch.cat([members[b] for b in picked.tolist()])
        values.append(replaced_auc(scores[rows], replaced[rows]))
    ordered = sorted(values)
    return ordered[int(0.025 * resamples)], ordered[int(0.975 * resamples) - 1]


def auc_experiment(work_dir: Path, *, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    started = time.perf_counter()
    rows: dict[str, dict[str, Any]] = {}
    for name, settings in AUC_ARMS.items():
        arm_started = time.perf_counter()
        config = auc_arm_config(settings, quick=quick, progress=progress)
        task = ElectraTask(config)  # a warm start trains (or finds) its MLM here
        mlm_flops = 0.0
        if task.warm_start_steps:
            mlm_task = MLMTask(start_config(config, config.warm_start_steps))
            mlm_flops = flops_per_step(mlm_task) * task.warm_start_steps
        step_flops = flops_per_step(task)
        summary, metrics = train_arm(task, config, work_dir, name)
        low, high = bootstrap_auc(*held_out_scores(task))
        curve = [{"step": row["step"],
                  "train_flops": mlm_flops + step_flops * row["step"],
                  **{key: row[key] for key in ("eval_disc_auc", "eval_disc_loss",
                                               "baseline_disc_loss", "eval_generator_accuracy")}}
                 for row in metrics if "eval_disc_auc" in row]
        rows[name] = {"settings": settings, "steps": config.train.steps,
                      "warm_start_steps": task.warm_start_steps, "mlm_flops": mlm_flops,
                      "flops_per_step": step_flops, "summary": summary, "curve": curve,
                      "auc_interval": [low, high],
                      "seconds": time.perf_counter() - arm_started}
    return {"paper": "electra", "experiment": "electra-auc", "batch_size": 64,
            "rows": rows, "seconds": time.perf_counter() - started}


def draw_auc(results: dict[str, Any], out_dir: Path) -> None:
    names = in_order(results["rows"], AUC_ARMS)
    lines = []
    for name in names:
        row = results["rows"][name]
        summary, (low, high) = row["summary"], row["auc_interval"]
        steps = (f"{row['warm_start_steps']} MLM + {row['steps']}" if row["warm_start_steps"]
                 else str(row["steps"]))
        total = row["curve"][-1]["train_flops"] if row["curve"] else 0.0
        lines.append([name, steps, f"{total / 1e12:.1f}",
                      f"{summary['eval_disc_auc']:.3f} [{low:.3f}, {high:.3f}]",
                      f"{summary['eval_disc_loss']:.3f} / {summary['baseline_disc_loss']:.3f}",
                      f"{summary['eval_generator_accuracy']:.3f}", f"{row['seconds'] / 60:.1f}"])
    write_table(out_dir / "table.md",
                "**Does the discriminator learn?** (held-out AUC of replaced against original "
                "tokens, 95% block-bootstrap interval; the detector's loss against the constant "
                "answer's; one seed each)\n\n"
                + markdown_table(["recipe", "steps", "train TFLOPs", "held-out AUC",
                                  "disc. loss / constant", "generator MLM acc", "minutes"],
                                 lines))
    plt = pyplot()
    figure, (by_compute, by_generator) = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for name in names:
        curve = results["rows"][name]["curve"]
        auc = [p["eval_disc_auc"] for p in curve]
        line, = by_compute.plot([p["train_flops"] / 1e12 for p in curve], auc, marker="o",
                                markersize=3, label=name)
        by_generator.plot([100 * p["eval_generator_accuracy"] for p in curve], auc, marker="o",
                          markersize=3, color=line.get_color())
    for axis in (by_compute, by_generator):
        axis.axhline(0.5, color="gray", linestyle="--", label="chance" if axis is by_compute
                     else None)
        axis.grid(alpha=0.3)
    by_compute.set_xlabel("training compute (TFLOPs, MLM stage and generator included)")
    by_compute.set_ylabel("held-out AUC, replaced vs original")
    by_generator.set_xlabel("the generator's held-out MLM accuracy (%)")
    by_compute.legend(fontsize=7)
    figure.tight_layout()
    save_figure(figure, out_dir / "auc_curves.svg")


# %% [markdown]
# ## Run it
#
# From a shell, `labnotes experiment electra` trains the seven arms (the stored run took 55
# minutes on one thread of a 2-core CPU shared with another experiment; about 35 with both cores
# to itself, measured earlier) and writes `docs/results/electra/`; `labnotes experiment electra
# --redraw` redraws the tables and the figure from the stored `results.json`. `--preset gpu`
# trains the same arms larger, for one GPU
# ([how](experiments.common.md#presets-the-same-arms-larger)). In the notebook this cell runs
# the arms into `runs/experiment-electra/` and prints the tables. The AUC
# experiment has a command of its own: `python scripts/electra_auc.py` trains its four arms and
# writes `docs/results/electra-auc/` (`--redraw` redraws them).

# %%
if __name__ == "__main__":
    import sys

    run_in_notebook(sys.modules[__name__], "electra")

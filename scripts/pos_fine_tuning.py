"""How much fine-tuning part of speech needs: the Chinese WWM experiment's encoders fine-tuned on
the part-of-speech task for 2, 6 and 20 passes over its training split, beside random-init
encoders and the most frequent tag of each character.

    labnotes experiment chinese_wwm --jobs 2      # first: trains the encoders this reads
    python scripts/pos_fine_tuning.py --jobs 2    # fine-tune, store docs/results/chinese_wwm_pos/
    python scripts/pos_fine_tuning.py --redraw    # draw again from the stored results.json

The experiment fine-tunes for 2 passes (about a hundred steps on this task), where every
pretrained encoder lands below a random one; this asks whether that is the encoders or the
budget. One fine-tuning seed per encoder; both pretraining seeds of every arm.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from labnotes.chinese_wwm import ChineseWWMTask, fine_tuning_settings, labelled_tasks
from labnotes.downstream import seeded, token_fine_tune
from labnotes.experiments import chinese_wwm as experiment
from labnotes.experiments.common import (in_processes, markdown_table, pyplot, save_figure,
                                         script_main, slug, write_table)
from labnotes.training import load_checkpoint, pick_device
from labnotes.transformer import Encoder

OUT = Path("docs/results/chinese_wwm_pos")
COMMAND = "python scripts/pos_fine_tuning.py --jobs 2"
RUNS = Path("runs/experiment-chinese_wwm/full")  # where `labnotes experiment chinese_wwm` trains
EPOCHS = (2, 6, 20)
ENCODERS = [*experiment.ARMS, experiment.RANDOM_INIT]


def folder_of(name: str, seed: int) -> Path:
    return RUNS / slug(f"{name} seed {seed}") / "checkpoints"


def score(item: tuple[str, int]) -> dict[str, Any]:
    """One encoder (an arm's pretraining seed, or a random one) fine-tuned at every budget."""
    name, seed = item
    masking = experiment.ARMS.get(name, "character")
    config = experiment.arm_config(masking, seed, quick=False, progress=False)
    task = ChineseWWMTask(config)
    if name == experiment.RANDOM_INIT:
        with seeded(seed):
            encoder = Encoder(task.model.encoder.config)
    else:
        checkpoint = max(folder_of(name, seed).glob("step-*"))
        load_checkpoint(checkpoint, task=task, model=task.model, optimizer=None, config=None)
        encoder = task.model.encoder
    settings = experiment.labelled_settings(quick=False)
    pos = labelled_tasks(task.tokenizer, config.corpus, settings,
                         encoder.config.max_len)["part of speech"]
    device = pick_device(config.train.device)
    budgets = {str(epochs): token_fine_tune(encoder, pos, 1, fine_tuning_settings(
        settings, len(pos.train), epochs), device) for epochs in EPOCHS}
    return {"budgets": budgets,
            "lookup": experiment.tag_lookup(pos, budgets[str(EPOCHS[0])]["groups"]),
            "steps": {str(e): fine_tuning_settings(settings, len(pos.train), e).steps
                      for e in EPOCHS}}


def run_experiment(work_dir: Path, *, quick: bool = False, progress: bool = True,
                   jobs: int = 1) -> dict[str, Any]:
    missing = [name for name in experiment.ARMS for seed in experiment.SEEDS
               if not list(folder_of(name, seed).glob("step-*"))]
    if missing:
        raise SystemExit(f"no trained encoders under {RUNS} ({', '.join(missing)}); run "
                         "`labnotes experiment chinese_wwm` first")
    items = [(name, seed) for name in ENCODERS for seed in experiment.SEEDS]
    done = dict(zip(items, in_processes(score, items, jobs=jobs)))
    first = done[(experiment.RANDOM_INIT, experiment.SEEDS[0])]
    return {"epochs": list(EPOCHS), "steps": first["steps"],
            "lookup": experiment.labelled([{"lookup": first["lookup"]}])["lookup"],
            "encoders": {name: experiment.labelled(
                [done[(name, seed)]["budgets"] for seed in experiment.SEEDS])
                for name in ENCODERS},
            "seeds": len(experiment.SEEDS)}


def draw(results: dict[str, Any], out_dir: Path) -> None:
    encoders, budgets = results["encoders"], [str(e) for e in results["epochs"]]
    random_init = encoders[experiment.RANDOM_INIT]
    header = ["encoder", *(f"{e} passes ({results['steps'][e]} steps)" for e in budgets),
              *(f"{e} passes − random init" for e in budgets)]
    rows = [["most frequent tag of each character", *[experiment.accuracy(results["lookup"])]
             * len(budgets), *["—"] * len(budgets)]]
    order = [experiment.RANDOM_INIT, *experiment.ARMS]  # results.json stores keys sorted
    for name in order:
        scores = encoders[name]
        rows.append([name, *(experiment.accuracy(scores[e]) for e in budgets),
                     *("—" if name == experiment.RANDOM_INIT else
                       experiment.accuracy(scores[e], random_init[e]) for e in budgets)])
    write_table(out_dir / "table.md", markdown_table(header, rows) + (
        f"\nPart of speech, fine-tuned accuracy in % (one fine-tuning seed per encoder, "
        f"{results['seeds']} pretraining seeds per arm), with 95% intervals from resampling "
        f"test sentences; the difference columns are paired on the same sentences.\n"))
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4))
    for name in order:
        scores = encoders[name]
        means = [100 * sum(scores[e]["runs"]) / len(scores[e]["runs"]) for e in budgets]
        axis.plot(results["epochs"], means, marker="o", label=name)
    lookup = results["lookup"]["runs"][0]
    axis.axhline(100 * lookup, color="gray", linestyle="--",
                 label="most frequent tag of each character")
    axis.set_xscale("log")
    axis.set_xticks(results["epochs"], [str(e) for e in results["epochs"]])
    axis.set_xlabel("fine-tuning passes over the training split")
    axis.set_ylabel("part of speech, test accuracy (%)")
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    save_figure(figure, out_dir / "budget.svg")


def main() -> int:
    return script_main(sys.modules[__name__], out=OUT, command=COMMAND,
                       work_dir="runs/pos-fine-tuning")

if __name__ == "__main__":
    sys.exit(main())

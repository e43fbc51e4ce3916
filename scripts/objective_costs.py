"""The cost of one training step under each objective, for the map page (docs/map.md).

    python scripts/objective_costs.py            # count, store docs/results/map/, draw
    python scripts/objective_costs.py --redraw   # draw again from the stored results.json

For every paper the command line knows, build its task with the page's default configuration,
count the FLOPs of one real training step (forward and backward) with PyTorch's FLOP counter
(`flops_per_step` on the experiments' common page), and divide by the tokens the encoder reads in
that batch. Nothing is trained.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch

from labnotes.experiments.common import (flops_per_step, markdown_table, pyplot, save_figure,
                                         script_main, write_table)
from labnotes.registry import PAPERS
from labnotes.training import count_tokens, step_generator

OUT = Path("docs/results/map")
COMMAND = "python scripts/objective_costs.py"


def run_experiment(work_dir: Path, *, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    rows = {}
    for name, paper in PAPERS.items():
        started = time.perf_counter()
        config = paper.default_config()
        task = paper.build_task(config)
        batch = task.make_batch(0, step_generator(12345, 0))
        flops = flops_per_step(task)
        tokens = count_tokens(batch)
        rows[name] = {"title": paper.title, "flops_per_step": flops, "tokens_per_step": tokens,
                      "flops_per_token": flops / tokens,
                      "parameters": sum(p.numel() for p in task.model.parameters()),
                      "seconds_to_count": time.perf_counter() - started}
        if progress:
            print(f"{name}: {flops / tokens / 1e6:.2f} MFLOPs per token", file=sys.stderr)
    return {"torch": torch.__version__, "rows": rows}


def draw(results: dict[str, Any], out_dir: Path) -> None:
    rows = results["rows"]
    names = sorted(rows, key=lambda name: rows[name]["flops_per_token"])
    base = rows["mlm"]["flops_per_token"]
    table = markdown_table(
        ["objective (page)", "parameters", "tokens in a step", "GFLOPs per step",
         "MFLOPs per token", "× MLM"],
        [[f"[{rows[n]['title']}]({n}.md)", f"{rows[n]['parameters']:,}",
          f"{rows[n]['tokens_per_step']:,}", f"{rows[n]['flops_per_step'] / 1e9:.2f}",
          f"{rows[n]['flops_per_token'] / 1e6:.2f}", f"{rows[n]['flops_per_token'] / base:.2f}"]
         for n in names])
    write_table(out_dir / "table.md",
                "**Cost of one training step** (each page's default configuration; forward and "
                "backward, counted by `torch.utils.flop_counter`; per token the encoder reads)\n\n"
                + table)
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    axis.barh(range(len(names)), [rows[n]["flops_per_token"] / base for n in names],
              color="#3f51b5")
    axis.set_yticks(range(len(names)), names)
    axis.axvline(1.0, color="grey", linewidth=0.8, linestyle="--")
    axis.set_xlabel("training FLOPs per input token, relative to MLM")
    figure.tight_layout()
    save_figure(figure, out_dir / "costs.svg")


def main() -> int:
    return script_main(sys.modules[__name__], out=OUT, command=COMMAND, work_dir="runs/objective-costs")


if __name__ == "__main__":
    sys.exit(main())

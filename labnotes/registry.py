"""The papers the command line knows, and how to rebuild a trained run from its folder.

Not a page: this is the command line's table of contents. Paper pages and shared pages never
import it; it names their modules by string and imports one only when a command needs it, so
`labnotes list` reads no paper and no paper depends on this list.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from labnotes.training import CheckpointError, Task, latest_checkpoint, load_checkpoint


@dataclass(frozen=True)
class Paper:
    """One objective: its page (`module`), the names of its configuration and task there, and
    the page of its experiment (`labnotes experiment NAME`)."""

    name: str
    title: str
    arxiv: str
    module: str
    config: str
    task: str
    experiment: str | None = None

    def page(self) -> ModuleType:
        return importlib.import_module(self.module)

    def default_config(self) -> Any:
        return getattr(self.page(), self.config)()

    def build_task(self, config: Any, from_checkpoint: Path | None = None) -> Task:
        """The page's task for `config`. `from_checkpoint`: the run folder whose checkpoint will
        replace the weights (a reload, a resume); a task that takes it skips the work that only
        makes starting weights (ELECTRA's warm start, SimCSE's MLM start)."""
        kind = getattr(self.page(), self.task)
        if from_checkpoint is not None and "from_checkpoint" in inspect.signature(kind).parameters:
            return kind(config, from_checkpoint=Path(from_checkpoint))
        return kind(config)

    def experiment_page(self) -> ModuleType | None:
        return importlib.import_module(self.experiment) if self.experiment else None


PAPERS = {paper.name: paper for paper in [
    Paper("mlm", "BERT masked language model", "1810.04805",
          "labnotes.mlm", "MLMConfig", "MLMTask", "labnotes.experiments.mlm"),
    Paper("nsp", "BERT next sentence prediction", "1810.04805",
          "labnotes.nsp", "PairConfig", "NSPTask", "labnotes.experiments.nsp"),
    Paper("sop", "ALBERT sentence order prediction", "1909.11942",
          "labnotes.sop", "PairConfig", "SOPTask", "labnotes.experiments.sop"),
    Paper("spanbert", "SpanBERT span masking and span boundary objective", "1907.10529",
          "labnotes.spanbert", "SpanBERTConfig", "SpanBERTTask", "labnotes.experiments.spanbert"),
    Paper("electra", "ELECTRA replaced token detection", "2003.10555",
          "labnotes.electra", "ElectraConfig", "ElectraTask", "labnotes.experiments.electra"),
    Paper("xlnet", "XLNet permutation language model", "1906.08237",
          "labnotes.xlnet", "XLNetConfig", "XLNetTask", "labnotes.experiments.xlnet"),
    Paper("bart", "BART denoising sequence-to-sequence model", "1910.13461",
          "labnotes.bart", "BARTConfig", "BARTTask", "labnotes.experiments.bart"),
    Paper("dim", "InfoWord: Deep InfoMax for text (MLM + n-gram DIM)", "1910.08350",
          "labnotes.dim", "InfoWordConfig", "InfoWordTask", "labnotes.experiments.dim"),
    Paper("contrastive", "SimCSE contrastive sentence embeddings", "2104.08821",
          "labnotes.contrastive", "ContrastiveConfig", "ContrastiveTask",
          "labnotes.experiments.contrastive"),
    Paper("chinese_wwm", "Chinese BERT whole-word masking", "1906.08101",
          "labnotes.chinese_wwm", "ChineseWWMConfig", "ChineseWWMTask",
          "labnotes.experiments.chinese_wwm"),
]}


# Experiments that are not one paper's: they read several pages (`labnotes experiment NAME`).
STUDIES = {"compare": ("every encoder objective at equal training compute",
                       "labnotes.experiments.compare")}


def experiment_page(name: str) -> ModuleType | None:
    """The experiment page `labnotes experiment NAME` runs: a paper's, or a study's."""
    if name in STUDIES:
        return importlib.import_module(STUDIES[name][1])
    return PAPERS[name].experiment_page()


def config_from_dict(kind: type, values: dict[str, Any]) -> Any:
    """Rebuild a (nested) configuration dataclass from its JSON form."""
    hints = typing.get_type_hints(kind)
    kwargs = {}
    for item in dataclasses.fields(kind):
        if item.name in values:
            hint = hints[item.name]
            value = values[item.name]
            if dataclasses.is_dataclass(hint):
                value = config_from_dict(hint, value)
            kwargs[item.name] = value
    return kind(**kwargs)


def load_run(folder: Path | str, *, paper: str | None = None) -> tuple[Paper, Any, Task]:
    """Rebuild the task of a `labnotes train` run folder and load its last checkpoint.

    Returns (paper, config, task); `task.model` holds the trained weights, and every paper's
    model exposes `.encoder`, the network kept after pretraining.
    """
    folder = Path(folder)
    try:
        saved = json.loads((folder / "config.json").read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{folder} is not a labnotes run folder ({error}); pass the --out "
                              "folder of a `labnotes train` run") from None
    if saved.get("paper") not in PAPERS or (paper is not None and saved["paper"] != paper):
        raise CheckpointError(f"{folder} holds a {saved.get('paper')!r} run"
                              + (f", not {paper!r}" if paper else "")
                              + f"; known papers: {', '.join(PAPERS)}")
    found = PAPERS[saved["paper"]]
    settings = {**saved["settings"], "train": saved["train"]}
    config = config_from_dict(type(found.default_config()), settings)
    task = found.build_task(config, from_checkpoint=folder)
    checkpoint = latest_checkpoint(folder)
    if checkpoint is None:
        raise CheckpointError(f"{folder} has no checkpoint yet; let `labnotes train` finish or "
                              "resume it")
    load_checkpoint(checkpoint, task=task, model=task.model, optimizer=None, config=None)
    return found, config, task

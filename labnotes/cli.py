"""The `labnotes` command line: list | train | experiment | eval | generate | bench."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import labnotes
from labnotes.registry import PAPERS, Paper, load_run
from labnotes.training import CheckpointError, TrainingStopped, check_out_dir

EXIT_USAGE = 2
EXIT_ERROR = 1


# Settings from the command line.
# A paper's configuration is a dataclass that may hold other dataclasses (the encoder, the
# training loop, the corpus). `--set key=value` reaches any field by its dotted path
# (`--set model.dim=256`) or, when the name is unambiguous, by the name alone (`--set dim=256`).
# The value is parsed by the field's declared type, and an unknown key is an error that lists
# the keys there are.

class SettingError(ValueError):
    pass


def field_paths(config: Any, prefix: str = "") -> dict[str, tuple[Any, dataclasses.Field, Any]]:
    """Every settable leaf field: dotted path -> (owning dataclass, field, declared type)."""
    paths: dict[str, tuple[Any, dataclasses.Field, Any]] = {}
    hints = typing.get_type_hints(type(config))
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if dataclasses.is_dataclass(value):
            paths.update(field_paths(value, f"{prefix}{item.name}."))
        else:
            paths[f"{prefix}{item.name}"] = (config, item, hints[item.name])
    return paths


def parse_value(text: str, kind: Any, key: str) -> Any:
    union = typing.get_origin(kind) in (typing.Union, types.UnionType)
    options = typing.get_args(kind) if union else (kind,)
    if type(None) in options and text.lower() in ("none", "null", ""):
        return None
    base = next(option for option in options if option is not type(None))
    try:
        if base is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if base in (int, float, str):
            return base(text)
    except ValueError:
        raise SettingError(f"--set {key}={text}: expected a value of type "
                           f"{base.__name__}") from None
    raise SettingError(f"--set {key}: cannot be set from the command line")


# Integer settings are counts and sizes: at least 1, except these, which may be 0.
MAY_BE_ZERO = {"seed", "data_seed", "warmup_steps", "keep_checkpoints", "num_segments",
               "warm_start_steps"}


def check_count(key: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        return
    lowest = 0 if name in MAY_BE_ZERO else 1
    if value < lowest:
        flag = {"steps": "--steps", "batch_size": "--batch-size", "seq_len": "--seq-len",
                "seed": "--seed"}
        shown = f"{flag[name]} {value}" if name in flag and key == name else f"--set {key}={value}"
        raise SettingError(f"{shown}: {name} must be at least {lowest}")


def apply_settings(config: Any, assignments: Sequence[str]) -> Any:
    paths = field_paths(config)
    for assignment in assignments:
        key, separator, text = assignment.partition("=")
        if not separator:
            raise SettingError(f"--set {assignment!r}: write it as key=value")
        matches = [path for path in paths if path == key or path.split(".")[-1] == key]
        exact = [path for path in matches if path == key]
        if exact:
            matches = exact
        if not matches:
            raise SettingError(f"--set {key}: unknown setting; "
                               f"valid keys: {', '.join(sorted(paths))}")
        if len(matches) > 1:
            raise SettingError(f"--set {key}: ambiguous; write one of {', '.join(matches)}")
        owner, item, kind = paths[matches[0]]
        value = parse_value(text, kind, key)
        check_count(key, item.name, value)
        setattr(owner, item.name, value)
        if hasattr(owner, "__post_init__"):
            try:
                owner.__post_init__()
            except ValueError as error:
                raise SettingError(f"--set {key}={text}: {error}") from None
    return config


def process_counts(text: str) -> list[int]:
    """An argparse type: process counts such as `1,2`."""
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write counts such as 1,2") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every count must be at least 1")
    return counts


def whole_number(lowest: int):
    """An argparse type: a whole number of at least `lowest`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"{value} must be at least {lowest}")
        return value
    return parse


def papers() -> dict[str, Paper]:
    return PAPERS


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error also lists the valid choices and options."""

    def error(self, message: str) -> NoReturn:
        options = sorted(option for action in self._actions for option in action.option_strings
                         if option.startswith("--"))
        hint = f"\nvalid options: {', '.join(options)}" if options else ""
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}{hint}\n")


def build_parser() -> Parser:
    parser = Parser(prog="labnotes", description=labnotes.__doc__)
    parser.add_argument("--version", action="version", version=f"labnotes {labnotes.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    commands.add_parser("list", help="list the papers")

    train = commands.add_parser("train", help="train one paper's model")
    train.add_argument("paper")
    add_run_options(train)
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last checkpoint")
    train.add_argument("--overwrite", action="store_true",
                       help="discard the run in --out and start afresh")

    experiment = commands.add_parser("experiment",
                                     help="run a paper's experiment (or compare: all of them) and "
                                          "store its results")
    experiment.add_argument("paper")
    experiment.add_argument("--out", type=Path,
                            help="where to write (default docs/results/<paper>; with --quick "
                                 "runs/experiment-<paper>/quick-results, with --preset P other "
                                 "than cpu runs/experiment-<paper>/P-results)")
    experiment.add_argument("--quick", action="store_true",
                            help="a few steps only, to check it runs")
    experiment.add_argument("--redraw", action="store_true",
                            help="redraw the tables and figures from the stored results.json, "
                                 "without training")
    experiment.add_argument("--preset",
                            help="a named size of the experiment, e.g. gpu (each experiment page "
                                 "lists its presets; default: the size the site's results used)")
    experiment.add_argument("--jobs", type=int, default=1,
                            help="train independent runs in this many processes of one thread "
                                 "each (experiments that can; default 1)")
    experiment.add_argument("--no-progress", action="store_true")

    evaluate = commands.add_parser("eval", help="evaluate a trained run on its validation split")
    evaluate.add_argument("paper", help="the run's paper, or `downstream` for the downstream "
                                        "suite on any run")
    evaluate.add_argument("--checkpoint", type=Path, required=True,
                          help="a run folder written by `labnotes train`")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--probe", action="store_true",
                          help="downstream: a frozen-feature probe, not fine-tuning")

    generate = commands.add_parser("generate",
                                   help="let a trained sequence-to-sequence run (bart) write back "
                                        "a text with [MASK] or <mask> in it")
    generate.add_argument("text")
    generate.add_argument("--checkpoint", type=Path, required=True,
                          help="a run folder written by `labnotes train bart`")
    generate.add_argument("--beam", type=whole_number(1), default=4, help="beam size (1: greedy)")
    generate.add_argument("--max-tokens", type=whole_number(1), default=64,
                          help="the longest text it may write, in tokens")
    generate.add_argument("--device", default="auto")

    translations = commands.add_parser(
        "translations",
        help="what the site's translation lacks; start or stamp a page's translation")
    translations.add_argument(
        "action", nargs="?", default="status", choices=("status", "skeleton", "stamp"),
        help="status (default): list missing and stale blocks, exit 1 if any; skeleton PAGE: "
             "print the page's translation file with every missing block as English under a "
             "TODO marker (--write: into the file); stamp PAGE KEY: record that block KEY "
             "matches the current English")
    translations.add_argument("page", nargs="?",
                              help="a page's file on the site, e.g. mlm.md or index.md")
    translations.add_argument("key", nargs="?",
                              help="a block: title, top, or a section's anchor")
    translations.add_argument("--lang", default="zh", help="the language (default zh)")
    translations.add_argument("--write", action="store_true", help="skeleton: write the file")
    translations.add_argument("--root", type=Path, default=Path("."),
                              help="the repository (default .)")

    bench = commands.add_parser("bench",
                                help="training throughput against a Hugging Face reference")
    bench.add_argument("paper")
    bench.add_argument("--steps", type=whole_number(1), default=5, help="timed steps per round")
    bench.add_argument("--rounds", type=whole_number(1), default=9,
                       help="interleaved rounds of both models")
    bench.add_argument("--device", default="auto")
    bench.add_argument("--threads", type=whole_number(0), default=0,
                       help="CPU threads (0: torch's default; with --processes: 1 per process)")
    bench.add_argument("--processes", type=process_counts,
                       help="instead of the Hugging Face comparison: the training step on each "
                            "of these numbers of processes (DDP), e.g. 1,2")
    bench.add_argument("--peak-tflops", type=float,
                       help="the device's peak, for MFU where it is not known (CPUs)")
    parser.subcommands = dict(commands.choices)  # an unknown option is reported by its command
    return parser


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="a .txt file, a folder of .txt files, or a download name")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--seq-len", type=int)
    parser.add_argument("--out", type=Path, help="run folder (default runs/<paper>)")
    parser.add_argument("--device", help="auto (default), cpu, cuda, mps")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any configuration field, e.g. --set model.dim=256 (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def pick_paper(parser: Parser, name: str) -> Paper:
    known = papers()
    if name not in known:
        parser.exit(EXIT_USAGE, f"labnotes: error: unknown paper {name!r}; "
                                f"valid papers: {', '.join(known)}\n")
    return known[name]


def experiment_options(parser: Parser, experiment: Any, name: str,
                       args: argparse.Namespace) -> dict[str, Any]:
    """--preset and --jobs, checked against what the experiment page offers: `PRESETS` (name ->
    what it runs) and a `jobs` parameter of its `run_experiment`."""
    options: dict[str, Any] = {}
    if args.preset is not None:
        presets = getattr(experiment, "PRESETS", {})
        if args.preset not in presets:
            offered = ", ".join(presets) or "none"
            parser.exit(EXIT_USAGE, f"labnotes: error: experiment {name} has no preset "
                                    f"{args.preset!r}; its presets: {offered}\n")
        options["preset"] = args.preset
    if args.jobs < 1:
        parser.exit(EXIT_USAGE, f"labnotes: error: --jobs must be at least 1 (got {args.jobs})\n")
    if args.jobs > 1:
        if "jobs" not in inspect.signature(experiment.run_experiment).parameters:
            parser.exit(EXIT_USAGE, f"labnotes: error: experiment {name} trains its runs one "
                                    "after another; leave out --jobs\n")
        options["jobs"] = args.jobs
    return options


def configure(paper: Paper, args: argparse.Namespace) -> Any:
    config = paper.default_config()
    flags = {"data": args.data, "steps": args.steps, "batch_size": args.batch_size,
             "seq_len": args.seq_len, "device": args.device, "seed": args.seed}
    assignments = [f"{key}={value}" for key, value in flags.items() if value is not None]
    if args.no_progress:
        assignments.append("progress=false")
    return apply_settings(config, [*assignments, *args.set])


def first_process() -> bool:
    """True unless torchrun started this as one of several processes, other than rank 0."""
    return os.environ.get("RANK", "0") == "0"


def command_train(parser: Parser, args: argparse.Namespace) -> int:
    from labnotes.training import train

    paper = pick_paper(parser, args.paper)
    if args.resume and args.overwrite:
        parser.subcommands["train"].error("--resume continues a run and --overwrite discards it: "
                                          "choose one")
    config = configure(paper, args)
    out = args.out or Path("runs") / paper.name
    check_out_dir(out, args.resume, args.overwrite)  # before the corpus and model are built
    task = paper.build_task(config, from_checkpoint=out if args.resume else None)
    summary = train(task, config.train, out, resume=args.resume, overwrite=args.overwrite)
    if not first_process():  # under torchrun: rank 0 reports for all
        return 0
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}/summary.json, {out}/metrics.jsonl, {out}/model.safetensors "
          f"and {out}/checkpoints/")
    return 0


def command_experiment(parser: Parser, args: argparse.Namespace) -> int:
    from labnotes.experiments.common import redraw, run
    from labnotes.registry import STUDIES, experiment_page

    name = args.paper
    if name not in STUDIES and name not in papers():
        parser.exit(EXIT_USAGE, f"labnotes: error: unknown paper {name!r}; valid experiments: "
                                f"{', '.join([*papers(), *STUDIES])}\n")
    experiment = experiment_page(name)
    if experiment is None:
        parser.exit(EXIT_USAGE, f"labnotes: error: {name} has no experiment yet\n")
    options = experiment_options(parser, experiment, name, args)
    # the stored evidence is docs/results/<name>, made at the cpu preset; a quick check or a
    # larger preset never lands there by default
    preset = options.get("preset", "cpu")
    out = args.out or Path("docs") / "results" / name
    if args.out is None and (args.quick or preset != "cpu"):
        out = Path("runs") / f"experiment-{name}" / f"{'quick' if args.quick else preset}-results"
    if args.redraw:
        redraw(experiment, out)
        print(f"redrew {out}/ from {out}/results.json")
        return 0
    command = " ".join(["labnotes experiment", name, *(["--quick"] if args.quick else []),
                        *(f"--{key} {value}" for key, value in options.items())])
    run(experiment, out, command=command, quick=args.quick, progress=not args.no_progress,
        **options)
    print(f"wrote {out}/")
    return 0


def command_eval(parser: Parser, args: argparse.Namespace) -> int:
    from labnotes.training import pick_device, pick_precision, run_evaluation

    if args.paper == "downstream":  # the suite of labnotes/downstream.py, on any paper's run folder
        from labnotes.downstream import DownstreamConfig, evaluate_pretrained

        found, run_config, task = load_run(args.checkpoint)
        config = DownstreamConfig(mode="probe" if args.probe else "finetune")
        device = pick_device(args.device)
        scores = evaluate_pretrained(task.model.encoder, run_config.corpus, config, device)
        print(json.dumps({"run": str(args.checkpoint), "paper": found.name, **scores}, indent=2))
        return 0
    paper = pick_paper(parser, args.paper)
    _, _, task = load_run(args.checkpoint, paper=paper.name)
    device = pick_device(args.device)
    task.model.to(device)
    print(json.dumps(run_evaluation(task, task.model, device, pick_precision(device)), indent=2))
    return 0


def command_generate(parser: Parser, args: argparse.Namespace) -> int:
    from labnotes.training import pick_device

    found, _, task = load_run(args.checkpoint)
    reconstruct = getattr(found.page(), "reconstruct", None)
    if reconstruct is None:
        raise CheckpointError(f"{args.checkpoint} holds a {found.name} run, which cannot write "
                              "text; `labnotes generate` needs a sequence-to-sequence run such "
                              "as `labnotes train bart`")
    task.model.to(pick_device(args.device))
    print(reconstruct(task.model, task.tokenizer, args.text, beam_size=args.beam,
                      max_new_tokens=args.max_tokens))
    return 0


def command_bench(parser: Parser, args: argparse.Namespace) -> int:
    from labnotes.bench import describe, run_benchmark

    pick_paper(parser, args.paper)
    if args.processes:
        from labnotes.bench import describe_scaling, run_scaling

        result = run_scaling(args.paper, processes=args.processes, steps=args.steps,
                             rounds=args.rounds, device=args.device,
                             threads=args.threads or 1, peak_tflops=args.peak_tflops)
        print(json.dumps(result, indent=2))
        print(describe_scaling(result), file=sys.stderr)
        return 0
    result = run_benchmark(args.paper, steps=args.steps, rounds=args.rounds, device=args.device,
                           threads=args.threads)
    print(json.dumps(result, indent=2))  # stdout: for scripts
    print(describe(result), file=sys.stderr)  # stderr: for the person at the terminal
    return 0


def command_translations(parser: Parser, args: argparse.Namespace) -> int:
    from labnotes.site import i18n

    root = args.root.resolve()
    if not (root / "labnotes").is_dir() or not (root / "docs").is_dir():
        raise ValueError(f"{root} is not a labnotes repository (no labnotes/ and docs/): "
                         "run this in the repository or pass --root")
    if args.lang not in i18n.LANGUAGES:
        raise ValueError(f"no language {args.lang!r}: the site has {', '.join(i18n.LANGUAGES)}")
    sources = i18n.english_sources(root / "labnotes", root / "docs")
    if args.action == "status":
        problems = i18n.check(root, args.lang, sources)
        problems += i18n.table_problems(root, args.lang, root / "docs" / "results")
        if args.page:
            name = i18n.find_source(sources, args.page).name
            problems = [problem for problem in problems if problem.page == name]
        for problem in problems:
            print(problem)
        blocks = sum(len(source.blocks) for source in sources)
        print(f"{len(problems)} problems; {blocks} blocks on {len(sources)} pages", file=sys.stderr)
        return 1 if problems else 0
    if not args.page:
        parser.subcommands["translations"].error(f"{args.action} needs a PAGE")
    source = i18n.find_source(sources, args.page)
    path = i18n.translations_dir(root, args.lang) / source.name
    if args.action == "skeleton":
        translation = i18n.read_translation(path) if path.is_file() else None
        text = i18n.skeleton(source, translation)
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0
    if not args.key or source.block(args.key) is None:
        keys = ", ".join(block.key for block in source.blocks)
        parser.subcommands["translations"].error(
            f"stamp needs a KEY of {source.name}: one of {keys}")
    i18n.stamp(path, args.key, source.block(args.key).hash)
    print(f"{path}: {args.key} stamped", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    from labnotes.data import CorpusError

    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.subcommands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        if args.command == "list":
            from labnotes.registry import STUDIES
            for paper in papers().values():
                print(f"{paper.name:<12} {paper.title}  (arXiv:{paper.arxiv})")
            for name, (title, _) in STUDIES.items():
                print(f"{name:<12} {title}  (labnotes experiment {name})")
            return 0
        handler = {"train": command_train, "experiment": command_experiment, "eval": command_eval,
                   "generate": command_generate, "bench": command_bench,
                   "translations": command_translations}[args.command]
        return handler(parser, args)
    except TrainingStopped as stopped:  # SIGTERM or Ctrl-C: checkpoint written; 143 or 130
        if first_process():
            print(f"labnotes: {stopped}", file=sys.stderr)
        return stopped.exit_code
    except SettingError as error:
        print(f"labnotes: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (CheckpointError, CorpusError, ValueError, OSError) as error:
        print(f"labnotes: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("labnotes: interrupted; resume with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

"""The `labnotes` command line: list | train | experiment | eval | bench."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import labnotes
from labnotes.training import CheckpointError, Paper, SettingError, apply_settings, find_papers, write_atomic

EXIT_USAGE = 2
EXIT_ERROR = 1


def papers() -> dict[str, Paper]:
    return find_papers()


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error also lists the valid choices and options."""

    def error(self, message: str) -> NoReturn:
        options = sorted(o for action in self._actions for o in action.option_strings if o.startswith("--"))
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
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")

    experiment = commands.add_parser("experiment", help="run a paper's experiment and store its results")
    experiment.add_argument("paper")
    experiment.add_argument("--out", type=Path, help="where to write (default docs/results/<paper>)")
    experiment.add_argument("--quick", action="store_true", help="a few steps only, to check it runs")
    experiment.add_argument("--no-progress", action="store_true")

    evaluate = commands.add_parser("eval", help="evaluate a trained run on its validation split")
    evaluate.add_argument("paper", help="the run's paper, or `downstream` for the downstream suite on any run")
    evaluate.add_argument("--checkpoint", type=Path, required=True, help="a run folder written by `labnotes train`")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--probe", action="store_true", help="downstream: a frozen-feature probe, not fine-tuning")

    bench = commands.add_parser("bench", help="training throughput against a Hugging Face reference")
    bench.add_argument("paper")
    bench.add_argument("--steps", type=int, default=5, help="timed steps per round")
    bench.add_argument("--rounds", type=int, default=9, help="interleaved rounds of both models")
    bench.add_argument("--device", default="auto")
    bench.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.subcommands = dict(commands.choices)  # so that an unknown option is reported by its command
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
        parser.exit(EXIT_USAGE, f"labnotes: error: unknown paper {name!r}; valid papers: {', '.join(known)}\n")
    return known[name]


def configure(paper: Paper, args: argparse.Namespace) -> Any:
    config = paper.default_config()
    flags = {"data": args.data, "steps": args.steps, "batch_size": args.batch_size, "seq_len": args.seq_len,
             "device": args.device, "seed": args.seed}
    assignments = [f"{key}={value}" for key, value in flags.items() if value is not None]
    if args.no_progress:
        assignments.append("progress=false")
    return apply_settings(config, [*assignments, *args.set])


def command_train(parser: Parser, args: argparse.Namespace) -> int:
    from labnotes.training import train

    paper = pick_paper(parser, args.paper)
    config = configure(paper, args)
    out = args.out or Path("runs") / paper.name
    task = paper.build_task(config)
    summary = train(task, config.train, out, resume=args.resume)
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}/summary.json, {out}/metrics.jsonl, {out}/model.safetensors and {out}/checkpoints/")
    return 0


def command_experiment(parser: Parser, args: argparse.Namespace) -> int:
    paper = pick_paper(parser, args.paper)
    if paper.experiment is None:
        parser.exit(EXIT_USAGE, f"labnotes: error: {paper.name} has no experiment yet\n")
    out = args.out or Path("docs") / "results" / paper.name
    paper.experiment(out, quick=args.quick, progress=not args.no_progress)
    command = "labnotes experiment " + paper.name + (" --quick" if args.quick else "")
    write_atomic(out / "command.txt", lambda tmp: tmp.write_text(command + "\n"))
    print(f"wrote {out}/")
    return 0


def command_eval(parser: Parser, args: argparse.Namespace) -> int:
    from labnotes.training import load_run, pick_device, pick_precision, run_evaluation

    if args.paper == "downstream":  # the suite of labnotes/downstream.py, on any paper's run folder
        from labnotes.downstream import DownstreamConfig, evaluate_run

        config = DownstreamConfig(mode="probe" if args.probe else "finetune")
        print(json.dumps(evaluate_run(args.checkpoint, config, pick_device(args.device)), indent=2))
        return 0
    paper = pick_paper(parser, args.paper)
    _, _, task = load_run(args.checkpoint, paper=paper.name)
    device = pick_device(args.device)
    task.model.to(device)
    print(json.dumps(run_evaluation(task, task.model, device, pick_precision(device)), indent=2))
    return 0


def command_bench(parser: Parser, args: argparse.Namespace) -> int:
    from labnotes.bench import describe, run_benchmark

    pick_paper(parser, args.paper)
    result = run_benchmark(args.paper, steps=args.steps, rounds=args.rounds, device=args.device, threads=args.threads)
    print(json.dumps(result, indent=2))  # stdout: for scripts
    print(describe(result), file=sys.stderr)  # stderr: for the person at the terminal
    return 0


def main(argv: list[str] | None = None) -> int:
    from labnotes.data import CorpusError

    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.subcommands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        if args.command == "list":
            for paper in papers().values():
                print(f"{paper.name:<12} {paper.title}  (arXiv:{paper.arxiv})")
            return 0
        handler = {"train": command_train, "experiment": command_experiment, "eval": command_eval,
                   "bench": command_bench}[args.command]
        return handler(parser, args)
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

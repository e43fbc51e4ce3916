"""End to end through the command line: list, train, resume after kill -9, eval, errors."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from labnotes.cli import main
from labnotes.training import read_metrics

TINY = ["--set", "dim=32", "--set", "ffn_dim=64", "--set", "layers=1", "--set", "corpus.vocab_size=400",
        "--no-progress"]


def write_small_corpus(path: Path, documents: int = 120, seed: int = 0) -> Path:
    """English-like text from a small grammar: enough structure for a tiny MLM to learn."""
    rng = random.Random(seed)
    subjects = ["the cat", "a dog", "the old man", "my sister", "the teacher", "a small bird", "the farmer"]
    verbs = ["sees", "likes", "finds", "carries", "watches", "follows", "paints"]
    objects = ["the red ball", "a green apple", "the long river", "an old book", "the quiet house", "a tall tree"]
    places = ["in the morning", "near the school", "after dinner", "by the sea", "on the hill"]
    # how often: enough variety that held-out sentences are rarely seen in training (the data page
    # drops validation sentences that also occur in training)
    manners = ["", "often", "never", "always", "slowly", "quickly", "happily", "sometimes", "rarely",
               "gladly", "quietly", "usually"]
    docs = []
    for _ in range(documents):
        sentences = [" ".join(filter(None, [rng.choice(subjects), rng.choice(manners), rng.choice(verbs),
                                            rng.choice(objects), rng.choice(places)])) + "."
                     for _ in range(rng.randint(4, 9))]
        docs.append(" ".join(s.capitalize() for s in sentences))
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "labnotes", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "mlm" in out and "1810.04805" in out


def test_python_dash_m_works():
    result = run_cli("list")
    assert result.returncode == 0 and "mlm" in result.stdout


def test_unknown_paper_lists_the_valid_ones():
    result = run_cli("train", "gpt7")
    assert result.returncode == 2
    assert "unknown paper 'gpt7'" in result.stderr and "mlm" in result.stderr


def test_unknown_option_lists_the_valid_ones():
    result = run_cli("train", "mlm", "--stepz", "3")
    assert result.returncode == 2
    assert "--stepz" in result.stderr and "--steps" in result.stderr and "valid options" in result.stderr


def test_unknown_setting_exits_2(tmp_path, capsys):
    assert main(["train", "mlm", "--set", "widht=3", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "unknown setting" in err and "model.dim" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags, message", [
    (["--steps", "-3"], "--steps -3: steps must be at least 1"),
    (["--steps", "0"], "--steps 0: steps must be at least 1"),
    (["--batch-size", "0"], "--batch-size 0: batch_size must be at least 1"),
    (["--seq-len", "-1"], "--seq-len -1: seq_len must be at least 1"),
    (["--set", "eval_every=0"], "--set eval_every=0: eval_every must be at least 1"),
    (["--set", "model.layers=0"], "--set model.layers=0: layers must be at least 1"),
    (["--set", "eval_blocks=-5"], "--set eval_blocks=-5: eval_blocks must be at least 1"),
    (["--seed", "-1"], "--seed -1: seed must be at least 0"),
])
def test_counts_and_sizes_below_one_are_refused_and_nothing_is_written(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    assert main(["train", "mlm", *flags, "--out", str(out), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("flags", [["--steps", "0"], ["--rounds", "-2"]])
def test_bench_counts_below_one_are_refused(flags):
    result = run_cli("bench", "mlm", *flags)
    assert result.returncode == 2 and "must be at least 1" in result.stderr


def test_resume_without_a_checkpoint_says_so(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "mlm", "--resume", "--out", str(out), *TINY]) == 1
    assert "no checkpoint to resume from" in capsys.readouterr().err
    assert not (out / "summary.json").exists() and not (out / "checkpoints").exists()


def test_resume_and_overwrite_together_is_a_usage_error(tmp_path):
    result = run_cli("train", "mlm", "--resume", "--overwrite", "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "choose one" in result.stderr
    assert not (tmp_path / "run").exists()


def test_overwrite_starts_afresh_in_a_used_folder(tmp_path, capsys):
    data = write_small_corpus(tmp_path / "small.txt", documents=40)
    args = ["train", "mlm", "--data", str(data), "--steps", "6", "--batch-size", "8", "--seq-len", "32",
            "--out", str(tmp_path / "run"), *TINY]
    assert main(args) == 0
    assert main(args) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert [row["step"] for row in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in row][-1] == 6


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "mlm", "--data", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "nope.txt" in err
    assert not (tmp_path / "run").exists(), "nothing written for a run that could not start"


def test_empty_data_is_a_clear_error(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n")
    assert main(["train", "mlm", "--data", str(empty), "--out", str(tmp_path / "run")]) == 1
    assert "empty.txt" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_train_on_a_small_file_lowers_the_loss_and_beats_the_baselines(tmp_path):
    data = write_small_corpus(tmp_path / "small.txt")
    out = tmp_path / "run"
    code = main(["train", "mlm", "--data", str(data), "--steps", "400", "--batch-size", "32", "--seq-len", "32",
                 "--out", str(out), "--set", "eval_every=100", *TINY[:-1], "--set", "lr=5e-3", "--no-progress"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    evals = [row for row in read_metrics(out / "metrics.jsonl") if "eval_loss" in row]
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    assert summary["eval_loss"] < summary["baseline_entropy"] - 0.3
    assert summary["eval_accuracy"] > 1.5 * summary["baseline_accuracy"]
    for name in ("metrics.jsonl", "summary.json", "model.safetensors", "config.json"):
        assert (out / name).exists()


@pytest.mark.slow
def test_train_on_the_embedded_corpus_beats_the_baselines(tmp_path):
    out = tmp_path / "run"
    # 200 steps: the held-out loss is 0.18 nats under the unigram entropy (6.31 vs 6.49), the
    # accuracy 9.0% vs 5.9% on 1,913 targets (300 steps, 6.23 and 10.9%, added a minute for nothing)
    code = main(["train", "mlm", "--steps", "200", "--batch-size", "32", "--out", str(out), "--no-progress",
                 "--set", "eval_every=100", "--set", "eval_blocks=256", "--set", "lr=2e-3"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    evals = [row for row in read_metrics(out / "metrics.jsonl") if "eval_loss" in row]
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    assert summary["eval_loss"] < summary["baseline_entropy"]
    assert summary["eval_accuracy"] > summary["baseline_accuracy"]


def test_kill_9_then_resume_gives_bit_identical_weights(tmp_path):
    data = write_small_corpus(tmp_path / "small.txt", documents=60)
    common = ["train", "mlm", "--data", str(data), "--steps", "60", "--batch-size", "16", "--seq-len", "32",
              "--set", "checkpoint_every=5", "--set", "eval_every=30", "--device", "cpu", *TINY]
    reference = run_cli(*common, "--out", str(tmp_path / "whole"))
    assert reference.returncode == 0, reference.stderr

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "labnotes", *common, "--out", str(tmp_path / "killed")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    pointer = tmp_path / "killed" / "checkpoints" / "latest"
    deadline = time.time() + 120
    while time.time() < deadline:
        if pointer.exists() and pointer.read_text().strip() >= "step-0000020":
            break
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "killed" / "summary.json").exists(), "the run was killed before it finished"

    resumed = run_cli(*common, "--out", str(tmp_path / "killed"), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    whole = load_file(str(tmp_path / "whole" / "model.safetensors"))
    again = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert whole.keys() == again.keys()
    for key in whole:
        assert (whole[key] == again[key]).all(), key
    losses = lambda run: [r["loss"] for r in read_metrics(tmp_path / run / "metrics.jsonl") if "loss" in r]
    assert losses("whole") == losses("killed")


def test_resume_with_a_corrupted_checkpoint_fails_cleanly(tmp_path, capsys):
    data = write_small_corpus(tmp_path / "small.txt", documents=40)
    args = ["train", "mlm", "--data", str(data), "--steps", "10", "--batch-size", "8", "--seq-len", "32",
            "--out", str(tmp_path / "run"), *TINY]
    assert main(args) == 0
    latest = tmp_path / "run" / "checkpoints" / (tmp_path / "run" / "checkpoints" / "latest").read_text().strip()
    (latest / "model.safetensors").write_bytes(b"not a tensor file")
    assert main([*args[:-len(TINY)], "--steps", "20", *TINY, "--resume"]) == 1
    assert "corrupted" in capsys.readouterr().err


def test_eval_reads_a_run_folder(tmp_path, capsys):
    data = write_small_corpus(tmp_path / "small.txt", documents=40)
    out = tmp_path / "run"
    assert main(["train", "mlm", "--data", str(data), "--steps", "10", "--batch-size", "8", "--seq-len", "32",
                 "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    assert main(["eval", "mlm", "--checkpoint", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "summary.json").read_text())
    assert result["eval_loss"] == pytest.approx(saved["eval_loss"], rel=1e-6)
    assert main(["eval", "mlm", "--checkpoint", str(tmp_path)]) == 1


def test_overwrite_leaves_a_folder_that_holds_no_run_alone(tmp_path):
    from labnotes.training import prepare_out_dir

    (tmp_path / "config.json").write_text('{"mine": true}')
    (tmp_path / "metrics.jsonl").write_text("my own notes\n")
    prepare_out_dir(tmp_path, resume=False, overwrite=True)
    assert (tmp_path / "config.json").read_text() == '{"mine": true}'
    assert (tmp_path / "metrics.jsonl").exists()


@pytest.mark.parametrize("args, message", [
    (["bench", "mlm", "--threads", "-1"], "must be at least 0"),
    (["train", "mlm", "--device", "bogus"], "choose auto, cpu, cuda"),
    (["train", "mlm", "--set", "precision=fp8"], "choose auto, fp32, bf16 or fp16"),
    (["experiment", "gpt7"], "unknown paper 'gpt7'"),
])
def test_bad_values_are_usage_errors(args, message, tmp_path):
    result = run_cli(*args, "--out", str(tmp_path / "out")) if args[0] != "bench" else run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_experiment_redraw_draws_from_the_stored_results(tmp_path, capsys):
    import shutil

    stored = Path(__file__).resolve().parents[1] / "docs" / "results" / "mlm"
    shutil.copy(stored / "results.json", tmp_path / "results.json")
    assert main(["experiment", "mlm", "--redraw", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "table.md").read_bytes() == (stored / "table.md").read_bytes()
    assert main(["experiment", "mlm", "--redraw", "--out", str(tmp_path / "empty")]) == 1
    assert "run the experiment first" in capsys.readouterr().err


def test_a_quick_experiment_never_lands_in_docs_by_default(tmp_path, monkeypatch):
    from labnotes.cli import build_parser

    args = build_parser().parse_args(["experiment", "mlm", "--quick"])
    assert args.out is None  # the default is chosen in command_experiment: check it there
    import labnotes.cli as cli

    seen = {}
    monkeypatch.setattr("labnotes.experiments.common.run",
                        lambda experiment, out, **kwargs: seen.setdefault("out", out))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["experiment", "mlm", "--quick", "--no-progress"]) == 0
    assert Path(seen["out"]) == Path("runs/experiment-mlm/quick-results")


@pytest.mark.parametrize("args, message", [
    (["experiment", "mlm", "--preset", "nope"], "no preset 'nope'; its presets: cpu, gpu"),
    (["experiment", "mlm", "--jobs", "2"], "trains its runs one after another"),
])
def test_experiment_options_the_page_does_not_offer_are_usage_errors(args, message, tmp_path):
    result = run_cli(*args, "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_larger_preset_never_lands_in_docs_by_default(tmp_path, monkeypatch):
    import labnotes.cli as cli

    seen = {}
    monkeypatch.setattr("labnotes.experiments.common.run",
                        lambda experiment, out, **kwargs: seen.update(out=out, **kwargs))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["experiment", "mlm", "--preset", "gpu", "--no-progress"]) == 0
    assert Path(seen["out"]) == Path("runs/experiment-mlm/gpu-results")
    assert seen["preset"] == "gpu" and seen["command"] == "labnotes experiment mlm --preset gpu"
    assert cli.main(["experiment", "mlm", "--preset", "cpu", "--no-progress"]) == 0
    assert Path(seen["out"]) == Path("docs/results/mlm")

"""`labnotes bench`: training throughput of a labnotes model against a Hugging Face reference.

Both models are built with the same sizes, fed the same batches on the same device, in one
process, and timed in interleaved rounds (ours, theirs, ours, theirs, ...) so that a slow
moment of the machine hits both. The figure that matters is the ratio of tokens per second:
each round gives one ratio (its two timings are seconds apart), and we report their median,
which a burst of load from elsewhere on the machine moves far less than it moves either
model's own throughput. Both models run under the same process settings as `labnotes train`
(including `keep_freed_memory`; `LABNOTES_KEEP_MEMORY=0` measures without it).

`labnotes bench mlm --processes 1,2` measures something else: how the training step scales
over several processes with DistributedDataParallel (see `run_scaling`).
"""

from __future__ import annotations

import dataclasses
import gc
import statistics
import sys
import time
from typing import Any, Callable

import torch
from torch import nn

from labnotes.mlm import IGNORE, MaskedLanguageModel, MLMConfig, mask_tokens
from labnotes.training import keep_freed_memory, pick_device
from labnotes.transformer import EncoderConfig


def mlm_pair(config: EncoderConfig) -> tuple[nn.Module, nn.Module]:
    from transformers import BertConfig, BertForMaskedLM

    ours = MaskedLanguageModel(config)
    reference = BertForMaskedLM(BertConfig(
        vocab_size=config.vocab_size, hidden_size=config.dim, num_hidden_layers=config.layers,
        num_attention_heads=config.heads, intermediate_size=config.ffn_dim,
        max_position_embeddings=config.max_len, hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.dropout, type_vocab_size=1))
    return ours, reference


def time_steps(step: Callable[[], None], steps: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run_benchmark(paper: str = "mlm", *, steps: int = 5, rounds: int = 9, batch_size: int = 64,
                  seq_len: int = 64, device: str = "auto", threads: int = 0,
                  config: EncoderConfig | None = None) -> dict[str, Any]:
    if paper != "mlm":
        raise ValueError(f"no benchmark for {paper!r} yet; available: mlm")
    if threads:
        torch.set_num_threads(threads)
    target = pick_device(device)
    kept = keep_freed_memory()
    if config is None:  # the MLM page's default model, at the default sequence length and batch
        defaults = MLMConfig()
        config = dataclasses.replace(defaults.model, max_len=max(seq_len, defaults.model.max_len))
    torch.manual_seed(0)
    ours, reference = (model.to(target).train() for model in mlm_pair(config))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, config.vocab_size, (batch_size, seq_len), generator=generator)
    ids[:, 0], ids[:, -1] = 2, 3
    special = (ids == 2) | (ids == 3)
    inputs, labels = mask_tokens(ids, special, vocab_size=config.vocab_size, generator=generator)
    inputs, labels = inputs.to(target), labels.to(target)
    padding = torch.ones_like(inputs, dtype=torch.bool)
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-4) for name, model in
                  (("labnotes", ours), ("transformers", reference))}

    def step_ours() -> None:
        loss, _ = ours(inputs, labels, padding)
        loss.backward()
        optimizers["labnotes"].step()
        optimizers["labnotes"].zero_grad(set_to_none=True)

    def step_reference() -> None:
        loss = reference(input_ids=inputs, attention_mask=padding.long(), labels=labels).loss
        loss.backward()
        optimizers["transformers"].step()
        optimizers["transformers"].zero_grad(set_to_none=True)

    for warm in (step_ours, step_reference):  # first steps allocate and pick kernels
        time_steps(warm, 2, target)
    seconds: dict[str, list[float]] = {"labnotes": [], "transformers": []}
    for _ in range(rounds):
        seconds["labnotes"].append(time_steps(step_ours, steps, target))
        seconds["transformers"].append(time_steps(step_reference, steps, target))
    tokens = batch_size * seq_len * steps
    throughput = {name: tokens / statistics.median(times) for name, times in seconds.items()}
    ratios = [theirs / ours for ours, theirs in zip(seconds["labnotes"], seconds["transformers"])]
    assert (labels != IGNORE).any()
    return {
        "paper": paper, "device": str(target), "threads": torch.get_num_threads(),
        "config": {"layers": config.layers, "dim": config.dim, "heads": config.heads,
                   "ffn_dim": config.ffn_dim, "vocab_size": config.vocab_size,
                   "dropout": config.dropout, "batch_size": batch_size, "seq_len": seq_len},
        "tokens_per_s": {name: round(value, 1) for name, value in throughput.items()},
        "ratio": round(statistics.median(ratios), 2),
        "ratio_per_round": [round(r, 2) for r in ratios],
        "keep_freed_memory": kept,
    }


def describe(result: dict[str, Any]) -> str:
    """One line for a person: both throughputs, the ratio and how much it moved between rounds."""
    speed = result["tokens_per_s"]
    rounds = result["ratio_per_round"]
    return (f"{result['paper']} on {result['device']} ({result['threads']} threads): labnotes "
            f"{speed['labnotes']:,.0f} tokens/s, "
            f"transformers {speed['transformers']:,.0f} tokens/s: "
            f"{result['ratio']:.2f}x (median of {len(rounds)} rounds, "
            f"{min(rounds):.2f}-{max(rounds):.2f})")


# Scaling: the same training step on 1, 2, ... processes (DDP; gloo on the CPU, NCCL on GPUs).
# Each process count runs in its own freshly started processes, in blocks that alternate
# (1, 2, 1, 2, ...) so that a slow spell of a shared machine hits every count. A round's time
# is the slowest process's, as a step waits for all of them; the figure is tokens of the global
# batch per second at the median round. On a GPU (or with --peak-tflops) it is also given as
# model FLOPs utilisation: training FLOPs per second, counted by torch's FlopCounterMode on the
# step itself (with the formula for CPU attention the experiments' common page adds), over the
# device's peak (dense bfloat16/float16 tensor-core figures from the vendor's data sheets)
# times the number of processes.

PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 756.0,
               "A100": 312.0, "L4": 121.0, "RTX 4090": 165.0, "V100": 125.0, "T4": 65.0}


def device_peak_tflops(device: torch.device) -> float | None:
    """The tensor-core peak of a known GPU (the first name in PEAK_TFLOPS that its name holds)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_TFLOPS.items() if key in name), None)


def scaling_worker(rank: int, count: int, port: int, options: dict[str, Any],
                   result_path: str) -> None:
    """One process of a scaling block (started by `run_scaling`, like torchrun would)."""
    import json
    import os

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from labnotes.experiments.common import flop_counter
    from labnotes.training import autocast, optimizer_step, pick_precision

    torch.set_num_threads(options["threads"])
    target = pick_device(options["device"])
    if target.type == "cuda":
        target = torch.device("cuda", rank)
        torch.cuda.set_device(target)
    if count > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("nccl" if target.type == "cuda" else "gloo", rank=rank,
                                world_size=count)
    keep_freed_memory()
    config = EncoderConfig(**options["config"])
    torch.manual_seed(0)
    model = MaskedLanguageModel(config).to(target).train()
    dtype = pick_precision(target)
    step_model = model if count == 1 else DistributedDataParallel(
        model, device_ids=[rank] if target.type == "cuda" else None)
    batch_size, seq_len = options["batch_size"], options["seq_len"]
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, config.vocab_size, (batch_size, seq_len), generator=generator)
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True
    inputs, labels = mask_tokens(ids, special, vocab_size=config.vocab_size, generator=generator)
    rows = slice(batch_size * rank // count, batch_size * (rank + 1) // count)
    inputs, labels = inputs[rows].to(target), labels[rows].to(target)
    padding = torch.ones_like(inputs, dtype=torch.bool)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(target.type) if dtype == torch.float16 else None

    def step() -> None:
        with autocast(target, dtype):
            loss, _ = step_model(inputs, labels, padding)
        (scaler.scale(loss) if scaler else loss).backward()
        optimizer_step(optimizer, scaler)

    with flop_counter() as counter:  # this process's share of one step, CPU attention included
        with autocast(target, dtype):
            loss, _ = model(inputs, labels, padding)
        loss.backward()
    model.zero_grad(set_to_none=True)
    flops = float(counter.get_total_flops()) * count  # the global batch's
    time_steps(step, 2, target)  # first steps allocate and pick kernels
    seconds = []
    for _ in range(options["rounds"]):
        if count > 1:
            dist.barrier()
        elapsed = torch.tensor([time_steps(step, options["steps"], target)], dtype=torch.float64)
        if count > 1:
            dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        seconds.append(float(elapsed))
    if rank == 0:
        with open(result_path, "w") as handle:
            json.dump({"seconds": seconds, "flops_per_step": flops, "device": str(target),
                       "precision": str(dtype)}, handle)
    if count > 1:  # as the training page's Processes.leave: DDP first, then a barrier
        del step, step_model
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def run_scaling(paper: str = "mlm", *, processes: list[int], steps: int = 5, rounds: int = 5,
                repeats: int = 2, batch_size: int = 64, seq_len: int = 64, device: str = "auto",
                threads: int = 1, peak_tflops: float | None = None,
                config: EncoderConfig | None = None) -> dict[str, Any]:
    """Tokens/s of the MLM training step on each number of `processes` (DDP), and MFU where
    the peak is known. `batch_size` is the global batch, split across the processes."""
    import json
    import socket
    import tempfile

    import torch.multiprocessing as multiprocessing

    if paper != "mlm":
        raise ValueError(f"no benchmark for {paper!r} yet; available: mlm")
    for count in processes:
        if batch_size % count:
            raise ValueError(f"batch size {batch_size} does not split across {count} processes")
    target = pick_device(device)
    # a fork starts at once; CUDA, once started, does not survive one, and macOS forks badly
    start_method = "fork" if target.type == "cpu" and sys.platform == "linux" else "spawn"
    if target.type == "cuda" and max(processes) > torch.cuda.device_count():
        raise ValueError(f"{max(processes)} processes need as many GPUs; "
                         f"{torch.cuda.device_count()} here")
    if config is None:
        defaults = MLMConfig()
        config = dataclasses.replace(defaults.model, max_len=max(seq_len, defaults.model.max_len))
    options = {"config": dataclasses.asdict(config), "batch_size": batch_size,
               "seq_len": seq_len, "device": device, "threads": threads, "steps": steps,
               "rounds": rounds}
    seconds: dict[int, list[float]] = {count: [] for count in processes}
    found: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(repeats):
            for count in processes:
                with socket.socket() as probe:  # a free port for the processes to meet on
                    probe.bind(("127.0.0.1", 0))
                    port = probe.getsockname()[1]
                result_path = f"{folder}/result-{count}.json"
                multiprocessing.start_processes(scaling_worker, nprocs=count,
                                                args=(count, port, options, result_path),
                                                start_method=start_method)
                with open(result_path) as handle:
                    found = json.load(handle)
                seconds[count] += found["seconds"]
    peak = peak_tflops or device_peak_tflops(target)
    tokens = batch_size * seq_len * steps
    figures = {}
    for count, times in seconds.items():
        median = statistics.median(times)
        achieved = found["flops_per_step"] * steps / median
        figures[str(count)] = {
            "tokens_per_s": round(tokens / median, 1),
            "tokens_per_s_range": [round(tokens / max(times), 1), round(tokens / min(times), 1)],
            "tflops_per_s": round(achieved / 1e12, 4),
            "mfu": round(achieved / (peak * 1e12 * count), 4) if peak else None}
    base = figures[str(processes[0])]["tokens_per_s"]
    return {"paper": paper, "device": found["device"], "precision": found["precision"],
            "threads_per_process": threads, "batch_size": batch_size, "seq_len": seq_len,
            "steps_per_round": steps, "rounds": rounds * repeats,
            "config": {"layers": config.layers, "dim": config.dim, "heads": config.heads,
                       "ffn_dim": config.ffn_dim, "vocab_size": config.vocab_size},
            "flops_per_step": found["flops_per_step"], "peak_tflops": peak,
            "processes": figures,
            "speedup": {count: round(figures[count]["tokens_per_s"] / base, 2)
                        for count in figures}}


def describe_scaling(result: dict[str, Any]) -> str:
    """One line per process count, for a person."""
    lines = [f"{result['paper']} on {result['device']} ({result['precision']}), global batch "
             f"{result['batch_size']} x {result['seq_len']}, {result['threads_per_process']} "
             f"thread(s) per process, median of {result['rounds']} rounds:"]
    for count, figure in result["processes"].items():
        low, high = figure["tokens_per_s_range"]
        mfu = f", MFU {100 * figure['mfu']:.1f}%" if figure["mfu"] is not None else ""
        lines.append(f"  {count} process(es): {figure['tokens_per_s']:,.0f} tokens/s "
                     f"({low:,.0f}-{high:,.0f}), x{result['speedup'][count]:.2f}{mfu}")
    return "\n".join(lines)

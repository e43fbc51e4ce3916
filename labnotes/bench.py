"""`labnotes bench`: training throughput of a labnotes model against a Hugging Face reference.

Both models are built with the same sizes, fed the same batches on the same device, in one
process, and timed in interleaved rounds (ours, theirs, ours, theirs, ...) so that a slow
moment of the machine hits both. The figure that matters is the ratio of tokens per second:
each round gives one ratio (its two timings are seconds apart), and we report their median,
which a burst of load from elsewhere on the machine moves far less than it moves either
model's own throughput. Both models run under the same process settings as `labnotes train`
(including `keep_freed_memory`; `LABNOTES_KEEP_MEMORY=0` measures without it).
"""

from __future__ import annotations

import dataclasses
import statistics
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

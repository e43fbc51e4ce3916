"""Every objective at equal compute (labnotes/experiments/compare.py): the FLOP accounting that
makes "equal compute" true, the budget arithmetic, and the table drawn from stored results.

The quick mode itself (every arm trains and is scored) runs in the notebook test
(tests/test_notebooks.py, experiments.compare); the stored table and figure redraw byte for byte
in tests/test_experiments.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from labnotes.experiments import compare
from labnotes.experiments.common import flop_counter, flops_per_step
from labnotes.training import step_generator
from labnotes.transformer import Encoder, EncoderConfig

ROOT = Path(__file__).resolve().parents[1]


def analytic_encoder_flops(config: EncoderConfig, batch: int, length: int) -> float:
    """Forward + backward FLOPs of the encoder's matrix products, counted by hand. Per token,
    2 FLOPs per weight of the four attention projections and the two feed-forward layers, and
    twice that backward (a gradient for the input and one for the weight). Attention: the
    scores and the weighted sum, 2·T²·d each per sequence and layer (summed over heads); the
    fused kernel's backward recomputes the scores and forms four gradients, 5 products where
    the forward has 2."""
    tokens = batch * length
    weights = config.layers * (4 * config.dim ** 2 + 2 * config.dim * config.ffn_dim)
    attention = config.layers * 2 * (2 * batch * length ** 2 * config.dim)
    return 3 * 2 * tokens * weights + attention + 2.5 * attention


@pytest.mark.parametrize("shape", [dict(dim=32, heads=2, layers=1, ffn_dim=64),
                                   dict(dim=64, heads=4, layers=3, ffn_dim=256)])
def test_torch_flop_counter_matches_a_count_by_hand(shape):
    """The counter `flops_per_step` uses agrees with an independent count of the same matmuls
    (layer norms, softmax and GELU are not matrix products and are left out by both)."""
    config = EncoderConfig(vocab_size=100, max_len=32, dropout=0.0, **shape)
    encoder = Encoder(config)
    ids = torch.randint(5, 100, (3, 16))
    with flop_counter() as counter:
        encoder(ids).sum().backward()
    assert counter.get_total_flops() == analytic_encoder_flops(config, 3, 16)
    with FlopCounterMode(display=False) as plain:  # torch's counter alone misses CPU attention
        encoder(ids).sum().backward()
    assert plain.get_total_flops() < counter.get_total_flops()


@settings(max_examples=200, deadline=None)
@given(budget=st.floats(1e9, 1e14), step=st.floats(1e8, 1e11), start=st.floats(0, 0.9))
def test_planned_steps_spend_the_budget_to_within_half_a_step(budget, step, start):
    start_flops = start * budget
    steps = compare.plan_steps(budget, step, start_flops)
    if (budget - start_flops) >= step / 2:
        assert abs(start_flops + steps * step - budget) <= step / 2 + 1e-6 * budget
    else:
        assert steps == 1  # a budget smaller than half a step still trains one step


def test_the_start_is_two_thirds_of_the_budget():
    assert compare.start_steps(1200 * 3e9, 3e9) == 800
    assert compare.start_steps(1e9, 3e9) == 1


@pytest.mark.parametrize("preset", ["cpu", "gpu"])
def test_the_start_is_billed_what_its_own_steps_cost(preset):
    """The MLM start is the MLM page's recipe: on the CPU preset the MLM arm's step exactly; on
    the GPU preset a smaller batch than the arm's, so it is counted on its own task."""
    plan = compare.make_plan(0, False, preset)
    starting = compare.configure("ELECTRA", 0, quick=False, start=1, preset=preset)
    counted = flops_per_step(compare.MLMTask(compare.start_config(starting, 1)))
    assert plan["start_step_flops"] == counted
    spent = plan["start_steps"] * counted
    assert abs(spent - compare.START_FRACTION * plan["budget_flops"]) <= counted / 2
    if preset == "cpu":
        assert plan["start_step_flops"] == plan["mlm_step_flops"]
        assert plan["start_steps"] == round(compare.START_FRACTION * compare.BUDGET_MLM_STEPS)


def test_cpu_attention_is_counted_for_queries_and_keys_of_different_lengths():
    """Cross-attention shapes (5 queries, 7 keys) catch a swapped argument in the formula."""
    query = torch.randn(2, 3, 5, 8, requires_grad=True)
    key, value = torch.randn(2, 3, 7, 8, requires_grad=True), torch.randn(2, 3, 7, 8)
    with flop_counter() as counter:
        torch.nn.functional.scaled_dot_product_attention(query, key, value).sum().backward()
    forward = 2 * 2 * (2 * 3 * 5 * 7 * 8)  # scores and weighted sum
    assert counter.get_total_flops() == forward + 2.5 * forward


def test_one_step_count_stands_for_every_step_of_an_arm():
    """Steps are planned from the FLOPs of one batch; every arm's later batches cost the same
    to within 6% (their token counts vary a little with padding), so budget / cost is right."""
    for name in compare.ARMS:
        config = compare.configure(name, 0, quick=True, start=2)
        task = compare.ARMS[name][1](config)
        first = flops_per_step(task)
        for step in (1, 2, 3):
            batch = task.make_batch(step, step_generator(config.train.seed, step))
            with flop_counter() as counter:
                loss, _ = task.loss(task.model, batch)
                loss.backward()
            task.model.zero_grad(set_to_none=True)
            assert abs(counter.get_total_flops() / first - 1) < 0.06, (name, step)


def test_stored_results_give_every_arm_the_same_budget():
    stored = ROOT / "docs" / "results" / "compare" / "results.json"
    if not stored.exists():
        pytest.skip("the comparison has not been run yet")
    results = json.loads(stored.read_text())
    assert set(results["per_seed"][0]["arms"]) == set(compare.ARMS)
    for seed in results["per_seed"]:
        budget = seed["plan"]["budget_flops"]
        for name, run in seed["arms"].items():
            assert abs(run["train_flops"] - budget) <= run["flops_per_step"] / 2 + 1, name
            assert [point["step"] for point in run["checkpoints"]][-1] == run["steps"]
            assert len(run["checkpoints"]) == compare.PROBE_POINTS


def test_the_table_pairs_each_arm_with_mlm_by_seed(tmp_path):
    """A hand-made results file: the '− MLM' column is the mean of the per-seed differences."""
    def scored(value):
        tasks = {t: {"mean": value, "std": 0.0} for t in compare.TASK_LABELS}
        return {"tasks": tasks, "score": {"mean": value, "std": 0.0}}

    def arm(value, flops=1.0):
        return {"steps": 10, "flops_per_step": flops, "train_flops": 10 * flops,
                "train_seconds": 60.0, "start_seconds": 0.0, "finetune": scored(value),
                "checkpoints": [{"step": 10, "train_flops": 10 * flops, "probe": scored(value)}]}

    per_seed = []
    for seed, (mlm, other) in enumerate([(0.50, 0.60), (0.70, 0.72)]):
        arms = {name: arm(other) for name in compare.ARMS}
        arms["MLM"] = arm(mlm)
        per_seed.append({"plan": {"mlm_step_flops": 1.0, "budget_flops": 10.0, "start_steps": 6},
                         "random_init": {"finetune": scored(0.4), "probe": scored(0.4)},
                         "mlm_start": {"train_flops": 6.0, "probe": scored(0.45)},
                         "arms": arms})
    results = {"per_seed": per_seed, "budget_mlm_steps": 10, "suite": {"seeds": 3}, "threads": 1,
               "bag_of_words": {t: [0.5, 0.5] for t in compare.TASK_LABELS}}
    compare.draw(results, tmp_path)
    table = (tmp_path / "table.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| SpanBERT |"))
    assert row.rstrip().endswith("| 6.0 ± 5.7 |")  # differences 0.10 and 0.02
    assert (tmp_path / "probe_vs_compute.svg").exists()

"""The one mask optimiser (gfi.masks.optimizer): its update, schedule, projection, progress, state,
and the per-row early exit, each against a value computed by hand or a run of the rows alone."""

from __future__ import annotations

import pytest
import torch

from gfi.masks.optimizer import EarlyExit, MaskOptimizer, StepDecay, plateaued


def linear(c: torch.Tensor):
    """L_r(theta) = c_r . theta_r: a constant gradient c."""
    return lambda theta, _it: (theta * c).sum(-1)


def test_sgd_follows_the_step_decayed_learning_rate():
    # plain SGD (momentum 0) on a linear loss moves theta by lr_t * c each step; lr_t = 0.1, 0.1, 0.05, 0.05, 0.025
    c = torch.tensor([[1.0, -2.0]])
    res = MaskOptimizer(0.1, kind="sgd", decay=StepDecay(2, 0.5)).run(torch.zeros(1, 2), linear(c), 5)
    torch.testing.assert_close(res.param, -c * (0.1 + 0.1 + 0.05 + 0.05 + 0.025))
    torch.testing.assert_close(res.losses[:, 0], torch.tensor([0.0, -0.5, -1.0, -1.25, -1.5]))


def test_sgd_momentum_has_dampening_equal_to_the_momentum():
    # v_1 = g, v_t = mu v_{t-1} + (1 - mu) g = g for a constant g: every step is lr * g
    c = torch.tensor([[2.0]])
    res = MaskOptimizer(0.1, kind="sgd", momentum=0.9).run(torch.zeros(1, 1), linear(c), 3)
    torch.testing.assert_close(res.param, torch.tensor([[-0.6]]))


def test_adams_first_step_is_the_learning_rate_times_the_gradients_sign():
    c = torch.tensor([[3.0, -0.5, 0.0]])
    res = MaskOptimizer(0.01).run(torch.ones(1, 3), linear(c), 1)
    torch.testing.assert_close(res.param, torch.tensor([[0.99, 1.01, 1.0]]), atol=1e-6, rtol=0)
    assert set(res.state) >= {"exp_avg", "exp_avg_sq", "step"}


def test_projection_clamps_or_calls_a_function():
    c = torch.tensor([[1.0, -1.0]])
    res = MaskOptimizer(0.3, kind="sgd", project=(0, 1)).run(torch.full((1, 2), 0.5), linear(c), 4)
    assert res.param.tolist() == [[0.0, 1.0]]
    res = MaskOptimizer(0.3, kind="sgd", project=(0, None)).run(torch.full((1, 2), 0.5), linear(c), 4)
    torch.testing.assert_close(res.param, torch.tensor([[0.0, 1.7]]))
    res = MaskOptimizer(0.3, kind="sgd", project=lambda t: t.clamp_(min=0.25)).run(torch.full((1, 2), 0.5),
                                                                                 linear(c), 4)
    torch.testing.assert_close(res.param, torch.tensor([[0.25, 1.7]]))


def test_progress_is_called_once_per_iteration_and_the_start_is_left_alone():
    calls = []
    start = torch.zeros(2, 3)
    res = MaskOptimizer(0.1, progress=lambda: calls.append(1)).run(start, linear(torch.ones(2, 3)), 7)
    assert len(calls) == 7 and res.losses.shape == (7, 2)
    assert torch.equal(start, torch.zeros(2, 3))  # the optimised leaf is a copy
    empty = MaskOptimizer(0.1).run(start, linear(torch.ones(2, 3)), 0)
    assert empty.losses is None and torch.equal(empty.param, start)


def test_rows_together_equal_rows_alone_and_state_continues():
    target = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    opt = MaskOptimizer(0.05, decay=StepDecay(3, 0.5))
    together = opt.run(torch.zeros(3, 4), lambda t, _it: (t - target).pow(2).sum(-1), 8)
    alone = opt.run(torch.zeros(1, 4), lambda t, _it: (t - target[1:2]).pow(2).sum(-1), 8)
    assert torch.equal(together.param[1:2], alone.param)
    assert not torch.equal(together.param[0], together.param[1])
    # 8 iterations = 5, then 3 more continuing Adam's moments
    plain = MaskOptimizer(0.05)
    whole = plain.run(torch.zeros(3, 4), lambda t, _it: (t - target).pow(2).sum(-1), 8)
    first = plain.run(torch.zeros(3, 4), lambda t, _it: (t - target).pow(2).sum(-1), 5)
    second = plain.run(first.param, lambda t, _it: (t - target).pow(2).sum(-1), 3,
                       state={k: v.clone() for k, v in first.state.items()})
    assert torch.equal(second.param, whole.param)
    fresh = plain.run(first.param, lambda t, _it: (t - target).pow(2).sum(-1), 3)
    assert not torch.equal(fresh.param, whole.param)  # the state matters


def test_a_settled_row_leaves_keeps_its_value_and_leaves_the_others_alone():
    """Row 0 has a flat loss (settles at the first check, after 2 windows of 2), row 1 a linear loss
    that keeps falling: row 0 leaves after 4 iterations, its losses are NaN from there, the objective
    sees one row, and row 1's result is that of the full schedule run alone."""
    slope = torch.tensor([[0.0], [1.0]])  # row 0: gradient 0 (a flat loss); row 1: falling

    def objective(theta, _it):
        seen.append(theta.shape[0])
        return (theta * slope[rows[0]]).sum(-1) + (1.0 - slope[rows[0], 0]) * 5.0

    rows = [torch.arange(2)]
    seen: list[int] = []
    restricted = []

    def restrict(active):
        restricted.append(active.tolist())
        rows[0] = active

    opt = MaskOptimizer(0.1, kind="sgd", early_exit=EarlyExit(every=2, tol=0.01))
    res = opt.run(torch.ones(2, 1), objective, 10, restrict=restrict)
    assert restricted == [[1]] and seen == [2] * 4 + [1] * 6
    assert res.losses.shape == (10, 2)
    assert torch.isfinite(res.losses[:4]).all() and res.losses[4:, 0].isnan().all()
    assert torch.isfinite(res.losses[:, 1]).all()
    assert res.param[0].item() == 1.0  # held where it left (its gradient was 0 anyway)
    torch.testing.assert_close(res.param[1], torch.tensor([1.0 - 10 * 0.1]))


def test_a_row_leaves_only_when_all_its_entries_settled_and_all_leaving_ends_the_loop():
    # (rows, K) losses: row 0's two entries are flat; row 1's second entry keeps falling
    speed = torch.tensor([0.0, 0.5])
    rows = [torch.arange(2)]

    def objective(theta, it):
        flat = theta.sum(-1) * 0 + 1.0
        return torch.stack([flat, flat - speed[rows[0]] * it], -1)

    leaving = []

    def restrict(active):
        leaving.append(active.tolist())
        rows[0] = active

    res = MaskOptimizer(0.1, early_exit=EarlyExit(every=2, tol=0.0)).run(torch.zeros(2, 1), objective, 12,
                                                                         restrict=restrict)
    assert leaving == [[1]]  # row 0 left at the first check, row 1 never: the full schedule ran
    assert res.losses.shape == (12, 2, 2) and res.losses[4:, 0].isnan().all()
    flat = MaskOptimizer(0.1, early_exit=EarlyExit(every=3, tol=0.0)).run(
        torch.zeros(2, 1), lambda t, _it: t.sum(-1) * 0 + 1.0, 12, restrict=lambda a: None)
    assert flat.losses.shape == (6, 2)  # every row settled at the first check (2 windows of 3): the loop ended


def test_the_peak_rule_reads_the_masks_the_objective_returns():
    # row 0's mask has its maximum at (0, 0) throughout; row 1's walks down one pixel per iteration
    rows = [torch.arange(2)]

    def objective(theta, it):
        m = torch.zeros(2, 1, 8, 8)
        m[0, 0, 0, 0] = 1.0
        m[1, 0, it % 8, 7] = 1.0
        return theta.sum(-1), m[rows[0]]

    leaving = []

    def restrict(active):
        leaving.append(active.tolist())
        rows[0] = active

    res = MaskOptimizer(0.1, early_exit=EarlyExit(rule="peak", every=1, windows=2, px=0.5)).run(
        torch.zeros(2, 1), objective, 6, restrict=restrict)
    assert leaving == [[1]]  # row 0 stayed put over 2 windows at the third check (after 3 iterations)
    assert res.losses[3:, 0].isnan().all() and torch.isfinite(res.losses[:, 1]).all()
    with pytest.raises(ValueError, match="peak rule needs"):
        MaskOptimizer(0.1, early_exit=EarlyExit(rule="peak", every=1)).run(
            torch.zeros(1, 1), lambda t, _it: t.sum(-1), 3, restrict=lambda a: None)


def test_an_early_exit_needs_restrict_and_the_kind_is_checked():
    with pytest.raises(ValueError, match="restrict"):
        MaskOptimizer(0.1, early_exit=EarlyExit()).run(torch.zeros(1, 1), lambda t, _it: t.sum(-1), 3)
    with pytest.raises(ValueError, match="kind"):
        MaskOptimizer(0.1, kind="lbfgs")


def test_plateaued_needs_two_windows_and_every_row():
    assert not bool(plateaued(torch.ones(9, 2), 5, 0.5))  # fewer than 2 * every losses
    flat = torch.ones(10, 2)
    assert bool(plateaued(flat, 5, 0.0))
    falling = flat.clone()
    falling[5:, 1] = 0.5  # the second row still improves by 50 %
    assert not bool(plateaued(falling, 5, 0.1))
    assert bool(plateaued(falling, 5, 0.6))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_the_updates_are_torchs_optimisers_to_the_last_bit(kind, dtype):
    """The update is written out (no torch.optim.Optimizer, whose first step imports torch._dynamo),
    and gives torch's Adam / SGD (momentum and dampening 0.9) with StepLR to the last bit: 25
    iterations of a non-quadratic objective, decay every 7, projected to >= 0, continued from a
    state; and theta's state as torch keeps it."""
    g = torch.Generator().manual_seed(3)
    start = torch.randn(4, 6, generator=g, dtype=dtype)
    target = torch.randn(4, 6, generator=g, dtype=dtype)

    def objective(theta, _it):
        return ((theta - target) ** 2 + 0.3 * torch.sin(3 * theta)).sum(1)

    ours = MaskOptimizer(0.05, kind=kind, momentum=0.9, decay=StepDecay(7, 0.5), project=(0.0, None))
    got = ours.run(start, objective, 25)
    theta = start.clone().requires_grad_(True)
    opt = (torch.optim.Adam([theta], lr=0.05) if kind == "adam" else
           torch.optim.SGD([theta], lr=0.05, momentum=0.9, dampening=0.9))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.5)

    def torchs(iterations: int) -> None:
        for it in range(iterations):
            opt.zero_grad(set_to_none=True)
            objective(theta, it).sum().backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                theta.clamp_(min=0.0)

    torchs(25)
    assert torch.equal(got.param, theta.detach())
    assert set(got.state) == set(opt.state[theta])
    assert all(torch.equal(got.state[k], opt.state[theta][k]) for k in got.state)
    again = ours.run(got.param, objective, 5, state={k: v.clone() for k, v in got.state.items()})
    if kind == "adam":  # the state continues (a new run restarts the schedule, as a new StepLR would)
        assert set(again.state) == {"step", "exp_avg", "exp_avg_sq"} and float(again.state["step"]) == 30.0


def test_a_mask_method_does_not_import_torch_dynamo():
    """torch.optim's first step imports torch._dynamo (about a second); GFI's and the mask methods'
    runs do not (a fresh interpreter)."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from gfi.masks.optimizer import MaskOptimizer\n"
            "MaskOptimizer(0.1).run(torch.ones(2, 3), lambda t, i: (t ** 2).sum(1), 3)\n"
            "MaskOptimizer(0.1, kind='sgd', momentum=0.9).run(torch.ones(2, 3), lambda t, i: (t ** 2).sum(1), 3)\n"
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"

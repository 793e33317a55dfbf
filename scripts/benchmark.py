"""Benchmarks (ratios against baselines measured in the same run; medians over repeats):

    python scripts/benchmark.py [--only update,throughput,threads] [--repeats 7] [--json out.json]

- ``update``: one spg leader update (eq. 19 with exactly k CG iterations) against one plain
  REINFORCE gradient on the same batch (N = 1024, T = 100, a 50-state 5x5 game), k in {1, 5, 10, 20};
  the budget is ``2 + 1.5 k``.
- ``throughput``: sampling plus one spg update per iteration on the same setting (iterations/s).
- ``threads``: the sampler's env steps per second with 1 and 2 torch threads.
- ``exact``: the exact solver on a 200-state, 5x5-action game: policy evaluation, the soft best
  response, ``J`` and the exact leader direction of eq. (19) (CG to 1e-8).
"""

import argparse
import json
import statistics
import time

import torch

from envs import TabularVectorEnv
from spg import exact
from spg.algorithms import TwoTimescalePolicyGradient
from spg.estimators import surrogate_objectives
from spg.game import random_game
from spg.policy import TabularSoftmaxPolicy
from spg.sampler import Sampler
from spg.schedules import StepSize
from spg.stackelberg import leader_direction

LAM, N, T, S, A = 0.1, 1024, 100, 50, 5


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median and (max - min) spread of ``fn``'s wall time over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), max(times) - min(times)


def setting():
    game = random_game(S, A, A, seed=0, gamma=0.95)
    leader = TabularSoftmaxPolicy(S, A, logits=torch.randn(S, A, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    # the follower at its soft best response, where -H is positive definite and CG runs all k iterations
    follower = TabularSoftmaxPolicy(S, A, logits=exact.soft_best_response(game, leader.probs().detach(), LAM).logits)
    return game, leader, follower


def bench_update(repeats: int) -> list[dict]:
    game, leader, follower = setting()
    batch = Sampler(TabularVectorEnv(game, N), seed=0).collect(leader, follower, N, T)
    theta1, theta2 = leader.logits, follower.logits

    def reinforce():
        F1, _ = surrogate_objectives(batch, theta1, theta2, gamma=game.gamma, lam=LAM)
        torch.autograd.grad(F1, theta1)

    base, base_spread = timed(reinforce, repeats)
    rows = []
    for k in (1, 5, 10, 20):
        def spg_update():
            F1, F2 = surrogate_objectives(batch, theta1, theta2, gamma=game.gamma, lam=LAM)
            # cost does not depend on the damping; a large one keeps the sampled -H + delta I positive
            # definite so that CG runs exactly k iterations
            result = leader_direction(F1, F2, theta1, theta2, damping=1.0, cg_tol=0.0, cg_iterations=k)
            assert result.cg.iterations == k, result.cg

        t, spread = timed(spg_update, repeats)
        rows.append({"k": k, "spg_ms": 1e3 * t, "spread_ms": 1e3 * spread, "reinforce_ms": 1e3 * base,
                     "reinforce_spread_ms": 1e3 * base_spread, "ratio": t / base, "budget": 2 + 1.5 * k})
    return rows


def bench_throughput(repeats: int) -> dict:
    game, _, _ = setting()
    leader, follower = TabularSoftmaxPolicy(S, A), TabularSoftmaxPolicy(S, A)
    algorithm = TwoTimescalePolicyGradient("spg", leader, follower, lam=LAM, gamma=game.gamma,
                                           leader_step=StepSize(0.1), follower_step=StepSize(1.0))
    sampler = Sampler(TabularVectorEnv(game, N), seed=0)
    sample_time, _ = timed(lambda: sampler.collect(leader, follower, N, T), repeats)
    t, spread = timed(lambda: algorithm.step(sampler.collect(leader, follower, N, T)), repeats)
    return {"iterations_per_second": 1 / t, "seconds_per_iteration": t, "spread_s": spread, "sampling_s": sample_time}


def bench_threads(repeats: int) -> list[dict]:
    game, leader, follower = setting()
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        sampler = Sampler(TabularVectorEnv(game, N), seed=0)
        t, spread = timed(lambda: sampler.collect(leader, follower, N, T), repeats)
        rows.append({"threads": threads, "env_steps_per_second": N * T / t, "spread_s": spread})
    torch.set_num_threads(1)
    return rows


def bench_exact(repeats: int, num_states: int = 200) -> dict:
    game = random_game(num_states, A, A, seed=0, gamma=0.9)
    generator = torch.Generator().manual_seed(0)
    theta1 = torch.randn(num_states, A, dtype=torch.float64, generator=generator)
    theta2 = torch.randn(num_states, A, dtype=torch.float64, generator=generator)
    pi1, pi2 = torch.softmax(theta1, -1), torch.softmax(theta2, -1)
    out = {"num_states": num_states}
    for name, fn in {
        "policy_values": lambda: exact.policy_values(game, pi1, pi2, LAM),
        "soft_best_response": lambda: exact.soft_best_response(game, pi1, LAM),
        "J": lambda: exact.stackelberg_objective(game, theta1, LAM),
        "grad_J_eq19": lambda: exact.stackelberg_gradient(game, theta1, LAM, cg_tol=1e-8),
    }.items():
        t, spread = timed(fn, repeats)
        out[name] = {"median_s": t, "spread_s": spread}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="update,throughput,threads,exact")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    sections = args.only.split(",")
    if "update" in sections:
        results["update"] = bench_update(args.repeats)
        print(f"spg update vs REINFORCE gradient (N={N}, T={T}, S={S}, {A}x{A} actions; median of {args.repeats})")
        print("   k   spg [ms]   REINFORCE [ms]   ratio   budget 2+1.5k")
        for r in results["update"]:
            print(f"  {r['k']:2d}  {r['spg_ms']:8.1f}   {r['reinforce_ms']:14.1f}   {r['ratio']:5.2f}   {r['budget']:5.1f}")
    if "throughput" in sections:
        r = results["throughput"] = bench_throughput(args.repeats)
        print(f"sampling + one spg update (N={N}, T={T}, S={S}): {r['iterations_per_second']:.1f} iterations/s "
              f"({1e3 * r['sampling_s']:.0f} ms of {1e3 * r['seconds_per_iteration']:.0f} ms sampling)")
    if "threads" in sections:
        results["threads"] = bench_threads(args.repeats)
        for r in results["threads"]:
            print(f"sampler with {r['threads']} torch thread(s): {r['env_steps_per_second'] / 1e6:.2f} M env steps/s")
    if "exact" in sections:
        results["exact"] = bench_exact(args.repeats)
        print(f"exact solver, {results['exact']['num_states']} states, {A}x{A} actions (median of {args.repeats}):")
        for name in ("policy_values", "soft_best_response", "J", "grad_J_eq19"):
            r = results["exact"][name]
            print(f"  {name:<20} {1e3 * r['median_s']:8.1f} ms  (spread {1e3 * r['spread_s']:.1f} ms)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()

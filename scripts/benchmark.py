"""Benchmarks: every figure is a median over repeats with its spread (max - min), and every speed
is a ratio against a baseline measured in the same run.

    python scripts/benchmark.py [--only SECTIONS] [--repeats 5] [--json bench.json] [--png bench.png]

Sections (default: all):

- ``sampler``: env steps/s of the project's sampler on the native vector env, of a minimal
  hand-written torch loop doing the same work (the baseline), and of Gymnasium's ``SyncVectorEnv``
  over single-env copies (the leader's reward as the reward, the pair in ``info``), for
  S in {10, 100, 1000, 100000 sparse} and N in {256, 4096}, T = 100, 5x5 actions.
- ``update``: one spg leader update with exactly k CG iterations against one REINFORCE gradient on
  the same batch (N = 1024, T = 100, 50 states), k in {1, 5, 10, 20}; the budget is ``2 + 1.5 k``.
- ``throughput``: sampling plus one spg update (N = 1024, T = 100, 50 states), iterations/s.
- ``threads``: the sampler with 1 and 2 torch threads.
- ``python_env``: env steps/s of a pure-Python user env (the Inspection game of docs/custom_envs.md, cheap, and
  the same with ~100 us of Python work per step, a costlier simulator) through the sampler with
  ``sync`` and ``async`` vectorisation at several copy counts, as ratios to the env's own
  single-copy step rate (a loop calling ``step`` on one instance) measured right before each run
  (medians over repeats); and the sampler's own cost per env step over a vector env that does no work.
- ``accuracy``: cosine and relative error of the sampled leader direction against eq. (19) as N
  grows (T = 60), with the process's peak resident memory after each N.
- ``exact``: exact solver time against S (dense up to 400 states; sparse 100000 states, 8 successors).
- ``episodic``: ``spg`` on grid soccer (``envs/soccer.py``, 113 states, gamma 0.9,
  N = 512, T = 163) with the goal state terminal and, for contrast, absorbing with zero rewards:
  env steps played and simulated, and wall time, per update.

Sample efficiency (env steps until 95% of the Stackelberg gap is closed) is measured on 41 games by
``scripts/convergence.py``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time

import gymnasium as gym
import numpy as np
import torch
from omegaconf import OmegaConf

import envs  # noqa: F401
from envs import StochasticGameEnv, TabularVectorEnv
from envs.soccer import soccer_game
from spg import exact
from spg.algorithms import make_learner
from spg.config import AlgoConfig
from spg.estimators import surrogate_objectives
from spg.game import random_game
from spg.objectives import SampledObjectives
from spg.policy import TabularSoftmaxPolicy
from spg.sampler import Sampler
from spg.sparse_game import random_sparse_game
from spg.stackelberg import leader_direction
from spg.task import auto_horizon

LAM, A = 0.1, 5


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median and spread (max - min) of ``fn``'s wall time over ``repeats`` runs after a warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), max(times) - min(times)


def make_game(num_states: int):
    if num_states > 1000:
        return random_sparse_game(num_states, A, A, num_successors=8, seed=0, gamma=0.95)
    return random_game(num_states, A, A, seed=0, gamma=0.95)


def random_policies(num_states: int):
    g = torch.Generator().manual_seed(0)
    return (
        TabularSoftmaxPolicy(num_states, A, logits=torch.randn(num_states, A, dtype=torch.float64, generator=g)),
        TabularSoftmaxPolicy(num_states, A, logits=torch.randn(num_states, A, dtype=torch.float64, generator=g)),
    )


def hand_written_loop(game, leader, follower, N: int):
    """The baseline: the least work that produces the same batch (states, both actions, both
    rewards). Tables are built once, outside the returned rollout function, as the project's env does."""
    S = game.num_states
    generator = torch.Generator().manual_seed(0)
    cdf1 = torch.cumsum(leader.probs().detach(), -1)
    cdf2 = torch.cumsum(follower.probs().detach(), -1)
    rewards_table = torch.stack([game.R1, game.R2], -1).reshape(-1, 2)
    sparse = hasattr(game, "successors")
    if sparse:
        successor_cdf = torch.cumsum(game.successor_probs.reshape(-1, game.num_successors), -1)
        successors = game.successors.reshape(-1, game.num_successors)
    else:
        flat = (
            torch.cumsum(game.P.reshape(-1, S), -1) + torch.arange(S * A * A, dtype=torch.float64)[:, None]
        ).reshape(-1)

    def rollout(T: int):
        states = torch.empty(N, T, dtype=torch.long)
        a1s, a2s = torch.empty_like(states), torch.empty_like(states)
        rewards = torch.empty(N, T, 2, dtype=torch.float64)
        s = torch.randint(0, S, (N,), generator=generator)
        u = torch.rand(T, 3, N, generator=generator, dtype=torch.float64)
        for t in range(T):
            a1 = (cdf1[s] < u[t, 0, :, None]).sum(-1).clamp_max_(A - 1)
            a2 = (cdf2[s] < u[t, 1, :, None]).sum(-1).clamp_max_(A - 1)
            row = (s * A + a1) * A + a2
            states[:, t], a1s[:, t], a2s[:, t], rewards[:, t] = s, a1, a2, rewards_table[row]
            if sparse:
                k = (successor_cdf[row] < u[t, 2, :, None]).sum(-1).clamp_max_(game.num_successors - 1)
                s = successors[row, k]
            else:
                s = torch.searchsorted(flat, row.double() + u[t, 2], right=True) - row * S
        return states, a1s, a2s, rewards

    return rollout


def python_vectoriser_steps_per_second(game, leader, follower, N: int, T: int) -> float:
    env = gym.vector.SyncVectorEnv([lambda: StochasticGameEnv(game) for _ in range(N)])
    generator = torch.Generator().manual_seed(0)
    obs, _ = env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(T):
        s = torch.as_tensor(obs)
        actions = torch.stack([leader.sample(s, generator), follower.sample(s, generator)], -1).numpy()
        obs, *_ = env.step(actions)
    return N * T / (time.perf_counter() - start)


def bench_sampler(repeats: int) -> list[dict]:
    rows = []
    T = 100
    for num_states in (10, 100, 1000, 100000):
        game = make_game(num_states)
        leader, follower = random_policies(num_states)
        for N in (256, 4096):
            sampler = Sampler(TabularVectorEnv(game, N), seed=0)
            project, project_spread = timed(lambda: sampler.collect(leader, follower, N, T), repeats)
            baseline_rollout = hand_written_loop(game, leader, follower, N)
            baseline, baseline_spread = timed(lambda: baseline_rollout(T), repeats)
            python_steps = statistics.median(
                python_vectoriser_steps_per_second(game, leader, follower, N, 10) for _ in range(3)
            )
            rows.append(
                {
                    "S": num_states,
                    "N": N,
                    "sparse": num_states > 1000,
                    "project_steps_per_s": N * T / project,
                    "project_spread_s": project_spread,
                    "hand_loop_steps_per_s": N * T / baseline,
                    "hand_loop_spread_s": baseline_spread,
                    "sync_vector_env_steps_per_s": python_steps,
                    "ratio_to_hand_loop": baseline / project,
                    "speedup_over_sync_vector_env": N * T / project / python_steps,
                }
            )
    return rows


def update_setting(num_states: int = 50, N: int = 1024, T: int = 100):
    game = random_game(num_states, A, A, seed=0, gamma=0.95)
    leader, _ = random_policies(num_states)
    follower = TabularSoftmaxPolicy(
        num_states, A, logits=exact.soft_best_response(game, leader.probs().detach(), LAM).logits
    )
    return game, leader, follower, Sampler(TabularVectorEnv(game, N), seed=0).collect(leader, follower, N, T)


def bench_update(repeats: int) -> list[dict]:
    game, leader, follower, batch = update_setting()
    theta1, theta2 = leader.logits, follower.logits

    def reinforce():
        F1, _ = surrogate_objectives(batch, theta1, theta2, gamma=game.gamma, lam=LAM)
        torch.autograd.grad(F1, theta1)

    base, base_spread = timed(reinforce, repeats)
    rows = []
    for k in (1, 5, 10, 20):

        def spg_update():
            F1, F2 = surrogate_objectives(batch, theta1, theta2, gamma=game.gamma, lam=LAM)
            # the cost does not depend on the damping; a large one keeps the sampled -H + delta I
            # positive definite, so CG runs exactly k iterations
            result = leader_direction(
                F1, F2, theta1, theta2, damping=1.0, cg_tol=0.0, cg_iterations=k, trust_region=False
            )
            assert result.cg.iterations == k, result.cg

        t, spread = timed(spg_update, repeats)
        rows.append(
            {
                "k": k,
                "spg_s": t,
                "spg_spread_s": spread,
                "reinforce_s": base,
                "reinforce_spread_s": base_spread,
                "ratio": t / base,
                "budget": 2 + 1.5 * k,
            }
        )
    return rows


def bench_throughput(repeats: int) -> dict:
    game = random_game(50, A, A, seed=0, gamma=0.95)
    leader, follower, algorithm = make_learner(OmegaConf.structured(AlgoConfig(name="spg", lam=LAM)), 50, (A, A))
    sampler = Sampler(TabularVectorEnv(game, 1024), seed=0, probe_discount=game.gamma)
    t, spread = timed(
        lambda: algorithm.step(SampledObjectives(sampler.collect(leader, follower, 1024, 100), game.gamma)), repeats
    )
    return {"iterations_per_s": 1 / t, "seconds_per_iteration": t, "spread_s": spread}


def bench_threads(repeats: int) -> list[dict]:
    game = random_game(100, A, A, seed=0, gamma=0.95)
    leader, follower = random_policies(100)
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        sampler = Sampler(TabularVectorEnv(game, 4096), seed=0)
        t, spread = timed(lambda: sampler.collect(leader, follower, 4096, 100), repeats)
        rows.append({"threads": threads, "steps_per_s": 4096 * 100 / t, "spread_s": spread})
    torch.set_num_threads(1)
    return rows


class Inspection(gym.Env):
    """The example of a user env in docs/custom_envs.md (the leader inspects, the follower cheats), in pure
    Python; ``work`` adds that many Python loop iterations to each step (a costlier simulator)."""

    observation_space = gym.spaces.Discrete(2)
    action_space = gym.spaces.MultiDiscrete([2, 2])

    def __init__(self, work: int = 0) -> None:
        self.work = work

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = 0
        return self.state, {}

    def step(self, action):
        inspect, cheat = int(action[0]), int(action[1])
        caught = inspect and cheat
        leader = -0.3 * inspect - (cheat and not inspect)
        follower = (
            (1.0 if cheat and not inspect else 0.0) - (2.0 if caught else 0.0) + (0.2 if self.state == 0 else 0.0)
        )
        self.state = int(caught or self.np_random.random() < 0.1)
        busy = 0
        for i in range(self.work):
            busy += i
        return self.state, np.array([leader, follower], np.float32), False, False, {}


class NoWorkVectorEnv(gym.vector.VectorEnv):
    """A vector env of the contract whose step returns ready arrays: what the sampler costs alone."""

    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = (
            gym.spaces.Discrete(2),
            gym.spaces.MultiDiscrete([2, 2]),
        )
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.out = (
            np.zeros(num_envs, np.int64),
            np.zeros(num_envs),
            np.zeros(num_envs, bool),
            np.zeros(num_envs, bool),
            {"reward_pair": np.zeros((num_envs, 2), np.float32)},
        )

    def reset(self, *, seed=None, options=None):
        return self.out[0], {}

    def step(self, actions):
        return self.out


def single_copy_steps_per_second(work: int, steps: int) -> float:
    """The env's own step rate: one instance, ``step`` called in a plain loop."""
    env = Inspection(work)
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 2, (steps, 2))
    start = time.perf_counter()
    for action in actions:
        env.step(action)
    return steps / (time.perf_counter() - start)


def sampler_steps_per_second(env: gym.vector.VectorEnv, steps: int) -> float:
    """Env steps/s of the trainer's sampler (probes on) collecting one round of all copies."""
    N = env.num_envs
    leader, follower = TabularSoftmaxPolicy(2, 2), TabularSoftmaxPolicy(2, 2)
    sampler = Sampler(env, seed=0, probe_discount=0.9)
    sampler.collect(leader, follower, N, 2)  # warm-up: first reset, worker start-up
    T = max(2, steps // N)
    start = time.perf_counter()
    sampler.collect(leader, follower, N, T)
    elapsed = time.perf_counter() - start
    env.close()
    return N * T / elapsed


def bench_python_env(repeats: int) -> list[dict]:
    from envs.vectorize import make_vector_env

    if "bench/Inspection-v0" not in gym.registry:
        gym.register("bench/Inspection-v0", entry_point=Inspection)
    rows = []
    for work, steps in ((0, 40000), (3000, 4000)):
        for vectorization, copies_list in (("sync", (8, 32, 128, 512)), ("async", (2, 16))):
            for copies in copies_list:
                singles, rates = [], []
                for _ in range(repeats):  # the env's own rate measured right before each sampler run
                    singles.append(single_copy_steps_per_second(work, steps))
                    env = make_vector_env("bench/Inspection-v0", copies, vectorization, work=work)
                    rates.append(sampler_steps_per_second(env, steps if vectorization == "sync" else steps // 4))
                ratios = [rate / single for rate, single in zip(rates, singles)]
                rows.append(
                    {
                        "work": work,
                        "vectorization": vectorization,
                        "copies": copies,
                        "steps_per_s": statistics.median(rates),
                        "single_copy_steps_per_s": statistics.median(singles),
                        "ratio_to_single_copy": statistics.median(ratios),
                        "ratio_spread": max(ratios) - min(ratios),
                    }
                )
    for copies in (8, 128, 512):
        rate = statistics.median(sampler_steps_per_second(NoWorkVectorEnv(copies), 40000) for _ in range(repeats))
        rows.append({"work": None, "vectorization": "none (sampler alone)", "copies": copies, "steps_per_s": rate})
    return rows


def bench_accuracy(repeats: int) -> list[dict]:
    game = random_game(20, A, A, seed=1, gamma=0.8)
    leader, _ = random_policies(20)
    follower = TabularSoftmaxPolicy(20, A, logits=exact.soft_best_response(game, leader.probs().detach(), LAM).logits)
    reference = exact.exact_leader_direction(game, leader.logits, follower.logits, LAM, damping=1e-3).total.flatten()
    rows = []
    for N in (256, 1024, 4096, 16384):
        sampler = Sampler(TabularVectorEnv(game, N), seed=N)
        cosines, errors = [], []
        for _ in range(repeats):
            batch = sampler.collect(leader, follower, N, 60)
            F1, F2 = surrogate_objectives(batch, leader.logits, follower.logits, gamma=game.gamma, lam=LAM)
            d = leader_direction(
                F1, F2, leader.logits, follower.logits, damping=1e-3, cg_tol=1e-3, cg_iterations=20
            ).total.flatten()
            cosines.append(float(torch.cosine_similarity(d, reference, 0)))
            errors.append(float((d - reference).norm() / reference.norm()))
        rows.append(
            {
                "N": N,
                "cosine": statistics.median(cosines),
                "cosine_spread": max(cosines) - min(cosines),
                "relative_error": statistics.median(errors),
                "relative_error_spread": max(errors) - min(errors),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
            }
        )
    return rows


def bench_exact(repeats: int) -> list[dict]:
    rows = []
    for num_states in (25, 50, 100, 200, 400, 100000):
        game = make_game(num_states) if num_states > 1000 else random_game(num_states, A, A, seed=0, gamma=0.9)
        theta1 = torch.randn(num_states, A, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        r = repeats if num_states <= 1000 else 1
        row = {"S": num_states, "sparse": num_states > 1000}
        row["J_s"], row["J_spread_s"] = (
            timed(lambda: exact.stackelberg_objective(game, theta1, LAM), r)
            if r > 1
            else (_once(lambda: exact.stackelberg_objective(game, theta1, LAM)), 0.0)
        )
        if num_states <= 1000:
            row["grad_J_s"], row["grad_J_spread_s"] = timed(
                lambda: exact.stackelberg_gradient(game, theta1, LAM, cg_tol=1e-8), r
            )
        rows.append(row)
    return rows


class CountingVectorEnv(TabularVectorEnv):
    """The native vector env, counting the copies it steps (the simulated env steps)."""

    simulated = 0

    def step_torch(self, leader_actions, follower_actions, copies=None):
        self.simulated += len(leader_actions)
        return super().step_torch(leader_actions, follower_actions, copies)


def bench_episodic(updates: int = 20, batch_size: int = 512) -> list[dict]:
    return [_episodic_row(episodic, updates, batch_size) for episodic in (True, False)]


def _episodic_row(episodic: bool, updates: int, batch_size: int) -> dict:
    game = soccer_game(episodic=episodic)
    horizon = auto_horizon(game.gamma)
    leader, follower, algorithm = make_learner(
        OmegaConf.structured(AlgoConfig(name="spg", lam=LAM)), game.num_states, (A, A)
    )
    env = CountingVectorEnv(game, batch_size)
    sampler = Sampler(env, seed=0, probe_discount=game.gamma)

    def update() -> int:
        batch = sampler.collect(leader, follower, batch_size, horizon)
        algorithm.step(SampledObjectives(batch, game.gamma))
        return batch.env_steps

    update()  # warm-up
    env.simulated, played, times = 0, 0, []
    for _ in range(updates):
        start = time.perf_counter()
        played += update()
        times.append(time.perf_counter() - start)
    return {
        "terminal": episodic,
        "S": game.num_states,
        "N": batch_size,
        "T": horizon,
        "updates": updates,
        "played_steps_per_update": played / updates,
        "simulated_steps_per_update": env.simulated / updates,
        "seconds_per_update": statistics.median(times),
        "spread_s": max(times) - min(times),
    }


def _once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("sampler", "update", "accuracy", "exact") if k in results]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False)
    for ax, key in zip(axes[0], panels):
        rows = results[key]
        if key == "sampler":
            for N in sorted({r["N"] for r in rows}):
                sel = [r for r in rows if r["N"] == N]
                x = [r["S"] for r in sel]
                ax.plot(x, [r["project_steps_per_s"] for r in sel], "o-", label=f"spg sampler N={N}")
                ax.plot(x, [r["hand_loop_steps_per_s"] for r in sel], "x--", label=f"hand loop N={N}")
                ax.plot(x, [r["sync_vector_env_steps_per_s"] for r in sel], "s:", label=f"SyncVectorEnv N={N}")
            ax.set(xscale="log", yscale="log", xlabel="states S", ylabel="env steps / s", title="sampling")
        elif key == "update":
            ax.plot([r["k"] for r in rows], [r["ratio"] for r in rows], "o-", label="measured")
            ax.plot([r["k"] for r in rows], [r["budget"] for r in rows], "--", label="budget 2 + 1.5k")
            ax.set(xlabel="CG iterations k", ylabel="spg update / REINFORCE", title="update cost")
        elif key == "accuracy":
            ax.plot([r["N"] for r in rows], [r["cosine"] for r in rows], "o-", label="cosine")
            ax.plot([r["N"] for r in rows], [r["relative_error"] for r in rows], "s--", label="relative error")
            ax.set(xscale="log", xlabel="trajectories N", title="eq. (19) from samples")
        else:
            ax.plot([r["S"] for r in rows], [r["J_s"] for r in rows], "o-", label="J")
            dense = [r for r in rows if "grad_J_s" in r]
            ax.plot([r["S"] for r in dense], [r["grad_J_s"] for r in dense], "s--", label="grad J (eq. 19)")
            ax.set(xscale="log", yscale="log", xlabel="states S", ylabel="seconds", title="exact solver")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="sampler,update,throughput,threads,python_env,accuracy,exact,episodic")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="benchmark.json")
    parser.add_argument("--png", default="benchmark.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sections = args.only.split(",")
    results: dict = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": torch.get_num_threads() and __import__("os").cpu_count(),
            "torch": torch.__version__,
            "threads": 1,
        }
    }
    if "sampler" in sections:
        results["sampler"] = bench_sampler(args.repeats)
        print("sampler (T=100, 5x5 actions): env steps/s [M]; ratio = hand loop time / project time")
        print("       S      N   project  hand loop  SyncVectorEnv  ratio  speedup vs Sync")
        for r in results["sampler"]:
            print(
                f"  {r['S']:6d} {r['N']:6d}  {r['project_steps_per_s'] / 1e6:8.2f}  {r['hand_loop_steps_per_s'] / 1e6:9.2f}"
                f"  {r['sync_vector_env_steps_per_s'] / 1e6:13.3f}  {r['ratio_to_hand_loop']:5.2f}  {r['speedup_over_sync_vector_env']:15.0f}"
            )
    if "update" in sections:
        results["update"] = bench_update(args.repeats)
        print("spg update / REINFORCE gradient (N=1024, T=100, S=50)")
        for r in results["update"]:
            print(
                f"  k={r['k']:2d}: {1e3 * r['spg_s']:7.1f} ms / {1e3 * r['reinforce_s']:6.1f} ms = {r['ratio']:.2f} (budget {r['budget']:.1f})"
            )
    if "throughput" in sections:
        r = results["throughput"] = bench_throughput(args.repeats)
        print(f"sampling + one spg update (N=1024, T=100, S=50): {r['iterations_per_s']:.1f} iterations/s")
    if "threads" in sections:
        results["threads"] = bench_threads(args.repeats)
        for r in results["threads"]:
            print(f"sampler N=4096, S=100, {r['threads']} thread(s): {r['steps_per_s'] / 1e6:.2f} M env steps/s")
    if "python_env" in sections:
        results["python_env"] = bench_python_env(args.repeats)
        print("a pure-Python env through the sampler: env steps/s [k], ratio to the env's own single-copy rate")
        for r in results["python_env"]:
            if r["work"] is None:
                print(
                    f"  sampler alone, {r['copies']:4d} copies: {r['steps_per_s'] / 1e3:9.1f} k "
                    f"({1e6 / r['steps_per_s']:.2f} us per env step)"
                )
            else:
                print(
                    f"  work {r['work']:5d}, {r['vectorization']:5s} {r['copies']:4d} copies: {r['steps_per_s'] / 1e3:7.1f} k"
                    f"  single copy {r['single_copy_steps_per_s'] / 1e3:7.1f} k  ratio {r['ratio_to_single_copy']:.2f}"
                    f" (spread {r['ratio_spread']:.2f})"
                )
    if "accuracy" in sections:
        results["accuracy"] = bench_accuracy(args.repeats)
        print("sampled eq. (19) against the exact direction (20 states, follower at its best response)")
        for r in results["accuracy"]:
            print(
                f"  N={r['N']:5d}: cosine {r['cosine']:.3f} (spread {r['cosine_spread']:.3f}), relative error "
                f"{r['relative_error']:.3f}, process peak RSS so far {r['peak_rss_mb']:.0f} MB"
            )
    if "exact" in sections:
        results["exact"] = bench_exact(args.repeats)
        print("exact solver: J and grad J (eq. 19, CG to 1e-8)")
        for r in results["exact"]:
            grad = f", grad J {r['grad_J_s']:.3f} s" if "grad_J_s" in r else ""
            print(f"  S={r['S']:6d}{' (sparse)' if r['sparse'] else ''}: J {r['J_s']:.3f} s{grad}")
    if "episodic" in sections:
        results["episodic"] = bench_episodic()
        print("spg on grid soccer (113 states, N=512, T=163), per update: env steps played / simulated, wall time")
        for r in results["episodic"]:
            print(
                f"  goal state {'terminal ' if r['terminal'] else 'absorbing'}: {r['played_steps_per_update']:9.0f} / "
                f"{r['simulated_steps_per_update']:9.0f}, {1e3 * r['seconds_per_update']:6.1f} ms (spread {1e3 * r['spread_s']:.1f})"
            )
    with open(args.json, "w") as f:
        json.dump(results, f, indent=2)
    plot(results, args.png)
    print(f"wrote {args.json} and {args.png}")


if __name__ == "__main__":
    main()

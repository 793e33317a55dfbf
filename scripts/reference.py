"""Reference values of every registered benchmark game at a chosen ``lam``:
``python scripts/reference.py [--lam 0.1] [--json out.json]``; the strong Stackelberg equilibrium
of one small stochastic game: ``python scripts/reference.py --sse GAME [--lam 0.1] [--write-cache]``
(``GAME``: a registered id such as ``spg/Patrolling-v0`` or a game file ``.npz``; docs/sse.md).

Columns: the strong Stackelberg value (one-state games, LP), the quantal Stackelberg value
``max J`` at ``lam`` (exhaustive search or multi-start exact optimisation), and ``J`` of the
leader policy that exact simultaneous gradient play ends with (judged like every leader: against
the follower's best response), for contrast.
"""

import argparse
import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

import envs  # noqa: F401
from envs.contract import find_spec
from envs.registry import BENCHMARK_GAMES
from spg.reference import quantal_stackelberg, simultaneous_play, strong_stackelberg
from spg.sparse_game import load_game
from spg.sse import SSEError, cache_path, solution_json, strong_stackelberg_game


def reference_values(lam: float) -> dict[str, dict[str, float | None]]:
    table = {}
    for env_id in BENCHMARK_GAMES:
        game = gym.make(env_id).unwrapped.game
        sse = strong_stackelberg(game.R1[0].numpy(), game.R2[0].numpy()).value if game.num_states == 1 else None
        quantal = quantal_stackelberg(game, lam).value
        simultaneous = simultaneous_play(game, lam).J
        table[env_id] = {"strong_stackelberg": sse, "quantal_stackelberg": quantal, "simultaneous_play": simultaneous}
    return table


def load(name: str):
    """A game file (as ``env=file env.path=...`` loads it) or a registered id's model (as ``env=gym``)."""
    if name.endswith(".npz") or Path(name).is_file():
        return load_game(name)
    game = getattr(gym.make(find_spec(name).id, disable_env_checker=True).unwrapped, "game", None)
    if game is None:
        raise ValueError(f"{name} has no tabular model (env.unwrapped.game): the SSE needs one")
    return game


def sse_report(name: str, lam: float, write_cache: bool, time_limit: float) -> int:
    """Print the SSE of one game beside its quantal Stackelberg value at ``lam``."""
    try:
        game = load(name)
        solution = strong_stackelberg_game(game, time_limit=time_limit)
    except (SSEError, ValueError, gym.error.Error) as error:
        print(f"error: {name}: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    S, (A1, A2) = game.num_states, game.num_actions
    quantal = quantal_stackelberg(game, lam).value
    np.set_printoptions(precision=6, suppress=True)
    print(f"game {name}: S={S}, A1={A1}, A2={A2}, gamma={game.gamma:g}")
    print(
        f"SSE value J_sse      {solution.value:.10g}  (upper bound {solution.upper_bound:.10g}, gap {solution.gap:.2e}, "
        f"{solution.status}, {solution.seconds:.2f} s, {'exact program' if solution.bits == 0 else f'{solution.bits} bits'})"
    )
    print(f"quantal value (lam={lam:g}) {quantal:.10g}")
    print("leader policy pi1(a|s):")
    for s in range(S):
        print(f"  s={s}: {solution.leader_policy[s]}")
    print(f"follower pure policy b(s): {[int(b) for b in solution.follower_policy]}")
    for note in solution.notes:
        print(f"note: {note}")
    if write_cache:
        if not Path(name).is_file():
            print("note: --write-cache needs a game file; nothing written")
        else:
            cache_path(name).write_text(json.dumps(solution_json(game, solution), indent=1))
            print(f"wrote {cache_path(name)} (runs on this game file read it for game/J_sse_gap)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lam", type=float, default=0.1)
    parser.add_argument("--json")
    parser.add_argument(
        "--sse", metavar="GAME", help="the strong Stackelberg equilibrium of GAME (an id or a .npz file)"
    )
    parser.add_argument(
        "--write-cache", action="store_true", help="with --sse on a game file: write GAME.sse.json beside it"
    )
    parser.add_argument("--time-limit", type=float, default=60.0, help="with --sse: seconds for the solver")
    args = parser.parse_args()
    if args.sse:
        return sse_report(args.sse, args.lam, args.write_cache, args.time_limit)
    table = reference_values(args.lam)
    print(f"{'game':<28} {'SSE (lam=0)':>12} {f'quantal (lam={args.lam:g})':>20} {'simultaneous':>13}")
    for env_id, row in table.items():
        sse = "-" if row["strong_stackelberg"] is None else f"{row['strong_stackelberg']:.4f}"
        print(f"{env_id:<28} {sse:>12} {row['quantal_stackelberg']:>20.4f} {row['simultaneous_play']:>13.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"lam": args.lam, "games": table}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

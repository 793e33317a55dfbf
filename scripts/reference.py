"""Reference values of every registered benchmark game at a chosen ``lam``:
``python scripts/reference.py [--lam 0.1] [--json out.json]``.

Columns: the strong Stackelberg value (one-state games, LP), the quantal Stackelberg value
``max J`` at ``lam`` (exhaustive search or multi-start exact optimisation), and ``J`` of the
leader policy that exact simultaneous gradient play ends with (judged like every leader: against
the follower's best response), for contrast.
"""

import argparse
import json

import gymnasium as gym

import envs  # noqa: F401
from envs.registry import BENCHMARK_GAMES
from spg.reference import quantal_stackelberg, simultaneous_play, strong_stackelberg


def reference_values(lam: float) -> dict[str, dict[str, float | None]]:
    table = {}
    for env_id in BENCHMARK_GAMES:
        game = gym.make(env_id).unwrapped.game
        sse = strong_stackelberg(game.R1[0].numpy(), game.R2[0].numpy()).value if game.num_states == 1 else None
        quantal = quantal_stackelberg(game, lam).value
        simultaneous = simultaneous_play(game, lam).J
        table[env_id] = {"strong_stackelberg": sse, "quantal_stackelberg": quantal, "simultaneous_play": simultaneous}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lam", type=float, default=0.1)
    parser.add_argument("--json")
    args = parser.parse_args()
    table = reference_values(args.lam)
    print(f"{'game':<28} {'SSE (lam=0)':>12} {f'quantal (lam={args.lam:g})':>20} {'simultaneous':>13}")
    for env_id, row in table.items():
        sse = "-" if row["strong_stackelberg"] is None else f"{row['strong_stackelberg']:.4f}"
        print(f"{env_id:<28} {sse:>12} {row['quantal_stackelberg']:>20.4f} {row['simultaneous_play']:>13.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"lam": args.lam, "games": table}, f, indent=2)


if __name__ == "__main__":
    main()

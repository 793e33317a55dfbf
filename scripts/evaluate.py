"""Evaluate a trained run: ``python scripts/evaluate.py RUN_DIR_OR_CHECKPOINT [--episodes N] [--json]``.

Prints the exact J, both values and the follower's best-response gap where the game has a model;
for an env without one, the same quantities estimated from the empirical game of the run's saved
rollout counts, with the equilibrium check on them; Monte Carlo returns with standard errors
(episodes from rho, or from the env's reset), and both policies per state.
"""

import json
import os
import sys

# like `python -m`: a user's env module (env.id="my_module:Name-v0") is found in the directory the
# command runs from (and on PYTHONPATH)
sys.path.append(os.getcwd())  # last: it never shadows an installed package

from spg.cli import OneLineParser, fail, int_at_least
from spg.evaluation import evaluate_run, format_table, metric_rows
from spg.trainer import SetupError


def main() -> int:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a run directory (with checkpoints/last.pt) or a checkpoint file")
    parser.add_argument("--episodes", type=int_at_least(1), default=5000, help="Monte Carlo episodes (default 5000)")
    parser.add_argument("--seed", type=int_at_least(0), default=12345)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args()
    try:
        result = evaluate_run(args.path, episodes=args.episodes, seed=args.seed, device=args.device)
    except (SetupError, ValueError, FloatingPointError) as error:  # ContractError is a ValueError
        fail(error)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['algorithm']} (lam = {result['lam']:g}) at iteration {result['checkpoint_iteration']}")
    print(format_table(metric_rows(result)))
    for player in ("leader", "follower"):
        policy = result[f"{player}_policy"]
        print(f"\n{player} policy pi(a|s)")
        print("  state  " + "  ".join(f"a={a:<5d}" for a in range(len(policy[0]))))
        for s, row in enumerate(policy):
            print(f"  {s:5d}  " + "  ".join(f"{p:7.4f}" for p in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())

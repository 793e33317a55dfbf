"""The README's results table: for each benchmark game, the reference quantal Stackelberg value
and the final ``J`` of ``exact_spg``, ``spg`` (from samples) and ``pg`` (from samples), mean and
standard deviation over seeds, from uniform policies:

    python scripts/results_table.py [--seeds 3] [--json results.json]

Runs ``train(cfg)`` in-process with the overrides below (run directories under ``results/``).
"""

import argparse
import json
import logging
import statistics
import tempfile

import gymnasium as gym
from hydra import compose, initialize_config_dir

import envs  # noqa: F401
from spg.config import register_configs
from spg.reference import quantal_stackelberg
from spg.trainer import train

# per game: Hydra env config, lam, and shared algorithm settings (value scales differ: the
# multi-state games' follower values are ~10x the matrix games', so a larger lam keeps the
# follower's soft best response learnable in 300 iterations)
MATRIX = ["algo.lam=0.1", "algo.leader.lr=0.3", "algo.follower.lr=5.0"]
MULTI = ["algo.lam=0.5", "algo.leader.lr=0.3", "algo.follower.lr=10.0"]
GAMES = {
    "Commitment": ("commitment", MATRIX),
    "SecurityGame": ("security_game", MATRIX),
    "Chicken": ("chicken", MATRIX),
    "BattleOfTheSexes": ("battle_of_the_sexes", MATRIX),
    "MatchingPennies": ("matching_pennies", MATRIX),
    "PrisonersDilemma": ("prisoners_dilemma", MATRIX),
    "Patrolling": ("patrolling", MULTI),
    "EpidemicTesting": ("epidemic", MULTI),
}
COMMON = ["trainer.iterations=300", "algo.follower_steps=5", "algo.max_leader_norm=0.5", "trainer.progress=false",
          "trainer.eval_every=300", "trainer.checkpoint_every=300", "trainer.eval_episodes=200"]


def run(config_dir: str, overrides: list[str], run_dir: str) -> float:
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return train(cfg, run_dir=run_dir)["game/J"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json")
    parser.add_argument("--out", default=None, help="run directories (default: a temporary directory)")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    register_configs()
    config_dir = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "configs")
    out = args.out or tempfile.mkdtemp(prefix="spg-results-")
    rows = {}
    for name, (env_config, settings) in GAMES.items():
        lam = float(settings[0].split("=")[1])
        game = gym.make(f"spg/{name}-v0").unwrapped.game
        row = {"lam": lam, "reference": quantal_stackelberg(game, lam).value}
        for algo in ("exact_spg", "spg", "pg"):
            seeds = 1 if algo == "exact_spg" else args.seeds  # exact runs are deterministic
            values = [
                run(config_dir, [f"env={env_config}", f"algo={algo}", f"seed={s}", *settings, *COMMON], f"{out}/{name}/{algo}/{s}")
                for s in range(seeds)
            ]
            row[algo] = {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0}
        rows[name] = row
        print(f"| {name} | {lam:g} | {row['reference']:.3f} | " + " | ".join(
            f"{row[a]['mean']:.3f}" + (f" ± {row[a]['sd']:.3f}" if a != "exact_spg" else "") for a in ("exact_spg", "spg", "pg")
        ) + " |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()

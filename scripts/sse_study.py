"""Measurements behind docs/sse.md: ``python scripts/sse_study.py limits`` (solver time and gap of the
SSE program on seeded random games of growing size) and ``python scripts/sse_study.py lam`` (the
quantal Stackelberg value at shrinking ``lam`` beside the SSE value, on the suite's small games)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envs.families import convergence_games  # noqa: E402
from spg.game import TabularGame, random_game  # noqa: E402
from spg.reference import quantal_stackelberg  # noqa: E402
from spg.sse import SSEError, strong_stackelberg_game  # noqa: E402

LIMIT_SIZES = [(1, 6, 6), (5, 3, 2), (2, 2, 2), (2, 2, 3), (3, 2, 2)]  # one-state, epidemic-sized exact, bilinear
LAMS = [0.5, 0.1, 0.05, 0.02, 0.01, 0.005]
LAM_GAMES = [
    "Commitment",
    "SecurityGame",
    "security-3-targets",
    "Commitment-repeated-g0.9",
    "epidemic-4-levels",
    "random-3-states",
    "delayed-2-actions-delay-1",
]


def limits(time_limit: float) -> None:
    print("| S | A1 | A2 | value | upper bound | gap / value scale | bits | seconds | status |")
    print("|---|---|---|---|---|---|---|---|---|")
    for S, A1, A2 in LIMIT_SIZES:
        game = random_game(S, A1, A2, gamma=0.9, seed=0)
        if S > 1 and A2 == 2 and A1 == 3:  # leader-independent transitions: the exact program
            game = TabularGame(game.P[:, :1].expand_as(game.P), game.R1, game.R2, 0.9, game.rho)
        s = strong_stackelberg_game(game, time_limit=time_limit)
        print(
            f"| {S} | {A1} | {A2} | {s.value:.5f} | {s.upper_bound:.5f} | {s.gap * (1 - 0.9):.1e} | {s.bits} | {s.seconds:.1f} | {s.status} |",
            flush=True,
        )


def lam_table() -> None:
    games = {name: game for name, _, game, _ in convergence_games()}
    print("| game | S | J_sse | " + " | ".join(f"lam={lam:g}" for lam in LAMS) + " |")
    print("|" + "---|" * (3 + len(LAMS)))
    for name in LAM_GAMES:
        game = games[name]
        try:
            sse = strong_stackelberg_game(game).value
        except SSEError as error:
            print(f"| {name} | {error} |")
            continue
        cells = [f"{quantal_stackelberg(game, lam).value - sse:+.4f}" for lam in LAMS]
        print(f"| {name} | {game.num_states} | {sse:.4f} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["limits", "lam"])
    parser.add_argument("--time-limit", type=float, default=60.0)
    args = parser.parse_args()
    limits(args.time_limit) if args.what == "limits" else lam_table()


if __name__ == "__main__":
    main()

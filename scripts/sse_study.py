"""Measurements behind docs/sse.md: ``python scripts/sse_study.py limits`` (solver time and gap of the
SSE program on seeded random games of growing size), ``python scripts/sse_study.py lam`` (the
quantal Stackelberg value at shrinking ``lam`` beside the SSE value, on the suite's small games) and
``python scripts/sse_study.py learners`` (model_spg, exact_spg and spg at shrinking ``lam`` on three
small games, each run judged by its quantal ``J`` and by ``game/J_sse_gap``)."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envs.families import convergence_games  # noqa: E402
from spg import exact  # noqa: E402
from spg.game import TabularGame, random_game  # noqa: E402
from spg.reference import ascend, quantal_stackelberg  # noqa: E402
from spg.sse import SSEError, cache_path, solution_json, strong_stackelberg_game  # noqa: E402

LIMIT_SIZES = [(1, 6, 6), (5, 3, 2), (2, 2, 2), (2, 2, 3), (3, 2, 2)]  # one-state, epidemic-sized exact, bilinear
LAMS = [0.5, 0.1, 0.05, 0.02, 0.01, 0.005]
LAM_GAMES = [
    "Commitment",
    "SecurityGame",
    "security-3-targets",
    "Commitment-repeated-g0.9",
    "epidemic-4-levels",
    "delayed-2-actions-delay-1",
    "random-3-states",
]
LEARNER_GAMES = [
    "Commitment",
    "epidemic-4-levels",
    "random-3-states",
]  # one state; follower-only moves; leader moves too
LEARNER_LAMS = [0.1, 0.05, 0.02, 0.01]
LEARNERS = ["model_spg", "exact_spg", "spg"]


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


def quantal_values(name: str, game, lams: list[float], out: Path) -> dict[float, dict[str, float]]:
    """``J*`` at each ``lam`` (largest first): the best of ``quantal_stackelberg`` (multi-start ascent),
    exact ascent from the uniform leader, and exact ascent from the previous ``lam``'s best leader
    (continuation, which follows the optimum as the soft response sharpens); and the uniform
    leader's ``J``. Cached in ``out/quantal.json`` (the multi-state games take half a minute a value)."""
    path = out / "quantal.json"
    cache = json.loads(path.read_text()) if path.is_file() else {}
    S, A1 = game.num_states, game.num_actions[0]
    uniform = torch.zeros(S, A1, dtype=torch.float64)
    previous, values = None, {}
    for lam in sorted(lams, reverse=True):
        key = f"{name}@{lam:g}"
        if key not in cache:
            probs = torch.as_tensor(quantal_stackelberg(game, lam).leader_policy, dtype=torch.float64).reshape(S, A1)
            candidates = [torch.log(probs.clamp_min(1e-12)), ascend(game, uniform, lam)]
            if previous is not None:
                candidates.append(ascend(game, previous, lam))
            Js = [exact.stackelberg_objective(game, theta, lam) for theta in candidates]
            best = max(range(len(Js)), key=Js.__getitem__)
            cache[key] = {
                "J_star": Js[best],
                "J_uniform": exact.stackelberg_objective(game, uniform, lam),
                "theta": candidates[best].tolist(),
            }
            path.write_text(json.dumps(cache, indent=1))
        previous = torch.tensor(cache[key]["theta"], dtype=torch.float64)
        values[lam] = cache[key]
    return values


def lam_table(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    games = {name: game for name, _, game, _ in convergence_games()}
    print("| game | S | J_sse | " + " | ".join(f"lam={lam:g}" for lam in LAMS) + " | seconds |")
    print("|" + "---|" * (4 + len(LAMS)))
    for name in LAM_GAMES:
        game = games[name]
        started = time.perf_counter()
        try:
            sse = strong_stackelberg_game(game).value
        except SSEError as error:
            print(f"| {name} | {error} |")
            continue
        values = quantal_values(name, game, LAMS, out)
        cells = [f"{values[lam]['J_star'] - sse:+.4f}" for lam in LAMS]
        print(
            f"| {name} | {game.num_states} | {sse:.4f} | "
            + " | ".join(cells)
            + f" | {time.perf_counter() - started:.0f} |",
            flush=True,
        )


def write_game(name: str, game, out: Path) -> Path:
    """``out/games/NAME.npz`` and its SSE cache ``NAME.sse.json`` (so that runs report
    ``game/J_sse_gap`` also where the SSE is not computed at startup)."""
    path = out / "games" / f"{name}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    game.to_npz(path)
    if not cache_path(path).is_file():
        cache_path(path).write_text(json.dumps(solution_json(game, strong_stackelberg_game(game))))
    return path


def train(path: Path, algo: str, lam: float, run_dir: Path) -> dict:
    """One run at the shipped defaults through the command line; its ``metrics.json``."""
    if not (run_dir / "metrics.json").is_file():
        command = [
            sys.executable,
            str(ROOT / "scripts" / "train.py"),
            "env=file",
            f"env.path={path}",
            f"algo={algo}",
            f"algo.lam={lam}",
            f"hydra.run.dir={run_dir}",
            "trainer.progress=false",
        ]
        subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads((run_dir / "metrics.json").read_text())


def learner_table(out: Path) -> None:
    games = {name: game for name, _, game, _ in convergence_games()}
    print("| game | lam | algo | env steps | iterations | J (quantal) | J* | share of gap | game/J_sse_gap | seconds |")
    print("|" + "---|" * 10)
    for name in LEARNER_GAMES:
        game = games[name]
        path = write_game(name, game, out)
        runs = {
            (lam, algo): train(path, algo, lam, out / "runs" / name / f"{algo}-lam{lam:g}")
            for lam in LEARNER_LAMS
            for algo in LEARNERS
        }
        refs = quantal_values(name, game, LAMS, out)  # after the runs: another process may have cached them meanwhile
        for (lam, algo), m in runs.items():
            ref, J = refs[lam], m["game/J"]
            gap = ref["J_star"] - ref["J_uniform"]
            share = (J - ref["J_uniform"]) / gap if gap > 1e-9 else math.nan
            print(
                f"| {name} | {lam:g} | {algo} | {m['env_steps']} | {m['iterations']} | {J:.4f} "
                f"| {ref['J_star']:.4f} | {share:.3f} | {m['game/J_sse_gap']:.4f} | {m['seconds']:.1f} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["limits", "lam", "learners"])
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument(
        "--out", type=Path, default=Path("sse_study"), help="game files, runs and the quantal values' cache"
    )
    args = parser.parse_args()
    if args.what == "limits":
        limits(args.time_limit)
    elif args.what == "lam":
        lam_table(args.out)
    else:
        learner_table(args.out)


if __name__ == "__main__":
    main()

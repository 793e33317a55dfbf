"""Does a learner reach the Stackelberg value at its defaults? The convergence suite:
``python scripts/convergence.py [--out convergence] [--jobs 2] [--algos exact_spg spg model_spg pg] [--games NAME ...] [--suite holdout]``.

For each game of :func:`envs.families.convergence_games` (41 games in 8 families; with ``--suite
holdout``, the 9 games of :func:`envs.families.holdout_games`, on which no default was chosen):

- the reference ``J*``: multi-start exact ascent on ``J`` (:func:`spg.reference.quantal_stackelberg`),
  the uniform leader's ``J``, and whether exact ascent from the *uniform* leader reaches ``J*``
  (the games where a local method from the uniform start can be asked to);
- each algorithm run exactly as a user would, ``python scripts/train.py env=file env.path=GAME.npz
  algo=A algo.lam=LAM`` (only ``trainer.eval_every`` and the run directory set), and judged
  independently from its ``checkpoints/last.pt``: the share of the uniform -> ``J*`` gap closed,
  the follower's final best-response gap, env steps until 95% of the gap was first closed (from
  the run's ``game/J`` curve), and wall time.

Writes ``OUT/convergence.json``, ``OUT/convergence.md`` (per-game and per-family tables) and
``OUT/convergence.png``; the runs stay under ``OUT/runs/``. Extra ``--override key=value`` pairs
go to every run (for studies of the defaults; the published table uses none).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envs.families import convergence_games, drawn_games, holdout_games  # noqa: E402
from spg import exact  # noqa: E402
from spg.reference import ascend, quantal_stackelberg  # noqa: E402

REACHED = 0.95  # the share of the gap whose env steps are reported
SUITES = {"convergence": convergence_games, "holdout": holdout_games, "drawn": drawn_games}


def reference(name: str, game, lam: float) -> dict:
    """``J*`` (multi-start), the uniform leader's ``J``, and ``J`` after exact ascent from it."""
    uniform = torch.zeros(game.num_states, game.num_actions[0], dtype=torch.float64)
    J_uniform = exact.stackelberg_objective(game, uniform, lam)
    J_ascent = exact.stackelberg_objective(game, ascend(game, uniform, lam), lam)
    J_star = max(quantal_stackelberg(game, lam).value, J_ascent)
    gap = J_star - J_uniform
    scale = game.max_abs_reward() / (1.0 - game.gamma)
    return {
        "J_star": J_star,
        "J_uniform": J_uniform,
        "J_ascent_from_uniform": J_ascent,
        "scale": scale,
        "has_gap": gap > 1e-4 * scale,
        "ascent_reaches": gap <= 1e-4 * scale or J_ascent - J_uniform >= 0.99 * gap,
    }


def run_one(name: str, path: Path, lam: float, algo: str, out: Path, overrides: list[str], restarts: int = 1) -> dict:
    """One training run through the command line, judged from its last checkpoint (with
    ``restarts > 1``, the best restart's, whose curve is then the one reported)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from spg.sparse_game import load_game

    label = algo if restarts == 1 else f"{algo} x{restarts}"
    run_dir = out / "runs" / name / label.replace(" ", "_")
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run each time (train.py refuses to overwrite a run)
    command = [
        sys.executable,
        str(ROOT / "scripts" / "train.py"),
        "env=file",
        f"env.path={path}",
        f"algo={algo}",
        f"algo.lam={lam}",
        f"hydra.run.dir={run_dir}",
        "trainer.progress=false",
        "trainer.eval_every=10",
        *overrides,
    ]
    if restarts > 1:
        command.append(f"trainer.restarts={restarts}")
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        return {"game": name, "algo": label, "error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    game = load_game(path)
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    theta1, theta2 = state["leader"]["logits"], state["follower"]["logits"]
    pi1, pi2 = torch.softmax(theta1, -1), torch.softmax(theta2, -1)
    if restarts > 1:
        run_dir = run_dir / f"restart_{json.loads((run_dir / 'metrics.json').read_text())['restart']}"
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    curve = [(p.step, p.value) for p in events.Scalars("game/J")]
    env_steps = {p.step: p.value for p in events.Scalars("charts/env_steps")}
    return {
        "game": name,
        "algo": label,
        "J": exact.stackelberg_objective(game, theta1, lam),
        "best_response_gap": exact.best_response_gap(game, pi1, pi2, lam),
        "curve": [(step, env_steps.get(step, 0.0), value) for step, value in curve],
        "env_steps": int(state["env_steps"]),
        "iterations": int(state["iteration"]),
        "seconds": seconds,
    }


def judge(run: dict, ref: dict) -> dict:
    """Share of the uniform -> J* gap closed (final and along the curve)."""
    if "error" in run:
        return run
    gap = ref["J_star"] - ref["J_uniform"]
    tolerance = 0.01 * ref["scale"]  # where uniform is already optimal, "at J*" means within 1% of the value scale
    share = (
        (lambda J: (J - ref["J_uniform"]) / gap)
        if ref["has_gap"]
        else (lambda J: 1.0 if J >= ref["J_star"] - tolerance else 0.0)
    )
    run["share"] = share(run["J"])
    reached = [(step, steps) for step, steps, J in run["curve"] if share(J) >= REACHED]
    run["iterations_to_95"] = reached[0][0] if reached else None
    run["env_steps_to_95"] = reached[0][1] if reached else None
    run["below_uniform"] = ref["has_gap"] and run["J"] < ref["J_uniform"] - 1e-3 * ref["scale"]
    return run


def tables(games: list, refs: dict, runs: dict, algos: list[str], restarted: list[str]) -> str:
    def cell(run):
        if run is None:
            return "-"
        if "error" in run:
            return "error"
        steps = run["env_steps_to_95"]
        to95 = "" if steps is None else (f", {steps:.1e} steps" if steps else f", {run['iterations_to_95']} it")
        return f"{run['share']:.3f} (gap {run['best_response_gap']:.1e}{to95})"

    columns = algos + restarted
    lines = ["| game | family | lam | J* | uniform J | ascent reaches J* | " + " | ".join(columns) + " |"]
    lines.append("|" + "---|" * (6 + len(columns)))
    for name, family, _, lam in games:
        ref = refs[name]
        row = [
            name,
            family,
            f"{lam:g}",
            f"{ref['J_star']:.4f}",
            f"{ref['J_uniform']:.4f}",
            "yes" if ref["ascent_reaches"] else "no",
        ]
        lines.append("| " + " | ".join(row + [cell(runs.get((name, a))) for a in columns]) + " |")
    lines += [
        "",
        "Per family (games where ascent from the uniform leader reaches J*): median / worst share of the gap closed",
        "",
    ]
    lines.append("| family | games | " + " | ".join(algos) + " |")
    lines.append("|" + "---|" * (2 + len(algos)))
    families: dict[str, list[str]] = defaultdict(list)
    for name, family, _, _ in games:
        if refs[name]["ascent_reaches"]:
            families[family].append(name)
    for family, names in families.items():
        row = [family, str(len(names))]
        for a in algos:
            shares = [runs[(n, a)]["share"] for n in names if (n, a) in runs and "share" in runs[(n, a)]]
            row.append(f"{np.median(shares):.3f} / {min(shares):.3f}" if shares else "-")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Targets on those games:", ""]
    for a in algos:
        judged = [runs[(n, a)] for ns in families.values() for n in ns if (n, a) in runs and "share" in runs[(n, a)]]
        if not judged:
            continue
        at99 = sum(r["share"] >= 0.99 for r in judged)
        at95 = sum(r["share"] >= 0.95 for r in judged)
        below = sum(r["below_uniform"] for r in judged)
        steps = [r["env_steps_to_95"] for r in judged if r["env_steps_to_95"]]
        most = f", at most {max(steps):.2e} env steps to 95%" if steps else ""
        lines.append(
            f"- `{a}`: {at99}/{len(judged)} games >= 99% of the gap, {at95}/{len(judged)} >= 95%, {below} below the uniform leader{most}"
        )
    lines += sample_efficiency(games, runs, algos)
    others = [n for n, *_ in games if not refs[n]["ascent_reaches"]]
    if others and restarted:
        lines += [
            "",
            f"On the {len(others)} games where ascent from the uniform leader misses J*, share of the gap closed (median / worst):",
            "",
        ]
        for a in algos + restarted:
            shares = [runs[(n, a)]["share"] for n in others if (n, a) in runs and "share" in runs[(n, a)]]
            if shares:
                lines.append(f"- `{a}`: {np.median(shares):.3f} / {min(shares):.3f}")
    return "\n".join(lines)


def sample_efficiency(games: list, runs: dict, algos: list[str], baseline: str = "model_spg") -> list[str]:
    """Env steps to 95% of the gap of each sampled algorithm over ``baseline``'s, per game where
    both got there, with the median and the worst ratio."""
    compared = [a for a in algos if a != baseline and a not in ("exact_spg", "exact_pg")]
    if baseline not in algos or not compared:
        return []

    def steps(name, algo):
        run = runs.get((name, algo))
        return run.get("env_steps_to_95") if run and "error" not in run else None

    lines = ["", f"Env steps to 95% of the gap over `{baseline}`'s (games where both get there):", ""]
    lines.append("| game | " + " | ".join(compared) + " |")
    lines.append("|" + "---|" * (1 + len(compared)))
    ratios: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for name, *_ in games:
        row = [name]
        for a in compared:
            mine, theirs = steps(name, a), steps(name, baseline)
            if mine and theirs:
                ratios[a].append((mine / theirs, name))
                row.append(f"{mine / theirs:.1f}")
            else:
                row.append("-")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    for a in compared:
        if ratios[a]:
            worst = max(ratios[a])
            lines.append(
                f"- `{a}` / `{baseline}`: median {np.median([r for r, _ in ratios[a]]):.1f}, worst {worst[0]:.1f} ({worst[1]}), over {len(ratios[a])} games"
            )
    return lines


def plot(games: list, runs: dict, algos: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 4.5))
    x = np.arange(len(games))
    for k, a in enumerate(algos):
        shares = [runs.get((name, a), {}).get("share", np.nan) for name, *_ in games]
        ax.scatter(x + (k - (len(algos) - 1) / 2) * 0.18, np.clip(shares, -0.5, 1.1), label=a, s=18)
    ax.axhline(1.0, color="k", lw=0.6)
    ax.axhline(0.95, color="k", lw=0.6, ls=":")
    ax.set_xticks(x, [name for name, *_ in games], rotation=75, fontsize=7)
    ax.set_ylabel("share of the gap closed")
    ax.set_title("share of the uniform leader -> J* gap closed at the defaults (clipped to [-0.5, 1.1])", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def sse_cell(game) -> str:
    """The game's SSE value (lam = 0) for the table: exact, ``>= value (gap)`` where the solver's
    bound is not yet tight, ``-`` over the limits (spg/sse.py)."""
    from spg.sse import SSEError, strong_stackelberg_game

    try:
        solution = strong_stackelberg_game(game)
    except SSEError:
        return "-"
    return (
        f"{solution.value:.4f}" if solution.status == "optimal" else f">= {solution.value:.4f} (gap {solution.gap:.1e})"
    )


def add_sse_column(path: Path, suite: list) -> None:
    """Insert (or refresh) an ``SSE`` column after ``J*`` in the per-game table of ``path``, from the
    reference alone: no run is repeated and no other cell changes."""
    games = {name: game for name, _, game, _ in suite}
    out, in_table, has = [], False, False
    for line in path.read_text().splitlines():
        cells = line.split(" | ")
        if line.startswith("| game | family | lam | J* |"):
            in_table, has = True, cells[4] == "SSE"
            if not has:
                cells.insert(4, "SSE")
        elif in_table and line.startswith("|---"):
            out.append("|" + "---|" * len(out[-1].split(" | ")))
            continue
        elif in_table and line.startswith("| "):
            name = cells[0][2:]
            value = sse_cell(games[name]) if name in games else "-"
            if has:
                cells[4] = value
            else:
                cells.insert(4, value)
        else:
            in_table = False
        out.append(" | ".join(cells))
    path.write_text("\n".join(out) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sse-column",
        type=Path,
        metavar="MD",
        help="only add the SSE column (lam = 0, spg/sse.py) to an existing table MD, e.g. docs/convergence.md; no runs",
    )
    parser.add_argument("--out", type=Path, default=Path("convergence"))
    parser.add_argument("--jobs", type=int, default=2, help="parallel runs (joblib processes)")
    parser.add_argument("--algos", nargs="+", default=["exact_spg", "spg", "model_spg", "pg"])
    parser.add_argument("--games", nargs="+", help="only these games (names as in the table)")
    parser.add_argument(
        "--suite",
        choices=SUITES,
        default="convergence",
        help="convergence: the 41 games the defaults were chosen on; holdout: 9 games they were not; drawn: 16 games drawn at random from the families (envs/families.py)",
    )
    parser.add_argument(
        "--draw-seed",
        type=int,
        default=2026,
        help="with --suite drawn: the seed of the draw (another seed, other games)",
    )
    parser.add_argument("--override", nargs="*", default=[], help="key=value overrides for every run (studies only)")
    parser.add_argument(
        "--restarts",
        type=int,
        default=4,
        help="trainer.restarts of the extra runs on games where ascent from the uniform leader misses J*",
    )
    args = parser.parse_args()
    suite = SUITES[args.suite](seed=args.draw_seed) if args.suite == "drawn" else SUITES[args.suite]()
    games = [g for g in suite if not args.games or g[0] in args.games]
    if args.sse_column:
        add_sse_column(args.sse_column, games)
        print(f"wrote the SSE column of {args.sse_column}")
        return 0
    if not games:
        print(f"error: no game named {' '.join(args.games)}; see envs/families.py", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "games").mkdir(exist_ok=True)
    paths = {}
    for name, _, game, _ in games:
        paths[name] = (args.out / "games" / f"{name}.npz").resolve()
        game.to_npz(paths[name])
    print(f"{len(games)} games: references (multi-start exact ascent) ...", flush=True)
    ref_list = Parallel(n_jobs=args.jobs)(delayed(reference)(name, game, lam) for name, _, game, lam in games)
    refs = {name: ref for (name, *_), ref in zip(games, ref_list)}
    jobs = [(name, lam, algo, 1) for name, _, _, lam in games for algo in args.algos]
    restarted = [a for a in args.algos if a != "pg"] if args.restarts > 1 else []
    jobs += [
        (name, lam, algo, args.restarts)
        for name, _, _, lam in games
        if not refs[name]["ascent_reaches"]
        for algo in restarted
    ]
    print(f"{len(jobs)} training runs on {args.jobs} processes ...", flush=True)
    results = Parallel(n_jobs=args.jobs, verbose=5)(
        delayed(run_one)(name, paths[name], lam, algo, args.out.resolve(), args.override, k)
        for name, lam, algo, k in jobs
    )
    runs = {(r["game"], r["algo"]): judge(r, refs[r["game"]]) for r in results}
    report = tables(games, refs, runs, args.algos, [f"{a} x{args.restarts}" for a in restarted])
    (args.out / "convergence.md").write_text(report + "\n")
    json.dump(
        {
            "references": refs,
            "runs": [dict(r, game=g, algo=a) for (g, a), r in runs.items()],
            "overrides": args.override,
        },
        (args.out / "convergence.json").open("w"),
        indent=1,
        default=lambda x: None if isinstance(x, float) and math.isnan(x) else str(x),
    )
    plot(games, runs, args.algos, args.out / "convergence.png")
    print(report)
    print(f"wrote {args.out}/convergence.json, convergence.md, convergence.png")
    errors = [r for r in runs.values() if "error" in r]
    for r in errors:
        print(f"error in {r['game']} / {r['algo']}: {r['error']}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

"""The custom-environment example of ``docs/custom_envs.md``, run exactly as written: ``my_games.py``
(taken from the page's code block) in a fresh directory and the page's command from that directory. The learned
pair is judged with the Inspection game's model, built here by hand from the env's rules."""

import re

import numpy as np
import pytest
import torch

from spg import exact
from spg.game import TabularGame
from tests.helpers import ROOT

PAGE = (ROOT / "docs" / "custom_envs.md").read_text()


def inspection_model(gamma: float) -> TabularGame:
    """States: 0, or 1 after a caught cheat. Actions: inspect (leader), cheat (follower)."""
    P = np.zeros((2, 2, 2, 2))
    R1 = np.zeros((2, 2, 2))
    R2 = np.zeros((2, 2, 2))
    for s in range(2):
        for inspect in range(2):
            for cheat in range(2):
                caught = inspect and cheat
                R1[s, inspect, cheat] = -0.3 * inspect - (cheat and not inspect)
                R2[s, inspect, cheat] = (
                    (1.0 if cheat and not inspect else 0.0) - (2.0 if caught else 0.0) + (0.2 if s == 0 else 0.0)
                )
                P[s, inspect, cheat] = [0.0, 1.0] if caught else [0.9, 0.1]
    return TabularGame(P, R1, R2, gamma, np.array([1.0, 0.0]))


@pytest.mark.slow
def test_readme_inspection_example_reaches_the_follower_best_response(scripts, tmp_path):
    code = re.search(r"```python\n(import gymnasium as gym\n.*?class Inspection.*?)```", PAGE, re.S).group(1)
    command = re.search(
        r"```bash\n(python scripts/train.py env=gym env.id=my_games:Inspection-v0[^\n]*)\n```", PAGE
    ).group(1)
    (tmp_path / "my_games.py").write_text(code)
    arguments = command.split()[2:] + [f"hydra.run.dir={tmp_path / 'run'}", "trainer.progress=false"]
    done = scripts.run(
        "train.py", *arguments, cwd=tmp_path, timeout=600
    )  # this checkout's script, from the user's directory
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    gamma = float(re.search(r"env.gamma=([0-9.]+)", command).group(1))
    game, lam = inspection_model(gamma), 0.1
    pi1, pi2 = (torch.softmax(state[p]["logits"], -1) for p in ("leader", "follower"))
    assert exact.best_response_gap(game, pi1, pi2, lam) < 0.05  # within 0.05 of the follower's soft best response
    J_uniform = exact.stackelberg_objective(game, torch.zeros(2, 2, dtype=torch.float64), lam)
    J_star = max(
        exact.stackelberg_objective(game, torch.log(torch.tensor([[p, 1 - p], [q, 1 - q]], dtype=torch.float64)), lam)
        for p in np.linspace(0.01, 0.99, 50)
        for q in np.linspace(0.01, 0.99, 50)
    )  # a grid over both states' mixes
    J = exact.stackelberg_objective(game, state["leader"]["logits"], lam)
    assert J_uniform < J <= J_star + 1e-3, (J, J_uniform, J_star)  # above the uniform leader, below the optimum

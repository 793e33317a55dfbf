"""The README's quick start, run top to bottom exactly as written in a fresh directory (which
links this checkout's ``scripts/`` and ``configs/``, as a clone has them), ``tensorboard`` aside:
it serves until stopped. Every training command ends at the ``J`` of the README's table."""

import re
import shlex
import subprocess
import sys

import pytest

from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()


def quick_start() -> list[str]:
    """The commands of the Quick start block, without their comments."""
    block = re.search(r"```bash\n(.*?)```", README.split("## Quick start", 1)[1], re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def measured() -> dict[str, float]:
    """The final ``J`` of each command of the README's table."""
    return {
        command: float(J)
        for command, J in re.findall(r"^\| `(python scripts/train\.py[^`]*)`[^|]*\| ([-0-9.]+) \|", README, re.M)
    }


def final_J(output: str) -> float:
    return float(re.search(r"J = V1\(pi1, B\(pi1\)\)\(rho\)\s+(\S+)", output).group(1))


@pytest.mark.slow
def test_readme_quick_start_runs_as_written_and_reproduces_its_table(tmp_path):
    for name in ("scripts", "configs"):
        (tmp_path / name).symlink_to(ROOT / name)
    *commands, dashboards = quick_start()
    assert dashboards == "tensorboard --logdir outputs"
    table = measured()
    trained = {}
    for command in commands:
        program, script, *arguments = shlex.split(command)
        assert program == "python", command
        done = subprocess.run(
            [sys.executable, script, *arguments], cwd=tmp_path, capture_output=True, text=True, timeout=600
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, (command, output[-3000:])
        if script == "scripts/train.py":
            row = " ".join(a for a in [program, script, *arguments] if not a.startswith("hydra.run.dir="))
            trained[row] = final_J(output)
            assert trained[row] == pytest.approx(table[row], abs=5e-4), (command, trained[row], table[row])
        if script == "scripts/evaluate.py":  # the run of the line before, judged again from its checkpoint
            assert final_J(output) == pytest.approx(trained[row], rel=1e-5), output
    assert set(trained) == set(table)  # every row of the table is a command of the quick start
    runs = {event.parent for event in (tmp_path / "outputs").rglob("events.out.tfevents.*")}
    assert len(runs) == len(trained)  # what the dashboards show

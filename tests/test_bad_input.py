"""Bad input, one row per case: game files, sparse game files, configs, user envs, checkpoints,
concurrency and the scripts. Every case must end with the error ``scripts/train.py`` turns into
one line and exit code 1 (or, for the other scripts, that line and exit code 1 themselves), name
the setting or file at fault, and leave the run directory it was pointed at as it was.
Kill/resume trials: SIGKILL during checkpoint writes, then ``resume=auto``, bit for bit."""

import io
import math
import os
import re
import runpy
import shutil
import signal
import struct
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from envs.contract import ContractError
from spg.checkpoint import load_checkpoint
from spg.config import config_warnings, unknown_keys
from spg.faults import EnvFault, RunFault
from spg.game import random_game
from spg.rundir import claim
from spg.sparse_game import random_sparse_game
from spg.trainer import SetupError, train
from tests.helpers import ROOT, TINY, config

RUN = TINY[3:]  # iterations, batch, horizon, periods: the env settings are the case's own
ONE_LINE_ERRORS = (
    SetupError,
    ContractError,
    FloatingPointError,
    RunFault,
)  # what scripts/train.py prints as one line, exit 1

ENV_MODULE = '''
import gymnasium as gym, numpy as np

class Bad(gym.Env):
    """A 2-state env that breaks the contract as `mode` says, from step `after` on."""
    observation_space = gym.spaces.Discrete(2)
    action_space = gym.spaces.MultiDiscrete([2, 2])

    def __init__(self, mode="none", after=0):
        self.mode, self.after = mode, after

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return 0, {}

    def step(self, action):
        self.t += 1
        obs, reward = int(self.np_random.integers(2)), np.array([1.0, float(action[1])])
        if self.t > self.after:
            obs, reward = {"scalar": (obs, 1.0), "three": (obs, np.zeros(3)), "obs": (7, reward),
                           "not_finite": (obs, np.array([np.nan, 0.0])), "text": (obs, "high")}.get(self.mode, (obs, reward))
        return obs, reward, False, False, {}

class OnePlayer(Bad):
    action_space = gym.spaces.Discrete(2)

gym.register("Bad-v0", entry_point=Bad)
gym.register("OnePlayer-v0", entry_point=OnePlayer)
'''


def _save(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_run):
    """Every bad file of the matrix, written once; and a finished run to point cases at."""
    d = tmp_path_factory.mktemp("bad_files")
    game = random_game(3, 2, 2, seed=0, gamma=0.8)
    good = {k: v for k, v in game._arrays().items()}
    _save(d / "good.npz", **good)
    data = (d / "good.npz").read_bytes()
    (d / "empty.npz").write_bytes(b"")
    (d / "text.npz").write_text("P = [[0.5, 0.5]]\n")
    np.save(d / "plain.npy", good["P"])
    (d / "truncated.npz").write_bytes(data[: len(data) // 2])
    with zipfile.ZipFile(d / "good.npz") as archive:  # one byte of P's data flipped: its CRC fails
        offset = archive.getinfo("P.npy").header_offset + 30 + len("P.npy") + 200
    damaged = bytearray(data)
    damaged[offset] ^= 0xFF
    (d / "crc.npz").write_bytes(bytes(damaged))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    with zipfile.ZipFile(d / "huge.npz", "w") as archive:  # a header claiming 8 TB
        archive.writestr("P.npy", header.getvalue() + bytes(64))
    _save(d / "pickled.npz", **{**good, "R1": np.array([object()] * 12, dtype=object).reshape(3, 2, 2)})
    _save(d / "complex.npz", **{**good, "R1": good["R1"] + 1j})
    _save(d / "strings.npz", **{**good, "R2": np.full((3, 2, 2), "x")})
    _save(d / "no_R2.npz", **{k: v for k, v in good.items() if k != "R2"})
    P = good["P"].copy()
    P[1, 0, 0] = 0.3
    _save(d / "rows.npz", **{**good, "P": P})
    P = good["P"].copy()
    P[0, 1, 1, :2] = [-0.5, 1.5 - P[0, 1, 1, 2]]
    _save(d / "negative.npz", **{**good, "P": P})
    R1 = good["R1"].copy()
    R1[2, 1, 0] = np.nan
    _save(d / "nan.npz", **{**good, "R1": R1})
    _save(d / "gamma1.npz", **{**good, "gamma": np.float64(1.0)})
    _save(d / "gamma_vector.npz", **{**good, "gamma": np.array([0.9, 0.9])})
    _save(d / "rho_shape.npz", **{**good, "rho": np.full(4, 0.25)})
    _save(d / "mu_zero.npz", **{**good, "mu": np.array([0.5, 0.5, 0.0])})
    sparse = random_sparse_game(4, 2, 2, num_successors=2, seed=0)._arrays()
    succ = sparse["successors"].copy()
    succ[3, 1, 0, 1] = 9
    _save(d / "sparse_range.npz", **{**sparse, "successors": succ})
    _save(d / "sparse_float.npz", **{**sparse, "successors": sparse["successors"].astype(float)})
    probs = sparse["successor_probs"].copy()
    probs[2, 0, 1] = [0.2, 0.2]
    _save(d / "sparse_rows.npz", **{**sparse, "successor_probs": probs})
    _save(d / "sparse_no_probs.npz", **{k: v for k, v in sparse.items() if k != "successor_probs"})
    _save(d / "sparse_shapes.npz", **{**sparse, "successor_probs": sparse["successor_probs"][..., :1]})
    (d / "bad_env_module.py").write_text(ENV_MODULE)
    shutil.copytree(tiny_run, d / "finished")  # train(config(*TINY))
    return d


@pytest.fixture
def user_envs(files, monkeypatch):
    monkeypatch.syspath_prepend(str(files))


def _file(name):
    return lambda d: ["env=file", f"env.path={d / name}"]


def _env(*overrides):
    return lambda d: ["env=gym", "env.id=bad_env_module:Bad-v0", "env.gamma=0.5", "env.num_envs=2", *overrides]


def _random(*overrides):
    return lambda d: [*TINY[:3], *overrides]


# (case, overrides from the files directory, text the message must contain)
SETUP_CASES = [
    ("file-missing", _file("missing.npz"), "no such file"),
    ("file-empty", _file("empty.npz"), "not a zip file"),
    ("file-text", _file("text.npz"), "not a zip file"),
    ("file-plain-npy", _file("plain.npy"), "single .npy array"),
    ("file-truncated", _file("truncated.npz"), "truncated.npz"),
    ("file-crc", _file("crc.npz"), "Bad CRC-32"),
    ("file-huge-header", _file("huge.npz"), "claims shape (1000000, 1000000)"),
    ("file-pickled", _file("pickled.npz"), "R1 holds Python objects"),
    ("file-complex", _file("complex.npz"), "R1 has dtype complex128"),
    ("file-strings", _file("strings.npz"), "R2 has dtype <U1"),
    ("file-missing-key", _file("no_R2.npz"), "missing the key(s) R2"),
    ("file-row-sum", _file("rows.npz"), "P[1, 0, 0, :] sums to 0.9"),
    ("file-negative", _file("negative.npz"), "P[0, 1, 1, 0] = -0.5 is negative"),
    ("file-nan", _file("nan.npz"), "R1[2, 1, 0] = nan"),
    ("file-gamma-1", _file("gamma1.npz"), "gamma = 1.0"),
    ("file-gamma-vector", _file("gamma_vector.npz"), "gamma has shape (2,)"),
    ("file-rho-shape", _file("rho_shape.npz"), "rho has shape (4,)"),
    ("file-mu-support", _file("mu_zero.npz"), "mu[2] = 0.0"),
    ("sparse-out-of-range", _file("sparse_range.npz"), "successors[3, 1, 0, 1] = 9"),
    ("sparse-float-indices", _file("sparse_float.npz"), "successors has dtype float64"),
    ("sparse-row-sum", _file("sparse_rows.npz"), "successor_probs[2, 0, 1, :] sums to 0.4"),
    ("sparse-missing-key", _file("sparse_no_probs.npz"), "missing the key(s) successor_probs"),
    ("sparse-shapes", _file("sparse_shapes.npz"), "successor_probs (4, 2, 2, 1)"),
    ("config-file-no-path", lambda d: ["env=file"], "set env.path"),
    ("config-file-sync", lambda d: [*_file("good.npz")(d), "env.vectorization=sync"], "env.vectorization = sync"),
    ("config-gym-no-id", lambda d: ["env=gym"], "set env.id"),
    ("config-gamma-1", _env("env.gamma=1.0"), "env.gamma = 1.0"),
    ("config-gamma-1.5", _env("env.gamma=1.5"), "env.gamma = 1.5"),
    ("config-gamma-negative", _env("env.gamma=-0.5"), "env.gamma = -0.5"),
    ("config-vectorization", _random("env.vectorization=bogus"), "env.vectorization = 'bogus'"),
    ("config-num-envs", _random("env.num_envs=0"), "env.num_envs = 0"),
    ("config-env-kind", _random("env.kind=url"), "env.kind = 'url'"),
    ("config-threads", _random("threads=0"), "threads = 0"),
    ("config-seed", _random("seed=-1"), "seed = -1"),
    ("config-device", _random("device=tpu"), "device = 'tpu'"),
    ("config-leader-t0", _random("algo.leader.power=1", "algo.leader.t0=0"), "algo.leader.t0 = 0.0"),
    ("config-leader-power", _random("algo.leader.power=-1"), "algo.leader.power = -1.0"),
    ("config-follower-power", _random("algo.follower.power=-0.5"), "algo.follower.power = -0.5"),
    ("config-follower-t0", _random("algo.follower.t0=0"), "algo.follower.t0 = 0.0"),
    (
        "config-solve-without-eq19",
        _random("algo=pg", "algo.solve=cg"),
        "algo.solve = cg: algo=pg does not follow eq. (19)",
    ),
    ("config-leader-lr", _random("algo.leader.lr=0"), "algo.leader.lr = 0.0"),
    ("config-leader-lr-nan", _random("algo.leader.lr=nan"), "algo.leader.lr = nan"),
    ("config-lam", _random("algo.lam=-1"), "algo.lam = -1.0"),
    ("config-kappa-0", _random("algo.follower.kappa=0"), "algo.follower.kappa = 0.0"),
    ("config-kappa-1.5", _random("algo.follower.kappa=1.5"), "algo.follower.kappa = 1.5"),
    ("config-batch-size", _random("trainer.batch_size=0"), "trainer.batch_size = 0"),
    ("config-horizon", _random("trainer.horizon=0"), "trainer.horizon = 0"),
    ("config-restarts", _random("trainer.restarts=0"), "trainer.restarts = 0"),
    ("config-cg-damping", _random("algo.cg.damping=-1"), "algo.cg.damping = -1.0"),
    ("config-sub-batches", _random("algo.sub_batches=4"), "algo.sub_batches = 4"),
    ("config-estimator", _random("algo.estimator=dice"), "algo.estimator = 'dice': choose pooled or reinforce"),
    (
        "config-appended-typo",
        _random("+trainer.batchsize=3"),
        "trainer.batchsize is not a setting: did you mean trainer.batch_size? Set trainer.batch_size=3",
    ),
    (
        "config-appended-nested-typo",
        _random("+algo.follower.kapa=0.5"),
        "did you mean algo.follower.kappa? Set algo.follower.kappa=0.5",
    ),
    (
        "config-appended-unknown",
        _random("+colour=1"),
        "colour is not a setting: the settings there are algo, device, env, seed, threads, trainer",
    ),
    ("config-fresh-run-over-a-finished-one", _random(), "already holds a run"),
    ("config-resume-missing", _random("trainer.resume=/nonexistent/last.pt"), "trainer.resume = /nonexistent/last.pt"),
    (
        "env-unknown-module",
        lambda d: ["env=gym", "env.id=no_such_module:X-v0", "env.gamma=0.5"],
        "cannot import module 'no_such_module'",
    ),
    ("env-no-model-no-gamma", lambda d: ["env=gym", "env.id=bad_env_module:Bad-v0"], "set its discount with env.gamma"),
    (
        "env-action-space",
        lambda d: ["env=gym", "env.id=bad_env_module:OnePlayer-v0", "env.gamma=0.5"],
        "got action_space Discrete(2)",
    ),
    ("env-scalar-reward", _env("+env.kwargs.mode=scalar"), "got the reward 1.0"),
    ("env-reward-length-3", _env("+env.kwargs.mode=three"), "got the reward array([0., 0., 0.])"),
    ("env-text-reward", _env("+env.kwargs.mode=text"), "got the reward 'high'"),
    ("env-nan-reward", _env("+env.kwargs.mode=not_finite"), "got the reward array([nan,  0.])"),
    ("env-observation-range", _env("+env.kwargs.mode=obs"), "got the observation 7 from Discrete(2)"),
    (
        "env-breaks-mid-rollout",
        _env("+env.kwargs.mode=obs", "+env.kwargs.after=5"),
        "broke the two-player contract mid-rollout",
    ),
    (
        "env-breaks-mid-rollout-async",
        _env("+env.kwargs.mode=three", "+env.kwargs.after=5", "env.vectorization=async"),
        "got the reward array([0., 0., 0.])",
    ),
]


def _snapshot(run_dir):
    """Every file of a run directory and its bytes (the lock file's holder pid aside)."""
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def _refused(run_dir, overrides, expected):
    """Train into ``run_dir``: the one-line error naming ``expected``, and the directory unchanged."""
    before = _snapshot(run_dir)
    with pytest.raises(ONE_LINE_ERRORS) as error:
        train(config(*RUN, *overrides), run_dir=run_dir)
    message = str(error.value)
    assert expected in message, message
    assert "\n" not in message and len(message) < 700, message
    assert _snapshot(run_dir) == before
    return message


@pytest.mark.parametrize("case, overrides, expected", SETUP_CASES, ids=[c[0] for c in SETUP_CASES])
def test_bad_setup_is_one_line_and_leaves_the_run_directory(case, overrides, expected, files, user_envs, tmp_path):
    run_dir = tmp_path / "run"
    if case.startswith(
        "env-breaks-mid-rollout"
    ):  # training had started, no update finished: only its TensorBoard events were written
        run_dir.mkdir()
        with warnings.catch_warnings(record=True) as echoed, pytest.raises(EnvFault, match=re.escape(expected)):
            warnings.simplefilter("always")
            train(config(*RUN, *overrides(files)), run_dir=run_dir)
        assert not [w for w in echoed if "Traceback" in str(w.message)]  # no subprocess traceback echoed
        assert [p.name.startswith("events.out.tfevents") for p in run_dir.iterdir() if p.name != ".lock"] == [True]
        return
    shutil.copytree(files / "finished", run_dir)  # a finished run the bad one was pointed at
    _refused(run_dir, overrides(files), expected)


def _truncate(path):
    path.write_bytes(path.read_bytes()[:5000])


def _flip_a_logit(path):
    """One bit of a stored leader logit flipped (the exponent's high bits: a huge finite value)."""
    data = bytearray(path.read_bytes())
    value = struct.pack("<d", float(torch.load(path, weights_only=True)["leader"]["logits"][0, 0]))
    data[bytes(data).index(value) + 7] ^= 0x7F
    path.write_bytes(bytes(data))


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _without_checksum(path):
    state = torch.load(path, weights_only=True)
    del state["checksum"]
    torch.save(state, path)


# (case, damage done to the finished run's last.pt, overrides of the resumed run, expected text)
CHECKPOINT_CASES = [
    ("truncated", _truncate, [], "is damaged or not a spg checkpoint"),
    ("empty", lambda p: p.write_bytes(b""), [], "is damaged or not a spg checkpoint"),
    ("text", lambda p: p.write_text("leader: uniform\n"), [], "is damaged or not a spg checkpoint"),
    (
        "malicious-pickle",
        lambda p: torch.save({"leader": _Exploit()}, p),
        [],
        "holds Python objects that weights_only loading refuses",
    ),
    ("bit-flip", _flip_a_logit, [], "do not match its checksum"),
    ("no-checksum", _without_checksum, [], "has no checksum"),
    ("other-optimizer", None, ["algo.leader.optimizer=sgd"], "algo.leader.optimizer=adam"),
    ("other-algorithm", None, ["algo=pg"], "algo.name=spg"),
    ("other-game-same-shape", None, ["env.kwargs.seed=7"], "trainer.resume_any_game=true"),
    ("other-shape", None, ["env.kwargs.num_states=4"], "[S, A1, A2] = [3, 2, 2]"),
]


@pytest.mark.parametrize("case, damage, overrides, expected", CHECKPOINT_CASES, ids=[c[0] for c in CHECKPOINT_CASES])
def test_bad_checkpoint_is_refused_in_one_line(case, damage, overrides, expected, files, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(files / "finished", run_dir)
    if damage is not None:
        damage(run_dir / "checkpoints" / "last.pt")
    message = _refused(run_dir, [*TINY[:3], *overrides, "trainer.iterations=8", "trainer.resume=auto"], expected)
    if damage is not None:  # the error points at the newest intact checkpoint
        assert "set trainer.resume=" in message and "iteration_000006.pt" in message


def test_another_game_resumes_with_the_explicit_override(files, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(files / "finished", run_dir)
    final = train(
        config(
            *TINY[:3],
            "env.kwargs.seed=7",
            *RUN,
            "trainer.iterations=8",
            "trainer.resume=auto",
            "trainer.resume_any_game=true",
        ),
        run_dir=run_dir,
    )
    assert final["iterations"] == 8


def test_a_run_directory_in_use_is_refused(files, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(files / "finished", run_dir)
    with claim(run_dir):  # flock is per open file: this process's second claim is refused too
        message = _refused(
            run_dir, [*TINY[:3], "trainer.resume=auto", "trainer.iterations=8"], "is in use by another run"
        )
    assert f"pid {os.getpid()}" in message
    train(config(*TINY, "trainer.resume=auto", "trainer.iterations=8"), run_dir=run_dir)  # released with the block


@pytest.mark.parametrize("group", ["algo", "env"])
def test_every_shipped_config_file_holds_only_settings_of_the_schema(group):
    for option in sorted((ROOT / "configs" / group).glob("*.yaml")):
        assert unknown_keys(config(f"{group}={option.stem}")) == [], option


def test_warnings_for_legal_but_likely_wrong_values():
    cfg = config(*TINY)
    assert config_warnings(cfg, gamma=0.8, horizon=12, max_abs_reward=1.0, native=True) == []
    slow = config_warnings(
        config("trainer.batch_size=100000", "trainer.batch_growth=0", "trainer.horizon=2000"),
        gamma=0.999,
        horizon=2000,
        max_abs_reward=1.0,
        native=True,
    )
    assert len(slow) == 1 and "2e+08 env steps" in slow[0] and "trainer.horizon" in slow[0]
    # a growing batch is judged by its last update's: 10000 (1 + 399 / t0)^growth trajectories
    grown = config("algo=spg", "trainer.batch_size=10000", "trainer.horizon=2000", "trainer.iterations=400")
    last = math.ceil(10000 * (1 + 399 / grown.algo.leader.t0) ** grown.trainer.batch_growth)
    growing = config_warnings(grown, gamma=0.999, horizon=2000, max_abs_reward=1.0, native=True)
    assert len(growing) == 1 and f"samples {last} trajectories" in growing[0] and "trainer.batch_growth" in growing[0]
    python_env = config_warnings(
        config("trainer.batch_size=10000", "trainer.batch_growth=0", "env.gamma=0.99"),
        gamma=0.99,
        horizon=1000,
        max_abs_reward=None,
        native=False,
    )
    assert len(python_env) == 1 and "1e+07 env steps" in python_env[0]
    long = config_warnings(config("trainer.horizon=200"), gamma=0.8, horizon=200, max_abs_reward=1.0, native=True)
    assert len(long) == 1 and "0.8^200" in long[0] and "trainer.horizon=null" in long[0]
    ignored = config_warnings(config("env.gamma=0.5"), gamma=0.8, horizon=12, max_abs_reward=1.0, native=True)
    assert len(ignored) == 1 and "env.gamma = 0.5 is ignored" in ignored[0]
    uniform = config_warnings(config("algo.lam=100"), gamma=0.8, horizon=12, max_abs_reward=1.0, native=True)
    assert len(uniform) == 1 and "algo.lam = 100" in uniform[0] and "within 10% of uniform" in uniform[0]


def test_auto_horizon_refuses_a_discount_of_one_instead_of_looping():
    from spg.task import auto_horizon

    for gamma in (1.0, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="discount in"):
            auto_horizon(gamma)


# --- the other scripts, in-process (the same code path as their command lines) ------------------


def _script(name, *args, monkeypatch, capsys):
    """Run ``scripts/NAME.py ARGS``; returns (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", [name, *map(str, args)])
    main = runpy.run_path(str(ROOT / "scripts" / name), run_name="spg_script")["main"]
    try:
        code = main()
    except SystemExit as exit:
        code = exit.code
    return code, capsys.readouterr().err


def _eval_changed_game(d, tmp_path):
    game = tmp_path / "game.npz"
    shutil.copy(d / "good.npz", game)
    train(config("env=file", f"env.path={game}", *RUN), run_dir=tmp_path / "run")
    random_game(3, 2, 2, seed=5, gamma=0.8).to_npz(game)  # the file changed after training
    return ["evaluate.py", tmp_path / "run"]


def _eval_damaged(d, tmp_path):
    shutil.copytree(d / "finished", tmp_path / "run")
    _flip_a_logit(tmp_path / "run" / "checkpoints" / "last.pt")
    return ["evaluate.py", tmp_path / "run"]


def _eval_bad_yaml(d, tmp_path):
    shutil.copytree(d / "finished", tmp_path / "run")
    (tmp_path / "run" / ".hydra").mkdir()
    (tmp_path / "run" / ".hydra" / "config.yaml").write_text("env: [unclosed\n")
    return ["evaluate.py", tmp_path / "run"]


def _plot_bad_overrides(d, tmp_path):
    shutil.copytree(d / "finished", tmp_path / "run")
    (tmp_path / "run" / ".hydra").mkdir()
    (tmp_path / "run" / ".hydra" / "overrides.yaml").write_text("{a: [\n")
    return ["plot.py", tmp_path / "run", "--out", tmp_path / "c.png"]


# (case, arguments from (files, tmp_path), expected text)
SCRIPT_CASES = [
    ("evaluate-missing", lambda d, t: ["evaluate.py", t / "nothing"], "does not exist"),
    ("evaluate-damaged", _eval_damaged, "do not match its checksum"),
    ("evaluate-episodes", lambda d, t: ["evaluate.py", d / "finished", "--episodes", "0"], "--episodes: 0 is not >= 1"),
    ("evaluate-seed", lambda d, t: ["evaluate.py", d / "finished", "--seed", "-3"], "--seed: -3 is not >= 0"),
    ("evaluate-device", lambda d, t: ["evaluate.py", d / "finished", "--device", "tpu"], "device = 'tpu'"),
    ("evaluate-game-changed", _eval_changed_game, "belongs to another game of the same shape"),
    ("evaluate-bad-config", _eval_bad_yaml, "cannot use"),
    ("plot-missing", lambda d, t: ["plot.py", t / "nothing", "--out", t / "c.png"], "does not exist"),
    ("plot-no-events", lambda d, t: ["plot.py", d, "--out", t / "c.png", "--tag", "x"], "no run logged 'x'"),
    ("plot-extension", lambda d, t: ["plot.py", d / "finished", "--out", t / "c.xyz"], "--out"),
    ("plot-out-directory", lambda d, t: ["plot.py", d / "finished", "--out", t / "no" / "c.png"], "does not exist"),
    ("plot-bad-overrides", _plot_bad_overrides, "overrides.yaml"),
    ("export-arguments", lambda d, t: ["export_game.py", "spg/Chicken-v0"], "usage"),
    ("export-not-npz", lambda d, t: ["export_game.py", "spg/Chicken-v0", t / "game.txt"], "must end in .npz"),
    ("export-unknown-id", lambda d, t: ["export_game.py", "spg/Nothing-v0", t / "g.npz"], "spg/Nothing-v0"),
    ("export-yaml", lambda d, t: ["export_game.py", "spg/Patrolling-v0", t / "g.npz", "graph=[ring"], "cannot parse"),
    ("export-kwarg", lambda d, t: ["export_game.py", "spg/Chicken-v0", t / "g.npz", "colour=1"], "colour"),
    ("export-no-model", lambda d, t: ["export_game.py", "bad_env_module:Bad-v0", t / "g.npz"], "no tabular model"),
]


@pytest.mark.parametrize("case, arguments, expected", SCRIPT_CASES, ids=[c[0] for c in SCRIPT_CASES])
def test_scripts_refuse_bad_input_in_one_line(
    case, arguments, expected, files, user_envs, tmp_path, monkeypatch, capsys
):
    name, *args = arguments(files, tmp_path)
    watched = files / "finished"
    before = _snapshot(watched)
    code, err = _script(name, *args, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 1, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert expected in err, err
    assert _snapshot(watched) == before


# --- end to end through scripts/train.py: exit code 1 and one line, nothing else -------------------


@pytest.mark.slow
def test_train_script_cases_end_with_one_line_and_exit_code_1(files, scripts, tmp_path):
    held = tmp_path / "held"
    shutil.copytree(files / "finished", held)
    cases = {  # run directory, overrides, expected text (the other cases run the same code in-process, above)
        "gamma-1-never-hangs": (
            tmp_path / "a",
            ["env=gym", "env.id=bad_env_module:Bad-v0", "env.gamma=1.0", "trainer.horizon=null"],
            "env.gamma = 1.0",
        ),
        "appended-typo": (
            tmp_path / "b",
            ["+trainer.batchsize=3"],
            "did you mean trainer.batch_size? Set trainer.batch_size=3",
        ),
        "directory-in-use": (held, [*TINY[:3], "trainer.resume=auto"], "is in use by another run"),
        "fresh-run-over-a-finished-one": (tmp_path / "finished", TINY[:3], "already holds a run"),
    }
    shutil.copytree(files / "finished", tmp_path / "finished")
    before = {name: _snapshot(run_dir) for name, (run_dir, _, _) in cases.items()}
    with claim(held):
        runs = {
            name: scripts.start(
                "train.py",
                *overrides,
                *RUN,
                f"hydra.run.dir={run_dir}",
                cwd=files,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for name, (run_dir, overrides, _) in cases.items()
        }
        outputs = {name: run.communicate(timeout=120)[0] for name, run in runs.items()}
    for name, (run_dir, _, expected) in cases.items():
        output, code = outputs[name], runs[name].returncode
        lines = [line for line in output.splitlines() if line.strip() and "[INFO]" not in line]
        assert code == 1 and len(lines) == 1 and "Traceback" not in output, (name, output)
        assert "[ERROR]" in lines[0] and expected in lines[0], (name, output)
        if not before[name]:  # a directory the failed setup made: it leaves none behind (its log was printed)
            assert not run_dir.exists(), (name, sorted(p.name for p in run_dir.iterdir()))
            continue
        after = _snapshot(run_dir)  # nothing written but the error, in a train.log of its own
        log_then, log_now = before[name].pop("train.log", b""), after.pop("train.log", b"")
        assert log_now == log_then if name == "directory-in-use" else log_now.startswith(log_then), name
        assert after == before[name], name


# --- kill and resume -------------------------------------------------------------------------------


def _killed_during_write(cfg, run_dir, write: int) -> None:
    """Train in a forked child that SIGKILLs itself during its ``write``-th file write (temp file
    written, not yet renamed into place)."""
    pid = os.fork()
    if pid == 0:  # the child never returns to pytest
        try:
            calls, fsync = [0], os.fsync

            def fsync_then_die(fd):
                fsync(fd)
                calls[0] += 1
                if calls[0] == write:
                    os.kill(os.getpid(), signal.SIGKILL)

            os.fsync = fsync_then_die
            train(cfg, run_dir=run_dir)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def _state(path):
    state = load_checkpoint(path)
    return state["leader"]["logits"], state["follower"]["logits"], state["env_steps"], state["rng"]["torch"]


@pytest.mark.parametrize("write", [3, 4])  # during iteration_000004.pt, during last.pt after it
def test_sigkill_during_a_checkpoint_write_resumes_bit_for_bit(write, files, tmp_path):
    os.umask(umask := os.umask(0o022))
    run_dir = tmp_path / "killed"
    _killed_during_write(config(*TINY), run_dir, write)
    assert list(run_dir.rglob(".*.tmp")), "the child died mid-write"
    with claim(run_dir):  # the dead child's lock went with it; its temp files go on claiming
        assert not list(run_dir.rglob(".*.tmp"))
    final = train(config(*TINY, "trainer.resume=auto"), run_dir=run_dir)
    assert final["iterations"] == 6 and not list(run_dir.rglob(".*.tmp"))
    whole = files / "finished"  # the same config, never interrupted
    for got, want in zip(_state(run_dir / "checkpoints" / "last.pt"), _state(whole / "checkpoints" / "last.pt")):
        assert torch.equal(torch.as_tensor(got), torch.as_tensor(want))
    for periodic in ("iteration_000002.pt", "iteration_000004.pt", "iteration_000006.pt"):  # none lost
        assert torch.equal(_state(run_dir / "checkpoints" / periodic)[0], _state(whole / "checkpoints" / periodic)[0])
    for written in (run_dir / "checkpoints" / "last.pt", run_dir / "metrics.json"):  # the user's umask, not 0600
        assert written.stat().st_mode & 0o777 == 0o666 & ~0o022
    os.umask(umask)


def test_tensorboard_steps_are_continuous_across_a_resume(tmp_path):
    train(config(*TINY, "trainer.iterations=5"), run_dir=tmp_path)  # logs 1..5, checkpoints at 2, 4 and 5
    (tmp_path / "checkpoints" / "last.pt").write_bytes((tmp_path / "checkpoints" / "iteration_000004.pt").read_bytes())
    train(config(*TINY, "trainer.resume=auto"), run_dir=tmp_path)  # as after a kill at 5: resumes from 4
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("charts/env_steps")] == [1, 2, 3, 4, 5, 6]
    assert [e.step for e in events.Scalars("game/J")] == [0, 3, 6]

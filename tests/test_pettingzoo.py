"""PettingZoo ParallelEnvs through the adapter (envs/pettingzoo_adapter.py): a tabular game written
here as a ParallelEnv and PettingZoo's rock-paper-scissors (state = the last joint action), each
judged by Monte Carlo returns against the exact values of a model built here by hand; the
contract's errors; Gymnasium's vector API; and the trainer's ``env=pettingzoo``."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

pettingzoo = pytest.importorskip("pettingzoo", reason="pettingzoo is not installed (pip install -e '.[pettingzoo]')")

import envs  # noqa: E402,F401  (registers spg/PettingZoo-v0)
from envs.contract import ContractError  # noqa: E402
from envs.pettingzoo_adapter import PETTINGZOO_ID  # noqa: E402
from envs.vectorize import make_vector_env  # noqa: E402
from spg import exact  # noqa: E402
from spg.game import TabularGame, random_game  # noqa: E402
from spg.policy import TabularSoftmaxPolicy  # noqa: E402
from spg.sampler import Sampler  # noqa: E402
from tests.helpers import check_vector_env, seeded_logits  # noqa: E402

GAME = random_game(3, 2, 3, seed=4, gamma=0.5, reward_range=(-1.0, 2.0))
HERE = "tests.test_pettingzoo"


class TabularParallelEnv(pettingzoo.ParallelEnv):
    """A tabular game as a two-agent ParallelEnv: both agents observe the state, episodes start from
    ``rho`` and are truncated after ``max_steps`` steps."""

    metadata = {"name": "tabular_v0"}

    def __init__(self, game: TabularGame, max_steps: int = 1000, agents=("leader", "follower")):
        self.game, self.max_steps = game, max_steps
        self.possible_agents = list(agents)
        self.P, self.R1, self.R2 = game.P.numpy(), game.R1.numpy(), game.R2.numpy()

    def observation_space(self, agent):
        return gym.spaces.Discrete(self.game.num_states)

    def action_space(self, agent):
        return gym.spaces.Discrete(self.game.num_actions[self.possible_agents.index(agent)])

    def observe(self, agent):
        return self.state

    def reset(self, seed=None, options=None):
        self.rng = np.random.default_rng(seed)
        self.agents, self.t = list(self.possible_agents), 0
        self.state = int(self.rng.choice(self.game.num_states, p=self.game.rho.numpy()))
        return {agent: self.observe(agent) for agent in self.agents}, {agent: {} for agent in self.agents}

    def step(self, actions):
        a1, a2 = (actions[agent] for agent in self.possible_agents)
        rewards = dict(
            zip(self.possible_agents, (float(self.R1[self.state, a1, a2]), float(self.R2[self.state, a1, a2])))
        )
        self.state = int(self.rng.choice(self.game.num_states, p=self.P[self.state, a1, a2]))
        self.t += 1
        done = self.t >= self.max_steps
        flags = {agent: False for agent in self.agents}
        observations = {agent: self.observe(agent) for agent in self.agents}
        if done:
            self.agents = []
        return observations, rewards, flags, {agent: done for agent in flags}, {agent: {} for agent in flags}


class SeesDifferentStates(TabularParallelEnv):
    def observe(self, agent):
        return (self.state + (agent == "follower")) % self.game.num_states


class LeaderEndsAlone(TabularParallelEnv):
    def step(self, actions):
        observations, rewards, terminations, truncations, infos = super().step(actions)
        return observations, rewards, {**terminations, "leader": True}, truncations, infos


class BoxObservation(TabularParallelEnv):
    def observation_space(self, agent):
        return gym.spaces.Box(0, 1, (2,))


def tabular(max_steps: int = 1000):
    return TabularParallelEnv(GAME, max_steps)


def player_names():
    return TabularParallelEnv(GAME, agents=("player_0", "player_1"))


def sees_different_states():
    return SeesDifferentStates(GAME)


def leader_ends_alone():
    return LeaderEndsAlone(GAME)


def box_observation():
    return BoxObservation(GAME)


def aec_rps():
    pytest.importorskip("pygame", reason="PettingZoo's classic games need pygame")
    return pettingzoo.make("aec", "classic/rps-v2")


def rps_model(gamma: float) -> TabularGame:
    """Rock (0), paper (1), scissors (2), each beating the one before it cyclically; the state is
    0 before the first round and ``1 + 3 a_leader + a_follower`` after it; the leader is player_0."""
    P = np.zeros((10, 3, 3, 10))
    R1 = np.zeros((10, 3, 3))
    for s in range(10):
        for a1 in range(3):
            for a2 in range(3):
                P[s, a1, a2, 1 + 3 * a1 + a2] = 1.0
                R1[s, a1, a2] = {0: 0.0, 1: 1.0, 2: -1.0}[(a1 - a2) % 3]
    return TabularGame(P, R1, -R1, gamma, np.eye(10)[0])


def monte_carlo_z_scores(
    factory: str, game: TabularGame, vectorization: str, copies: int, N: int, T: int
) -> list[float]:
    """``(mean return - exact value) / standard error`` of both players over ``N`` rollouts of
    ``T`` steps of the adapted env, at seeded policies."""
    env = make_vector_env(PETTINGZOO_ID, copies, vectorization, factory=factory)
    S, (A1, A2) = game.num_states, game.num_actions
    leader = TabularSoftmaxPolicy(S, A1, logits=seeded_logits(S, A1, 0))
    follower = TabularSoftmaxPolicy(S, A2, logits=seeded_logits(S, A2, 1))
    batch = Sampler(env, seed=2).collect(leader, follower, N, T)
    env.close()
    assert batch.mask.all()
    values = exact.policy_values(game, leader.probs().detach(), follower.probs().detach(), 0.0)
    return [
        float((returns.mean() - game.rho @ v) / (returns.std() / len(returns) ** 0.5))
        for returns, v in zip(batch.discounted_returns(game.gamma), (values.v1, values.v2))
    ]


@pytest.mark.parametrize("vectorization, copies", [("sync", 64), ("async", 4)])
def test_parallel_env_written_here_returns_match_exact_values(vectorization, copies):
    z = monte_carlo_z_scores(
        f"{HERE}:tabular", GAME, vectorization, copies, 256 if vectorization == "async" else 1024, 20
    )
    assert max(map(abs, z)) < 4.0, z


def test_pettingzoo_rock_paper_scissors_returns_match_exact_values():
    pytest.importorskip("pygame", reason="PettingZoo's classic games need pygame")
    z = monte_carlo_z_scores("envs.pettingzoo_adapter:rock_paper_scissors", rps_model(0.5), "sync", 128, 512, 20)
    assert max(map(abs, z)) < 4.0, z


@pytest.mark.parametrize(
    "factory, message",
    [
        ("player_names", r"agents 'leader' and 'follower'.*; got agents \['player_0', 'player_1'\]"),
        ("box_observation", r"got \(observation, action\) spaces .*Box"),
        ("aec_rps", r"got an AECEnv; convert it with pettingzoo.utils.aec_to_parallel"),
        ("sees_different_states", r"the same value.*; got observations"),
    ],
)
def test_envs_breaking_the_pettingzoo_contract_are_rejected_with_one_line(factory, message):
    with pytest.raises(ContractError, match=message) as error:
        env = make_vector_env(PETTINGZOO_ID, 2, "sync", factory=f"{HERE}:{factory}")
        env.reset(seed=0)
    assert "\n" not in str(error.value)


def test_agents_ending_apart_are_rejected_when_it_happens():
    env = make_vector_env(PETTINGZOO_ID, 2, "sync", factory=f"{HERE}:leader_ends_alone")
    policy = TabularSoftmaxPolicy(3, 2)
    with pytest.raises(ContractError, match=r"end together; got terminations \{'leader': True, 'follower': False\}"):
        Sampler(env, seed=0).collect(policy, TabularSoftmaxPolicy(3, 3), 2, 3)


def needs_a_missing_package():
    import no_such_package_for_spg  # noqa: F401


@pytest.mark.parametrize("factory", ["no_such_module:make", f"{HERE}:no_such_function", "no_colon"])
def test_bad_factory_names_are_rejected(factory):
    with pytest.raises(ContractError, match="PettingZoo factory"):
        make_vector_env(PETTINGZOO_ID, 2, "sync", factory=factory)


def test_a_factory_whose_package_is_missing_is_one_line_naming_the_install():
    with pytest.raises(
        ContractError, match=r"could not import no_such_package_for_spg: install it .*pip install -e '.\[pettingzoo\]'"
    ):
        make_vector_env(PETTINGZOO_ID, 2, "sync", factory=f"{HERE}:needs_a_missing_package")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_make_vec_of_an_adapted_parallel_env_keeps_gymnasium_vector_api(mode):
    env = gym.make_vec(
        PETTINGZOO_ID, num_envs=3, vectorization_mode=mode, max_episode_steps=2, factory=f"{HERE}:tabular"
    )
    low, high = [min(GAME.R1.min(), GAME.R2.min())] * 2, [max(GAME.R1.max(), GAME.R2.max())] * 2
    played = check_vector_env(
        env, gym.spaces.Box(np.array(low, np.float32), np.array(high, np.float32)), episode_steps=2
    )
    env.close()
    # every reward pair is the model's R1, R2 at the state and joint action it was played in
    for states, actions, pairs in played:
        expected = np.stack(
            [
                GAME.R1.numpy()[states, actions[:, 0], actions[:, 1]],
                GAME.R2.numpy()[states, actions[:, 0], actions[:, 1]],
            ],
            -1,
        )
        np.testing.assert_allclose(pairs, expected, rtol=1e-6)
    assert len(played) == 3  # steps 1, 2 and 4 (step 3 only restarts)


def train(scripts, tmp_path, *overrides):
    return scripts.run(
        "train.py", "env=pettingzoo", "env.gamma=0.9", "trainer.progress=false", f"hydra.run.dir={tmp_path}", *overrides
    )


@pytest.mark.slow
def test_trainer_trains_on_pettingzoo_rock_paper_scissors(scripts, tmp_path):
    pytest.importorskip("pygame", reason="PettingZoo's classic games need pygame")
    done = train(
        scripts,
        tmp_path,
        "env.id=envs.pettingzoo_adapter:rock_paper_scissors",
        "trainer.iterations=4",
        "algo.follower_warmup=1",
        "trainer.batch_size=32",
        "trainer.horizon=10",
        "trainer.eval_every=2",
        "trainer.eval_episodes=32",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["leader"]["logits"].shape == (10, 3) and state["follower"]["logits"].shape == (10, 3)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["leader/return"] == pytest.approx(-metrics["follower/return"])  # zero-sum, round by round
    assert "spg on envs.pettingzoo_adapter:rock_paper_scissors: S=10, A1=3, A2=3" in done.stdout + done.stderr


@pytest.mark.slow
def test_trainer_rejects_a_broken_pettingzoo_env_with_one_line(scripts, tmp_path):
    done = train(scripts, tmp_path, f"env.id={HERE}:player_names")
    assert done.returncode == 1
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "PettingZoo env must be" in line]
    assert len(lines) == 1 and "got agents ['player_0', 'player_1']" in lines[0], done.stderr[-3000:]

"""The iterate average a sampled run returns (``spg.averaging``): its weights against their closed
form, its place in checkpoints and resumes, and what it does for a leader whose ``J`` has a sharp
optimum."""

import pytest
import torch

from spg.averaging import IterateAverage
from spg.policy import TabularSoftmaxPolicy
from spg.trainer import train
from tests.helpers import TINY, config, seeded_logits
from tests.test_convergence import share_of_gap


def test_polynomial_decay_average_weighs_iterate_k_as_its_closed_form():
    # with c_t = 4 / (t + 3) (eta = 3), iterate k of t keeps the weight c_k prod_{j > k} (1 - c_j)
    # = 4 k (k + 1) (k + 2) / (t (t + 1) (t + 2) (t + 3)): the product telescopes
    leader, follower = TabularSoftmaxPolicy(2, 3), TabularSoftmaxPolicy(2, 2)
    average = IterateAverage(leader, follower, eta=3.0)
    iterates = [(seeded_logits(2, 3, seed=k), seeded_logits(2, 2, seed=100 + k)) for k in range(1, 31)]
    for k, (theta1, theta2) in enumerate(iterates, start=1):
        with torch.no_grad():
            leader.logits.copy_(theta1)
            follower.logits.copy_(theta2)
        average.update(k)
    t = len(iterates)
    weights = torch.tensor(
        [4 * k * (k + 1) * (k + 2) / (t * (t + 1) * (t + 2) * (t + 3)) for k in range(1, t + 1)], dtype=torch.float64
    )
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-12)
    for player, average_policy in enumerate((average.leader, average.follower)):
        expected = sum(w * pair[player] for w, pair in zip(weights, iterates))
        torch.testing.assert_close(average_policy.logits.detach(), expected, rtol=0, atol=1e-12)


def test_eta_zero_returns_the_iterates_themselves():
    leader, follower = TabularSoftmaxPolicy(2, 3), TabularSoftmaxPolicy(2, 2)
    average = IterateAverage(leader, follower, eta=0.0)
    assert average.leader is leader and average.follower is follower and average.weight(7) == 1.0
    with pytest.raises(ValueError, match="eta"):
        IterateAverage(leader, follower, eta=-1.0)


def test_the_checkpoint_holds_the_average_as_the_run_s_policies_and_the_iterates_to_resume(tmp_path):
    train(config("algo=spg", *TINY), run_dir=tmp_path / "whole")
    state = torch.load(tmp_path / "whole" / "checkpoints" / "last.pt", weights_only=True)
    assert not torch.equal(state["leader"]["logits"], state["iterates"]["leader"]["logits"])
    # an interrupted run resumed from its periodic checkpoint ends bit for bit where the whole run does
    train(config("algo=spg", *TINY[:3], "trainer.iterations=4", *TINY[4:]), run_dir=tmp_path / "split")
    train(config("algo=spg", *TINY, "trainer.resume=auto"), run_dir=tmp_path / "split")
    resumed = torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=True)
    for key in ("leader", "follower"):
        assert torch.equal(resumed[key]["logits"], state[key]["logits"])
        assert torch.equal(resumed["iterates"][key]["logits"], state["iterates"][key]["logits"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["security-2-targets", "security-4-targets"])
def test_spg_settles_at_a_sharp_optimum(name, tmp_path):
    """Security games whose best commitment leaves the attacker nearly indifferent: ``J`` falls
    steeply on one side of the optimum, and the last iterate of ``spg`` swung across it (0.652 and
    0.761 of the gap when runs returned their last iterate, with Adam's betas [0.9, 0.999])."""
    share, gap, scale = share_of_gap(name, "spg", tmp_path)
    assert share >= 0.95 and gap < 0.01 * scale, (share, gap)

"""Tabular softmax policies ``pi(a|s) = softmax(theta[s])_a`` (paper, eq. 7)."""

from __future__ import annotations

import torch
from torch import nn


class TabularSoftmaxPolicy(nn.Module):
    """A Markov stationary policy with one logit per state and action: parameter ``logits [S, A]``."""

    def __init__(
        self,
        num_states: int,
        num_actions: int,
        *,
        logits: torch.Tensor | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if logits is None:
            logits = torch.zeros(num_states, num_actions, dtype=dtype, device=device)
        elif tuple(logits.shape) != (num_states, num_actions):
            raise ValueError(f"logits have shape {tuple(logits.shape)}, expected [S, A] = {(num_states, num_actions)}")
        self.logits = nn.Parameter(logits.detach().clone().to(dtype=dtype, device=device))

    @property
    def num_states(self) -> int:
        return self.logits.shape[0]

    @property
    def num_actions(self) -> int:
        return self.logits.shape[1]

    def probs(self, states: torch.Tensor | None = None) -> torch.Tensor:
        """``pi(.|s)`` for a batch of states ``[...]`` -> ``[..., A]`` (all states when None)."""
        logits = self.logits if states is None else self.logits[states]
        return torch.softmax(logits, dim=-1)

    def entropy(self, states: torch.Tensor | None = None) -> torch.Tensor:
        """``H(pi(.|s)) = -sum_a pi(a|s) log pi(a|s)`` for a batch of states (all when None)."""
        logits = self.logits if states is None else self.logits[states]
        return entropy_from_logits(logits)

    @torch.no_grad()
    def sample(self, states: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``a ~ pi(.|s)`` for each state by inverting the CDF with one uniform per state."""
        cdf = torch.cumsum(self.probs(states), dim=-1)
        u = torch.rand(states.shape + (1,), generator=generator, dtype=cdf.dtype, device=cdf.device)
        return (cdf < u).sum(-1).clamp_max_(self.num_actions - 1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of ``softmax(logits)`` along the last axis, stable and twice differentiable."""
    log_p = torch.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(-1)

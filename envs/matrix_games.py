"""Matrix games (one-state stochastic games) with known Stackelberg equilibria.

Each entry gives the leader's and the follower's payoffs ``[A1, A2]`` (rows: the leader's
actions), the strong Stackelberg equilibrium (SSE: the follower breaks ties in the leader's
favour) and its source. ``gamma = 0``, so values are expected payoffs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MatrixGameSpec:
    name: str
    leader_payoff: tuple[tuple[float, ...], ...]
    follower_payoff: tuple[tuple[float, ...], ...]
    stackelberg_value: float
    source: str
    note: str


MATRIX_GAMES = {
    spec.name: spec
    for spec in (
        MatrixGameSpec(
            "Commitment",
            ((2.0, 4.0), (1.0, 3.0)),
            ((1.0, 0.0), (0.0, 1.0)),
            3.5,
            "V. Conitzer and T. Sandholm, 'Computing the optimal strategy to commit to', EC 2006, Fig. 1.",
            "Row U dominates, so every Nash equilibrium pays the leader 2; committing to (1/2, 1/2) makes "
            "the follower (tie broken for the leader) play R and pays 3.5.",
        ),
        MatrixGameSpec(
            "SecurityGame",
            ((0.0, -1.0), (-2.0, 0.0)),
            ((-1.0, 1.0), (2.0, -1.0)),
            -0.6,
            "Security game with coverage: C. Kiekintveld et al., 'Computing optimal randomized resource "
            "allocations for massive security games', AAMAS 2009; J. Pita et al., ARMOR, AAMAS 2008.",
            "The defender covers target 1 (value 2) or target 2 (value 1); the attacker attacks one. A covered "
            "attack costs the attacker 1; an uncovered one gains it the target's value and costs the defender "
            "as much. SSE: cover target 1 with probability 0.6; the attacker attacks target 2; value -0.6.",
        ),
        MatrixGameSpec(
            "Chicken",
            ((0.0, -1.0), (1.0, -10.0)),
            ((0.0, 1.0), (-1.0, -10.0)),
            1.0,
            "A. Rapoport and A. M. Chammah, 'The game of chicken', American Behavioral Scientist 10(3), 1966.",
            "Actions (swerve, straight). Committing to straight forces the follower to swerve: value 1.",
        ),
        MatrixGameSpec(
            "BattleOfTheSexes",
            ((2.0, 0.0), (0.0, 1.0)),
            ((1.0, 0.0), (0.0, 2.0)),
            2.0,
            "R. D. Luce and H. Raiffa, 'Games and Decisions', Wiley 1957, ch. 5.",
            "Committing to the leader's favourite event makes the follower join it: value 2 (a Nash payoff "
            "too, but commitment selects it).",
        ),
        MatrixGameSpec(
            "MatchingPennies",
            ((1.0, -1.0), (-1.0, 1.0)),
            ((-1.0, 1.0), (1.0, -1.0)),
            0.0,
            "J. von Neumann and O. Morgenstern, 'Theory of Games and Economic Behavior', 1944.",
            "Zero-sum: commitment buys nothing; the leader mixes (1/2, 1/2) and gets the value 0.",
        ),
        MatrixGameSpec(
            "PrisonersDilemma",
            ((3.0, 0.0), (5.0, 1.0)),
            ((3.0, 5.0), (0.0, 1.0)),
            1.0,
            "M. Flood and M. Dresher (RAND, 1950), as named by A. W. Tucker; R. Axelrod, 'The Evolution of "
            "Cooperation', 1984.",
            "Actions (cooperate, defect). Defecting dominates for the follower whatever the leader commits "
            "to, so commitment buys nothing: value 1.",
        ),
    )
}

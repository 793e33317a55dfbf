"""Grid soccer (after Littman, 1994), an episodic game: two players on a ``rows x cols`` grid, one
ball; a goal ends the episode.

State ``(a, b, holder)``: the leader (player A) on cell ``a``, the follower (player B) on cell
``b != a``, and who holds the ball; plus one state after a goal. Both players choose among stand
(0), north (1), south (2), east (3) and west (4); the two moves are executed in a random order
(each first with probability 1/2). A move off the grid leaves the player in place, except that the
ball holder moving off the east edge scores for A and off the west edge for B (an own goal
included). A move onto the other player's cell does not happen, and if the mover held the ball it
passes to the player standing there. A goal pays the scorer ``goal_value`` and costs the other
player as much (zero-sum), and the game enters the goal state.

With ``episodic=True`` the goal state is terminal (the game file's ``terminal`` key): every
episode ends at a goal. With ``episodic=False`` it is an absorbing state with zero rewards, the
encoding of games whose format has no terminal states, in which every trajectory runs to the
horizon. A policy pair has the same leader value in both; the follower's value differs by its
entropy bonus, collected forever in the absorbing state, so its soft best response, and ``J``,
can differ.
"""

from __future__ import annotations

import numpy as np

from spg.game import TabularGame

MOVES = ((0, 0), (-1, 0), (1, 0), (0, 1), (0, -1))  # stand, north, south, east, west


def _play(rows: int, cols: int, positions: list[int], holder: int, actions: tuple[int, int], order: tuple[int, int]):
    """The outcome of one step: ``("goal", scorer)`` or ``("state", (a, b, holder))``."""
    positions = list(positions)
    for mover in order:
        other = 1 - mover
        r, c = divmod(positions[mover], cols)
        dr, dc = MOVES[actions[mover]]
        nr, nc = r + dr, c + dc
        if holder == mover and not 0 <= nc < cols:
            return "goal", 0 if nc >= cols else 1
        if not (0 <= nr < rows and 0 <= nc < cols):
            continue
        target = nr * cols + nc
        if target == positions[other]:
            holder = other if holder == mover else holder
            continue
        positions[mover] = target
    return "state", (positions[0], positions[1], holder)


def soccer_game(
    rows: int = 2, cols: int = 4, goal_value: float = 100.0, gamma: float = 0.9, episodic: bool = True
) -> TabularGame:
    """The soccer game as a :class:`TabularGame` (``2 C (C - 1) + 1`` states for ``C`` cells,
    the goal state last); ``rho``: A on row 0, column ``cols // 2 - 1``, B on the last row,
    column ``cols // 2``, the ball to either with probability 1/2."""
    if rows < 1 or cols < 2:
        raise ValueError(f"rows = {rows}, cols = {cols}: soccer needs at least 2 columns")
    cells = rows * cols
    states = [(a, b, h) for a in range(cells) for b in range(cells) if a != b for h in (0, 1)]
    index = {state: i for i, state in enumerate(states)}
    goal = len(states)
    S, A = goal + 1, len(MOVES)
    P = np.zeros((S, A, A, S))
    R1 = np.zeros((S, A, A))
    P[goal, :, :, goal] = 1.0  # never used when terminal; absorbing otherwise
    for (a, b, h), s in index.items():
        for a1 in range(A):
            for a2 in range(A):
                for order in ((0, 1), (1, 0)):
                    kind, outcome = _play(rows, cols, [a, b], h, (a1, a2), order)
                    if kind == "goal":
                        P[s, a1, a2, goal] += 0.5
                        R1[s, a1, a2] += 0.5 * goal_value * (1.0 if outcome == 0 else -1.0)
                    else:
                        P[s, a1, a2, index[outcome]] += 0.5
    rho = np.zeros(S)
    start_a, start_b = cols // 2 - 1, (rows - 1) * cols + cols // 2
    for holder in (0, 1):
        rho[index[(start_a, start_b, holder)]] = 0.5
    terminal = np.zeros(S, dtype=bool)
    terminal[goal] = episodic
    return TabularGame(P, R1, -R1, gamma, rho, None, terminal)

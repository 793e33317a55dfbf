"""Strong Stackelberg equilibria (SSE) of small stochastic games with stationary policies.

The leader commits to a stationary policy ``pi1(a|s)``; the follower answers with a deterministic
stationary policy ``b(s)`` that is optimal in the MDP ``pi1`` leaves it (at every state, lam = 0),
ties broken in the leader's favour. The SSE value is the leader's ``J = rho . V1`` there, the same
``J`` as everywhere in this package, at lam = 0.

:func:`strong_stackelberg_game` solves the mixed-integer program of Vorobeychik and Singh
("Computing Stackelberg equilibria in discounted stochastic games", AAAI 2012) with
``scipy.optimize.milp`` (HiGHS): binaries ``d(b|s)`` for the follower's action, big-M value
constraints for both players. The values are bilinear in ``pi1`` and the values of the next
states; where a next-state probability does not depend on the leader's action (one-state and
repeated games, follower-controlled moves) the term is linear and the program exact. Elsewhere
each product ``pi1(a|s) V(s')`` is relaxed by binary expansion: ``pi1 = sum_k 2^-k z_k + r`` with
``bits + 1`` binaries ``z_k`` (exact products with ``V``) and a remainder ``0 <= r <= 2^-bits``
whose product is McCormick-relaxed. The program is then a relaxation: its optimum bounds the
SSE value from above, and tightens as ``bits`` grows. Its leader policy, polished by a local
solver (SLSQP) for the follower policy it found and judged exactly (:func:`strong_response`),
bounds the SSE value from below. The reported ``gap`` is upper bound minus value: the error bound
of the answer, checked, not assumed. Bits grow through ``BITS`` until the gap is below ``tol``.

:func:`strong_response` is also how a learned leader is judged against the SSE: its ``J``
against the follower's exact (lam = 0) best response, ties for the leader.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp, minimize

# measured limits (docs/sse.md, Limits): games above them are refused with one line
MAX_STATES = 3  # with leader-dependent transitions (bilinear terms)
MAX_ACTIONS = 3  # with leader-dependent transitions
MAX_EXACT_BINARIES = 200  # S * A2 follower binaries, games without bilinear terms
BITS = (6, 9, 12)  # binary digits of pi1 tried in turn until the gap is below tol
TIME_LIMIT = 60.0  # seconds for all programs of one game together
TIE_TOLERANCE = 1e-9  # of the value scale: follower actions this close to the best count as best
STARTUP_LIMIT = 5.0  # seconds the trainer gives the SSE at startup


class SSEError(ValueError):
    """A one-line reason why no SSE reference was computed, with the fix."""


@dataclass
class SSESolution:
    value: float  # J of leader_policy against the follower's exact best response, ties for the leader
    upper_bound: float  # no stationary leader policy does better (the relaxation's bound)
    leader_policy: np.ndarray  # [S, A1]
    follower_policy: np.ndarray  # [S] the follower's pure action per state
    seconds: float
    bits: int  # binary digits of the relaxation (0: the program was exact, no bilinear term)
    status: str = "optimal"
    notes: list[str] = field(default_factory=list)

    @property
    def gap(self) -> float:
        return max(0.0, self.upper_bound - self.value)


def _arrays(game):
    """The game as float64 numpy arrays (dense; a sparse game small enough is densified)."""
    if hasattr(game, "dense"):
        game = game.dense()
    live = ~game.terminal.cpu().numpy().astype(bool)
    return (
        game.P.cpu().double().numpy(),
        game.R1.cpu().double().numpy(),
        game.R2.cpu().double().numpy(),
        float(game.gamma),
        game.rho.cpu().double().numpy(),
        live,
    )


def bilinear_states(game) -> int:
    """States whose next-state probabilities depend on the leader's action (their products
    ``pi1 V`` need the binary expansion); 0 for one-state, repeated and follower-controlled games."""
    P, _, _, _, _, live = _arrays(game)
    varies = ((P.max(1) - P.min(1)) > 1e-14) & live[None, None, :] & live[:, None, None]
    return int(varies.any((1, 2)).sum())


def size_problem(game) -> str | None:
    """Why the game is too large for the SSE program (one line with the fix), or ``None``."""
    S, (A1, A2) = game.num_states, game.num_actions
    if S * A2 > MAX_EXACT_BINARIES:
        return (
            f"no SSE reference: the game has S={S}, A2={A2}: S*A2 = {S * A2} follower binaries, above the limit "
            f"{MAX_EXACT_BINARIES} of the SSE program (docs/sse.md, Limits); compare with the quantal value instead"
        )
    bilinear = bilinear_states(game)
    if bilinear and (S > MAX_STATES or max(A1, A2) > MAX_ACTIONS):
        return (
            f"no SSE reference: the game has S={S}, A1={A1}, A2={A2} and leader-dependent transitions, above the limits of "
            f"the SSE program there (S <= {MAX_STATES}, actions <= {MAX_ACTIONS}; docs/sse.md, Limits); "
            "compare with the quantal value instead"
        )
    return None


# -- judging a leader policy --------------------------------------------------------------------
def _follower_mdp(P, R, pi1, live):
    """The MDP ``pi1`` leaves a player choosing ``b``: rewards ``[S, A2]`` and transitions ``[S, A2, S]``
    (zero rows at terminal states, zero columns into them: values there are 0)."""
    r = np.einsum("sa,sab->sb", pi1, R) * live[:, None]
    T = np.einsum("sa,sabt->sbt", pi1, P) * live[:, None, None] * live[None, None, :]
    return r, T


def _evaluate(r, T, gamma, b):
    S = r.shape[0]
    idx = np.arange(S)
    return np.linalg.solve(np.eye(S) - gamma * T[idx, b], r[idx, b])


def _policy_iteration(r, T, gamma, allowed=None, max_iterations=1000):
    """Optimal values and a greedy policy of the MDP ``(r, T)`` over the ``allowed [S, A]`` actions."""
    masked = np.where(allowed, 0.0, -np.inf) if allowed is not None else 0.0
    b = np.argmax(r + masked, -1)
    for _ in range(max_iterations):
        V = _evaluate(r, T, gamma, b)
        Q = r + gamma * T @ V + masked
        better = Q.max(-1) > Q[np.arange(len(b)), b] + 1e-12 * max(1.0, np.abs(Q[np.isfinite(Q)]).max())
        if not better.any():
            return V, Q, b
        b = np.where(better, Q.argmax(-1), b)
    raise RuntimeError("policy iteration did not converge")


def _reward_scale(game) -> float:
    """``max|r| / (1 - gamma)``: the unit of the solver's tolerances and of the leader's ties."""
    return max(game.max_abs_reward(), 1e-12) / (1.0 - float(game.gamma))


def strong_response(game, pi1, tol: float | None = None) -> tuple[float, np.ndarray]:
    """The leader's ``J`` when the follower best-responds to ``pi1 [S, A1]`` exactly (lam = 0, at
    every state), ties (actions within ``tol``, default ``TIE_TOLERANCE`` of the value scale)
    broken in the leader's favour; and that pure follower policy ``[S]``."""
    P, R1, R2, gamma, rho, live = _arrays(game)
    pi1 = np.asarray(pi1, dtype=np.float64).reshape(R1.shape[:2])
    tol = TIE_TOLERANCE * _reward_scale(game) if tol is None else tol
    r2, T = _follower_mdp(P, R2, pi1, live)
    V2, Q2, _ = _policy_iteration(r2, T, gamma)
    best = Q2 >= V2[:, None] - tol
    r1, _ = _follower_mdp(P, R1, pi1, live)
    V1, _, b = _policy_iteration(r1, T, gamma, allowed=best)
    return float(rho @ V1), b


# -- the mixed-integer program ------------------------------------------------------------------
class _Program:
    """Variables and rows of the SSE program, built column by column."""

    def __init__(self):
        self.lb, self.ub, self.integer, self.rows, self.row_lo, self.row_hi = [], [], [], [], [], []

    def var(self, lo, hi, integer=False) -> int:
        self.lb.append(lo)
        self.ub.append(hi)
        self.integer.append(int(integer))
        return len(self.lb) - 1

    def row(self, coefficients: dict[int, float], lo=-np.inf, hi=np.inf) -> None:
        self.rows.append(coefficients)
        self.row_lo.append(lo)
        self.row_hi.append(hi)

    def matrix(self):
        data, ri, ci = [], [], []
        for i, row in enumerate(self.rows):
            for j, v in row.items():
                ri.append(i)
                ci.append(j)
                data.append(v)
        return sp.csr_array((data, (ri, ci)), shape=(len(self.rows), len(self.lb)))


def _add(row: dict, j: int, v: float) -> None:
    if v != 0.0:
        row[j] = row.get(j, 0.0) + v


def _state_bounds(P, R, gamma, live, iterations: int = 100000):
    """Per-state bounds ``lo, hi [S]`` on a player's values under any pair of policies: value
    iteration of the joint-control MDPs minimising and maximising ``R``, widened by what remains."""
    bounds = []
    for sign in (-1.0, 1.0):
        V = np.zeros(R.shape[0])
        for _ in range(iterations):
            new = sign * (sign * (R + gamma * P @ V)).max((1, 2)) * live
            if np.abs(new - V).max() < 1e-12:
                break
            V = new
        bounds.append(V + sign * (1e-9 + 2 * np.abs(new - V).max() / (1 - gamma)))
    return bounds[0], bounds[1]


def _build(P, R1, R2, gamma, rho, live, bits, fixed_d=None):
    """The program at ``bits`` binary digits (see the module docstring); ``fixed_d [S]`` fixes the follower."""
    S, A1, A2 = R1.shape
    prog = _Program()
    bounds = [_state_bounds(P, R, gamma, live) for R in (R1, R2)]  # [2][lo [S], hi [S]]
    pi = np.array([[prog.var(0.0, 1.0) for _ in range(A1)] for _ in range(S)])
    d = np.array([[prog.var(0.0, 1.0, integer=fixed_d is None) for _ in range(A2)] for _ in range(S)])
    V = [
        np.array([prog.var(bounds[p][0][s], bounds[p][1][s]) if live[s] else prog.var(0.0, 0.0) for s in range(S)])
        for p in range(2)
    ]
    for s in range(S):
        prog.row({int(j): 1.0 for j in pi[s]}, 1.0, 1.0)
        prog.row({int(j): 1.0 for j in d[s]}, 1.0, 1.0)
        if fixed_d is not None:
            for b in range(A2):
                prog.lb[d[s, b]] = prog.ub[d[s, b]] = float(b == fixed_d[s])
    spread = (P.max(1) - P.min(1)) > 1e-14  # [S, A2, S']: does P(s'|s, a, b) depend on a?
    varies = spread & live[None, None, :] & live[:, None, None]
    product_states = sorted({s for s in range(S) if varies[s].any()})
    w = {}
    R_last = 2.0**-bits
    for s in product_states:
        z = {}
        for a in range(A1 - 1):
            row = {int(pi[s, a]): 1.0}
            for k in range(bits + 1):
                z[a, k] = prog.var(0.0, 1.0, integer=True)
                row[z[a, k]] = -(2.0**-k)
            rem = prog.var(0.0, R_last)
            row[rem] = -1.0
            prog.row(row, 0.0, 0.0)
            z[a, "r"] = rem
        for t in np.flatnonzero(varies[s].any(0)):
            for p in range(2):
                lo, hi = bounds[p][0][t], bounds[p][1][t]
                v = int(V[p][t])
                last = {v: 1.0}  # pi1(A1-1|s) V(t) = V(t) - sum of the other products
                for a in range(A1 - 1):
                    wj = prog.var(min(lo, 0.0), max(hi, 0.0))
                    row = {wj: 1.0}
                    for k in range(bits + 1):
                        u, zk = prog.var(min(lo, 0.0), max(hi, 0.0)), z[a, k]
                        row[u] = -(2.0**-k)
                        # u = z V (exact for binary z): lo z <= u <= hi z, V - hi (1 - z) <= u <= V - lo (1 - z)
                        prog.row({u: 1.0, zk: -lo}, 0.0)
                        prog.row({u: 1.0, zk: -hi}, hi=0.0)
                        prog.row({u: 1.0, v: -1.0, zk: -hi}, -hi)
                        prog.row({u: 1.0, v: -1.0, zk: -lo}, hi=-lo)
                    rem = z[a, "r"]
                    t_ = prog.var(min(lo, 0.0) * R_last, max(hi, 0.0) * R_last)
                    row[t_] = -1.0
                    # t ~ r V, McCormick over r in [0, R_last], V in [lo, hi]
                    prog.row({t_: 1.0, rem: -lo}, 0.0)
                    prog.row({t_: 1.0, v: -R_last, rem: -hi}, -R_last * hi)
                    prog.row({t_: 1.0, rem: -hi}, hi=0.0)
                    prog.row({t_: 1.0, v: -R_last, rem: -lo}, hi=-R_last * lo)
                    prog.row(row, 0.0, 0.0)
                    w[p, s, a, t] = wj
                    last[wj] = -1.0
                w[p, s, A1 - 1, t] = last
    for s in np.flatnonzero(live):
        for b in range(A2):
            Q = []
            for p, R in enumerate((R1, R2)):
                q = {}
                for a in range(A1):
                    _add(q, int(pi[s, a]), R[s, a, b])
                for t in np.flatnonzero(live):
                    if varies[s, b, t]:
                        for a in range(A1 - 1):
                            _add(q, w[p, s, a, t], gamma * P[s, a, b, t])
                        for j, c in w[p, s, A1 - 1, t].items():
                            _add(q, j, c * gamma * P[s, A1 - 1, b, t])
                    else:
                        _add(q, int(V[p][t]), gamma * P[s, 0, b, t])
                Q.append(q)
            # follower: V2(s) >= Q2(s, b), and V2(s) <= Q2(s, b) + M (1 - d(b|s))
            diff = {int(V[1][s]): 1.0}
            for j, c in Q[1].items():
                _add(diff, j, -c)
            prog.row(diff, 0.0)
            M2 = bounds[1][1][s] - bounds[1][0][s] + 1e-6
            prog.row({**diff, int(d[s, b]): diff.get(int(d[s, b]), 0.0) + M2}, hi=M2)
            # leader: V1(s) <= Q1(s, b) + M (1 - d(b|s))
            lead = {int(V[0][s]): 1.0}
            for j, c in Q[0].items():
                _add(lead, j, -c)
            M1 = bounds[0][1][s] - bounds[0][0][s] + 1e-6
            prog.row({**lead, int(d[s, b]): lead.get(int(d[s, b]), 0.0) + M1}, hi=M1)
    c = np.zeros(len(prog.lb))
    c[V[0]] = -rho
    return prog, c, pi, d, bool(product_states)


def _solve_program(prog, c, time_limit):
    A = prog.matrix()
    integrality = np.array(prog.integer)
    options = {"time_limit": max(time_limit, 1.0), "mip_rel_gap": 1e-10, "disp": False}
    return milp(
        c,
        integrality=integrality,
        bounds=Bounds(prog.lb, prog.ub),
        constraints=LinearConstraint(A, prog.row_lo, prog.row_hi),
        options=options,
    )


def _polish(P, R1, R2, gamma, rho, live, pi1, b):
    """A local maximum (SLSQP) of the leader's ``J`` over ``pi1`` such that the pure ``b [S]`` stays a
    follower best response at every state, started from ``pi1``."""
    S, A1, A2 = R1.shape
    idx = np.arange(S)
    lives = np.flatnonzero(live)

    def unpack(x):
        return x.reshape(S, A1)

    def values(x):
        p = unpack(x)
        r2, T = _follower_mdp(P, R2, p, live)
        r1, _ = _follower_mdp(P, R1, p, live)
        M = np.eye(S) - gamma * T[idx, b]
        V1 = np.linalg.solve(M, r1[idx, b])
        V2 = np.linalg.solve(M, r2[idx, b])
        return V1, V2, r2, T

    def objective(x):
        return -float(rho @ values(x)[0])

    def incentive(x):
        _, V2, r2, T = values(x)
        Q2 = r2 + gamma * T @ V2
        others = np.ones((S, A2), dtype=bool)
        others[idx, b] = False
        others &= live[:, None]
        return (V2[:, None] - Q2)[others]

    sums = np.zeros((len(lives), S * A1))
    for i, s in enumerate(lives):
        sums[i, s * A1 : (s + 1) * A1] = 1.0
    constraints = [{"type": "eq", "fun": lambda x: sums @ x - 1.0, "jac": lambda x: sums}]
    if A2 > 1:
        constraints.append({"type": "ineq", "fun": incentive})
    result = minimize(
        objective,
        np.clip(np.asarray(pi1, dtype=float).ravel(), 0, 1),
        method="SLSQP",
        bounds=[(0.0, 1.0)] * (S * A1),
        constraints=constraints,
        options={"ftol": 1e-13, "maxiter": 500},
    )
    x = np.clip(result.x, 0.0, 1.0).reshape(S, A1)
    return x / x.sum(-1, keepdims=True)


def strong_stackelberg_game(
    game, *, tol: float = 1e-4, bits: tuple[int, ...] = BITS, time_limit: float = TIME_LIMIT
) -> SSESolution:
    """The SSE of ``game`` over stationary policies (module docstring): value, leader policy,
    the follower's pure policy, and an upper bound within ``tol`` of the value scale when the
    time allows. Raises :class:`SSEError` (one line) for games over the limits or a failed solver."""
    problem = size_problem(game)
    if problem:
        raise SSEError(problem)
    began = time.perf_counter()
    P, R1, R2, gamma, rho, live = _arrays(game)
    S, A1, A2 = R1.shape
    scale = _reward_scale(game)
    best = None
    upper = np.inf
    notes = []
    for k, L in enumerate(bits):
        left = time_limit - (time.perf_counter() - began)
        if left <= 0:
            notes.append(f"time limit {time_limit:g} s reached before bits={L}")
            break
        prog, c, pi_idx, d_idx, bilinear = _build(P, R1, R2, gamma, rho, live, L)
        result = _solve_program(prog, c, left)
        if result.x is None:
            if best is None:
                reason = "the time limit" if result.status == 1 else f"status {result.status}: {result.message}"
                raise SSEError(
                    f"no SSE reference: the MILP (S={S}, A1={A1}, A2={A2}, bits={L}) stopped at {reason} with no "
                    f"solution; raise time_limit (now {time_limit:g} s) or use a smaller game"
                )
            notes.append(f"bits={L}: no solution within the time limit")
            break
        bound = (
            -result.mip_dual_bound
            if result.mip_dual_bound is not None and np.isfinite(result.mip_dual_bound)
            else -result.fun
        )
        upper = min(upper, bound + (0.0 if result.status == 0 else 0.0))
        if result.status != 0:
            notes.append(f"bits={L}: {result.message.strip()}")
        pi1 = np.clip(result.x[pi_idx], 0.0, 1.0)
        pi1 /= pi1.sum(-1, keepdims=True)
        b = np.asarray(result.x[d_idx].argmax(-1))
        candidates = [pi1]
        if bilinear:
            candidates.append(_polish(P, R1, R2, gamma, rho, live, pi1, b))
        else:  # exact program: re-solve for its follower policy with the binaries fixed (an LP)
            fixed, c2, pi2_idx, _, _ = _build(P, R1, R2, gamma, rho, live, 0, fixed_d=b)
            lp = _solve_program(fixed, c2, left)
            if lp.x is not None:
                p = np.clip(lp.x[pi2_idx], 0.0, 1.0)
                candidates.append(p / p.sum(-1, keepdims=True))
        for p in candidates:
            J, response = strong_response(game, p)
            if best is None or J > best[0]:
                best = (J, p, response)
        if not bilinear:
            upper = max(upper, best[0])
            bits_used = 0
            break
        bits_used = L
        if upper - best[0] <= tol * scale:
            break
    J, pi1, response = best
    status = "optimal" if upper - J <= tol * scale else "gap above tol"
    return SSESolution(J, max(upper, J), pi1, response, time.perf_counter() - began, bits_used, status, notes)


# -- a run's reference --------------------------------------------------------------------------
def cache_path(game_path: str | os.PathLike) -> Path:
    """Where the SSE of a game file is cached: ``GAME.sse.json`` beside ``GAME.npz``."""
    path = Path(game_path)
    return path.with_name(path.stem + ".sse.json")


def solution_json(game, solution: SSESolution) -> dict:
    out = asdict(solution)
    out.update(
        leader_policy=solution.leader_policy.tolist(),
        follower_policy=[int(b) for b in solution.follower_policy],
        gap=solution.gap,
        fingerprint=game.fingerprint(),
    )
    return out


def run_reference(game, game_path: str | None = None, time_limit: float = STARTUP_LIMIT) -> tuple[float | None, str]:
    """The SSE value for a run's dashboards, and a line saying where it came from (or why none):
    read from ``GAME.sse.json`` beside a game file when its fingerprint matches; else computed at
    startup where the program is exact (no leader-dependent transitions: one-state, repeated and
    follower-controlled games, a fraction of a second within the limits). Games with bilinear
    terms take seconds to minutes: their reference comes from the cache that
    ``scripts/reference.py --sse GAME.npz --write-cache`` writes. Uses no random numbers."""
    if game is None:
        return None, "no SSE reference: the env has no model"
    if game_path is not None and cache_path(game_path).is_file():
        try:
            cached = json.loads(cache_path(game_path).read_text())
            if cached.get("fingerprint") == game.fingerprint():
                return float(cached["value"]), f"SSE value {cached['value']:.6g} read from {cache_path(game_path)}"
        except (ValueError, KeyError, OSError):
            pass
    problem = size_problem(game)
    if problem:
        return None, problem
    if bilinear_states(game):
        how = (
            f"python scripts/reference.py --sse {game_path} --write-cache"
            if game_path
            else "python scripts/reference.py --sse GAME.npz --write-cache"
        )
        return (
            None,
            f"no SSE reference at startup (leader-dependent transitions make it take seconds to minutes): {how} caches it for game/J_sse_gap",
        )
    try:
        solution = strong_stackelberg_game(game, time_limit=time_limit)
    except SSEError as error:
        return None, str(error)
    if solution.status != "optimal":
        return None, f"no SSE reference: the solver's gap is {solution.gap:.1e} after {time_limit:g} s at startup"
    return solution.value, f"SSE value {solution.value:.6g} (gap {solution.gap:.1e}, {solution.seconds:.2f} s)"


def sse_gap(game, leader_probs, J_sse: float) -> float:
    """``J_sse - J`` of the leader against the follower's exact best response (ties for the leader)."""
    return J_sse - strong_response(game, leader_probs.detach().cpu().double().numpy())[0]


class SSEReference:
    """A run's SSE reference, computed (or read) once at startup: :meth:`metrics` gives the
    dashboard's ``game/J_sse_gap`` at each evaluation, nothing where no reference exists."""

    def __init__(self, game, game_path: str | None = None, time_limit: float = STARTUP_LIMIT):
        self.value, self.line = run_reference(game, game_path, time_limit)

    def metrics(self, game, leader) -> dict[str, float]:
        if self.value is None:
            return {}
        return {"game/J_sse_gap": sse_gap(game, leader.probs(), self.value)}

"""American options (ETF options: SPY, QQQ) on an asset with a continuous dividend yield: a
Cox-Ross-Rubinstein binomial tree with the European control variate (Hull, "Options, Futures
and Other Derivatives", ch. 21): the tree's early-exercise premium, American tree minus the
same tree run European, is added to the exact Black-Scholes-Merton price. The tree's own error
largely cancels in that difference, so 100 steps price to a fraction of a cent on a $1..$50
option, where the plain tree oscillates by several cents.

Greeks the same way: delta, gamma and theta from the tree's first nodes (premium over the
European tree) added to the closed-form ones; vega is the closed-form one (the premium's vega
is small and a second tree per bump is not worth its time). Units as `bot.pricing`: vega per
vol point, theta per calendar day.

Pure and vectorised over options: one tree of shape (options, steps + 1) walked back once.
"""

from __future__ import annotations

import numpy as np

from bot import pricing

STEPS = 100
MIN_VOL = 1e-4


def _tree(S, K, T, sigma, r, q, call, steps: int):
    """(American value, European value, American and European (delta, gamma, theta)) by CRR."""
    dt = T / steps
    u = np.exp(sigma * np.sqrt(dt))
    d = 1.0 / u
    p = (np.exp((r - q) * dt) - d) / (u - d)
    disc = np.exp(-r * dt)
    sign = np.where(call, 1.0, -1.0)[:, None]
    log_u = np.log(u)[:, None]

    def spots(i: int) -> np.ndarray:  # the i + 1 prices after i steps, lowest first
        return S[:, None] * np.exp(log_u * (2.0 * np.arange(i + 1) - i))

    payoff = np.maximum(sign * (spots(steps) - K[:, None]), 0.0)
    am, eu = payoff, payoff.copy()
    saved: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    pc, qc, dc = p[:, None], (1.0 - p)[:, None], disc[:, None]
    for i in range(steps - 1, -1, -1):
        am = dc * (pc * am[:, 1:i + 2] + qc * am[:, :i + 1])
        eu = dc * (pc * eu[:, 1:i + 2] + qc * eu[:, :i + 1])
        am = np.maximum(am, sign * (spots(i) - K[:, None]))
        if i <= 2:
            saved[i] = (am, eu)

    def greeks(v2: np.ndarray, v1: np.ndarray, v0: np.ndarray):
        s1, s2 = spots(1), spots(2)
        delta = (v1[:, 1] - v1[:, 0]) / (s1[:, 1] - s1[:, 0])
        up = (v2[:, 2] - v2[:, 1]) / (s2[:, 2] - s2[:, 1])
        down = (v2[:, 1] - v2[:, 0]) / (s2[:, 1] - s2[:, 0])
        gamma = (up - down) / (0.5 * (s2[:, 2] - s2[:, 0]))
        theta = (v2[:, 1] - v0[:, 0]) / (2.0 * dt) / pricing.DAYS_PER_YEAR
        return delta, gamma, theta

    g_am = greeks(saved[2][0], saved[1][0], saved[0][0])
    g_eu = greeks(saved[2][1], saved[1][1], saved[0][1])
    return saved[0][0][:, 0], saved[0][1][:, 0], g_am, g_eu


def american_price_greeks(S, K, T, sigma, r, q, is_call, steps: int = STEPS) -> dict[str, np.ndarray]:
    """Price ("mid") and greeks of American options, as arrays (same keys as
    `pricing.bs_price_greeks`). Options with T <= 0 are worth their intrinsic value."""
    S, K, T, sigma, call = (np.atleast_1d(np.asarray(x, dtype=float if i < 4 else bool))
                            for i, x in enumerate((S, K, T, sigma, is_call)))
    S, K, T, sigma, call = np.broadcast_arrays(S, K, T, sigma, call)
    S, K, T, sigma, call = (np.array(x, dtype=bool if x is call else float) for x in (S, K, T, sigma, call))
    r, q = float(r), float(q)
    euro = pricing.bs_price_greeks(S, K, T, sigma, r, q, call)
    out = {k: np.array(v, dtype=float) for k, v in euro.items()}
    live = (T > 0) & (sigma > 0)
    intrinsic = np.where(call, np.maximum(S - K, 0.0), np.maximum(K - S, 0.0))
    out["mid"] = np.where(live, out["mid"], intrinsic)
    if live.any():
        idx = np.flatnonzero(live)
        am, eu, g_am, g_eu = _tree(S[idx], K[idx], T[idx], np.maximum(sigma[idx], MIN_VOL), r, q, call[idx], steps)
        premium = np.maximum(am - eu, 0.0)
        out["mid"][idx] = np.maximum(out["mid"][idx] + premium, intrinsic[idx])
        for name, a, e in zip(("delta", "gamma", "theta"), g_am, g_eu):
            out[name][idx] = out[name][idx] + (a - e)
        out["delta"] = np.clip(out["delta"], -1.0, 1.0)
    return out


def american_price(S, K, T, sigma, r, q, is_call, steps: int = STEPS):
    """Price of American options (a float for scalar inputs)."""
    mid = american_price_greeks(S, K, T, sigma, r, q, is_call, steps)["mid"]
    return float(mid[0]) if np.ndim(S) == 0 and np.ndim(K) == 0 and mid.size == 1 else mid

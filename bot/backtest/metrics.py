"""Performance and hedge metrics of a backtest's daily series (pure numpy, no I/O).

Conventions. Each variant's series is its net liquidation after each session's close, with
the starting cash as the value before the first session. Returns are simple daily returns.
Volatility and Sharpe are annualized with 252 sessions; Sharpe uses a zero risk-free rate
(the simulated account pays no interest on cash). Drawdowns are measured from the running
peak (the starting cash included) and reported as positive fractions (0.25 = 25 %).
A hedge's P&L is its cash flows (premiums, commissions, settlements) plus the market value of
what it holds; its cost is minus that P&L.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRADING_DAYS = 252

CRISES: tuple[tuple[str, str, str], ...] = (
    ("2008-10", "2008-10-01", "2008-10-31"),
    ("2010-05", "2010-05-01", "2010-05-31"),
    ("2011-08", "2011-08-01", "2011-08-31"),
    ("2015-08", "2015-08-01", "2015-08-31"),
    ("2018-02", "2018-02-01", "2018-02-28"),
    ("2018-12", "2018-12-01", "2018-12-31"),
    ("2020-03", "2020-03-01", "2020-03-31"),
    ("2022", "2022-01-01", "2022-12-31"),
    ("2024-08", "2024-08-01", "2024-08-31"),
    ("2025-04", "2025-04-01", "2025-04-30"),
)
SPIKE_VIX_RISE = 0.20  # a spike day: VIX close at least 20 % above the previous close
HIGH_VIX = 30.0
WHOLE_YEAR = 358 / 365  # a calendar year whose sessions span this much of it counts as whole


@dataclass(frozen=True)
class Series:
    dates: np.ndarray  # datetime64[D], one per session
    nl: np.ndarray  # net liquidation after each close
    start: float  # before the first session


def _with_base(s: Series) -> np.ndarray:
    return np.concatenate(([s.start], s.nl))


def daily_returns(s: Series) -> np.ndarray:
    v = _with_base(s)
    return v[1:] / v[:-1] - 1.0


def drawdown(s: Series) -> np.ndarray:
    """Drawdown after each close (>= 0)."""
    v = _with_base(s)
    peak = np.maximum.accumulate(v)
    return (1.0 - v / peak)[1:]


def years(s: Series) -> float:
    first, last = s.dates[0].astype(object), s.dates[-1].astype(object)
    return max(((last - first).days + 1) / 365.25, 1 / 365.25)


def cagr(s: Series) -> float:
    return float((s.nl[-1] / s.start) ** (1.0 / years(s)) - 1.0) if s.nl[-1] > 0 else -1.0


def volatility(s: Series) -> float:
    r = daily_returns(s)
    return float(np.std(r, ddof=1) * np.sqrt(TRADING_DAYS)) if len(r) > 1 else 0.0


def sharpe(s: Series) -> float | None:
    r = daily_returns(s)
    sd = np.std(r, ddof=1) if len(r) > 1 else 0.0
    return None if sd == 0 else float(np.mean(r) / sd * np.sqrt(TRADING_DAYS))


def max_drawdown(s: Series) -> dict:
    """Largest drawdown, with the peak before it, its trough and the recovery (None: not yet)."""
    v = _with_base(s)
    peak = np.maximum.accumulate(v)
    dd = 1.0 - v / peak
    i = int(np.argmax(dd))
    if dd[i] <= 0:
        return {"max_drawdown": 0.0, "peak": None, "trough": None, "recovered": None}
    p = int(np.flatnonzero(v[: i + 1] == peak[i])[0])
    rec = np.flatnonzero(v[i:] >= peak[i])
    dates = np.concatenate(([s.dates[0] - np.timedelta64(1, "D")], s.dates))
    return {"max_drawdown": float(dd[i]), "peak": str(dates[p]) if p > 0 else "start", "trough": str(dates[i]),
            "recovered": str(dates[i + int(rec[0])]) if rec.size else None}


def window(s: Series, lo: str, hi: str) -> dict | None:
    """Return over [lo, hi] and the largest drawdown inside it, from the last close before lo
    (peaks before the window do not count: how much the event itself cost)."""
    d = s.dates
    inside = np.flatnonzero((d >= np.datetime64(lo)) & (d <= np.datetime64(hi)))
    if inside.size == 0:
        return None
    before = inside[0] - 1
    base = s.nl[before] if before >= 0 else s.start
    v = np.concatenate(([base], s.nl[inside]))
    peak = np.maximum.accumulate(v)
    return {"return": float(v[-1] / base - 1.0), "max_drawdown": float(np.max(1.0 - v / peak)),
            "sessions": int(inside.size)}


def monthly(s: Series) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(months 'YYYY-MM', month returns, index of each month's last session)."""
    months = s.dates.astype("datetime64[M]")
    ends = np.flatnonzero(np.append(months[1:] != months[:-1], True))
    v = _with_base(s)
    starts = np.concatenate(([0], ends[:-1] + 1))
    rets = v[ends + 1] / v[starts] - 1.0
    return [str(m) for m in months[ends]], rets, ends


def worst_months(s: Series, n: int = 3) -> list[dict]:
    names, rets, _ = monthly(s)
    order = np.argsort(rets, kind="stable")[:n]
    return [{"month": names[i], "return": float(rets[i])} for i in order]


def high_vix_days(s: Series, vix: np.ndarray, year: int = 2022, level: float = HIGH_VIX) -> dict | None:
    """The variant on the sessions of `year` whose VIX close is >= level: its largest
    drawdown on those days (from its running peak since the previous year's close) and its
    summed daily return on them."""
    d = s.dates
    in_year = (d >= np.datetime64(f"{year}-01-01")) & (d <= np.datetime64(f"{year}-12-31"))
    idx = np.flatnonzero(in_year)
    if idx.size == 0:
        return None
    high = idx[vix[idx] >= level]
    if high.size == 0:
        return {"days": 0, "max_drawdown": 0.0, "sum_return": 0.0}
    base = s.nl[idx[0] - 1] if idx[0] > 0 else s.start
    v = np.concatenate(([base], s.nl[idx]))
    dd = (1.0 - v / np.maximum.accumulate(v))[1:]
    r = daily_returns(s)
    sel = np.isin(idx, high)
    return {"days": int(high.size), "max_drawdown": float(dd[sel].max()), "sum_return": float(r[high].sum())}


@dataclass(frozen=True)
class Hedge:
    """A hedged variant's hedge: value (cash flows + market value) per layer after each close,
    and the condors' notional (max loss) the ALVH sizes on."""

    layers: tuple[str, ...]
    value: np.ndarray  # (sessions, layers)
    notional: np.ndarray  # (sessions,)

    @property
    def total(self) -> np.ndarray:
        return self.value.sum(axis=1) if self.value.size else np.zeros(len(self.notional))


def hedge_costs(s: Series, h: Hedge) -> dict:
    """What the hedge cost: per year as % of average net liquidation; per month as % of the
    net liquidation at the month's start ("drag") and as % of the month's average condor
    notional (max loss). The monthly figures are ratios of sums over the whole run (total
    cost / sum over months of the base), so a few large months do not swamp them; the median
    month is given beside them."""
    total = h.total
    yrs = years(s)
    mean_nl = float(np.mean(s.nl))
    pnl = float(total[-1]) if total.size else 0.0
    names, _, ends = monthly(s)
    starts = np.concatenate(([0], ends[:-1] + 1))
    prev_value = np.concatenate(([0.0], total))  # hedge value before each session
    month_pnl = total[ends] - prev_value[starts]
    nl_open = np.concatenate(([s.start], s.nl))[starts]
    notional = np.array([h.notional[a:b + 1].mean() for a, b in zip(starts, ends)])
    with np.errstate(divide="ignore", invalid="ignore"):
        of_notional = np.where(notional > 0, -month_pnl / notional, np.nan)
    per_layer = {layer: float(h.value[-1, i]) for i, layer in enumerate(h.layers)} if h.value.size else {}
    hedged_months = notional > 0
    return {
        "hedge_pnl": pnl,
        "hedge_pnl_by_layer": per_layer,
        "annual_cost_pct_nl": -pnl / yrs / mean_nl * 100.0,
        "monthly_drag_pct_nl": -pnl / float(nl_open.sum()) * 100.0,
        "monthly_drag_pct_nl_median": float(np.median(-month_pnl / nl_open) * 100.0),
        "months_hedge_lost": int(np.sum(month_pnl < 0)),
        "months": len(names),
        "monthly_cost_pct_notional": (-float(month_pnl[hedged_months].sum()) / float(notional[hedged_months].sum())
                                      * 100.0) if hedged_months.any() else None,
        "monthly_cost_pct_notional_median": float(np.nanmedian(of_notional) * 100.0)
        if np.isfinite(of_notional).any() else None,
        "months_with_condor_notional": int(hedged_months.sum()),
    }


def hedge_by_year(s: Series, h: Hedge) -> list[dict]:
    """Hedge P&L per calendar year, in dollars and as % of the year's opening net liquidation."""
    total = np.concatenate(([0.0], h.total))
    v = _with_base(s)
    years_ = s.dates.astype("datetime64[Y]")
    ends = np.flatnonzero(np.append(years_[1:] != years_[:-1], True))
    starts = np.concatenate(([0], ends[:-1] + 1))
    return [{"year": int(str(years_[e])), "hedge_pnl": float(total[e + 1] - total[a]),
             "pct_nl": float((total[e + 1] - total[a]) / v[a] * 100.0)} for a, e in zip(starts, ends)]


def spike_days(s: Series, h: Hedge, vix: np.ndarray, rise: float = SPIKE_VIX_RISE) -> dict:
    """On sessions where the VIX close rose by >= `rise`: the hedge's P&L against the condor
    book's loss (the rest of the account's P&L) on the days the condors lost."""
    v = _with_base(s)
    day_pnl = np.diff(v)
    hv = np.concatenate(([0.0], h.total))
    hedge_pnl = np.diff(hv)
    condor_pnl = day_pnl - hedge_pnl
    vix_prev = np.concatenate(([np.nan], vix[:-1]))
    with np.errstate(invalid="ignore"):
        spike = (vix / vix_prev - 1.0) >= rise
    losing = spike & (condor_pnl < 0)
    n = int(losing.sum())
    if n == 0:
        return {"spike_days": int(spike.sum()), "spike_days_condor_loss": 0, "ratio_of_sums": None,
                "median_ratio": None}
    ratios = hedge_pnl[losing] / -condor_pnl[losing]
    return {"spike_days": int(spike.sum()), "spike_days_condor_loss": n,
            "ratio_of_sums": float(hedge_pnl[losing].sum() / -condor_pnl[losing].sum()),
            "median_ratio": float(np.median(ratios)),
            "hedge_pnl": float(hedge_pnl[losing].sum()), "condor_loss": float(-condor_pnl[losing].sum())}


def annual_returns(s: Series) -> tuple[list[int], np.ndarray, np.ndarray]:
    """(calendar years, each year's return from the last close before it (or the start), the
    fraction of the year the series spans: 1 for a whole year, less for a first or last year
    cut short; a year spanned to within a week counts whole (its first session may be Jan 4))."""
    years_ = s.dates.astype("datetime64[Y]")
    ends = np.flatnonzero(np.append(years_[1:] != years_[:-1], True))
    starts = np.concatenate(([0], ends[:-1] + 1))
    v = _with_base(s)
    rets = v[ends + 1] / v[starts] - 1.0
    names = [int(str(years_[e])) for e in ends]
    fracs = []
    for y in names:
        lo, hi = np.datetime64(f"{y}-01-01"), np.datetime64(f"{y}-12-31")
        span = (min(hi, s.dates[-1]) - max(lo, s.dates[0])).astype(int) + 1
        frac = span / ((hi - lo).astype(int) + 1)
        fracs.append(1.0 if frac >= WHOLE_YEAR else float(frac))
    return names, rets, np.asarray(fracs, dtype=float)


def return_gap(base: Series, hedged: Series) -> dict:
    """The hedge's time-weighted cost: each calendar year's return of `base` (unhedged) minus
    that of `hedged`, and their mean per year of time (sum of gaps / years spanned, so a part
    year counts for its part). Every year weighs the same whatever the account's size, where
    the dollar cost (hedge P&L / average net liq) is ruled by the years the account was largest."""
    names, r_b, fracs = annual_returns(base)
    names_h, r_h, _ = annual_returns(hedged)
    if names != names_h:
        raise ValueError("return_gap: the two series cover different years")
    gap = r_b - r_h
    return {"by_year": [{"year": y, "unhedged": float(b), "hedged": float(h), "gap": float(g)}
                        for y, b, h, g in zip(names, r_b, r_h, gap)],
            "mean_annual_gap": float(gap.sum() / fracs.sum())}


def sizing(s: Series, opened: np.ndarray, max_loss: np.ndarray, quantity: np.ndarray, cap: int | None) -> dict:
    """How the condors were sized: each entry's max loss as a fraction of the net liquidation at
    the close before it ("risk at entry"), and the entries sized at the config's cap
    (`condor.max_quantity`; None: no cap, the risk fraction alone sizes). Per calendar year:
    entries, entries at the cap, the median and largest risk at entry."""
    opened = np.asarray(opened, dtype="datetime64[D]")
    max_loss = np.asarray(max_loss, dtype=float)
    quantity = np.asarray(quantity, dtype=float)
    order = np.argsort(opened, kind="stable")
    opened, max_loss, quantity = opened[order], max_loss[order], quantity[order]
    i = np.searchsorted(s.dates, opened)  # the entry's session; the close before it sized it
    nl_before = _with_base(s)[np.clip(i, 0, len(s.nl))]
    risk = max_loss / nl_before
    at_cap = quantity >= cap if cap is not None else np.zeros(len(quantity), dtype=bool)
    years_ = opened.astype("datetime64[Y]").astype(int) + 1970
    by_year = []
    for y in np.unique(years_):
        sel = years_ == y
        by_year.append({"year": int(y), "entries": int(sel.sum()), "at_cap": int(at_cap[sel].sum()),
                        "risk_pct_nl_median": float(np.median(risk[sel]) * 100.0),
                        "risk_pct_nl_max": float(np.max(risk[sel]) * 100.0)})
    n = len(quantity)
    return {"cap": cap, "entries": n, "at_cap": int(at_cap.sum()),
            "at_cap_share": float(at_cap.mean()) if n else None,
            "risk_pct_nl_median": float(np.median(risk) * 100.0) if n else None,
            "by_year": by_year}


def spread(values) -> dict:
    """Median and range (min, max) of one figure over seeds; None values (not measured in that
    seed) are left out and counted."""
    xs = np.asarray([float(x) for x in values if x is not None], dtype=float)
    xs = xs[np.isfinite(xs)]
    if xs.size == 0:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": float(np.median(xs)), "min": float(xs.min()), "max": float(xs.max()), "n": int(xs.size)}


def summary(s: Series) -> dict:
    return {
        "final_nl": float(s.nl[-1]),
        "cagr": cagr(s),
        "volatility": volatility(s),
        "sharpe": sharpe(s),
        **max_drawdown(s),
        "worst_months": worst_months(s),
    }


def cut(hedged: float, unhedged: float) -> float | None:
    """Drawdown reduction: 1 - hedged / unhedged (0.35 = 35 % smaller)."""
    return None if unhedged <= 0 else 1.0 - hedged / unhedged


def to_dates(strings: list[str]) -> np.ndarray:
    return np.array(strings, dtype="datetime64[D]")


__all__ = ["CRISES", "Hedge", "Series", "annual_returns", "cut", "hedge_by_year", "hedge_costs", "high_vix_days",
           "return_gap", "sizing", "spike_days", "spread", "summary", "to_dates", "window"]

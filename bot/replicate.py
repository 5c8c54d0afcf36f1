"""Replication of Cboe's CNDR and PUT strategy indices on the simulator's SPX option prices.

Why: the simulator prices SPX options from a model (ATM vol = a ratio of the VIX term
structure, a fixed smile, a spread), not from market quotes. Cboe's CNDR (S&P 500 Iron
Condor) and PUT (S&P 500 PutWrite) indices are built from real SPX option prices by public
rules; running the same rules on the model's prices and comparing the two level series
measures how far the model's premiums are from what the market paid (issue 12).

The published rules, as implemented (Cboe methodology texts; see `docs/REPLICATION.md`):

- Roll date: the third Friday of each month (the preceding session when it is a holiday),
  which is also the monthly SPX (AM-settled) expiration. The expiring options settle at the
  special opening quotation (SOQ) of that morning; new one-month options, expiring at the next
  roll date, are sold (and bought) the same day.
- PUT: sells the at-the-money put, the first listed strike below the SPX level, fully
  collateralized: N puts such that the T-bill account is worth N x K at expiry,
  N = M / (K e^{-rT} - premium), M the account after settlement.
- CNDR: sells the 20-delta put and call and buys the 5-delta put and call (strikes whose
  model delta is closest to -0.20, +0.20, -0.05, +0.05), with N condors such that the T-bill
  account covers `collateral_multiple` (10, as Cboe describes for its condor/butterfly
  indices) times the condor's maximum loss (the wider wing less the credit).
- Collateral earns the 3-month T-bill rate (FRED DTB3, as the simulator reads it: continuous,
  `bot.data`) fixed at each roll; Cboe uses one- and three-month bills.

Conventions of this replication (daily history only, no intraday path, so nothing peeks):

- The SOQ of an expiring option is the SPX *open* of the roll day.
- New options are priced in Cboe's window (`entry="midday"`, the default: strike reference about
  11:00, VWAP 11:30-12:00 ET), each input (SPX, VIX, VIX9D, VIX3M) taken 35% of the way from
  its open to its close (11:45 in a 6.5-hour session); the strike reference is that level
  too. `entry="close"` prices them at the roll day's close instead, `entry="open"`
  prices them at the open instead (SPX open = the SOQ, VIX open, VIX9D/VIX3M of the previous
  close): Cboe's window lies between the two.
- Every day's mark is the model mid at the close, time to expiry from 16:00 to the expiry's
  09:30 open (ACT/365), as Cboe marks at the closing bid/ask midpoint.
- Trades fill at the model mid moved `fill` of the way to the model's bid (sells) or ask
  (buys): 0 = mid, 1 = the model's natural price, 0.5 (default, `FILL`) half way: Cboe's
  VWAP is of trades, which cross part of the spread. The bid and ask are the surface's
  spread model, so the spread's level is fitted through these fills (bot/calibrate.py).
- Strikes on a 5-point grid (0.5 x to 1.5 x spot).

Prices come from the simulator's public pricing functions (`bot.pricing`: spx_atm_vol,
spx_smile, bs_price, bs_greeks, quote_spread) with the same dividend yield and inputs the
simulated exchange uses; `VolModel()` with no arguments *is* the simulator's model (a test
checks it against `SimExchange.price_options`). Other `VolModel` values are the knobs a
calibration turns: `run(inputs, rules, model)` is a pure function of them, and
`objective(inputs, rules, model)` returns the replication metrics for one parameter set.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from bot import pricing
from bot.calendar import TradingCalendar
from bot.data import DataError, load_history
from bot.sim.exchange import DIVIDEND_YIELD
from bot.surface import Surface

INDEX_FILES = {"cndr": "cboe_cndr_daily.csv", "put": "cboe_put_daily.csv"}
STRIKE_STEP = 5.0
OPEN_TO_CLOSE_DAYS = 6.5 / 24.0  # 09:30 -> 16:00
MIN_COVERAGE = 0.8  # share of the span's sessions the index must have a level on
SUB_SPAN = ("2010-2019", date(2010, 1, 1), date(2019, 12, 31))
_SURFACE_FIELDS = {f.name for f in fields(Surface)} - {"fit"}


class ReplicationError(ValueError):
    """A replication that cannot run (bad span, missing data); str() is one line."""


# --------------------------------------------------------------------------- the model's knobs


@dataclass(frozen=True)
class VolModel:
    """The SPX option model a replication prices with: a `pricing` surface plus the
    replication's own conventions.

    surface: the `bot.surface.Surface` (None: the active one, what the simulator prices with).
    atm_ratio: a flat ATM vol / VIX ratio instead of the surface's regime curve (a what-if).
    smile: overrides of the surface's parameters by name (put_slope, call_slope, ...).
    dividend_yield: continuous, as the simulated exchange prices.
    fill: where trades fill between the model mid (0) and its natural side (1), the
    surface's spread model giving the natural side.
    """

    surface: Surface | None = None
    atm_ratio: float | None = None
    smile: dict = field(default_factory=dict)
    dividend_yield: float = DIVIDEND_YIELD
    fill: float = 0.5  # FILL

    def __post_init__(self):
        unknown = set(self.smile) - _SURFACE_FIELDS
        if unknown:
            raise ReplicationError(f"unknown smile parameter(s): {', '.join(sorted(unknown))}")

    @property
    def resolved(self) -> Surface:
        s = self.surface or pricing.active_surface()
        return s.with_values(**self.smile) if self.smile else s

    def describe(self) -> dict:
        doc = self.resolved.to_doc()
        doc.pop("fit", None)
        if self.atm_ratio is not None:
            doc["atm"] = {"flat_ratio": self.atm_ratio}
        return {"surface": doc, "dividend_yield": self.dividend_yield, "fill": self.fill}

    def atm(self, T, vix, vix9d, vix3m):
        return pricing.spx_atm_vol(T, vix, vix9d, vix3m, atm_ratio=self.atm_ratio, surface=self.resolved)

    def price(self, S, K, T, atm, r, is_call):
        """(mid, delta, iv) arrays for options of the broadcast shape of the inputs."""
        iv = pricing.spx_smile(atm, S, K, T, surface=self.resolved)
        out = pricing.bs_price_greeks(S, K, T, iv, r, self.dividend_yield, is_call)
        return (np.asarray(out["mid"], dtype=float), np.asarray(out["delta"], dtype=float),
                np.asarray(iv, dtype=float))

    def delta(self, S, K, T, atm, r, is_call):
        """Model deltas only (strike selection)."""
        iv = pricing.spx_smile(atm, S, K, T, surface=self.resolved)
        return np.asarray(pricing.bs_greeks(S, K, T, iv, r, self.dividend_yield, is_call)["delta"], dtype=float)

    def trade_price(self, mid, sign, vix=None, T=None):
        """Fill price per option: sign -1 sells (toward the bid), +1 buys (toward the ask)."""
        mid = np.asarray(mid, dtype=float)
        if self.fill == 0.0:
            return mid
        bid, ask = pricing.quote_spread(mid, vix, T, surface=self.resolved)
        return np.where(np.asarray(sign) < 0, mid - self.fill * (mid - bid), mid + self.fill * (ask - mid))


# --------------------------------------------------------------------------- the index rules


@dataclass(frozen=True)
class IndexRules:
    """One index's rules. legs: (is_call, target delta or None for at-the-money, sign)."""

    name: str
    legs: tuple[tuple[bool, float | None, int], ...]
    collateral_multiple: float | None = None  # None: fully collateralized put (PUT)


RULES = {
    "put": IndexRules("put", ((False, None, -1),)),
    "cndr": IndexRules("cndr", ((False, -0.05, +1), (False, -0.20, -1), (True, 0.20, -1), (True, 0.05, +1)),
                       collateral_multiple=10.0),
}


def roll_dates(calendar: TradingCalendar, first: date, last: date) -> list[date]:
    """Roll (= monthly SPX expiration) dates from the month of `first` to the month after
    `last`: the third Friday, or the session before it when it is a holiday."""
    out = []
    y, m = first.year, first.month
    while True:
        d1 = date(y, m, 1)
        friday = d1 + timedelta(days=(4 - d1.weekday()) % 7 + 14)
        if friday > calendar.last:
            break
        out.append(friday if calendar.is_session(friday) else calendar.previous_session(friday))
        if d1 > last:
            break
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, eq=False)
class MarketInputs:
    """Everything a replication reads, prepared once: daily rows from the roll before the
    first day to the last day, and the index's levels on them (nan where it has none)."""

    index_name: str
    dates: np.ndarray  # datetime64[D], SPX sessions
    spx_open: np.ndarray
    spx_close: np.ndarray
    vix: np.ndarray
    vix9d: np.ndarray
    vix3m: np.ndarray
    rate: np.ndarray
    index_level: np.ndarray
    first: int  # row of the first reported day (the index's level there is the start)
    rolls: tuple[date, ...]  # roll dates covering the rows (and the expiry after the last)
    vix_open: np.ndarray | None = None  # for entries at the open (None: the close's VIX)


def _read_index(path: Path) -> pd.Series:
    if not path.is_file():
        raise ReplicationError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path)
        series = pd.Series(pd.to_numeric(frame["close"], errors="raise").to_numpy(dtype=float),
                           index=pd.to_datetime(frame["date"], format="%Y-%m-%d"))
    except (KeyError, ValueError, pd.errors.ParserError) as exc:
        raise ReplicationError(f"{path.name}: {' '.join(str(exc).split())}") from None
    if not series.index.is_monotonic_increasing or (series <= 0).any():
        raise ReplicationError(f"{path.name}: dates must ascend and levels be positive")
    return series


def prepare(index_name: str, data_dir: Path, start: date, end: date,
            calendar: TradingCalendar | None = None) -> MarketInputs:
    """Read the history and the index file for a replication of `index_name` over start..end.

    The span is cut to the days where SPX, VIX and the index all have rows; the rows begin at
    the last roll at or before the first such day, so the position held on the first day is
    the one the rules opened at that roll."""
    if index_name not in RULES:
        raise ReplicationError(f"unknown index {index_name!r}: use {' or '.join(RULES)}")
    if start > end:
        raise ReplicationError(f"--from {start} is after --to {end}")
    data_dir = Path(data_dir)
    calendar = calendar or TradingCalendar()
    index = _read_index(data_dir / INDEX_FILES[index_name])
    try:
        history = load_history(data_dir, start - timedelta(days=45), end)
    except DataError as exc:
        raise ReplicationError(str(exc)) from None
    dates = history.dates
    on_index = index.reindex(pd.DatetimeIndex(dates.astype("datetime64[ns]"))).to_numpy(dtype=float)
    in_span = (dates >= np.datetime64(start)) & (dates <= np.datetime64(end))
    usable = np.flatnonzero(in_span & history.has_vix & np.isfinite(on_index))
    if usable.size < 2:
        raise ReplicationError(
            f"no common days of SPX, VIX and {INDEX_FILES[index_name]} in {start}..{end} "
            f"(index {index.index[0].date()}..{index.index[-1].date()}, SPX/VIX in {data_dir})")
    first_day, last_day = (dates[usable[0]].astype(object), dates[usable[-1]].astype(object))
    sessions = int(np.count_nonzero(in_span & history.has_vix & (dates >= dates[usable[0]]) & (dates <= dates[usable[-1]])))
    if usable.size < MIN_COVERAGE * sessions:
        raise ReplicationError(
            f"{INDEX_FILES[index_name]} has a level on only {usable.size} of the {sessions} sessions "
            f"{first_day}..{last_day}: too sparse to compare (PUT is daily from 2007-01-03)")
    rolls = roll_dates(calendar, first_day - timedelta(days=40), last_day)
    before = [r for r in rolls if r <= first_day]
    if not before or np.datetime64(before[-1]) < dates[0]:
        raise ReplicationError(f"no history before {first_day} to open the first position")
    lo = int(np.searchsorted(dates, np.datetime64(before[-1])))
    hi = int(usable[-1]) + 1
    rows = slice(lo, hi)
    vix = history.vix[rows, 3]
    missing = np.flatnonzero(~np.isfinite(vix) | ~np.isfinite(history.spx[rows, 3]))
    if missing.size:
        raise ReplicationError(f"no SPX/VIX close on {dates[lo + missing[0]]}")
    if dates[lo].astype(object) != before[-1]:
        raise ReplicationError(f"the roll day {before[-1]} is not in the SPX history")
    return MarketInputs(
        index_name=index_name, dates=dates[rows], spx_open=history.spx[rows, 0], spx_close=history.spx[rows, 3],
        vix=vix, vix9d=history.vix9d[rows], vix3m=history.vix3m[rows], rate=history.rate[rows],
        index_level=on_index[rows], first=int(usable[0]) - lo,
        rolls=tuple(r for r in rolls if r >= before[-1]), vix_open=history.vix[rows, 0])


# --------------------------------------------------------------------------- the replication


@dataclass(frozen=True, eq=False)
class Replication:
    inputs: MarketInputs
    level: np.ndarray  # the replica on every row of inputs.dates (scaled to the index on `first`)
    trades: list  # one dict per roll

    def frame(self) -> pd.DataFrame:
        """Rows from the first day on where the index has a level: date, replica, index."""
        i = self.inputs
        sel = np.arange(len(i.dates)) >= i.first
        sel &= np.isfinite(i.index_level)
        return pd.DataFrame({"date": pd.DatetimeIndex(i.dates[sel].astype("datetime64[ns]")),
                             "replica": self.level[sel], "index": i.index_level[sel]})


def _years(days) -> np.ndarray:
    """ACT/365 years from a session's close to an expiry's open `days` calendar days later."""
    return (np.asarray(days, dtype=float) - OPEN_TO_CLOSE_DAYS) / pricing.DAYS_PER_YEAR


def _select_strikes(rules: IndexRules, model: VolModel, S: float, T: float, atm: float, r: float) -> np.ndarray:
    grid = np.arange(math.floor(S * 0.5 / STRIKE_STEP), math.ceil(S * 1.5 / STRIKE_STEP) + 1) * STRIKE_STEP
    deltas: dict[bool, tuple[np.ndarray, np.ndarray]] = {}
    out = []
    for is_call, target, _ in rules.legs:
        if target is None:  # at the money: the first listed strike below the SPX level
            out.append(math.floor(S / STRIKE_STEP) * STRIKE_STEP)
            continue
        if is_call not in deltas:  # puts below spot, calls above: half the grid each
            side = grid[grid >= S] if is_call else grid[grid <= S]
            deltas[is_call] = (side, model.delta(S, side, T, atm, r, is_call))
        side, delta = deltas[is_call]
        out.append(float(side[int(np.argmin(np.abs(delta - target)))]))
    return np.array(out)


ENTRIES = ("midday", "close", "open")
ENTRY = "midday"  # the default: Cboe's roll window
FILL = 0.5  # the default fill: half way from the model mid to the natural side (Cboe fills at a VWAP of trades)
MIDDAY_HOURS = 11.75 - 9.5  # Cboe's roll: strike reference about 11:00, VWAP 11:30-12:00 ET; 11:45 from the open
MIDDAY_SHARE = MIDDAY_HOURS / 6.5  # how far through the session (open -> close) that is


def _entry_market(inputs: MarketInputs, i: int, days: int, entry: str) -> tuple[float, float, float, float, float]:
    """(spot, T, vix, vix9d, vix3m) at a roll's entry: the close; the open (the SOQ itself;
    VIX's open, VIX9D and VIX3M of the previous close: what is known then); or "midday",
    Cboe's window (11:45 ET), each level taken MIDDAY_SHARE of the way from its open (the
    previous close for VIX9D/VIX3M, which have no usable open) to its close."""
    close = (float(inputs.spx_close[i]), float(inputs.vix[i]), float(inputs.vix9d[i]), float(inputs.vix3m[i]))
    vix_open = inputs.vix_open[i] if inputs.vix_open is not None and np.isfinite(inputs.vix_open[i]) else inputs.vix[i]
    k = max(i - 1, 0)
    opening = (float(inputs.spx_open[i]), float(vix_open), float(inputs.vix9d[k]), float(inputs.vix3m[k]))
    if entry == "close":
        S, vix, v9, v3 = close
        return S, float(_years(days)), vix, v9, v3
    if entry == "open":
        S, vix, v9, v3 = opening
        return S, days / pricing.DAYS_PER_YEAR, vix, v9, v3
    w = MIDDAY_SHARE
    S, vix, v9, v3 = (o + w * (c - o) if math.isfinite(o) else c for o, c in zip(opening, close))
    return S, (days - MIDDAY_HOURS / 24.0) / pricing.DAYS_PER_YEAR, vix, v9, v3


def run(inputs: MarketInputs, rules: IndexRules | str, model: VolModel | None = None,
        entry: str = ENTRY) -> Replication:
    """The index's rules on the model's prices: a pure function of (inputs, rules, model).

    entry: when new options are priced on a roll day: "midday" (default, Cboe's 11:30-12:00
    window, between open and close), "close" or "open"."""
    if entry not in ENTRIES:
        raise ReplicationError(f"entry must be one of {', '.join(ENTRIES)}, not {entry!r}")
    rules = RULES[rules] if isinstance(rules, str) else rules
    model = model or VolModel()
    d = inputs.dates.astype(object)
    n = len(d)
    level = np.full(n, np.nan)
    calls = np.array([leg[0] for leg in rules.legs])
    signs = np.array([leg[2] for leg in rules.legs], dtype=float)
    roll_set = {r: k for k, r in enumerate(inputs.rolls)}
    account = 1.0  # value after settlement on the first roll
    trades = []
    i = 0
    while i < n:
        day = d[i]
        k = roll_set.get(day)
        if k is None or k + 1 >= len(inputs.rolls):
            raise ReplicationError(f"{day} should be a roll day with a next expiry")
        expiry = inputs.rolls[k + 1]
        j = i + 1
        while j < n and d[j] < expiry:
            j += 1
        r = float(inputs.rate[i])
        S, T0, vix0, vix9d0, vix3m0 = _entry_market(inputs, i, (expiry - day).days, entry)
        atm0 = float(model.atm(T0, vix0, vix9d0, vix3m0))
        strikes = _select_strikes(rules, model, S, T0, atm0, r)
        mid0, delta0, iv0 = model.price(S, strikes, T0, atm0, r, calls)
        paid = model.trade_price(mid0, signs, vix0, T0)
        credit = float(-(signs * paid).sum())  # premium received per unit (negative = debit)
        if rules.collateral_multiple is None:  # fully collateralized short put
            qty = account / (float(strikes[0]) * math.exp(-r * T0) - credit)
        else:
            put_w = strikes[1] - strikes[0]
            call_w = strikes[3] - strikes[2]
            max_loss = max(put_w, call_w) - credit
            if max_loss <= 0:
                raise ReplicationError(f"{day}: a condor with no possible loss (credit {credit:.2f})")
            qty = account / (rules.collateral_multiple * max_loss)
        cash = account + qty * credit
        held = qty * signs
        # marks: this roll day's close and every close until the day before expiry
        rows = np.arange(i, j)
        Ts = _years([(expiry - d[t]).days for t in rows])
        atms = np.atleast_1d(model.atm(Ts, inputs.vix[rows], inputs.vix9d[rows], inputs.vix3m[rows]))
        mids, _, _ = model.price(inputs.spx_close[rows][:, None], strikes[None, :], Ts[:, None], atms[:, None],
                                 inputs.rate[rows][:, None], calls[None, :])
        accrued = cash * np.exp(r * np.array([(d[t] - day).days for t in rows]) / pricing.DAYS_PER_YEAR)
        level[rows] = accrued + mids @ held
        trade = {"date": day.isoformat(), "expiry": expiry.isoformat(), "entry": entry, "spx": S, "vix": vix0,
                 "T": T0, "rate": r, "strikes": strikes.tolist(), "delta": [round(float(x), 4) for x in delta0],
                 "iv": [round(float(x), 4) for x in iv0], "mid": [round(float(x), 4) for x in mid0],
                 "credit": credit, "quantity": qty, "account": account}
        trades.append(trade)
        if j >= n:
            break
        # settlement at the expiry's SOQ (its open), then the cash grown to that day
        soq = float(inputs.spx_open[j])
        payoff = np.where(calls, np.maximum(soq - strikes, 0.0), np.maximum(strikes - soq, 0.0))
        account = cash * math.exp(r * (d[j] - day).days / pricing.DAYS_PER_YEAR) + float(payoff @ held)
        trade["soq"], trade["settled"] = soq, float(payoff @ held)
        if account <= 0:
            raise ReplicationError(f"{d[j]}: the replica lost everything")
        i = j
    level *= inputs.index_level[inputs.first] / level[inputs.first]
    return Replication(inputs, level, trades)


# --------------------------------------------------------------------------- metrics


def _span_rows(dates: pd.DatetimeIndex, lo: date | None, hi: date | None) -> np.ndarray:
    """Rows of a span: from the last row before `lo` (the base) to the last row <= `hi`."""
    sel = np.ones(len(dates), dtype=bool)
    if hi is not None:
        sel &= dates <= pd.Timestamp(hi)
    if lo is not None:
        start = int(np.searchsorted(dates, pd.Timestamp(lo), side="left"))
        sel[: max(start - 1, 0)] = False
    return np.flatnonzero(sel)


def series_metrics(dates: pd.DatetimeIndex, values: np.ndarray) -> dict:
    """Annualized return (calendar days / 365.25), max drawdown, worst month of a level series."""
    v = pd.Series(np.asarray(values, dtype=float), index=dates)
    years = (dates[-1] - dates[0]).days / 365.25
    ann = (v.iloc[-1] / v.iloc[0]) ** (1.0 / years) - 1.0 if years > 0 else float("nan")
    dd = v / v.cummax() - 1.0
    trough = dd.idxmin()
    peak = v.loc[:trough].idxmax()
    monthly = monthly_returns(v)
    worst = monthly.idxmin() if len(monthly) else None
    return {"annualized_return": float(ann), "max_drawdown": float(dd.min()),
            "max_drawdown_from": peak.date().isoformat(), "max_drawdown_to": trough.date().isoformat(),
            "worst_month": float(monthly.min()) if worst is not None else float("nan"),
            "worst_month_at": worst.strftime("%Y-%m") if worst is not None else None,
            "start": float(v.iloc[0]), "end": float(v.iloc[-1])}


def monthly_returns(v: pd.Series) -> pd.Series:
    """Month-end to month-end returns. The first month's base is the series' first value; a
    first row alone in its month (a span's base, e.g. the previous year's last close) is only
    that base, not a month of its own."""
    groups = v.groupby(v.index.to_period("M"))
    ends = groups.last()
    base = pd.concat([pd.Series([v.iloc[0]]), pd.Series(ends.to_numpy()[:-1])], ignore_index=True)
    out = pd.Series(ends.to_numpy() / base.to_numpy() - 1.0, index=ends.index.to_timestamp())
    if len(out) and groups.size().iloc[0] == 1:
        out = out.iloc[1:]
    return out


def compare(frame: pd.DataFrame, lo: date | None = None, hi: date | None = None) -> dict:
    """Replica against index over a span: each one's metrics, the correlation of their
    monthly returns and the tracking error (annualized std of the monthly differences)."""
    dates = pd.DatetimeIndex(frame["date"])
    rows = _span_rows(dates, lo, hi)
    if len(rows) < 2:
        return {"rows": int(len(rows))}
    sub_dates = dates[rows]
    rep, idx = frame["replica"].to_numpy()[rows], frame["index"].to_numpy()[rows]
    mr = monthly_returns(pd.Series(rep, index=sub_dates))
    mi = monthly_returns(pd.Series(idx, index=sub_dates))
    diff = (mr - mi).to_numpy()
    flat = np.std(mr.to_numpy()) == 0 or np.std(mi.to_numpy()) == 0  # no correlation of a constant
    corr = float(np.corrcoef(mr, mi)[0, 1]) if len(mr) > 2 and not flat else float("nan")
    te = float(np.std(diff, ddof=1) * math.sqrt(12.0)) if len(diff) > 1 else float("nan")
    return {"from": sub_dates[0].date().isoformat(), "to": sub_dates[-1].date().isoformat(), "months": int(len(mr)),
            "replica": series_metrics(sub_dates, rep), "index": series_metrics(sub_dates, idx),
            "monthly_correlation": corr, "tracking_error": te}


def objective(inputs: MarketInputs, rules: IndexRules | str, model: VolModel | None = None,
              entry: str = ENTRY) -> dict:
    """Replication metrics for one parameter set: whole span and 2010-2019 (a calibration's
    objective; pure, no I/O)."""
    frame = run(inputs, rules, model, entry).frame()
    name, lo, hi = SUB_SPAN
    return {"full": compare(frame), name: compare(frame, lo, hi)}


# --------------------------------------------------------------------------- where the gap comes from

MOVE_BUCKETS = (-1.0, -0.05, -0.02, 0.0, 0.02, 0.05, 10.0)


def _cycles(result: Replication):
    """(trade, row of its roll, row of its expiry) of each roll whose index levels are known."""
    i = result.inputs
    row_of = {day: k for k, day in enumerate(i.dates.astype(object))}
    for t in result.trades:
        a, b = row_of.get(date.fromisoformat(t["date"])), row_of.get(date.fromisoformat(t["expiry"]))
        if a is None or b is None or a < i.first or not (np.isfinite(i.index_level[a]) and np.isfinite(i.index_level[b])):
            continue
        yield t, a, b


def cycle_returns(result: Replication) -> pd.DataFrame:
    """Roll-to-roll returns of replica and index, with the VIX at the roll and SPX's move from
    the roll's close to the expiry's SOQ (the option's life)."""
    i = result.inputs
    d = i.dates.astype(object)
    out = []
    for t, a, b in _cycles(result):
        rep, idx = result.level[b] / result.level[a] - 1.0, i.index_level[b] / i.index_level[a] - 1.0
        out.append({"date": d[a], "vix": t["vix"], "spx_move": float(i.spx_open[b]) / t["spx"] - 1.0,
                    "replica": rep, "index": idx, "gap": rep - idx})
    return pd.DataFrame(out)


def gap_by_regime(cycles: pd.DataFrame) -> dict:
    """Mean cycle return of replica and index, and their gap, by VIX at the roll and by SPX's move."""
    def table(column, edges, fmt):
        rows = []
        for lo, hi in zip(edges, edges[1:]):
            sel = cycles[(cycles[column] > lo) & (cycles[column] <= hi)]
            if len(sel):
                rows.append({column: fmt(lo, hi), "cycles": int(len(sel)), "gap": float(sel["gap"].mean()),
                             "replica": float(sel["replica"].mean()), "index": float(sel["index"].mean())})
        return rows

    if cycles.empty:
        return {}
    return {"by_vix": table("vix", VIX_BUCKETS, lambda lo, hi: f"{lo:g}-{hi:g}" if hi < 1000 else f">{lo:g}"),
            "by_spx_move": table("spx_move", MOVE_BUCKETS,
                                 lambda lo, hi: f"{lo:+.0%}..{hi:+.0%}" if -1 < lo and hi < 10
                                 else (f"<{hi:+.0%}" if lo <= -1 else f">{lo:+.0%}"))}


# --------------------------------------------------------------------------- what the real PUT received

VIX_BUCKETS = (0.0, 13.0, 16.0, 20.0, 25.0, 35.0, 1000.0)


def implied_put_vols(result: Replication, dividend_yield: float = DIVIDEND_YIELD) -> pd.DataFrame:
    """Per PUT roll, the premium the real index must have received and its implied vol.

    Under the PUT rules an index level M on a roll day and M' on the next are linked by
    M' = N (K e^{-rT} g - payoff) with N = M / (K e^{-rT} - P) (full collateralization; g
    grows the bills from expiry to the next close, as the replica does), so each cycle's premium
    P follows from the two levels, the strike and the settlement. Its Black-Scholes implied
    vol (the model's dividend yield) against the VIX at the roll is the market's ATM ratio,
    beside the model's. Noisy per roll (Cboe's strike reference is 11:00, its price the
    11:30-12:00 VWAP, its bills 1- and 3-month), informative by regime."""
    i = result.inputs
    if i.index_name != "put":
        raise ReplicationError("implied put vols need a PUT replication")
    d = i.dates.astype(object)
    out = []
    for t, a, b in _cycles(result):
        K, r, S, T = t["strikes"][0], t["rate"], t["spx"], t["T"]
        days = (d[b] - d[a]).days
        payoff = max(K - float(i.spx_open[b]), 0.0)
        grown = K * math.exp(-r * T) * math.exp(r * days / pricing.DAYS_PER_YEAR)
        n = i.index_level[b] / (grown - payoff)
        premium = K * math.exp(-r * T) - i.index_level[a] / n
        out.append({"date": d[a], "spx": S, "strike": K, "vix": t["vix"], "T": T, "rate": r,
                    "premium": premium, "model_mid": t["mid"][0], "model_iv": t["iv"][0]})
    frame = pd.DataFrame(out)
    if frame.empty:
        return frame
    lo, hi = np.full(len(frame), 1e-3), np.full(len(frame), 4.0)
    args = (frame["spx"].to_numpy(), frame["strike"].to_numpy(), frame["T"].to_numpy())
    for _ in range(60):  # bisection: the put price rises with vol
        mid = (lo + hi) / 2
        dear = pricing.bs_price(*args, mid, frame["rate"].to_numpy(), dividend_yield, False) > frame["premium"].to_numpy()
        hi, lo = np.where(dear, mid, hi), np.where(dear, lo, mid)
    intrinsic = pricing.bs_price(*args, 1e-3, frame["rate"].to_numpy(), dividend_yield, False)
    frame["implied_iv"] = np.where(frame["premium"].to_numpy() > intrinsic, (lo + hi) / 2, np.nan)
    frame["implied_ratio"] = frame["implied_iv"] / (frame["vix"] / 100.0)
    frame["model_ratio"] = frame["model_iv"] / (frame["vix"] / 100.0)
    return frame


def by_vix(frame: pd.DataFrame) -> list[dict]:
    """Median implied and model ATM ratios (vol / VIX) by the VIX at the roll."""
    out = []
    for lo, hi in zip(VIX_BUCKETS, VIX_BUCKETS[1:]):
        sel = frame[(frame["vix"] > lo) & (frame["vix"] <= hi)]
        if len(sel):
            out.append({"vix": f"{lo:g}-{hi:g}" if hi < 1000 else f">{lo:g}", "rolls": int(len(sel)),
                        "implied_ratio": float(sel["implied_ratio"].median()),
                        "implied_ratio_iqr": [float(x) for x in sel["implied_ratio"].quantile([0.25, 0.75])],
                        "model_ratio": float(sel["model_ratio"].median())})
    return out


# --------------------------------------------------------------------------- command


def _chart(frame: pd.DataFrame, name: str, metrics: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7.5), height_ratios=(3, 1.4), sharex=True)
    full = metrics["full"]
    top.plot(frame["date"], frame["index"], label=f"Cboe {name.upper()} (real SPX options)", color="black", lw=1.2)
    top.plot(frame["date"], frame["replica"], label="replica on the simulator's prices", color="tab:red", lw=1.2)
    top.set_yscale("log")
    top.set_ylabel("level (log)")
    top.set_title(f"{name.upper()}: replica vs index, {full['from']}..{full['to']}  "
                  f"(ann. {full['replica']['annualized_return']:+.2%} vs {full['index']['annualized_return']:+.2%}, "
                  f"monthly corr {full['monthly_correlation']:.2f}, TE {full['tracking_error']:.1%})", fontsize=10)
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    ratio = frame["replica"] / frame["index"]
    bottom.plot(frame["date"], ratio, color="tab:blue", lw=1.0)
    bottom.axhline(1.0, color="grey", lw=0.8)
    bottom.set_ylabel("replica / index")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def replicate_command(index_name: str, start: date, end: date, out: Path, data_dir: Path,
                      model: VolModel | None = None, entry: str = ENTRY) -> dict:
    """`spx-bot replicate`: writes replication.csv, replication.json, replication.png (and
    rolls.csv, one line per roll) in `out`; returns the JSON document."""
    model = model or VolModel()
    inputs = prepare(index_name, data_dir, start, end)
    rules = RULES[index_name]
    result = run(inputs, rules, model, entry)
    frame = result.frame()
    name, lo, hi = SUB_SPAN
    metrics = {"full": compare(frame), name: compare(frame, lo, hi)}
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "replication.csv", "w") as fh:
            fh.write("date,replica,index\n")
            for day, rep, idx in zip(frame["date"], frame["replica"], frame["index"]):
                fh.write(f"{day.date().isoformat()},{rep:.4f},{idx:.4f}\n")
        pd.DataFrame([{**t, "strikes": " ".join(f"{k:g}" for k in t["strikes"]),
                       "delta": " ".join(map(str, t["delta"])), "iv": " ".join(map(str, t["iv"])),
                       "mid": " ".join(map(str, t["mid"]))} for t in result.trades]).to_csv(out / "rolls.csv", index=False)
        doc = {
            "index": index_name, "from": frame["date"].iloc[0].date().isoformat(),
            "to": frame["date"].iloc[-1].date().isoformat(), "requested": [start.isoformat(), end.isoformat()],
            "rolls": len(result.trades), "model": model.describe(),
            "rules": {"legs": [{"right": "C" if c else "P", "delta": t if t is not None else "atm", "side": "buy" if s > 0 else "sell"}
                               for c, t, s in rules.legs],
                      "collateral": "full (N x K at expiry)" if rules.collateral_multiple is None
                      else f"{rules.collateral_multiple:g} x the condor's max loss"},
            "conventions": {"settlement": "SOQ = SPX open of the roll day",
                            "entry": {"close": "model at the roll day's close",
                                      "open": "model at the roll day's open (SPX open, VIX open, VIX9D/VIX3M of "
                                              "the previous close)",
                                      "midday": "model at 11:45 ET (each input 35% of the way from open to close; "
                                                "Cboe: VWAP 11:30-12:00)"}[entry],
                            "fill": f"{model.fill:g} of the way from mid to the natural side",
                            "marks": "model mid at each close, T from 16:00 to the expiry's 09:30",
                            "rate": "3-month T-bill (DTB3, continuous), fixed at each roll",
                            "strikes": f"{STRIKE_STEP:g}-point grid"},
            "metrics": metrics,
        }
        doc["cycle_gap"] = gap_by_regime(cycle_returns(result))
        if index_name == "put":
            implied = implied_put_vols(result, model.dividend_yield)
            if not implied.empty:
                implied.to_csv(out / "implied_atm.csv", index=False, float_format="%.6g")
                doc["implied_atm_by_vix"] = by_vix(implied)
        (out / "replication.json").write_text(json.dumps(doc, indent=2) + "\n")
        _chart(frame, index_name, metrics, out / "replication.png")
    except OSError as exc:
        raise ReplicationError(f"{out}: cannot write ({exc.strerror or exc})") from None
    return doc


def table(doc: dict) -> str:
    """The replication table as text (what the command prints)."""
    lines = [f"{doc['index'].upper()} replica vs index ({doc['rolls']} rolls, {doc['conventions']['entry'].split(' (')[0]}, "
             f"fill {doc['model']['fill']:g})",
             f"{'span':<24}{'':>9}{'ann.ret':>9}{'max DD':>9}{'worst mo':>10}{'corr':>7}{'TE':>7}"]
    for span, m in doc["metrics"].items():
        if "replica" not in m:
            lines.append(f"{span:<24} (no data)")
            continue
        label = f"{span} {m['from'][:7]}..{m['to'][:7]}" if span == "full" else span
        for who in ("replica", "index"):
            s = m[who]
            extra = f"{m['monthly_correlation']:>7.2f}{m['tracking_error']:>7.1%}" if who == "replica" else ""
            lines.append(f"{label if who == 'replica' else '':<24}{who:>9}{s['annualized_return']:>9.2%}"
                         f"{s['max_drawdown']:>9.1%}{s['worst_month']:>10.1%}{extra}")
    if doc.get("implied_atm_by_vix"):
        lines.append("ATM vol / VIX by VIX at the roll: the real PUT's implied (median) vs the model's")
        lines.append("  " + "  ".join(f"{b['vix']}: {b['implied_ratio']:.2f} vs {b['model_ratio']:.2f}"
                                      for b in doc["implied_atm_by_vix"]))
    return "\n".join(lines)

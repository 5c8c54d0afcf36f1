"""Parity check: the backtest against the daemon itself on the same window.

Runs the daemon's `Engine` in-process exactly as `spx-bot run --speed max` wires it
(`bot.wiring.sim_daemon`: SimClock "max", SimExchange on a temp SQLite file, Store, SimBroker)
on a history window,
then the backtest on the same window with the same commission schedule, and lines up what
each did: condors (entry day, strikes, quantity, credit, how and when they closed) and hedge
trades (day, kind, layer, contract, quantity).

Used by tests/test_backtest_parity.py.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from bot.calendar import NY, TradingCalendar, ny_time
from bot.config import Config

from bot.backtest.runner import RunInputs, World, run_group, variant_specs


@dataclass
class ParityReport:
    daemon_condors: list[tuple]
    backtest_condors: list[tuple]
    daemon_hedge: list[tuple]
    backtest_hedge: list[tuple]
    daemon_nl: float
    backtest_nl: float

    @property
    def condors_equal(self) -> bool:
        return self.daemon_condors == self.backtest_condors

    def condor_mismatches(self) -> list[tuple]:
        d, b = set(self.daemon_condors), set(self.backtest_condors)
        return sorted(d ^ b)

    def hedge_mismatches(self) -> list[tuple]:
        d, b = set(self.daemon_hedge), set(self.backtest_hedge)
        return sorted(d ^ b)

    def summary(self) -> str:
        cm, hm = self.condor_mismatches(), self.hedge_mismatches()
        return (f"condors: daemon {len(self.daemon_condors)}, backtest {len(self.backtest_condors)}, "
                f"{len(cm)} differing rows; hedge trades: daemon {len(self.daemon_hedge)}, "
                f"backtest {len(self.backtest_hedge)}, {len(hm)} differing rows; "
                f"net liquidation: daemon {self.daemon_nl:,.2f}, backtest {self.backtest_nl:,.2f}")


def _condor_row(opened: date, expiry, ps, pl, cs, cl, qty, credit, closed: date | None, reason: str | None,
                price) -> tuple:
    return (str(opened), str(expiry), str(Decimal(pl).normalize()), str(Decimal(ps).normalize()),
            str(Decimal(cs).normalize()), str(Decimal(cl).normalize()), int(qty), str(Decimal(credit).normalize()),
            str(closed) if closed else None, reason, str(Decimal(price).normalize()) if price is not None else None)


async def _daemon(cfg: Config, data_dir: Path, start: date, days: int, tmp: Path):
    from bot.log import setup_logging
    from bot.sim.market import build_market
    from bot.wiring import sim_daemon

    cfg = cfg.with_overrides(**{
        "bot.store_path": str(tmp / "bot.sqlite"), "bot.log_path": str(tmp / "bot.jsonl"),
        "bot.control_socket": str(tmp / "ctl.sock"), "bot.console_log": False, "bot.log_level": "info",
        "sim.state_path": str(tmp / "sim.sqlite"), "sim.speed": "max", "sim.start": start.isoformat(),
        "market.source": "history"})
    s = cfg.sim
    cal = TradingCalendar(end=start + timedelta(days=days + 400))
    t0 = ny_time(start, "09:00")
    until = t0 + timedelta(days=days)
    market = build_market("history", data_dir, cal, t0.date(), until.date() + timedelta(days=10), s.seed,
                          s.step_minutes)
    daemon = sim_daemon(cfg, cal, market, t0, until)
    try:
        await daemon.run()
    finally:
        end = daemon.clock.now()
        rows = daemon.store.condor_rows()
        nl = float(daemon.exchange.account(end).net_liquidation)
        daemon.close()
        setup_logging(tmp / "detached.jsonl", "info", console=False)
    condors = sorted(_condor_row(r["opened_at"].astimezone(NY).date(), r["expiry"], r["put_short"], r["put_long"],
                                 r["call_short"], r["call_long"], r["quantity"], r["credit"],
                                 r["closed_at"].astimezone(NY).date() if r.get("closed_at") else None,
                                 r.get("reason"), r.get("close_price")) for r in rows)
    hedge = []
    for line in (tmp / "bot.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e["event"] in ("hedge.bought", "hedge.sold", "hedge.rolled", "hedge.written", "hedge.bought_back",
                          "hedge.monetized"):
            day = e["timestamp"][:16]  # minute of the decision (fills land within the walk)
            hedge.append((day, e["event"].split(".")[1], e["layer"], tuple(e["legs"]), int(e["quantity"])))
    return condors, sorted(hedge), nl, end


_KIND = {"buy": "bought", "sell": "sold", "roll": "rolled", "write": "written", "buy_back": "bought_back",
         "monetize": "monetized"}


def parity(cfg: Config, data_dir: Path, start: date, days: int, hedge: bool, commissions: str = "ib") -> ParityReport:
    """Run the daemon and the backtest (one variant: alvh when `hedge`, else unhedged) from
    `start` for `days` calendar days of entries, both charging the `commissions` schedule
    (the backtest's default, IB's), and line up their trades."""
    cfg = cfg.with_overrides(**{"hedge.enabled": hedge, "sim.commissions": commissions})
    tmp = Path(tempfile.mkdtemp(prefix="parity", dir="/tmp"))
    try:
        d_condors, d_hedge, d_nl, end = asyncio.run(_daemon(cfg, data_dir, start, days, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    last = end.astimezone(NY).date()
    inputs = RunInputs(cfg, start, last, data_dir, commissions=commissions)
    world = World(inputs)
    until = ny_time(start, "09:00") + timedelta(days=days)
    names = ["alvh" if hedge else "unhedged"]
    res = run_group(inputs, variant_specs(names), world=world, entries_until=until, hedge_log=True, stop_at=end)
    v = res.variants[0]
    b_condors = sorted(_condor_row(*row) for row in v.stats["condor_rows"])
    end_key = end.isoformat()[:16]
    b_hedge = sorted((t.isoformat()[:16], _KIND[k], layer, legs, q) for t, k, layer, legs, q in v.stats.get("hedge_log", [])
                     if t.isoformat()[:16] <= end_key)
    return ParityReport(d_condors, b_condors, d_hedge, b_hedge, d_nl, v.nl[-1])

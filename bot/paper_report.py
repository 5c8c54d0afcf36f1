"""`spx-bot report`: the bot's own trading (paper or simulated), read from its store, turned into
the backtest's report and set beside a backtest over the same dates and config.

No second implementation: the store's daily closes become one more variant ("paper") of the
backtest's `GroupResult`, so `bot.backtest.report.build` / `write` compute the same metrics,
charts, crisis rows and high-VIX table for it as for the backtest's variants ("unhedged" and
"alvh", run here by `bot.backtest.runner.run_all` on the same config and dates). What this
module adds is the comparison: per session, the change of net liquidation of the bot against the
backtest's ALVH variant, the condor each opened, and the largest differences with their cause.

The store's daily figures are the `account` signal the engine journals at each session's close
(net liquidation, each hedge layer's cash flows plus market value, the condor notional); a
session without one (the bot was not running) is carried from the previous close and listed.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.export import hedge_lot_rows
from bot.sim.commissions import schedule_by_name
from bot.store import Store

NY = ZoneInfo("America/New_York")
LAYERS = ("front", "mid", "back")
TOP = 3


class ReportError(Exception):
    """One line for the operator (exit 2)."""


@dataclass
class PaperDays:
    closes: dict[str, dict]  # session (YYYY-MM-DD) -> the last `account` close signal of that session
    start_nl: float | None  # the first journaled account on or before the first session
    condors: list[dict]  # store rows, typed
    lots: list[dict]  # hedge lots opened in the window (bot.export's rows)
    fills: list = None  # the window's executions (settlements excluded), for the commission check


def read_store(path: str | Path, start: date, end: date) -> PaperDays:
    store = Store.open_readonly(path)
    try:
        closes: dict[str, dict] = {}
        start_nl = None
        for _, at, p in store.signals_after("account"):
            day = at.astimezone(NY).date()
            if day < start:
                start_nl = float(p["net_liquidation"])  # the close before the window is its base
                continue
            if day > end:
                break
            if start_nl is None:
                start_nl = float(p["net_liquidation"])
            if p.get("at") == "close":
                closes[day.isoformat()] = p
        condors = [c for c in reversed(store.condor_rows()) if start <= c["opened_at"].astimezone(NY).date() <= end]
        lots = hedge_lot_rows(store, start, end)
        fills = [f for f in store.fills() if start <= f.time.astimezone(NY).date() <= end
                 and not f.exec_id.startswith("settle:")]
    finally:
        store.close()
    return PaperDays(closes, start_nl, condors, lots, fills)


def commission_gap(fills, schedule) -> dict[str, float]:
    """Per session: what the bot paid in commissions less what the backtest's schedule
    (bot/sim/commissions.py) charges for the same executions, order by order."""
    by_order: dict[str, list] = {}
    for f in fills:
        by_order.setdefault(f.order_ref or f.exec_id, []).append(f)
    gap: dict[str, float] = {}
    for fs in by_order.values():
        charged = schedule.order_commissions([(f.quantity, f.price) for f in fs], [f.option.symbol for f in fs])
        day = fs[0].time.astimezone(NY).date().isoformat()
        gap[day] = gap.get(day, 0.0) + float(sum(f.commission for f in fs) - sum(charged))
    return gap


def paper_variant(res, days: PaperDays, starting_cash: float, end: date):
    """The store's closes as a `VariantResult` on the backtest's sessions. Scaled to the
    backtest's starting cash when the account started elsewhere (an IB paper account)."""
    from bot.backtest.runner import VariantResult

    scale = starting_cash / days.start_nl if days.start_nl else 1.0
    nl, notional, hedge, missing = [], [], [], []
    last = {"net_liquidation": days.start_nl or starting_cash, "hedge_value": {}, "notional": "0"}
    for d in res.dates:
        p = days.closes.get(d)
        if p is None:
            missing.append(d)
            p = last
        last = p
        nl.append(float(p["net_liquidation"]) * scale)
        notional.append(float(p.get("notional") or 0))
        hedge.append([float((p.get("hedge_value") or {}).get(layer, 0)) * scale for layer in LAYERS])
    rows = [(c["opened_at"].astimezone(NY).date(), c["expiry"], c["put_short"], c["put_long"], c["call_short"],
             c["call_long"], c["quantity"], c["credit"], c["closed_at"], c["reason"] or None, c["close_price"])
            for c in days.condors]
    closed = [c for c in days.condors if c["status"] == "closed" and c["closed_at"].astimezone(NY).date() <= end]
    reasons: dict[str, int] = {}
    for c in closed:
        reasons[c["reason"]] = reasons.get(c["reason"], 0) + 1
    layers = {layer: {"premium_paid": 0.0, "premium_collected": 0.0, "commissions": 0.0} for layer in LAYERS}
    for lot in days.lots:
        b = layers.setdefault(lot["layer"], {"premium_paid": 0.0, "premium_collected": 0.0, "commissions": 0.0})
        b["premium_paid" if lot["side"] == "long" else "premium_collected"] += float(lot["premium"]) * scale
        b["commissions"] += float(lot["commission"]) * scale
    stats = {"layers": layers, "condors_opened": len(days.condors), "condors_closed": reasons,
             "condor_pnl": round(float(sum((c["pnl"] for c in closed), Decimal(0))), 2),
             "sessions_without_close": missing, "condor_rows": rows}
    return VariantResult("paper", "alvh", "the bot's own trading (its store)", False, nl, notional, LAYERS,
                         hedge, stats), missing


def _condor_by_day(rows) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for r in rows:
        out.setdefault(str(r[0]), r)
    return out


def _describe(r) -> str:
    if r is None:
        return "none"
    return f"{r[3]:f}/{r[2]:f}/{r[4]:f}/{r[5]:f} x{r[6]} @ {r[7]:f}"


def compare(res, paper, backtest, start_cash: float, commission_gap: dict[str, float] | None = None) -> dict:
    """Per session: each side's change of net liquidation and condor; the largest differences
    explained from what differs (a missed entry, another condor or credit, another exit)."""
    pc, bc = _condor_by_day(paper.stats["condor_rows"]), _condor_by_day(backtest.stats.get("condor_rows", []))
    rows = []
    prev_p = prev_b = start_cash  # both start from the same cash (the bot's scaled to it)
    hedge_p = [sum(h) for h in paper.hedge_value]
    hedge_b = [sum(h) for h in backtest.hedge_value] if backtest.layers else [0.0] * len(res.dates)
    prev_hp = prev_hb = 0.0
    for i, d in enumerate(res.dates):
        p_nl, b_nl = paper.nl[i], backtest.nl[i]
        dp, db = p_nl - prev_p, b_nl - prev_b
        dh = (hedge_p[i] - prev_hp) - (hedge_b[i] - prev_hb)
        prev_p, prev_b, prev_hp, prev_hb = p_nl, b_nl, hedge_p[i], hedge_b[i]
        rows.append({"date": d, "vix": res.vix[i], "paper_nl": round(p_nl, 2), "backtest_nl": round(b_nl, 2),
                     "paper_change": round(dp, 2), "backtest_change": round(db, 2),
                     "difference": round(dp - db, 2), "hedge_difference": round(dh, 2),
                     "commission_difference": round(-(commission_gap or {}).get(d, 0.0), 2),
                     "condor_difference": round(dp - db - dh, 2),
                     "paper_condor": _describe(pc.get(d)), "backtest_condor": _describe(bc.get(d)),
                     "paper_exit": _exit(pc.get(d)), "backtest_exit": _exit(bc.get(d))})
    for r in rows:
        r["explanation"] = _explain(r, pc, bc)
    ranked = sorted((r for r in rows if r["difference"] is not None), key=lambda r: -abs(r["difference"]))
    total = {"paper_change": round(paper.nl[-1] - start_cash, 2), "backtest_change": round(backtest.nl[-1] - start_cash, 2)}
    total["difference"] = round(total["paper_change"] - total["backtest_change"], 2)
    total["hedge_difference"] = round(sum(r["hedge_difference"] for r in rows), 2)
    total["commission_difference"] = round(sum(r["commission_difference"] for r in rows), 2)
    total["condor_difference"] = round(total["difference"] - total["hedge_difference"], 2)
    return {"days": rows, "largest": ranked[:TOP], "total": total,
            "note": "a day's difference is the bot's change of net liquidation less the backtest ALVH variant's; "
                    "hedge_difference is the part from the hedge layers' value (cash flows + marks), "
                    "condor_difference the rest (condors, their commissions)"}


def _exit(r) -> str:
    if r is None:
        return ""
    closed, reason, debit = r[8], r[9], r[10]
    if reason is None and closed in (None, False):
        return "open"
    return f"{reason or 'closed'}" + (f" @ {debit:f}" if isinstance(debit, Decimal) else "")


def _explain(row: dict, pc: dict, bc: dict) -> str:
    d = row["date"]
    p, b = pc.get(d), bc.get(d)
    prev = [k for k in pc if k < d]
    parts = []
    if p is None and b is not None:
        parts.append("missed entry: the backtest opened a condor, the bot did not")
    elif b is None and p is not None:
        parts.append("extra entry: the bot opened a condor, the backtest did not")
    elif p is not None and b is not None:
        if (p[2], p[3], p[4], p[5]) != (b[2], b[3], b[4], b[5]):
            parts.append(f"other strikes (bot {_describe(p)}, backtest {_describe(b)})")
        elif p[6] != b[6]:
            parts.append(f"other size (bot x{p[6]}, backtest x{b[6]})")
        elif p[7] != b[7]:
            parts.append(f"other fill: credit {p[7]:f} against {b[7]:f}")
    if row["paper_exit"] != row["backtest_exit"] and (p or b):
        parts.append(f"other exit (bot {row['paper_exit'] or '-'}, backtest {row['backtest_exit'] or '-'})")
    if prev:  # the day's P&L is mostly the condor opened the session before, and the hedge
        y = max(prev)
        py, by = pc.get(y), bc.get(y)
        if py is not None and by is not None and (py[2:8] != by[2:8] or _exit(py) != _exit(by)):
            parts.append(f"the condor of {y} differed (bot {_describe(py)} {_exit(py)}, backtest "
                         f"{_describe(by)} {_exit(by)})")
        elif (py is None) != (by is None):
            parts.append(f"the condor of {y} was held by one side only")
    if row["commission_difference"]:
        parts.append(f"commissions {row['commission_difference']:+,.2f} (the bot's fills as charged, against the "
                     f"backtest's schedule on the same fills)")
    parts.append(f"hedge {row['hedge_difference']:+,.2f}, condors and the rest {row['condor_difference']:+,.2f}")
    return "; ".join(parts)


def paper_report(cfg, start: date, end: date, out_dir: Path, data_dir: Path, progress: bool = False, out=None,
                 commissions: str = "ib") -> int:
    from bot.backtest import USED_FILES
    from bot.backtest import report as R
    from bot.backtest.runner import RunInputs, run_all, variant_specs
    from bot.data import DataError
    from bot.datacheck import prepare

    out = out or sys.stdout
    days = read_store(cfg.bot.store_path, start, end)
    if not days.closes:
        raise ReportError(f"store {cfg.bot.store_path}: no session close journaled from {start} to {end} "
                          f"(run the bot over those dates first)")
    out_dir = Path(out_dir)
    try:
        data = prepare(data_dir, out_dir / ".data")
        inputs = RunInputs(cfg, start, end, data, commissions=commissions)
        res = run_all(inputs, variant_specs(("unhedged", "alvh")), 1, progress)
    except (DataError, ValueError) as e:
        raise ReportError(str(e)) from None
    paper, missing = paper_variant(res, days, float(cfg.sim.starting_cash), end)
    backtest = next(v for v in res.variants if v.name == "alvh")
    res.variants.append(paper)
    files = {n: R.sha256(data / n) for n in USED_FILES if (data / n).is_file()}
    rep = R.build(res, inputs, files)
    gap = commission_gap(days.fills, schedule_by_name(commissions, cfg.sim.commission_per_contract))
    comparison = compare(res, paper, backtest, float(cfg.sim.starting_cash), gap)
    comparison["sessions_without_close"] = missing
    rep["paper_vs_backtest"] = comparison
    paths = R.write(rep, res, out_dir)
    with (out_dir / "report.md").open("a", encoding="utf-8") as fh:
        fh.write(comparison_markdown(rep))
    (out_dir / "comparison.json").write_text(json.dumps(comparison, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"paper {comparison['total']['paper_change']:+,.2f} against backtest "
          f"{comparison['total']['backtest_change']:+,.2f} over {len(res.dates)} sessions; wrote "
          + ", ".join(p.name for p in paths) + f", comparison.json in {out_dir}", file=out)
    return 0


def comparison_markdown(rep: dict) -> str:
    c, v = rep["paper_vs_backtest"], rep["variants"]
    L = ["", "## The bot's own trading beside the backtest", "",
         "`paper` is the bot's store (its daily closes); `alvh` the backtest of the same config and dates.", "",
         "| | final NL | return | max drawdown | Sharpe | hedge P&L | condors opened | condor P&L |",
         "|---|---|---|---|---|---|---|---|"]
    for k in ("paper", "alvh", "unhedged"):
        x = v[k]
        ret = x["final_nl"] / rep["run"]["starting_cash"] - 1
        h = x.get("hedge") or {}
        L.append(f"| {k} | {x['final_nl']:,.2f} | {ret * 100:+.2f}% | {x['max_drawdown'] * 100:.2f}% | "
                 f"{'n/a' if x['sharpe'] is None else format(x['sharpe'], '.2f')} | "
                 f"{h.get('hedge_pnl', 0):,.2f} | {x['counts'].get('condors_opened')} | "
                 f"{x['counts'].get('condor_pnl')} |")
    t = c["total"]
    L += ["", f"Total change over the window: bot {t['paper_change']:+,.2f}, backtest {t['backtest_change']:+,.2f}, "
          f"difference {t['difference']:+,.2f} (hedge {t['hedge_difference']:+,.2f}, condors and the rest "
          f"{t['condor_difference']:+,.2f}; of the whole, commissions {t['commission_difference']:+,.2f}: the bot's "
          f"fills as charged against the backtest's schedule on the same fills).", ""]
    if c.get("sessions_without_close"):
        L.append(f"Sessions without a close in the store (carried): {', '.join(c['sessions_without_close'])}.")
        L.append("")
    L += ["Largest daily differences:", ""]
    for i, r in enumerate(c["largest"], 1):
        L.append(f"{i}. **{r['date']}** (VIX {r['vix']:.2f}): bot {r['paper_change']:+,.2f}, backtest "
                 f"{r['backtest_change']:+,.2f}, difference {r['difference']:+,.2f}: {r['explanation']}.")
    L += ["", "| date | VIX | bot change | backtest change | difference | of it: hedge | bot condor | backtest condor "
          "| bot exit | backtest exit |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in c["days"]:
        f = (lambda x: "" if x is None else f"{x:+,.2f}")
        L.append(f"| {r['date']} | {r['vix']:.2f} | {f(r['paper_change'])} | {f(r['backtest_change'])} | "
                 f"{f(r['difference'])} | {f(r['hedge_difference'])} | {r['paper_condor']} | {r['backtest_condor']} | {r['paper_exit']} | "
                 f"{r['backtest_exit']} |")
    return "\n".join(L) + "\n"

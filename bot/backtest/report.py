"""The backtest's report: report.json (deterministic), report.md, equity.csv and PNG charts.

report.json holds only what the data, the config and the seed decide (no wall times, no
paths that change between machines), with floats rounded to 10 significant digits, so two
runs give the same bytes. Run times go to timing.json.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from bot.backtest import metrics as M
from bot.backtest.runner import GroupResult, RunInputs, VariantResult

CLAIM_SOURCE = "../shared/docs/ALVH.md §7"

MODEL_NOTES = (
    "Option prices are the simulator's model, not historical quotes: SPX options by Black-Scholes on an ATM "
    "volatility of 0.9 x the VIX term structure (VIX9D / VIX / VIX3M where published) with a put skew; VIX options "
    "by Black-76 on the VX future of the same expiry with a volatility from VVIX and a call skew. Bid/ask spreads "
    "are the model's (SPX: 4 % of mid, 0.05-2.00; VIX: 5 %, 0.05-0.50) and every order pays its walk from mid "
    "toward the natural price (fill at >= 25 % of the way).",
    "Intraday paths are seeded bridges through each day's real open, high, low and close (SPX and VIX); stops, take "
    "profits and hedge triggers are evaluated on that path at the daemon's 5-minute monitor instants. The bridge "
    "reaches each day's exact high and low at one of those instants, so stops fill at the day's worst prices "
    "(pessimistic) and spike sales (monetization at VIX >= 40) at its best (optimistic) where a real 5-minute poll "
    "would see prices near them.",
    "VIX futures settlements start 2004-03-26, so no backtest starts earlier. VIX options were listed only from "
    "2006-02-24 and weekly VIX options (VIXW) from 2015; the simulated exchange lists both throughout, so the hedge "
    "before those dates is counterfactual.",
    "VVIX before 2007-01-03 is not in the data: the model uses 60 + 1.8 x VIX (clipped to 70-220). VIX9D (from "
    "2011) and VIX3M (from 2006-07-17) are left out of the SPX volatility term structure before they exist.",
    "SPXW lists an expiry every session in the simulator; real daily SPX expiries exist only since 2022 (Mon/Wed/Fri "
    "since 2016, PM-settled weeklies since 2005), so the 1dte preset before then is counterfactual too.",
    "Cash earns the 3-month T-bill rate (tbill_3m_daily.csv) from each close to the next, booked by the simulated "
    "exchange as the daemon's account books it (Sharpe still uses rf = 0). SPX buy-and-hold is the price index "
    "(no dividends).",
    "Commissions: IB's US options schedule (<= 10,000 contracts a month: $0.65 a contract, $0.50 below a $0.10 "
    "premium, $0.25 below $0.05; $1.00 minimum an order) plus Cboe's customer exchange fee (SPX/SPXW $0.36 below "
    "a $1 premium, $0.45 from $1; VIX by premium, simple or complex), ORF $0.033 and OCC clearing $0.025 a "
    "contract (bot/sim/commissions.py) unless --commissions flat.",
    "Execution and decisions are the daemon's own code (strategies.iron_condor, strategies.alvh, Executor pricing "
    "and walk steps, SimExchange fills, margin and settlement); on history windows the backtest reproduces the "
    "daemon's trades and net liquidation to the cent (tests/test_backtest_parity.py).",
)


# --------------------------------------------------------------------------- json helpers


def _r(x, digits: int = 10):
    """Round floats (recursively) to `digits` significant digits; NaN/inf become None."""
    if isinstance(x, float) or isinstance(x, np.floating):
        x = float(x)
        if not math.isfinite(x):
            return None
        return float(f"{x:.{digits}g}")
    if isinstance(x, dict):
        return {k: _r(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_r(v, digits) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- building the report


def _series(res: GroupResult, v: VariantResult, start_cash: float) -> M.Series:
    return M.Series(M.to_dates(res.dates), np.asarray(v.nl, dtype=float), start_cash)


def _hedge(v: VariantResult) -> M.Hedge | None:
    if not v.layers:
        return None
    return M.Hedge(v.layers, np.asarray(v.hedge_value, dtype=float).reshape(len(v.nl), len(v.layers)),
                   np.asarray(v.notional, dtype=float))


def _sizing(s: M.Series, rows: list, cap: int | None) -> dict:
    """metrics.sizing on the runner's condor rows (opened, expiry, put short, put long, call
    short, call long, quantity, credit, ...): max loss = (wider wing - credit) x 100 x quantity."""
    opened = np.array([r[0].isoformat() for r in rows], dtype="datetime64[D]")
    qty = np.array([r[6] for r in rows], dtype=float)
    width = np.array([max(float(r[2] - r[3]), float(r[5] - r[4])) for r in rows], dtype=float)
    credit = np.array([float(r[7]) for r in rows], dtype=float)
    return M.sizing(s, opened, (width - credit) * 100.0 * qty, qty, cap)


def build(res: GroupResult, inputs: RunInputs, data_files: dict[str, str]) -> dict:
    cfg = inputs.cfg
    cash = cfg.sim.starting_cash
    vix = np.asarray(res.vix, dtype=float)
    series = {v.name: _series(res, v, cash) for v in res.variants}
    base = series.get("unhedged")
    base_dd = M.max_drawdown(base)["max_drawdown"] if base is not None else None
    variants = {}
    for v in res.variants:
        s = series[v.name]
        m = M.summary(s)
        if base_dd is not None and v.kind != "spx":
            m["drawdown_cut_vs_unhedged"] = M.cut(m["max_drawdown"], base_dd)
        h = _hedge(v)
        if h is not None:
            m["hedge"] = M.hedge_costs(s, h)
            m["hedge"]["spike_days"] = M.spike_days(s, h, vix)
            m["hedge"]["by_year"] = M.hedge_by_year(s, h)
            yrs = M.years(s)
            layers = v.stats.get("layers", {})
            paid = sum(b["premium_paid"] for b in layers.values())
            m["hedge"]["premium_paid_per_year_pct_nl"] = paid / yrs / float(np.mean(s.nl)) * 100.0
            m["hedge"]["layers"] = layers
        if base is not None and v.kind in ("alvh", "vxth") and "hedge" in m:
            gap = M.return_gap(base, s)
            m["hedge"]["annual_return_gap"] = gap["by_year"]
            m["hedge"]["time_weighted_cost_pct"] = gap["mean_annual_gap"] * 100.0
        rows = v.stats.get("condor_rows")
        if rows is not None:
            m["sizing"] = _sizing(s, rows, cfg.condor.max_quantity)
        m["monthly_drag_vs_unhedged_pct_mean"] = None
        if base is not None and v.kind in ("alvh", "vxth"):
            _, r_b, _ = M.monthly(base)
            _, r_v, _ = M.monthly(s)
            m["monthly_drag_vs_unhedged_pct_mean"] = float(np.mean(r_b - r_v) * 100.0)
        stats = {k: val for k, val in v.stats.items() if k not in ("condor_rows", "hedge_log", "layers")}
        variants[v.name] = {"label": v.label, "kind": v.kind, "sweep": v.sweep, **m, "counts": stats}

    crises = []
    for name, lo, hi in M.CRISES:
        row = {"event": name, "from": lo, "to": hi, "variants": {}}
        for v in res.variants:
            if v.sweep:
                continue
            w = M.window(series[v.name], lo, hi)
            if w is not None:
                row["variants"][v.name] = w
        if row["variants"]:
            u = row["variants"].get("unhedged")
            # a cut of a drawdown under 5 % is noise, not protection
            row["cut"] = {k: M.cut(w["max_drawdown"], u["max_drawdown"]) if u and u["max_drawdown"] >= 0.05 else None
                          for k, w in row["variants"].items() if k in ("alvh", "vxth")}
            crises.append(row)

    high = {v.name: M.high_vix_days(series[v.name], vix) for v in res.variants if not v.sweep}
    high = {k: x for k, x in high.items() if x is not None}
    hv = None
    if high:
        u = high.get("unhedged")
        hv = {"year": 2022, "vix_at_least": M.HIGH_VIX, "variants": high,
              "cut": {k: (M.cut(x["max_drawdown"], u["max_drawdown"]) if u and u["max_drawdown"] > 0 else None)
                      for k, x in high.items() if k in ("alvh", "vxth")}}

    report = {
        "schema": 1,
        "run": {
            "preset": cfg.condor.preset, "seed": cfg.sim.seed, "from": res.dates[0], "to": res.dates[-1],
            "sessions": res.sessions, "starting_cash": cash, "commissions": inputs.commissions,
            "step_minutes": cfg.sim.step_minutes, "monitor_interval_s": cfg.schedule.monitor_interval_s,
            "fill_fraction": cfg.sim.fill_fraction,
            "condor": cfg.condor.model_dump(mode="json"), "hedge": cfg.hedge.model_dump(mode="json"),
            "vxth_rule": {"delta": inputs.vxth.delta, "weights": [list(w) for w in inputs.vxth.weights],
                          "at": inputs.vxth.at.isoformat()},
        },
        "data_files": data_files,
        "variants": variants,
        "crises": crises,
        "high_vix_2022": hv,
        "claims": claims(variants, crises, hv, _gfc(res, series)),
        "sweep": sweep_table(variants),
        "model_notes": list(MODEL_NOTES),
    }
    return _r(report)


def _gfc(res: GroupResult, series: dict) -> dict | None:
    if res.dates[0] > GFC[0] or res.dates[-1] < "2009-03-31":
        return None
    return {v.name: M.window(series[v.name], *GFC) for v in res.variants if not v.sweep}


def _pct(x, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x * 100:.{digits}f}%"


GFC = ("2007-10-01", "2009-06-30")


# Verdict words by the side a claim's figure is better on: (below the claim, within, above).
VERDICTS = {
    "higher": ("NO", "yes: within the claim", "better than claimed"),
    "lower": ("better than claimed", "yes: within the claim", "NO"),
    "cost": ("cheaper than claimed", "yes: within the claim", "NO: costlier than claimed"),
}


def judge(value, lo: float, hi: float, better: str, missing: str = "not measured") -> str:
    """The verdict on a claim of [lo, hi] for a measured value (the one rule for one seed and
    for the median of several)."""
    if value is None:
        return missing
    below, within, above = VERDICTS[better]
    return within if lo <= value <= hi else (below if value < lo else above)


def claims(variants: dict, crises: list, hv: dict | None, gfc: dict | None = None) -> list[dict]:
    """ALVH.md §7, claim by claim, beside what this run measured. Each row keeps what judged
    it (claimed range, `better` side, the message when unmeasured), so the median of several
    seeds is judged by the same rule (`seed_claims`)."""
    a, x = variants.get("alvh"), variants.get("vxth")
    out = []

    def row(claim, measure, lo, hi, alvh_value, vxth_value, better: str, unit: str = "%",
            missing: str = "not measured (no alvh variant)"):
        out.append({"claim": claim, "source": CLAIM_SOURCE, "measure": measure, "claimed": [lo, hi],
                    "unit": unit, "alvh": alvh_value, "vxth_reference": vxth_value, "better": better,
                    "missing": missing, "verdict": judge(alvh_value, lo, hi, better, missing)})

    cut_a = a.get("drawdown_cut_vs_unhedged") if a else None
    cut_x = x.get("drawdown_cut_vs_unhedged") if x else None
    row("35-40% lower maximum drawdown", "max drawdown cut vs unhedged condors, whole period", 0.35, 0.40, cut_a,
        cut_x, "higher")
    hv_a = hv["cut"].get("alvh") if hv else None
    hv_x = hv["cut"].get("vxth") if hv else None
    row("37% lower drawdown on high-VIX days of 2022", "cut of the largest drawdown on 2022 sessions with VIX >= 30",
        0.37, 0.37, hv_a, hv_x, "higher")
    # events: the listed crises where the unhedged condors lost 15 % or more
    big = [c for c in crises if c["variants"].get("unhedged", {}).get("max_drawdown", 0) >= 0.15]
    dd_a = dd_x = None
    if big:
        dd_a = max((c["variants"].get("alvh", {}).get("max_drawdown", float("nan")) for c in big), default=None)
        dd_x = max((c["variants"].get("vxth", {}).get("max_drawdown", float("nan")) for c in big), default=None)
    row("8-12% drawdowns on events that would otherwise cost 15-20%",
        "worst hedged drawdown over the listed crises where the unhedged condors lost >= 15% "
        f"({', '.join(c['event'] for c in big) or 'none'})", 0.08, 0.12, dd_a, dd_x, "lower",
        missing="not testable: no listed event cost the unhedged condors 15% or more")
    ha, hx = (a or {}).get("hedge", {}), (x or {}).get("hedge", {})

    def cost_row(claim, measure, lo, hi, key):
        va, vx = ha.get(key), hx.get(key)
        row(claim, measure, lo, hi, None if va is None else va / 100, None if vx is None else vx / 100, "cost",
            missing="not measured")

    cost_row("hedge cost of 1-2% a year (article 1)", "annual hedge cost (minus hedge P&L) / average net liquidation",
             0.01, 0.02, "annual_cost_pct_nl")
    cost_row("hedge cost of 1-2% a year, time-weighted",
             "mean over calendar years of the unhedged condors' return minus the hedged ones' (every year weighs "
             "the same; the row above is dollar-weighted, ruled by the late, large years)",
             0.01, 0.02, "time_weighted_cost_pct")
    cost_row("0.35-0.65% of notional a month (article 5)",
             "hedge cost / sum over months of the month's average condor notional (max loss)", 0.0035, 0.0065,
             "monthly_cost_pct_notional")
    cost_row("monthly drag of 0.4-1.2% (article 3)", "hedge cost / sum over months of net liquidation at the "
             "month's start", 0.004, 0.012, "monthly_drag_pct_nl")
    sa, sx = ha.get("spike_days", {}), hx.get("spike_days", {})
    row("spike-day hedge gains of 1.8-2.2x the condor wing loss",
        f"sum of hedge P&L / sum of condor losses on days VIX closed >= {M.SPIKE_VIX_RISE:.0%} higher "
        f"({sa.get('spike_days_condor_loss', 0)} such days with a condor loss)", 1.8, 2.2, sa.get("ratio_of_sums"),
        sx.get("ratio_of_sums"), "higher", unit="x")
    if gfc is not None:
        spx_dd = gfc.get("spx", {}).get("max_drawdown")
        out.append({"claim": "reference: Cboe VXTH index ~43% max drawdown in 2008-09 vs ~57% for the S&P 500",
                    "source": CLAIM_SOURCE, "measure": f"largest drawdown {GFC[0]}..{GFC[1]}; the vxth column is "
                    "condors + the VXTH call rule, not the VXTH index (S&P 500 + calls)",
                    "claimed": [0.57, 0.57], "unit": "%", "alvh": gfc.get("alvh", {}).get("max_drawdown"),
                    "spx": spx_dd, "unhedged": gfc.get("unhedged", {}).get("max_drawdown"),
                    "vxth_reference": gfc.get("vxth", {}).get("max_drawdown"),
                    "verdict": "data check: S&P 500 drawdown " + (_pct(spx_dd) if spx_dd is not None else "n/a")
                               + " (published ~57%)"})
    return out


# --------------------------------------------------------------------------- several seeds

# The headline figures summarized over seeds: (key, label, unit, where in a variant's report).
HEADLINE = (
    ("cagr", "CAGR", "%", ("cagr",)),
    ("max_drawdown", "max drawdown", "%", ("max_drawdown",)),
    ("drawdown_cut", "DD cut vs unhedged", "%", ("drawdown_cut_vs_unhedged",)),
    ("hedge_pnl", "hedge P&L $", "$", ("hedge", "hedge_pnl")),
    ("hedge_cost_dollar_weighted", "hedge cost %NL/yr (dollar-weighted)", "pp", ("hedge", "annual_cost_pct_nl")),
    ("hedge_cost_time_weighted", "hedge cost %/yr (time-weighted)", "pp", ("hedge", "time_weighted_cost_pct")),
    ("spike_day_ratio", "spike-day hedge gain / condor loss", "x", ("hedge", "spike_days", "ratio_of_sums")),
    ("high_vix_2022_drawdown", "2022 VIX>=30 days: largest DD", "%", None),
    ("high_vix_2022_cut", "2022 VIX>=30 days: DD cut", "%", None),
    ("sizing_at_cap", "entries at the size cap", "%", ("sizing", "at_cap_share")),
    ("risk_at_entry", "risk at entry %NL (median)", "pp", ("sizing", "risk_pct_nl_median")),
)


def headline(rep: dict) -> dict[str, dict]:
    """One seed's headline figures per variant (None: not measured for that variant)."""
    hv = rep.get("high_vix_2022") or {}
    out = {}
    for name, v in rep["variants"].items():
        if v["sweep"]:
            continue
        row = {}
        for key, _, _, path in HEADLINE:
            if path is None:
                continue
            x = v
            for p in path:
                x = x.get(p) if isinstance(x, dict) else None
            row[key] = x
        if name == "unhedged" or v["kind"] == "spx":
            row["drawdown_cut"] = None
        h = hv.get("variants", {}).get(name)
        row["high_vix_2022_drawdown"] = h["max_drawdown"] if h else None
        row["high_vix_2022_cut"] = hv.get("cut", {}).get(name)
        out[name] = row
    return out


def seed_claims(reports: list[dict]) -> list[dict]:
    """The claims judged on the median over seeds (`judge`, the one-seed rule), with the range
    and, when seeds fall on different sides of the claim, a note that the range straddles it."""
    out = []
    for i, first in enumerate(reports[0]["claims"]):
        rows = [r["claims"][i] for r in reports]
        a = M.spread(r.get("alvh") for r in rows)
        x = M.spread(r.get("vxth_reference") for r in rows)
        c = {k: first[k] for k in ("claim", "source", "measure", "claimed", "unit") if k in first}
        c.update({"alvh": a, "vxth_reference": x, "seeds": len(reports)})
        if "better" in first:
            lo, hi = first["claimed"]
            c["verdict"] = judge(a["median"], lo, hi, first["better"], first.get("missing", "not measured"))
            per_seed = [judge(r.get("alvh"), lo, hi, first["better"]) for r in rows if r.get("alvh") is not None]
            tally: dict[str, int] = {}
            for v in per_seed:
                tally[v] = tally.get(v, 0) + 1
            c["seed_verdicts"] = dict(sorted(tally.items(), key=lambda kv: -kv[1]))
            c["straddles"] = len(tally) > 1
        else:  # a data check (the same in every seed): the first seed's words
            c["verdict"] = first["verdict"]
            c["straddles"] = False
            for k in ("spx", "unhedged"):
                if k in first:
                    c[k] = M.spread(r.get(k) for r in rows)
        out.append(c)
    return out


def with_seeds(rep: dict, seeds: list[int], reports: list[dict]) -> dict:
    """The first seed's report with the summary over every seed under "seeds"."""
    return _r({**rep, "seeds": seeds_summary(seeds, reports)})


def seeds_summary(seeds: list[int], reports: list[dict]) -> dict:
    """Median and range of each headline figure per variant over the seeds' reports (same
    order), and the claims judged on the medians."""
    heads = [headline(r) for r in reports]
    variants = {}
    for name in heads[0]:
        variants[name] = {key: M.spread(h[name].get(key) for h in heads) for key, *_ in HEADLINE}
    per_seed = [{"seed": sd, **{name: h[name] for name in h}} for sd, h in zip(seeds, heads)]
    return {"seeds": list(seeds), "variants": variants, "claims": seed_claims(reports),
            "sizing_by_year": _sizing_by_year(reports), "per_seed": per_seed}


def _sizing_by_year(reports: list[dict]) -> dict:
    """Per condor variant and year: the share of entries at the cap and the median risk at
    entry, each as a spread over the seeds."""
    out = {}
    for name, v in reports[0]["variants"].items():
        if v["sweep"] or not (v.get("sizing") or {}).get("by_year"):
            continue
        rows: dict[int, list[dict]] = {}
        for r in reports:
            for y in r["variants"][name]["sizing"]["by_year"]:
                rows.setdefault(y["year"], []).append(y)
        out[name] = [{"year": year,
                      "at_cap_share": M.spread(y["at_cap"] / y["entries"] for y in ys if y["entries"]),
                      "risk_pct_nl_median": M.spread(y["risk_pct_nl_median"] for y in ys)}
                     for year, ys in sorted(rows.items())]
    return out


def sweep_table(variants: dict) -> list[dict] | None:
    rows = [(k, v) for k, v in variants.items() if v["kind"] == "alvh"]
    if not any(v["sweep"] for _, v in rows):
        return None
    out = []
    for name, v in rows:
        h = v.get("hedge", {})
        out.append({"variant": name, "size": v["label"], "annual_cost_pct_nl": h.get("annual_cost_pct_nl"),
                    "premium_paid_per_year_pct_nl": h.get("premium_paid_per_year_pct_nl"),
                    "max_drawdown": v["max_drawdown"], "drawdown_cut_vs_unhedged": v.get("drawdown_cut_vs_unhedged"),
                    "cagr": v["cagr"], "sharpe": v["sharpe"]})
    return out


# --------------------------------------------------------------------------- writing


def write(report: dict, res: GroupResult, out_dir: Path, charts: bool = True) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    p = out_dir / "report.json"
    p.write_text(json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    paths.append(p)
    p = out_dir / "report.md"
    p.write_text(markdown(report), encoding="utf-8")
    paths.append(p)
    p = out_dir / "equity.csv"
    names = [v.name for v in res.variants]
    lines = ["date,vix_close,spx_close," + ",".join(names)]
    for i, d in enumerate(res.dates):
        lines.append(f"{d},{res.vix[i]:.2f},{res.spx[i]:.2f}," + ",".join(f"{v.nl[i]:.2f}" for v in res.variants))
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    paths.append(p)
    if charts:
        from bot.backtest import charts as C

        paths += C.draw_all(report, res, out_dir)
    return paths


def _fmt_money(x) -> str:
    return "n/a" if x is None else f"{x:,.0f}"


def _f(x, digits=2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def markdown(r: dict) -> str:
    run = r["run"]
    v = r["variants"]
    main = [k for k, x in v.items() if not x["sweep"]]
    L = [f"# Backtest: SPX {run['preset']} iron condors, hedged and unhedged, {run['from']} to {run['to']}", ""]
    L.append(f"{run['sessions']} sessions, seed {run['seed']}, starting cash {run['starting_cash']:,.0f}, "
             f"commissions `{run['commissions']}`. Same path, same strategy and execution code for every variant.")
    many = r.get("seeds") is not None and len(r["seeds"]["seeds"]) > 1
    if many:
        L += _seeds_markdown(r["seeds"])
        L += ["", f"# Seed {run['seed']} in detail", "",
              "Everything below is one seed's path (the config's seed); the figures above are over all seeds."]
    L += ["", "## Verdict on the hedge's claims (ALVH.md §7)" + (f", seed {run['seed']} alone" if many else ""), ""]
    L += ["| claim | measured as | claimed | ALVH | VXTH rule (reference) | verdict |", "|---|---|---|---|---|---|"]
    for c in r["claims"]:
        unit = c.get("unit", "%")

        def show(x):
            if x is None:
                return "n/a"
            return f"{x:.2f}x" if unit == "x" else _pct(x, 2 if abs(x) < 0.1 else 1)

        lo, hi = c["claimed"]
        claimed = show(lo) if lo == hi else f"{show(lo)} to {show(hi)}"
        alvh_cell = show(c.get("alvh"))
        if "spx" in c:
            alvh_cell = f"{alvh_cell} (unhedged {show(c.get('unhedged'))}, S&P 500 {show(c.get('spx'))})"
        L.append(f"| {c['claim']} | {c['measure']} | {claimed} | {alvh_cell} | {show(c.get('vxth_reference'))} "
                 f"| {c['verdict']} |")
    L += ["", _one_seed_conclusion(r), ""]
    L += ["## Variants (whole period)", ""]
    L += ["Hedge cost = minus the hedge's P&L (premiums, commissions, sales, settlements and the value still held): "
          "a negative cost is a net gain.", ""]
    L += ["Hedge cost %NL/yr is dollar-weighted (hedge P&L / years / average net liquidation: the late, large years "
          "rule it); time-weighted is the mean over calendar years of the unhedged return minus the hedged one.", ""]
    L += ["| variant | final NL | CAGR | volatility | Sharpe (rf 0) | max drawdown | peak -> trough | "
          "DD cut vs unhedged | hedge cost %NL/yr | hedge cost %/yr time-weighted | monthly drag %NL | worst months |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for k in main:
        x = v[k]
        h = x.get("hedge", {})
        worst = ", ".join(f"{w['month']} {_pct(w['return'])}" for w in x["worst_months"])
        L.append(f"| {k} | {_fmt_money(x['final_nl'])} | {_pct(x['cagr'])} | {_pct(x['volatility'])} | "
                 f"{_f(x['sharpe'])} | {_pct(x['max_drawdown'])} | {x['peak']} -> {x['trough']} | "
                 f"{_pct(x.get('drawdown_cut_vs_unhedged')) if k != 'unhedged' and x['kind'] != 'spx' else '-'} | "
                 f"{_f(h.get('annual_cost_pct_nl')) if h else '-'} | "
                 f"{_f(h.get('time_weighted_cost_pct')) if h else '-'} | "
                 f"{_f(h.get('monthly_drag_pct_nl')) if h else '-'} | {worst} |")
    L += ["", "Hedge detail:", ""]
    for k in main:
        h = v[k].get("hedge")
        if not h:
            continue
        layers = ", ".join(f"{layer} {_fmt_money(p)}" for layer, p in h["hedge_pnl_by_layer"].items())
        sd = h["spike_days"]
        L.append(f"- **{k}**: hedge P&L {_fmt_money(h['hedge_pnl'])} ({layers}); premium paid "
                 f"{_f(h['premium_paid_per_year_pct_nl'])}% of NL a year; months the hedge lost money: "
                 f"{h['months_hedge_lost']} of {h['months']}; monthly cost / condor notional "
                 f"{_f(h['monthly_cost_pct_notional'])}% (median month {_f(h['monthly_cost_pct_notional_median'])}%); "
                 f"monthly drag {_f(h['monthly_drag_pct_nl'])}% of NL (median month "
                 f"{_f(h['monthly_drag_pct_nl_median'])}%); "
                 f"spike days (VIX +20%): {sd['spike_days']}, with a condor loss {sd['spike_days_condor_loss']}, "
                 f"hedge gain / condor loss {_f(sd.get('ratio_of_sums'))}x (median day {_f(sd.get('median_ratio'))}x).")
    L += ["", "Counts:", ""]
    for k in main:
        c = v[k]["counts"]
        if not c:
            continue
        L.append(f"- **{k}**: condors opened {c.get('condors_opened')}, closed {c.get('condors_closed')}, "
                 f"entries skipped {c.get('condor_skips')}, orders {c.get('orders')} (timed out "
                 f"{c.get('orders_timed_out')}, blocked {c.get('orders_blocked')}, rejected {c.get('orders_rejected')}), "
                 f"commissions {_fmt_money(c.get('commissions'))}, interest on cash {_fmt_money(c.get('interest'))}"
                 + (f", hedge actions {c.get('hedge_actions')}, activations {c.get('hedge_activations')}"
                    if "hedge_actions" in c else "")
                 + (f", VXTH buys {c.get('vxth_buys')} (months without calls {c.get('vxth_months_without_calls')})"
                    if "vxth_buys" in c else "") + ".")
    L += _sizing_markdown(v, main)
    hedged = [k for k in main if v[k].get("hedge")]
    if hedged:
        L += ["", "Hedge P&L by calendar year (dollars, and % of the year's opening net liquidation):", ""]
        L.append("| year | " + " | ".join(hedged) + " |")
        L.append("|---|" + "---|" * len(hedged))
        by = {k: {y["year"]: y for y in v[k]["hedge"]["by_year"]} for k in hedged}
        for year in sorted(next(iter(by.values()))):
            L.append(f"| {year} | " + " | ".join(f"{_fmt_money(by[k][year]['hedge_pnl'])} ({by[k][year]['pct_nl']:+.2f}%)"
                                                  for k in hedged) + " |")
    L += ["", "## Crises", "", "Return over the window and largest drawdown inside it (from the close before it); "
          "a cut is shown where the unhedged condors' drawdown reached 5%.", ""]
    names = [k for k in main]
    L.append("| event | " + " | ".join(f"{k} return / DD" for k in names) + " | ALVH DD cut | VXTH DD cut |")
    L.append("|---|" + "---|" * len(names) + "---|---|")
    for c in r["crises"]:
        cells = []
        for k in names:
            w = c["variants"].get(k)
            cells.append("n/a" if w is None else f"{_pct(w['return'])} / {_pct(w['max_drawdown'])}")
        cut = c.get("cut", {})
        L.append(f"| {c['event']} | " + " | ".join(cells) + f" | {_pct(cut.get('alvh'))} | {_pct(cut.get('vxth'))} |")
    hv = r.get("high_vix_2022")
    if hv:
        L += ["", f"## 2022, sessions with VIX >= {hv['vix_at_least']:.0f}", ""]
        L += ["| variant | days | largest drawdown on those days | summed daily return on those days |",
              "|---|---|---|---|"]
        for k, x in hv["variants"].items():
            L.append(f"| {k} | {x['days']} | {_pct(x['max_drawdown'])} | {_pct(x['sum_return'])} |")
        L.append("")
        L.append(f"Drawdown cut on those days: ALVH {_pct(hv['cut'].get('alvh'))}, VXTH rule "
                 f"{_pct(hv['cut'].get('vxth'))} (claimed: 37%).")
    if r.get("sweep"):
        L += ["", "## How much hedge is enough (sweep on the same path)", ""]
        L += ["| size | net hedge cost %NL/yr | premium paid %NL/yr | max drawdown | DD cut vs unhedged | CAGR | Sharpe |",
              "|---|---|---|---|---|---|---|"]
        for s in sorted(r["sweep"], key=lambda s: (s["annual_cost_pct_nl"] is None, s["annual_cost_pct_nl"])):
            L.append(f"| {s['size']} | {_f(s['annual_cost_pct_nl'])} | {_f(s['premium_paid_per_year_pct_nl'])} | "
                     f"{_pct(s['max_drawdown'])} | {_pct(s['drawdown_cut_vs_unhedged'])} | {_pct(s['cagr'])} | "
                     f"{_f(s['sharpe'])} |")
        L += ["", _sweep_conclusion(r["sweep"])]
    L += ["", "## Charts", "", "![equity](equity.png)", "![drawdowns](drawdowns.png)",
          "![hedge P&L by layer](hedge_layers.png)", "![VIX, tiers and activation](vix_tiers.png)"]
    if r.get("sweep"):
        L.append("![hedge cost against drawdown cut](sweep.png)")
    L += ["", "## Model and data notes", ""]
    L += [f"- {n}" for n in r["model_notes"]]
    L += ["", "Data files (SHA-256):", ""]
    L += [f"- `{k}` {h}" for k, h in r["data_files"].items()]
    return "\n".join(L) + "\n"


def _spread_cell(x: dict | None, unit: str) -> str:
    """'median (min to max)' of a metrics.spread."""
    if not x or x.get("median") is None:
        return "-"

    def one(v):
        if unit == "%":
            return _pct(v)
        if unit == "x":
            return f"{v:.2f}x"
        if unit == "$":
            return _fmt_money(v)
        return f"{v:.2f}%"  # "pp": a figure already in percent

    if x["min"] == x["max"]:
        return one(x["median"])
    return f"{one(x['median'])} ({one(x['min'])} to {one(x['max'])})"


def _seeds_markdown(sm: dict) -> list[str]:
    n = len(sm["seeds"])
    seeds = ", ".join(str(s) for s in sm["seeds"])
    L = ["", f"## Over {n} seeds: median (min to max)", "",
         f"Seeds {seeds}: each seed is another intraday path through the same daily history (the path's "
         "randomness); the data, the config and the code are the same. Each cell is the median over the seeds "
         "and, in brackets, the range.", ""]
    names = list(sm["variants"])
    L.append("| figure | " + " | ".join(names) + " |")
    L.append("|---|" + "---|" * len(names))
    for key, label, unit, _ in HEADLINE:
        cells = [_spread_cell(sm["variants"][k].get(key), unit) for k in names]
        if all(c == "-" for c in cells):
            continue
        L.append(f"| {label} | " + " | ".join(cells) + " |")
    L += ["", f"### Verdict on the hedge's claims (ALVH.md §7) on the median of {n} seeds", ""]
    L += ["| claim | claimed | ALVH median (range) | VXTH rule (reference) | verdict on the median | seeds |",
          "|---|---|---|---|---|---|"]
    for c in sm["claims"]:
        unit = "x" if c.get("unit") == "x" else "%"
        lo, hi = c["claimed"]
        claimed = _spread_cell({"median": lo, "min": lo, "max": lo}, unit)
        if lo != hi:
            claimed += " to " + _spread_cell({"median": hi, "min": hi, "max": hi}, unit)
        verdict = c["verdict"] + (" (the range straddles the claim)" if c.get("straddles") else "")
        tally = ", ".join(f"{k}: {m}" for k, m in c.get("seed_verdicts", {}).items()) or "-"
        L.append(f"| {c['claim']} | {claimed} | {_spread_cell(c['alvh'], unit)} | "
                 f"{_spread_cell(c['vxth_reference'], unit)} | {verdict} | {tally} |")
    sz = sm.get("sizing_by_year") or {}
    if sz:
        names = list(sz)
        L += ["", f"### Sizing by year over {n} seeds", "",
              "Share of entries at the size cap (`condor.max_quantity`) and the median risk at entry (max loss / net "
              "liquidation at the close before), median over the seeds (range).", ""]
        L.append("| year | " + " | ".join(f"{k} at cap | {k} risk at entry %NL" for k in names) + " |")
        L.append("|---|" + "---|---|" * len(names))
        by = {k: {y["year"]: y for y in sz[k]} for k in names}
        for year in sorted(set().union(*(set(b) for b in by.values()))):
            cells = []
            for k in names:
                y = by[k].get(year)
                cells += ["-", "-"] if y is None else [_spread_cell(y["at_cap_share"], "%"),
                                                       _spread_cell(y["risk_pct_nl_median"], "pp")]
            L.append(f"| {year} | " + " | ".join(cells) + " |")
    return L + ["", _seeds_conclusion(sm)]


def _sizing_markdown(v: dict, main: list[str]) -> list[str]:
    sized = [k for k in main if v[k].get("sizing")]
    if not sized:
        return []
    first = v[sized[0]]["sizing"]
    cap = first["cap"]
    L = ["", "## Sizing", "",
         ("No size cap (`condor.max_quantity` unset): each entry's max loss is what `max_risk_fraction` of net "
          "liquidation leaves (ALVH.md §1)." if cap is None else
          f"`condor.max_quantity = {cap}` caps each entry; `max_risk_fraction` sizes it below the cap. An entry at "
          "the cap takes less risk than the documented sizing once the account outgrows it."),
         "", "Risk at entry = the new condor's max loss / net liquidation at the close before the entry.", ""]
    for k in sized:
        z = v[k]["sizing"]
        L.append(f"- **{k}**: {z['entries']} entries, {z['at_cap']} at the cap "
                 f"({_pct(z['at_cap_share'])}); median risk at entry {_f(z['risk_pct_nl_median'])}% of NL.")
    L += ["", "| year | " + " | ".join(f"{k} entries (at cap) | {k} risk %NL median / max" for k in sized) + " |",
          "|---|" + "---|---|" * len(sized)]
    by = {k: {y["year"]: y for y in v[k]["sizing"]["by_year"]} for k in sized}
    for year in sorted(set().union(*(set(b) for b in by.values()))):
        cells = []
        for k in sized:
            y = by[k].get(year)
            cells += ["-", "-"] if y is None else [f"{y['entries']} ({y['at_cap']})",
                                                   f"{y['risk_pct_nl_median']:.2f} / {y['risk_pct_nl_max']:.2f}"]
        L.append(f"| {year} | " + " | ".join(cells) + " |")
    return L


def _cost_words(h: dict) -> str:
    c = h.get("annual_cost_pct_nl")
    paid = h.get("premium_paid_per_year_pct_nl")
    if c is None:
        return "at an unknown cost"
    net = f"a net cost of {c:.2f}%" if c >= 0 else f"a net gain of {-c:.2f}%"
    return f"paying {_f(paid)}% of net liquidation a year in premium for {net} a year"


def conclusion(r: dict) -> str:
    """The report's one-paragraph answer: on the median of the seeds when there are several."""
    sm = r.get("seeds")
    if sm is not None and len(sm["seeds"]) > 1:
        return _seeds_conclusion(sm)
    return _one_seed_conclusion(r)


def _seeds_conclusion(sm: dict) -> str:
    a, x = sm["variants"].get("alvh"), sm["variants"].get("vxth")
    if not a:
        return ""
    n = len(sm["seeds"])

    def words(z):
        return (f"cut the condors' maximum drawdown by {_spread_cell(z['drawdown_cut'], '%')} at a time-weighted cost "
                f"of {_spread_cell(z['hedge_cost_time_weighted'], 'pp')} a year (dollar-weighted: "
                f"{_spread_cell(z['hedge_cost_dollar_weighted'], 'pp')} of net liquidation)")

    parts = [f"**Over {n} seeds (median, range in brackets) the ALVH (4/4/2 per $100k of condor max loss) "
             f"{words(a)}. The articles claim a 35-40% cut at 1-2% a year.**"]
    cut = a["drawdown_cut"]
    if cut["median"] is not None and cut["median"] < 0.35:
        parts.append("The claimed drawdown reduction is not reproduced at the documented size"
                     + (" in any seed." if cut["max"] < 0.35 else ", though some seeds reach it."))
    if x:
        parts.append(f"For reference, the Cboe VXTH call rule on the same condors {words(x)}.")
    return " ".join(parts)


def _one_seed_conclusion(r: dict) -> str:
    v = r["variants"]
    a, x = v.get("alvh"), v.get("vxth")
    if not a:
        return ""
    cut = a.get("drawdown_cut_vs_unhedged")
    parts = [f"**In this run the ALVH (4/4/2 per $100k of condor max loss) cut the condors' maximum drawdown by "
             f"{_pct(cut)}, {_cost_words(a.get('hedge', {}))}. The articles claim a 35-40% cut at 1-2% a year.**"]
    if cut is not None and cut < 0.35:
        parts.append("The claimed drawdown reduction is not reproduced at the documented size.")
    if x:
        parts.append(f"For reference, the Cboe VXTH call rule on the same condors cut it by "
                     f"{_pct(x.get('drawdown_cut_vs_unhedged'))}, {_cost_words(x.get('hedge', {}))}.")
    if r.get("sweep"):
        parts.append(_sweep_conclusion(r["sweep"]))
    return " ".join(parts)


def _sweep_conclusion(rows: list[dict]) -> str:
    ok = [s for s in rows if (s["drawdown_cut_vs_unhedged"] or 0) >= 0.35]
    if ok:
        best = min(ok, key=lambda s: s["premium_paid_per_year_pct_nl"])
        below = [s for s in rows if (s["drawdown_cut_vs_unhedged"] or 0) < 0.35]
        near = max(below, key=lambda s: s["drawdown_cut_vs_unhedged"] or -1) if below else None
        text = (f"The smallest hedge reaching the claimed 35% cut is **{best['size']}**: a "
                f"{_pct(best['drawdown_cut_vs_unhedged'])} cut, paying {_f(best['premium_paid_per_year_pct_nl'])}% of "
                f"net liquidation a year in premium for a net cost of {_f(best['annual_cost_pct_nl'])}% a year "
                f"(net of what the calls returned; a negative cost is a gain).")
        if near is not None:
            text += (f" The next size down, {near['size']}, cuts {_pct(near['drawdown_cut_vs_unhedged'])} "
                     f"(premium {_f(near['premium_paid_per_year_pct_nl'])}%/yr).")
        return text
    top = max(rows, key=lambda s: s["drawdown_cut_vs_unhedged"] or -1)
    return (f"**No size tested reaches the claimed 35% cut.** The largest cut is {_pct(top['drawdown_cut_vs_unhedged'])} "
            f"({top['size']}, {_f(top['annual_cost_pct_nl'])}% of net liquidation a year).")

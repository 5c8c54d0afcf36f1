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
from bot.backtest.report_md import HEADLINE, markdown, pct
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
                    "verdict": "data check: S&P 500 drawdown " + (pct(spx_dd) if spx_dd is not None else "n/a")
                               + " (published ~57%)"})
    return out


# --------------------------------------------------------------------------- several seeds

# The headline figures summarized over seeds: (key, label, unit, where in a variant's report).


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

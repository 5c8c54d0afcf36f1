"""The backtest report as Markdown: `report.md`'s tables, the seeds' medians and ranges, the
sizing by year, and the conclusions, from the dict `bot.backtest.report.build` makes (and
`with_seeds` extends). Pure formatting: nothing here computes a figure."""

from __future__ import annotations

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


def pct(x, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x * 100:.{digits}f}%"


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
        L += seeds_markdown(r["seeds"])
        L += ["", f"# Seed {run['seed']} in detail", "",
              "Everything below is one seed's path (the config's seed); the figures above are over all seeds."]
    L += ["", "## Verdict on the hedge's claims (ALVH.md §7)" + (f", seed {run['seed']} alone" if many else ""), ""]
    L += ["| claim | measured as | claimed | ALVH | VXTH rule (reference) | verdict |", "|---|---|---|---|---|---|"]
    for c in r["claims"]:
        unit = c.get("unit", "%")

        def show(x):
            if x is None:
                return "n/a"
            return f"{x:.2f}x" if unit == "x" else pct(x, 2 if abs(x) < 0.1 else 1)

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
        worst = ", ".join(f"{w['month']} {pct(w['return'])}" for w in x["worst_months"])
        L.append(f"| {k} | {_fmt_money(x['final_nl'])} | {pct(x['cagr'])} | {pct(x['volatility'])} | "
                 f"{_f(x['sharpe'])} | {pct(x['max_drawdown'])} | {x['peak']} -> {x['trough']} | "
                 f"{pct(x.get('drawdown_cut_vs_unhedged')) if k != 'unhedged' and x['kind'] != 'spx' else '-'} | "
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
            cells.append("n/a" if w is None else f"{pct(w['return'])} / {pct(w['max_drawdown'])}")
        cut = c.get("cut", {})
        L.append(f"| {c['event']} | " + " | ".join(cells) + f" | {pct(cut.get('alvh'))} | {pct(cut.get('vxth'))} |")
    hv = r.get("high_vix_2022")
    if hv:
        L += ["", f"## 2022, sessions with VIX >= {hv['vix_at_least']:.0f}", ""]
        L += ["| variant | days | largest drawdown on those days | summed daily return on those days |",
              "|---|---|---|---|"]
        for k, x in hv["variants"].items():
            L.append(f"| {k} | {x['days']} | {pct(x['max_drawdown'])} | {pct(x['sum_return'])} |")
        L.append("")
        L.append(f"Drawdown cut on those days: ALVH {pct(hv['cut'].get('alvh'))}, VXTH rule "
                 f"{pct(hv['cut'].get('vxth'))} (claimed: 37%).")
    if r.get("sweep"):
        L += ["", "## How much hedge is enough (sweep on the same path)", ""]
        L += ["| size | net hedge cost %NL/yr | premium paid %NL/yr | max drawdown | DD cut vs unhedged | CAGR | Sharpe |",
              "|---|---|---|---|---|---|---|"]
        for s in sorted(r["sweep"], key=lambda s: (s["annual_cost_pct_nl"] is None, s["annual_cost_pct_nl"])):
            L.append(f"| {s['size']} | {_f(s['annual_cost_pct_nl'])} | {_f(s['premium_paid_per_year_pct_nl'])} | "
                     f"{pct(s['max_drawdown'])} | {pct(s['drawdown_cut_vs_unhedged'])} | {pct(s['cagr'])} | "
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
            return pct(v)
        if unit == "x":
            return f"{v:.2f}x"
        if unit == "$":
            return _fmt_money(v)
        return f"{v:.2f}%"  # "pp": a figure already in percent

    if x["min"] == x["max"]:
        return one(x["median"])
    return f"{one(x['median'])} ({one(x['min'])} to {one(x['max'])})"


def seeds_markdown(sm: dict) -> list[str]:
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
                 f"({pct(z['at_cap_share'])}); median risk at entry {_f(z['risk_pct_nl_median'])}% of NL.")
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
             f"{pct(cut)}, {_cost_words(a.get('hedge', {}))}. The articles claim a 35-40% cut at 1-2% a year.**"]
    if cut is not None and cut < 0.35:
        parts.append("The claimed drawdown reduction is not reproduced at the documented size.")
    if x:
        parts.append(f"For reference, the Cboe VXTH call rule on the same condors cut it by "
                     f"{pct(x.get('drawdown_cut_vs_unhedged'))}, {_cost_words(x.get('hedge', {}))}.")
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
                f"{pct(best['drawdown_cut_vs_unhedged'])} cut, paying {_f(best['premium_paid_per_year_pct_nl'])}% of "
                f"net liquidation a year in premium for a net cost of {_f(best['annual_cost_pct_nl'])}% a year "
                f"(net of what the calls returned; a negative cost is a gain).")
        if near is not None:
            text += (f" The next size down, {near['size']}, cuts {pct(near['drawdown_cut_vs_unhedged'])} "
                     f"(premium {_f(near['premium_paid_per_year_pct_nl'])}%/yr).")
        return text
    top = max(rows, key=lambda s: s["drawdown_cut_vs_unhedged"] or -1)
    return (f"**No size tested reaches the claimed 35% cut.** The largest cut is {pct(top['drawdown_cut_vs_unhedged'])} "
            f"({top['size']}, {_f(top['annual_cost_pct_nl'])}% of net liquidation a year).")

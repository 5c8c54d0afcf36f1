"""PNG charts of a backtest report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bot.backtest import metrics as M

COLORS = {"unhedged": "#444444", "alvh": "#1f77b4", "vxth": "#2ca02c", "spx": "#ff7f0e",
          "paper": "#d62728"}  # spx-bot report: the bot's own trading
TIER_COLORS = ("#e8f4e8", "#f4f4d8", "#fbe8cc", "#f8d4c0", "#f2b8b0")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_all(report: dict, res, out_dir: Path) -> list[Path]:
    plt = _plt()
    dates = np.array(res.dates, dtype="datetime64[D]")
    main = [v for v in res.variants if not v.sweep]
    paths = []
    cash = report["run"]["starting_cash"]

    fig, ax = plt.subplots(figsize=(11, 5.5))
    for v in main:
        ax.plot(dates, v.nl, label=v.name, color=COLORS.get(v.name), lw=1.1)
    ax.set_yscale("log")
    ax.set_title(f"Net liquidation ({report['run']['preset']} condors), log scale")
    ax.set_ylabel("dollars")
    ax.grid(alpha=0.3)
    ax.legend()
    paths.append(_save(fig, out_dir / "equity.png"))

    fig, ax = plt.subplots(figsize=(11, 4.5))
    for v in main:
        dd = M.drawdown(M.Series(dates, np.asarray(v.nl), cash))
        ax.plot(dates, -dd * 100, label=v.name, color=COLORS.get(v.name), lw=0.9)
    ax.set_title("Drawdown from the running peak")
    ax.set_ylabel("%")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    paths.append(_save(fig, out_dir / "drawdowns.png"))

    hedged = [v for v in main if v.layers]
    fig, axes = plt.subplots(max(1, len(hedged)), 1, figsize=(11, 3.6 * max(1, len(hedged))), squeeze=False)
    for ax, v in zip(axes[:, 0], hedged):
        value = np.asarray(v.hedge_value, dtype=float).reshape(len(v.nl), len(v.layers))
        for i, layer in enumerate(v.layers):
            ax.plot(dates, value[:, i], label=layer, lw=1.0)
        ax.plot(dates, value.sum(axis=1), label="total", color="black", lw=1.2)
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_title(f"{v.name}: cumulative hedge P&L by layer (cash flows + market value)")
        ax.set_ylabel("dollars")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
    if not hedged:
        axes[0, 0].text(0.5, 0.5, "no hedged variant in this run", ha="center")
    paths.append(_save(fig, out_dir / "hedge_layers.png"))

    fig, ax = plt.subplots(figsize=(11, 4.5))
    vix = np.asarray(res.vix)
    top = max(90.0, float(vix.max()) * 1.05)
    tiers = np.asarray(res.tiers) if res.tiers else None
    if tiers is not None and len(tiers) == len(dates):
        bounds = report["run"]["hedge"]["tiers"]
        for k in range(len(bounds)):
            label = f"tier {k} (x{bounds[k]['multiplier']:g})"
            ax.fill_between(dates, 0, top, where=tiers == k, step="post", color=TIER_COLORS[k % len(TIER_COLORS)],
                            label=label, lw=0)
        act = np.asarray(res.activated, dtype=bool)
        ax.fill_between(dates, top * 0.93, top, where=act, step="post", color="#d62728", label="activation", lw=0)
        for b in bounds[1:]:
            ax.axhline(b["lower"], color="grey", lw=0.5, ls=":")
    ax.plot(dates, vix, color="black", lw=0.7, label="VIX close")
    ax.set_ylim(0, top)
    ax.set_title("VIX with the ALVH tier (after each close) and activation")
    ax.legend(loc="upper left", fontsize=7, ncol=4)
    paths.append(_save(fig, out_dir / "vix_tiers.png"))

    sweep = report.get("sweep")
    if sweep:
        fig, ax = plt.subplots(figsize=(8, 5.5))
        ax.add_patch(plt.Rectangle((1.0, 35.0), 1.0, 5.0, color="#ffd54f", alpha=0.5, label="claimed: 35-40% at 1-2%/yr"))
        xs = [s["annual_cost_pct_nl"] for s in sweep]
        ys = [(s["drawdown_cut_vs_unhedged"] or 0) * 100 for s in sweep]
        count = [(x, y, s) for x, y, s in zip(xs, ys, sweep) if "vega" not in s["size"]]
        vega = [(x, y, s) for x, y, s in zip(xs, ys, sweep) if "vega" in s["size"]]
        for pts, marker, label in ((count, "o-", "4/4/2 counts x k"), (vega, "s--", "vega-target sizing")):
            if pts:
                pts = sorted(pts, key=lambda p: p[0])
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker, label=label)
                for x, y, s in pts:
                    ax.annotate(s["size"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        vx = report["variants"].get("vxth")
        if vx and vx.get("hedge"):
            ax.plot([vx["hedge"]["annual_cost_pct_nl"]], [(vx.get("drawdown_cut_vs_unhedged") or 0) * 100], "D",
                    color=COLORS["vxth"], label="VXTH rule")
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_xlabel("annual hedge cost, % of net liquidation")
        ax.set_ylabel("max drawdown cut vs unhedged, %")
        ax.set_title("How much hedge is enough: cost against drawdown cut")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        paths.append(_save(fig, out_dir / "sweep.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path

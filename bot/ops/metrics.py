"""`/metrics`: the control surface's status, in Prometheus' text format (prometheus_client).

A fresh registry per scrape with one collector over the status dict: the values are read from
the one status function, never kept twice, and nothing global survives between daemons (tests
run several in one process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

PREFIX = "spxbot"


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class _StatusCollector:
    def __init__(self, status: dict[str, Any]):
        self.status = status

    def collect(self):
        s = self.status
        health = s.get("health", {})
        ops = s.get("ops", {})

        def gauge(name: str, doc: str, value: Any, unit: str = ""):
            g = GaugeMetricFamily(f"{PREFIX}_{name}", doc, unit=unit)
            v = _num(value)
            if v is not None:
                g.add_metric([], v)
            return g

        yield gauge("healthy", "1 when /health answers 200", health.get("healthy"))
        yield gauge("broker_connected", "1 while connected to the gateway", health.get("connected"))
        yield gauge("in_maintenance_window", "1 inside one of IB's configured maintenance windows",
                    health.get("in_maintenance_window"))
        yield gauge("broker_down_seconds", "seconds the broker has been disconnected (bot clock)",
                    health.get("broker_down_s") or 0)
        yield gauge("last_tick_age_seconds", "age of the last streamed market tick (bot clock)",
                    health.get("last_tick_age_s"))
        yield gauge("last_loop_age_seconds", "age of the schedule loop's last wake-up (bot clock)",
                    health.get("last_loop_age_s"))
        yield gauge("halted", "1 while the kill switch is engaged", s.get("halted"))
        yield gauge("entries_blocked", "1 while new entries wait (broker down too long)",
                    bool(health.get("entries_blocked")))
        yield gauge("position_mismatch", "1 while store positions differ from the broker's",
                    health.get("position_mismatch"))
        account = s.get("account", {})
        yield gauge("net_liquidation_dollars", "account net liquidation value", account.get("net_liquidation"))
        yield gauge("cash_dollars", "account cash", account.get("cash"))
        pnl = s.get("pnl", {})
        yield gauge("realized_pnl_dollars", "realized P&L of closed condors", pnl.get("realized"))
        yield gauge("unrealized_pnl_dollars", "unrealized P&L of open condors at mid", pnl.get("unrealized"))
        yield gauge("open_condors", "iron condors open", len(s.get("open_condors", [])))
        yield gauge("working_orders", "orders of the bot still working", len(s.get("working_orders", [])))

        hedge = s.get("hedge") or {}
        qty = GaugeMetricFamily(f"{PREFIX}_hedge_contracts", "VIX calls held per layer (short: written)",
                                labels=["layer", "side"])
        value = GaugeMetricFamily(f"{PREFIX}_hedge_value_dollars", "market value of a layer at mid", labels=["layer"])
        upnl = GaugeMetricFamily(f"{PREFIX}_hedge_unrealized_pnl_dollars", "unrealized P&L per layer", labels=["layer"])
        rpnl = GaugeMetricFamily(f"{PREFIX}_hedge_realized_pnl_dollars", "realized P&L per layer", labels=["layer"])
        for layer, b in (hedge.get("layers") or {}).items():
            qty.add_metric([layer, "long"], _num(b.get("held")) or 0)
            qty.add_metric([layer, "short"], _num(b.get("short")) or 0)
            for family, key in ((value, "market_value"), (upnl, "unrealized_pnl"), (rpnl, "realized_pnl")):
                if _num(b.get(key)) is not None:
                    family.add_metric([layer], _num(b.get(key)))
        yield from (qty, value, upnl, rpnl)
        signal = ops.get("signal") or {}
        yield gauge("vix", "VIX at the last hedge evaluation", signal.get("vix"))
        yield gauge("vix_rsi", "RSI of VIX at the last hedge evaluation", signal.get("rsi"))
        yield gauge("vix_macd", "MACD line of VIX", signal.get("macd"))
        yield gauge("vix_macd_signal", "MACD signal line of VIX", signal.get("signal_line"))
        yield gauge("hedge_tier", "VIX tier of the hedge", hedge.get("tier", signal.get("tier")))
        yield gauge("hedge_multiplier", "hedge size multiplier", signal.get("multiplier"))
        yield gauge("hedge_activated", "1 while MACD activation holds", hedge.get("activated", signal.get("activation")))

        orders = CounterMetricFamily(f"{PREFIX}_orders", "order events by outcome", labels=["outcome"])
        for outcome in ("submitted", "filled", "cancelled", "rejected", "abandoned", "adopted", "blocked"):
            orders.add_metric([outcome], (ops.get("orders") or {}).get(outcome, 0))
        yield orders
        errors = CounterMetricFamily(f"{PREFIX}_broker_errors", "IB errors and warnings by code", labels=["code"])
        for code, n in sorted((ops.get("broker_errors") or {}).items()):
            errors.add_metric([code], n)
        yield errors
        yield CounterMetricFamily(f"{PREFIX}_reconnects", "reconnections to the gateway", value=ops.get("reconnects", 0))
        yield CounterMetricFamily(f"{PREFIX}_ib_messages_sent", "API messages sent to IB",
                                  value=ops.get("ib_messages_sent", 0))
        yield gauge("ib_messages_per_second", "API messages per second to IB (last heartbeat interval)",
                    ops.get("ib_messages_per_s"))
        notes = CounterMetricFamily(f"{PREFIX}_notifications", "notifications by class and result",
                                    labels=["class", "result"])
        for result, by_class in (ops.get("notifications") or {}).items():
            for klass, n in sorted(by_class.items()):
                notes.add_metric([klass, result], n)
        yield notes


def render(status: dict[str, Any]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatusCollector(status))
    return generate_latest(registry)

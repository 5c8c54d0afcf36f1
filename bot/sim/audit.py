"""Audit a simulated account from its own records: replay every execution and cash settlement
in time order and check, after each moment, that no short option was uncovered (`bot.guard`
coverage: VIX calls by ALVH.md's rule, other shorts by a long of the same right expiring no
earlier). Used by the hedge-safety tests and `bench/hedge_safety.py`; it reads the exchange
through its public methods only.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from bot.domain import OptionSpec
from bot.guard import uncovered_shorts
from bot.sim.exchange import SimExchange


@dataclass
class AuditReport:
    executions: int = 0
    settlements: int = 0
    moments: int = 0  # distinct times at which the book changed
    violations: list[tuple[datetime, dict[str, int]]] = field(default_factory=list)  # time, uncovered shorts
    short_calls_at_end: dict[str, int] = field(default_factory=dict)
    positions_at_end: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"executions": self.executions, "settlements": self.settlements, "moments": self.moments,
                "violations": [{"time": t.isoformat(), "uncovered": u} for t, u in self.violations],
                "short_calls_at_end": self.short_calls_at_end, "positions_at_end": self.positions_at_end}


def audit_account(exchange: SimExchange) -> AuditReport:
    report = AuditReport()
    events: dict[datetime, list[tuple[OptionSpec, int]]] = defaultdict(list)
    keys = set()
    for f in exchange.fills():
        events[f.time].append((f.option, f.quantity))
        keys.add(f.option.key)
        report.executions += 1
    for key in keys:
        settled = exchange.settlement(key)
        if settled is not None:
            qty, _, when = settled
            events[when].append((OptionSpec.from_key(key), -qty))
            report.settlements += 1
    book: dict[OptionSpec, int] = {}
    for t in sorted(events):
        for option, qty in events[t]:
            book[option] = book.get(option, 0) + qty
            if not book[option]:
                del book[option]
        report.moments += 1
        bad = uncovered_shorts(book.items())
        if bad:
            report.violations.append((t, {o.key: q for o, q in bad.items()}))
    report.positions_at_end = {o.key: q for o, q in sorted(book.items(), key=lambda x: x[0].key)}
    report.short_calls_at_end = {k: q for k, q in report.positions_at_end.items() if q < 0 and k.startswith("VIX")}
    return report

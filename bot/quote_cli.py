"""`spx-bot quote`: what the simulator would have quoted for an option at a past moment.

The quote is the simulated exchange's own (`SimExchange.price_options`) over the history
replay (`HistoryMarket`, the same seeded intraday path `spx-bot run --data` trades), so it
is exactly what the bot would have seen: bid, ask (on the tick grid), their mid, the model's
implied vol and delta.

Classes: SPXW (PM-settled, any session), SPX (the monthly class; the simulator prices it like
an SPXW of the same date, to that day's close, as it lists no AM-settled options), VIX
(monthlies) and VIXW (weeklies) by the VIX listing rules; an option that is not listed or
has expired at that moment gets no quote.

Batch form: rows are grouped by moment and each moment is priced in one vectorized call.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path

from bot.calendar import NY, UTC, TradingCalendar
from bot.data import DataError
from bot.domain import OptionSpec, Quote, Right
from bot.sim.exchange import ExchangeSettings, SimExchange
from bot.sim.market import build_market

SYMBOLS = {"SPX": ("SPX", "SPX"), "SPXW": ("SPX", "SPXW"), "VIX": ("VIX", "VIX"), "VIXW": ("VIX", "VIXW")}
IN_COLUMNS = ("at", "symbol", "expiry", "strike", "right")
OUT_COLUMNS = IN_COLUMNS + ("bid", "ask", "mid", "iv", "delta")
CLOSE = time(16, 0)


class QuoteError(ValueError):
    """A request that cannot be answered (bad argument, bad row, no data); one line."""


@dataclass(frozen=True)
class Request:
    at: datetime  # UTC
    option: OptionSpec


def parse_at(text: str) -> datetime:
    """New York wall time YYYY-MM-DDTHH:MM[:SS] (or with an explicit UTC offset); a date alone
    is its 16:00 close. Returned in UTC."""
    text = (text or "").strip()
    try:
        if len(text) == 10:
            t = datetime.combine(date.fromisoformat(text), CLOSE)
        else:
            t = datetime.fromisoformat(text)
    except ValueError:
        raise QuoteError(f"bad time {text!r}: use YYYY-MM-DDTHH:MM (New York)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=NY)
    return t.astimezone(UTC)


def parse_option(symbol: str, expiry: str | date, strike: str, right: str) -> OptionSpec:
    sym = (symbol or "").strip().upper()
    if sym not in SYMBOLS:
        raise QuoteError(f"bad symbol {symbol!r}: use SPX, SPXW, VIX or VIXW")
    try:
        day = expiry if isinstance(expiry, date) else date.fromisoformat(str(expiry).strip())
    except ValueError:
        raise QuoteError(f"bad expiry {expiry!r}: use YYYY-MM-DD") from None
    try:
        k = Decimal(str(strike).strip())
    except (InvalidOperation, ValueError):
        raise QuoteError(f"bad strike {strike!r}") from None
    if not k.is_finite() or k <= 0 or k > 100000:
        raise QuoteError(f"bad strike {strike!r}: a positive number")
    r = (right or "").strip().upper()
    if r not in ("P", "C"):
        raise QuoteError(f"bad right {right!r}: use P or C")
    underlying, tclass = SYMBOLS[sym]
    return OptionSpec(underlying, day, k, Right(r), tclass)


class Quoter:
    """The simulated exchange over the history replay, for quotes only (an in-memory account)."""

    def __init__(self, data_dir: Path, first: date, last: date, seed: int = 7):
        self.calendar = TradingCalendar()
        try:
            self.market = build_market("history", Path(data_dir), self.calendar, first, last, seed)
        except (DataError, ValueError) as exc:
            raise QuoteError(" ".join(str(exc).split())) from None
        self.exchange = SimExchange(self.market, self.calendar, ExchangeSettings(), ":memory:")

    def quote_moment(self, at: datetime, options: list[OptionSpec]) -> dict[str, Quote]:
        return self.exchange.price_options(options, at)

    def quote_many(self, requests: list[Request]) -> list[Quote | None]:
        """Quotes in the order of the requests (None: not listed, expired, or no market)."""
        groups: dict[datetime, list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault(req.at, []).append(i)
        out: list[Quote | None] = [None] * len(requests)
        for at in sorted(groups):
            rows = groups[at]
            quotes = self.quote_moment(at, [requests[i].option for i in rows])
            for i in rows:
                out[i] = quotes.get(requests[i].option.key)
        return out


def _span(requests: list[Request]) -> tuple[date, date]:
    days = [r.at.astimezone(NY).date() for r in requests]
    return min(days), max(days)


def _fields(q: Quote | None) -> dict:
    if q is None:
        return {"bid": "", "ask": "", "mid": "", "iv": "", "delta": ""}
    g = q.greeks
    return {"bid": f"{q.bid:.2f}", "ask": f"{q.ask:.2f}", "mid": f"{q.mid:.3f}",
            "iv": f"{g.iv:.4f}" if g else "", "delta": f"{g.delta:.4f}" if g else ""}


def read_batch(path: Path) -> tuple[list[dict], list[Request]]:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise QuoteError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in IN_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise QuoteError(f"{path} line 1: missing column(s) {', '.join(missing)}")
    rows, requests = [], []
    for n, row in enumerate(reader, start=2):
        try:
            req = Request(parse_at(row["at"]), parse_option(row["symbol"], row["expiry"], row["strike"], row["right"]))
        except QuoteError as exc:
            raise QuoteError(f"{path} line {n}: {exc}") from None
        rows.append(row)
        requests.append(req)
    if not requests:
        raise QuoteError(f"{path}: no rows")
    return rows, requests


def write_batch(out, rows: list[dict], quotes: list[Quote | None]) -> None:
    writer = csv.DictWriter(out, fieldnames=list(OUT_COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row, q in zip(rows, quotes):
        writer.writerow({**{c: row[c] for c in IN_COLUMNS}, **_fields(q)})


def batch(in_path: Path, out_path: Path | None, data_dir: Path, seed: int = 7) -> tuple[int, int]:
    """Quote a CSV; returns (rows, rows quoted)."""
    rows, requests = read_batch(in_path)
    quoter = Quoter(data_dir, *_span(requests), seed=seed)
    quotes = quoter.quote_many(requests)
    if out_path is None:
        write_batch(sys.stdout, rows, quotes)
    else:
        try:
            with open(out_path, "w", newline="") as fh:
                write_batch(fh, rows, quotes)
        except OSError as exc:
            raise QuoteError(f"{out_path}: cannot write ({exc.strerror or exc})") from None
    return len(rows), sum(q is not None for q in quotes)


def single(args, data_dir: Path) -> dict:
    missing = [f"--{n}" for n in ("at", "symbol", "expiry", "strike", "right") if getattr(args, n) in (None, "")]
    if missing:
        raise QuoteError(f"missing {', '.join(missing)} (or give --batch IN.csv)")
    req = Request(parse_at(args.at), parse_option(args.symbol, args.expiry, args.strike, args.right))
    quoter = Quoter(data_dir, *_span([req]), seed=args.seed)
    q = quoter.quote_many([req])[0]
    state = quoter.market.state_at(req.at)
    local = req.at.astimezone(NY)
    doc = {"at": local.isoformat(timespec="minutes"), "option": req.option.key,
           "market": {"time": state.time.astimezone(NY).isoformat(timespec="minutes"), "spx": round(state.spx, 2),
                      "vix": round(state.vix, 2)}}
    if q is None:
        raise QuoteError(f"{req.option.key} is not listed or has expired at {doc['at']}")
    doc.update({k: float(v) for k, v in _fields(q).items()})
    return doc


def quote_command(args, data_dir: Path) -> int:
    if args.batch:
        extra = [f"--{n}" for n in ("at", "symbol", "expiry", "strike", "right") if getattr(args, n) not in (None, "")]
        if extra:
            raise QuoteError(f"--batch takes its options from the file, not {', '.join(extra)}")
        n, quoted = batch(Path(args.batch), Path(args.out) if args.out else None, data_dir, args.seed)
        print(f"quoted {quoted} of {n} rows" + (f" -> {args.out}" if args.out else "")
              + ("" if quoted == n else f" ({n - quoted} not listed or expired at their moment: empty)"),
              file=sys.stderr)
        return 0
    if args.out:
        raise QuoteError("--out goes with --batch")
    doc = single(args, data_dir)
    if args.json:
        print(json.dumps(doc))
    else:
        m = doc["market"]
        print(f"{doc['option']} at {doc['at']} New York (market step {m['time'][11:16]}: SPX {m['spx']:.2f}, VIX {m['vix']:.2f})")
        print(f"bid {doc['bid']:.2f}  ask {doc['ask']:.2f}  mid {doc['mid']:.3f}  iv {doc['iv']:.4f}  delta {doc['delta']:+.4f}")
    return 0

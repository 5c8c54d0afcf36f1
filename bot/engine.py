"""The daemon loop: snapshot -> decide (pure strategy) -> execute -> record.

One task runs the schedule on the injected clock; the control channel (status / kill /
resume) is served concurrently and talks to the same `Engine` object.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from bot.broker.base import (
    Broker, BrokerError, FatalBrokerError, TransientBrokerError, UnknownState, live_feed,
)
from bot.calendar import NY, TradingCalendar
from bot.clock import Clock
from bot.config import Config
from bot.domain import (
    BadQuote,
    ChainRow,
    ComboOrder,
    Fill,
    Intent,
    IntentStatus,
    MarketSnapshot,
    OptionSpec,
    OrderState,
    OrderStatus,
    Right,
)
from bot.execution import FLATTEN, HEDGE_FLATTEN, Executor, Outcome
from bot.hedging import HedgeManager
from bot.reconcile import position_differences, reconcile_intents
from bot.risk import check_paper_account
from bot.schedule import CronJob, IntervalJob, SessionJob
from bot.store import Store, StoreError, StoreWriteError
from bot.walk import at_next_price
from strategies import iron_condor as ic

OPEN, CLOSE = "condor.open", "condor.close"
MISMATCH_KEY = "position_mismatch"


class Engine:
    def __init__(
        self,
        cfg: Config,
        clock: Clock,
        calendar: TradingCalendar,
        broker: Broker,
        store: Store,
        log,
        until: datetime | None = None,
        next_price=None,
    ):
        self.cfg = cfg
        self.clock = clock
        self.next_price = next_price  # simulated market: t -> the instant of its next step
        self.cal = calendar
        self.broker = broker
        self.store = store
        self.log = log
        self.until = until
        self.live = live_feed(broker)  # streaming, resync callbacks, data delay: IBBroker only
        self.executor = Executor(broker, store, clock, cfg.execution, log)
        c = cfg.condor
        hh, mm = (int(x) for x in c.entry_time.split(":"))
        self.entry_job = CronJob(
            "condor.entry", hh, mm, c.entry_days, first_of_week=c.preset == "monthly",
            before_close=timedelta(minutes=30),
        )
        self.jobs = [
            self.entry_job,
            IntervalJob("condor.monitor", cfg.schedule.monitor_interval_s),
            SessionJob("session.open", "open"),
            SessionJob("session.close", "close", timedelta(minutes=1)),
        ]
        self.hedge = (HedgeManager(cfg, clock, calendar, broker, store, self.executor, log, settle=self.book_settlements)
                      if cfg.hedge.enabled else None)
        if self.hedge is not None:
            hh, mm = (int(x) for x in cfg.hedge.rebalance_time.split(":"))
            self.jobs.append(CronJob("hedge.rebalance", hh, mm))
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._busy: set[str] = set()  # condor ids with an order in flight
        self._vix_task: asyncio.Task | None = None  # a hedge evaluation started by a live tick
        self.winding_down = False  # `--for` has passed: no entries, no hedge trades but buy-backs
        self.account = None
        self.entry_blockers: dict[str, str] = {}  # why new entries wait (bot.ops: broker down too long)
        self.last_loop: datetime | None = None  # when the schedule loop last woke (health)
        self.fatal: StoreWriteError | None = None  # set when the store could not be written

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> bool:
        """Connect (retrying with backoff while the gateway is down: FAILURES.md 502/5), refuse
        a live account, reconcile. False when stopped before connecting; FatalBrokerError to
        stop the bot."""
        delay = 1.0
        while True:
            try:
                self.account = await self.broker.connect()
                break
            except TransientBrokerError as e:
                self.log.warning("broker.connect_failed", broker=self.broker.name, error=str(e), retry_in_s=delay)
                if not await self._sleep_until(self.clock.now() + timedelta(seconds=delay)):
                    return False
                delay = min(delay * 2, 60.0)
        check_paper_account(self.account, self.cfg.bot.allow_live)
        self.log.info("broker.connected", broker=self.broker.name, account=self.account.account,
                      paper=self.account.is_paper, net_liquidation=str(self.account.net_liquidation),
                      server_version=self.live.server_version if self.live is not None else None)
        if self.live is not None:
            self.live.on_resync.append(self.resync)
        try:
            await self.reconcile()
        except (TransientBrokerError, UnknownState) as e:  # FAILURES.md 13: unknown, not empty; the resync retries
            self.log.warning("reconcile.skipped", error=str(e), error_type=type(e).__name__)
        with contextlib.suppress(BrokerError):  # telemetry: the equity curve's first point of this run
            await self._journal_account("start")
        if self.hedge is not None:
            await self.hedge.warm_up()
            await self.hedge.check_invariant()
            if self.live is not None:  # live VIX: triggers act at once, not at the next check
                self.live.watch("VIX", self._on_vix_tick)
        return True

    def _on_vix_tick(self, vix: float) -> None:
        if (self._vix_task is None and self.hedge is not None and not self.winding_down
                and self.hedge.wants_evaluation(vix)):
            self._vix_task = asyncio.ensure_future(self._vix_triggered(vix))
            self._tasks.add(self._vix_task)  # shutdown cancels it like every background task
            self._vix_task.add_done_callback(self._tasks.discard)

    async def _vix_triggered(self, vix: float) -> None:
        try:
            if self.cal.is_open(self.clock.now()) and not self.store.halted()[0]:
                self.log.info("hedge.triggered", vix=round(vix, 2))
                await self.hedge.evaluate(scheduled=False)
        except (BrokerError, BadQuote) as e:
            self.log.warning("job.failed", job="hedge.tick", error=str(e), error_type=type(e).__name__)
        except StoreWriteError as e:
            self.store_failed(e)
        finally:
            self._vix_task = None

    async def resync(self, why: str) -> None:
        """After a reconnect or IB 1101/1102: a kill switch pressed while disconnected sends its
        cancels first (FAILURES.md 21), then everything is reconciled again."""
        self.log.info("broker.resync", why=why)
        if self.store.halted()[0]:
            await self._cancel_everything()
        await self.reconcile()

    async def reconcile(self) -> None:
        report = await reconcile_intents(self.store, self.broker, self.executor, self.clock, self.log,
                                         owned=frozenset(self._busy))
        for rec, outcome in report.finished:
            self._apply(rec.intent, outcome)
        self._repair_effects()
        await self.book_settlements()
        diff = await position_differences(self.store, self.broker)
        # the legs of orders a walk of this process owns, or is about to (adopted below), are
        # booked by that walk: a partly filled working order is no difference
        adopted = {rec.intent.order_ref for rec, _ in report.adopted}
        in_flight = {leg.option.key for r in self.store.live_intents()
                     if r.intent.group in self._busy or r.intent.order_ref in adopted for leg in r.intent.order.legs}
        diff = {k: v for k, v in diff.items() if k not in in_flight}
        if diff:
            # FAILURES.md 14: the broker is the truth; stop opening, never "fix" it with orders
            self.store.set_control(MISMATCH_KEY, json.dumps({k: [s, b] for k, (s, b) in diff.items()}))
            self.log.error("reconcile.mismatch", differences={k: {"store": s, "broker": b} for k, (s, b) in diff.items()},
                           action="entries halted until the positions agree again or `spx-bot resume`")
        elif self.store.get_control(MISMATCH_KEY):
            was = json.loads(self.store.get_control(MISMATCH_KEY))
            self.store.set_control(MISMATCH_KEY, "")
            self.log.warning("reconcile.mismatch_cleared", previous={k: {"store": s, "broker": b} for k, (s, b) in was.items()},
                             action="entries allowed again")
        self.log.info(
            "reconcile.done", adopted=[r.intent.order_ref for r, _ in report.adopted],
            finished=[r.intent.order_ref for r, _ in report.finished], abandoned=report.abandoned,
            positions=len(self.store.positions()), mismatches=len(diff),
        )
        for rec, state in report.adopted:  # continue the walk of orders found working
            self._busy.add(rec.intent.group)
            self._spawn(self._continue(rec.intent, state, self.executor.resume_step(rec.intent.order_ref)))

    async def _continue(self, intent: Intent, state, step: int) -> None:
        try:
            self._apply(intent, await self.executor.walk(intent, state, start_step=step))
        finally:
            self._busy.discard(intent.group)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if isinstance(error, StoreWriteError):
            self.store_failed(error)
        elif isinstance(error, sqlite3.Error):  # the simulated account's file, under SimBroker
            self.store_failed(StoreWriteError(f"simulated account: {error}"))

    def store_failed(self, error: StoreWriteError) -> None:
        """FAILURES.md 28: the journal cannot be written, so no order may be sent (its intent
        could not be recorded first). Stop; shutdown then cancels every working order and the
        CLI logs `bot.fatal` and exits 3."""
        if self.fatal is None:
            self.fatal = error
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()

    async def shutdown(self) -> None:
        """Idempotent: stop background tasks, cancel working orders if configured (always after a
        store failure), disconnect. One failed cancel does not stop the others."""
        self._stop.set()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        if self.broker.connected:
            if self.cfg.bot.shutdown_cancel_orders or self.fatal is not None:
                try:
                    live = self.store.live_intents()
                except sqlite3.Error as e:  # unreadable too: the broker's backstop below still runs
                    self.log.warning("order.cancel_failed", order_ref=None, reason=f"store unreadable: {e}")
                    live = []
                for rec in live:
                    try:
                        await self.executor.cancel(rec.intent, "shutdown")
                    except (BrokerError, StoreError, sqlite3.Error) as e:
                        self.log.warning("order.cancel_failed", order_ref=rec.intent.order_ref, reason=str(e))
                if self.fatal is not None:  # orders the store could not record the state of
                    try:
                        await self.broker.cancel_all()
                    except (BrokerError, sqlite3.Error) as e:
                        self.log.warning("order.cancel_failed", order_ref="*", reason=str(e))
            if self.hedge is not None and self.fatal is None and self._short_calls():  # covered: say so
                self.log.warning("hedge.shorts_left", short_calls=self._short_calls(),
                                 lots=[f"{lot.layer} {lot.option.key} {lot.quantity:+d}" for lot in self.hedge.lots()],
                                 reason="shutdown: written calls stay open, covered by the longs kept")
            await self.broker.disconnect()
            self.log.info("broker.disconnected", reason="shutdown")

    async def run(self) -> str:
        """Run the schedule until stopped, or until `until` has passed and the book is flat.
        Returns why it ended."""
        await self._catch_up_entry()
        winding_down = False
        # each job's next fire time, computed once and again only after it has run: a job whose
        # time passed while the clock overshot a sleep still runs (late), never silently skipped
        pending = [job.next_fire(self.cal, self.clock.now()) for job in self.jobs]
        while not self._stop.is_set():
            now = self.last_loop = self.clock.now()
            if self.until is not None and now >= self.until:
                if not winding_down:
                    winding_down = self.winding_down = True
                    self.log.info("bot.winding_down", open_condors=len(self.store.open_condors()),
                                  short_calls=self._short_calls())
                if self._short_calls() and self.cal.is_open(now) and not self._tasks:
                    await self._buy_back_shorts("winding down")
                # flat: no condor, no working order, and no written call left (their cover stays)
                if (not self.store.open_condors() and not self.store.live_intents() and not self._tasks
                        and not self._short_calls()):
                    return "duration reached, book flat"
                if now >= self._wind_down_limit():
                    if self._short_calls():
                        self.log.warning("hedge.shorts_left", short_calls=self._short_calls(),
                                         reason="wind-down limit reached; the longs covering them are kept")
                    return "duration reached, wind-down limit"
            due = [(t, i, job) for i, (job, t) in enumerate(zip(self.jobs, pending)) if t is not None]
            if not due:
                return "no more sessions in the calendar"
            t_next = min(t for t, _, _ in due)
            if not await self._sleep_until(t_next):
                break
            now = self.clock.now()
            for t, i, job in sorted(due, key=lambda x: (x[0], x[1])):
                if t <= now and not self._stop.is_set():
                    await self._run_job(job, t, entries_allowed=not winding_down)
                    pending[i] = job.next_fire(self.cal, max(t, self.clock.now()))
        return "stopped"

    def _short_calls(self) -> int:
        return 0 if self.hedge is None else self.hedge.short_calls()

    async def _buy_back_shorts(self, reason: str, purpose: str | None = None) -> int:
        try:
            return await self.hedge.close_shorts(reason, purpose)
        except (BrokerError, BadQuote) as e:
            self.log.warning("job.failed", job="hedge.close_shorts", error=str(e), error_type=type(e).__name__)
            return self._short_calls()

    def _wind_down_limit(self) -> datetime:
        expiries = [c.expiry for c in self.store.open_condors()]
        if self._short_calls():  # a written call is bought back in a session, at the latest the next
            expiries.append(self.cal.next_session(self.until.date()))
        last = max(expiries, default=self.until.date())
        return max(self.until, self.cal.open_close(self.cal.next_session(last, include=True))[1] + timedelta(minutes=5))

    async def _sleep_until(self, t: datetime) -> bool:
        """Sleep on the clock until t; False when stopped first."""
        sleeper = asyncio.ensure_future(self.clock.sleep_until(t))
        stopper = asyncio.ensure_future(self._stop.wait())
        done, pending = await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for p in pending:
            p.cancel()
        return sleeper in done and not self._stop.is_set()

    async def _run_job(self, job, t: datetime, entries_allowed: bool, catch_up: bool = False) -> None:
        try:
            if job is self.entry_job:
                self.log.info("schedule.fired", job=job.name, at=t.isoformat(),
                              **({"catch_up": True} if catch_up else {}))
                if entries_allowed:
                    await self.on_entry()
            elif job.name == "condor.monitor":
                await self.on_monitor()
                if self.hedge is not None and self.cal.is_open(t) and entries_allowed:
                    await self.hedge.on_update(await self.broker.spot("VIX"))  # the live update without a stream
            elif job.name == "hedge.rebalance":
                self.log.info("schedule.fired", job=job.name, at=t.isoformat())
                if entries_allowed:  # winding down, the hedge only buys back its written calls
                    await self._rebalance_hedge()
            elif job.name == "session.open":
                await self.book_settlements()  # VIX options settled at this morning's SOQ
                _, close = self.cal.open_close(t.astimezone(NY).date())
                self.log.info("session.opened", spx=await self.broker.spot("SPX"), vix=await self.broker.spot("VIX"),
                              close=close.isoformat(), open_condors=len(self.store.open_condors()))
                await self._journal_account("open")
            elif job.name == "session.close":
                await self.on_session_close()
        except FatalBrokerError as e:
            self.store.set_halted(True, f"fatal broker error: {e}", self.clock.now())
            self.log.error("bot.fatal", job=job.name, error=str(e))
        except (BrokerError, BadQuote) as e:
            self.log.warning("job.failed", job=job.name, error=str(e), error_type=type(e).__name__)
        except StoreWriteError as e:
            self.store_failed(e)

    async def _catch_up_entry(self) -> None:
        """After a (re)start during a session: run today's entry if its time has passed and no
        entry was attempted today (a crash must not silently skip a day)."""
        now = self.clock.now()
        today = now.astimezone(NY).date()
        if not self.cal.is_open(now) or (self.until is not None and now >= self.until):
            return
        fire = self.entry_job.next_fire(self.cal, datetime.combine(today, time(0), NY))
        if fire is None or fire.astimezone(NY).date() != today or fire > now:
            return
        if any(r.intent.created_at and r.intent.created_at.astimezone(NY).date() == today
               for r in self.store.intents(purpose=OPEN)):
            return
        # through the job's own error handling: a refused quote at a catch-up entry is a
        # job.failed like at the scheduled one, not the end of the run loop
        await self._run_job(self.entry_job, now, entries_allowed=True, catch_up=True)

    # --- jobs ------------------------------------------------------------------------------
    async def _book(self) -> ic.Book:
        account = await self.broker.account()
        return ic.Book(tuple(self.store.open_condors()), account.net_liquidation, frozenset(self._busy))

    async def on_entry(self) -> None:
        now = self.clock.now()
        halted, reason = self.store.halted()
        if halted:
            self.log.info("condor.skipped", reason=f"halted: {reason}")
            return
        if any(r.intent.purpose == OPEN for r in self.store.live_intents()):
            self.log.info("condor.skipped", reason="an entry order is still working")
            return
        if self.store.get_control(MISMATCH_KEY):
            self.log.info("condor.skipped", reason="store positions differ from the broker's (see reconcile.mismatch)")
            return
        if self.entry_blockers:
            self.log.info("condor.skipped", reason="; ".join(self.entry_blockers.values()))
            return
        cfg = self.cfg.condor
        expiries = await self.broker.expiries("SPX", "SPXW")
        expiry = ic.entry_expiry(expiries, now.astimezone(NY).date(), cfg)
        if expiry is None:
            self.log.info("condor.skipped", reason="no expiry in the DTE window")
            return
        snapshot = await self._chain_snapshot(expiry, now)
        decision = ic.decide_entry(snapshot, await self._book(), cfg, now)
        if isinstance(decision, ic.Skip):
            self.log.info("condor.skipped", reason=decision.reason, code=decision.code.value, spx=snapshot.spx,
                          vix=snapshot.vix)
            return
        ref = self.store.next_order_ref("ic", now.astimezone(NY).date())
        intent = Intent(ref, OPEN, ref, decision.order, reason="scheduled entry", created_at=now)
        self._busy.add(ref)
        try:
            outcome = await self.executor.execute(intent)
            self._apply(intent, outcome)
        finally:
            self._busy.discard(ref)
        if outcome.state is not None and outcome.state.filled > 0:  # a condor opened, perhaps partly
            await self._rebalance_hedge()  # ALVH.md §4: after each condor entry

    async def _rebalance_hedge(self) -> None:
        if self.hedge is None or self.store.halted()[0]:
            return
        await self.hedge.refresh_condor_vega()
        await self.hedge.evaluate(scheduled=True)

    async def _chain_snapshot(self, expiry: date, now: datetime) -> MarketSnapshot:
        """Quotes for the strikes a condor could use (`iron_condor.strike_band`): asking only
        for those keeps market-data requests (IB paces them) to a few dozen instead of the
        whole chain."""
        spx = await self.broker.spot("SPX")
        vix = await self.broker.spot("VIX")
        years = (self.cal.spxw_expiry_time(expiry) - now).total_seconds() / (365 * 86400)
        near, far = ic.strike_band(spx, vix, years, self.cfg.condor)
        puts, calls = ic.band_strikes(await self.broker.strikes("SPX", "SPXW", expiry), spx, near, far)
        options = ([OptionSpec("SPX", expiry, k, Right.PUT, "SPXW") for k in puts]
                   + [OptionSpec("SPX", expiry, k, Right.CALL, "SPXW") for k in calls])
        quotes = await self.broker.quotes(options)
        rows = tuple(ChainRow(o, quotes[o.key]) for o in options if o.key in quotes)
        return MarketSnapshot(now, spx, vix, chain=rows, stale=self.live is not None and self.live.delayed)

    async def on_monitor(self) -> None:
        now = self.clock.now()
        if not self.cal.is_open(now):
            return
        condors = [c for c in self.store.open_condors() if c.condor_id not in self._busy]
        if not condors or self.store.halted()[0]:
            return
        options = [leg.option for c in condors for leg in c.legs()]
        quotes = await self.broker.quotes(options)
        snapshot = MarketSnapshot(now, await self.broker.spot("SPX"), await self.broker.spot("VIX"), quotes=quotes)
        for proposal in ic.decide_exits(snapshot, await self._book(), self.cfg.condor, now):
            await self.close_condor(proposal.condor_id, proposal.order, proposal.reason)

    async def close_condor(self, condor_id: str, order, reason: str, purpose: str = CLOSE) -> Outcome:
        self._busy.add(condor_id)
        try:
            if self.next_price is not None and at_next_price(reason):  # bot.walk: a stop fills at the next price
                await self.clock.sleep_until(self.next_price(self.clock.now()))
            now = self.clock.now()
            ref = self.store.next_order_ref("icx", now.astimezone(NY).date())
            intent = Intent(ref, purpose, condor_id, order, reason=reason, created_at=now)
            outcome = await self.executor.execute(intent)
            self._apply(intent, outcome)
            return outcome
        finally:
            self._busy.discard(condor_id)

    async def on_session_close(self) -> None:
        await self.book_settlements()
        if self.hedge is not None:
            now = self.clock.now()
            self.hedge.commit_close(self.cal.previous_session(now.astimezone(NY).date() + timedelta(days=1)),
                                    await self.broker.spot("VIX"))
            self.log.info("hedge.summary", **await self.hedge.summary())
        account = await self._journal_account("close")
        self.log.info(
            "account.summary", net_liquidation=str(account.net_liquidation), cash=str(account.cash),
            open_condors=len(self.store.open_condors()), realized_pnl=str(self.store.realized_pnl()),
        )

    async def _journal_account(self, at: str):
        """The account at each session's open and close, journaled as the `account` signal
        (telemetry): the dashboard's equity curve and P&L today, and `spx-bot report`'s daily
        equity, read it back from the store."""
        account = await self.broker.account()
        payload = {"at": at, "net_liquidation": str(account.net_liquidation), "cash": str(account.cash),
                   "realized_pnl": str(self.store.realized_pnl())}
        if at == "close" and self.hedge is not None:  # the report's hedge P&L per layer and notional
            with contextlib.suppress(BrokerError):
                books = await self.hedge.books()
                payload["hedge_value"] = {layer: str(b.cash_flow + b.market_value) for layer, b in books.items()}
                payload["notional"] = str(self.hedge._condor_notional())
        self.store.add_signal(self.clock.now(), "account", payload)
        return account

    # --- effects of finished orders (idempotent: reconcile may apply them again) -----------------
    def _apply(self, intent: Intent, outcome: Outcome) -> None:
        state = outcome.state
        if state is None:
            return
        if outcome.status is IntentStatus.FILLED and state.filled <= 0:  # a completed order without its quantity
            state = replace(state, filled=intent.order.quantity, remaining=0)
        if state.filled <= 0:
            return
        now = self.clock.now()
        if intent.purpose == OPEN:
            # FILLED, or ended (cancelled, rejected) with part filled: the lots held are a condor
            # of the filled quantity (FAILURES.md 11), priced from their own executions
            price = state.avg_price
            if outcome.status is not IntentStatus.FILLED or not price:
                price = _net_price(self.store.fills(intent.order_ref), state.filled)
            condor = ic.condor_from_order(intent.order_ref, intent.order, state.filled, price,
                                          intent.created_at or now)
            if self.store.add_condor(condor, intent.order_ref):
                self.log.info(
                    "condor.opened", condor_id=condor.condor_id, order_ref=intent.order_ref, expiry=str(condor.expiry),
                    put_long=str(condor.put_long), put_short=str(condor.put_short), call_short=str(condor.call_short),
                    call_long=str(condor.call_long), quantity=condor.quantity, credit=str(condor.credit),
                    max_loss=str(condor.max_loss),
                )
        elif intent.purpose in (CLOSE, FLATTEN) and outcome.status is IntentStatus.FILLED:
            self._close_record(intent.group, now, intent.reason or intent.purpose, state.avg_price or Decimal(0))
        elif intent.purpose in (CLOSE, FLATTEN):
            # a close that ended with part filled: the condor left open is the lots still held,
            # so the next close buys back and sells only those (never wings no longer held)
            price = state.avg_price or _net_price(self.store.fills(intent.order_ref), state.filled)
            condor = next((c for c in self.store.open_condors() if c.condor_id == intent.group), None)
            if condor is None:
                return
            if state.filled >= condor.quantity:  # all of it after all (a cancel that lost to the fill)
                self._close_record(intent.group, now, intent.reason or intent.purpose, price)
            elif self.store.reduce_condor(intent.group, intent.order_ref, state.filled, price):
                left = condor.quantity - state.filled
                self.log.info("condor.reduced", condor_id=intent.group, order_ref=intent.order_ref,
                              closed=state.filled, price=str(price), left=left, reason=intent.reason or intent.purpose)

    def _close_record(self, condor_id: str, when: datetime, reason: str, close_price: Decimal) -> None:
        condor = next((c for c in self.store.open_condors() if c.condor_id == condor_id), None)
        if condor is None:
            return
        refs = [r.intent.order_ref for r in self.store.intents(group=condor_id)]
        fills = [f for ref in refs for f in self.store.fills(ref)]
        commissions = sum((f.commission for f in fills), Decimal(0))
        pnl = ic.realized_pnl(condor, close_price, commissions, self.store.closed_parts(condor_id))
        self.store.close_condor(condor_id, when, reason, close_price, pnl)
        self.log.info(
            "condor.closed", condor_id=condor_id, reason=reason, expiry=str(condor.expiry),
            close_price=str(close_price), credit=str(condor.credit), quantity=condor.quantity, pnl=str(pnl),
        )

    def _repair_effects(self) -> None:
        """A crash between booking a fill and recording its condor leaves a FILLED intent with
        no effect; apply it now (effects are idempotent)."""
        open_ids = {c.condor_id for c in self.store.open_condors()}
        for rec in self.store.intents(purpose=OPEN):
            if self.store.has_condor(rec.intent.order_ref):
                continue
            if rec.status is IntentStatus.FILLED:
                fills = self.store.fills(rec.intent.order_ref)
                price = _net_price(fills, rec.intent.order.quantity)
                state = _filled_state(rec, price)
                self._apply(rec.intent, Outcome(rec.intent.order_ref, IntentStatus.FILLED, state))
            elif rec.status in (IntentStatus.CANCELLED, IntentStatus.REJECTED) and rec.filled > 0:
                state = replace(_filled_state(rec, None), status=OrderStatus.CANCELLED, filled=rec.filled,
                                remaining=rec.intent.order.quantity - rec.filled)
                self._apply(rec.intent, Outcome(rec.intent.order_ref, rec.status, state))
        for purpose in (CLOSE, FLATTEN):
            for rec in self.store.intents(purpose=purpose):
                if rec.status is IntentStatus.FILLED and rec.intent.group in open_ids:
                    price = _net_price(self.store.fills(rec.intent.order_ref), rec.intent.order.quantity)
                    self._apply(rec.intent, Outcome(rec.intent.order_ref, IntentStatus.FILLED, _filled_state(rec, price)))
                elif (rec.status in (IntentStatus.CANCELLED, IntentStatus.REJECTED) and rec.filled > 0
                      and rec.intent.group in open_ids):  # reduced once only (store.reduce_condor)
                    state = replace(_filled_state(rec, None), status=OrderStatus.CANCELLED, filled=rec.filled,
                                    remaining=rec.intent.order.quantity - rec.filled)
                    self._apply(rec.intent, Outcome(rec.intent.order_ref, rec.status, state))

    async def book_settlements(self) -> None:
        """Book cash settlement of expired legs as fills (positions stay the sum of fills),
        then close the condors that expired."""
        now = self.clock.now()
        for key, qty in self.store.positions().items():
            option = OptionSpec.from_key(key)
            if self.cal.is_session(option.expiry) and self.cal.settlement_time(option) > now:
                continue
            price = await self.broker.settlement_price(option)
            if price is None:
                continue
            self.store.add_fill(Fill(f"settle:{key}", "", option, -qty, price, now))
        for c in self.store.open_condors():
            if self.cal.spxw_expiry_time(c.expiry) <= now:
                prices = {f.option.key: f.price for f in self.store.fills("") if f.exec_id.startswith("settle:")}
                debit = ic.settlement_debit(c, prices)
                if debit is not None:
                    self._close_record(c.condor_id, self.cal.spxw_expiry_time(c.expiry), "settlement", debit)

    # --- control surface (CLI, socket) ---------------------------------------------------------
    async def status(self) -> dict:
        halted, reason = self.store.halted()
        out: dict = {"time": self.clock.now().isoformat(), "halted": halted, "halt_reason": reason}
        mismatch = self.store.get_control(MISMATCH_KEY)
        out["position_mismatch"] = ({k: {"store": s, "broker": b} for k, (s, b) in json.loads(mismatch).items()}
                                    if mismatch else None)
        out["entries_blocked"] = halted or bool(mismatch)
        try:
            account = await self.broker.account()
            out["account"] = {"id": account.account, "paper": account.is_paper, "cash": str(account.cash),
                              "net_liquidation": str(account.net_liquidation),
                              "margin": str(account.maintenance_margin)}
            positions = await self.broker.positions()
            out["positions"] = {p.option.key: p.quantity for p in positions}
            out["market"] = {"spx": await self.broker.spot("SPX"), "vix": await self.broker.spot("VIX")}
            condors = self.store.open_condors()
            quotes = await self.broker.quotes([leg.option for c in condors for leg in c.legs()])
        except BrokerError as e:
            out["broker_error"] = str(e)
            condors, quotes = self.store.open_condors(), {}
        spx = (out.get("market") or {}).get("spx")
        out["store_positions"] = self.store.positions()
        rows, unrealized = [], Decimal(0)
        for c in condors:
            debit = ic.debit_to_close(c, quotes)
            pnl = None if debit is None else (c.credit - debit) * 100 * c.quantity
            unrealized += pnl or 0
            rows.append({"condor_id": c.condor_id, "expiry": str(c.expiry), "quantity": c.quantity,
                         "strikes": [str(c.put_long), str(c.put_short), str(c.call_short), str(c.call_long)],
                         "credit": str(c.credit), "unrealized_pnl": None if pnl is None else str(pnl),
                         # what buying it back at mid costs now, dollars
                         "value": None if debit is None else str(debit * 100 * c.quantity),
                         # index points from spot to each short strike (negative: breached)
                         "distance_put": None if spx is None else round(spx - float(c.put_short), 2),
                         "distance_call": None if spx is None else round(float(c.call_short) - spx, 2)})
        out["open_condors"] = rows
        out["pnl"] = {"realized": str(self.store.realized_pnl()), "unrealized": str(unrealized)}
        live = self.store.live_intents()
        out["working_orders"] = [r.intent.order_ref for r in live]
        out["working_order_details"] = [
            {"order_ref": r.order_ref, "purpose": r.intent.purpose, "group": r.intent.group, "status": r.status.value,
             "quantity": r.intent.order.quantity, "filled": r.filled, "limit": None if r.limit is None else str(r.limit),
             "legs": [f"{leg.action.value} {leg.ratio} {leg.option.key}" for leg in r.intent.order.legs]}
            for r in live]
        out["market_data_lines"] = self.broker.market_data_lines()
        if self.hedge is not None:
            try:
                out["hedge"] = await self.hedge.summary()
            except BrokerError as e:
                out["hedge"] = {"error": str(e)}
        return out

    async def kill(self, flatten: bool = False, reason: str = "") -> dict:
        """FAILURES.md kill switch: store HALTED, cancel our orders then global cancel, confirm,
        log. `flatten` then closes every open condor."""
        now = self.clock.now()
        reason = reason or "operator"
        self.store.set_halted(True, reason, now)
        cancelled, remaining, errors = await self._cancel_everything()
        self.log.warning("killswitch.engaged", reason=reason, cancelled=cancelled, remaining=remaining,
                         errors=errors, flatten=flatten)
        result = {"halted": True, "reason": reason, "cancelled": cancelled, "remaining": remaining, "errors": errors}
        if flatten:
            result["flattened"] = await self.flatten()
        return result

    async def _cancel_everything(self) -> tuple[list[str], list[str], list[str]]:
        """Cancel our working orders by orderRef, then a global cancel as a backstop; report
        (cancelled, still working, errors). A cancel that lost to a fill is reported, and the
        fill is booked by the executor or the next reconcile."""
        cancelled, errors = [], []
        for rec in self.store.live_intents():
            try:
                state = await self.broker.cancel(rec.intent.order_ref)
                cancelled.append(rec.intent.order_ref)
                if state.status is OrderStatus.FILLED:
                    errors.append(f"{rec.intent.order_ref} filled before the cancel")
            except BrokerError as e:
                errors.append(f"{rec.intent.order_ref}: {e}")
        try:
            await self.broker.cancel_all()
            remaining = [o.order_ref for o in await self.broker.open_orders()]
        except BrokerError as e:
            remaining, errors = ["unknown"], [*errors, f"global cancel: {e}"]
        return cancelled, remaining, errors

    async def flatten(self) -> list[str]:
        closed = []
        for c in self.store.open_condors():
            self._busy.add(c.condor_id)
        for c in self.store.open_condors():
            outcome = await self.close_condor(c.condor_id, ComboOrder(c.legs(opening=False), c.quantity),
                                              "kill --flatten", purpose=FLATTEN)
            if outcome.status is IntentStatus.FILLED:
                closed.append(c.condor_id)
        if self.hedge is not None and self._short_calls():  # never leave written calls behind
            left = await self._buy_back_shorts("kill --flatten", purpose=HEDGE_FLATTEN)
            if left:
                self.log.warning("hedge.shorts_left", short_calls=left, reason="kill --flatten could not buy them back")
        return closed

    async def resume(self) -> dict:
        self.store.set_halted(False, "", self.clock.now())
        self.store.set_control(MISMATCH_KEY, "")
        if self.hedge is not None:
            self.hedge.resume()
        self.log.warning("killswitch.released")
        return {"halted": False}


def _net_price(fills: list[Fill], quantity: int) -> Decimal:
    """Net debit per unit of a combo from its leg executions."""
    return sum((f.price * f.quantity for f in fills), Decimal(0)) / max(1, quantity)


def _filled_state(rec, price: Decimal | None) -> OrderState:
    q = rec.intent.order.quantity
    return OrderState(rec.intent.order_ref, rec.broker_id or "", OrderStatus.FILLED, rec.limit or price or Decimal(0),
                      q, 0, price)

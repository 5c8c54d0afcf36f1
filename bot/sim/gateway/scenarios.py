"""Fault injection for the simulated gateway: a plain programmable object the server consults.

Tests (and a curious operator) stage what IB does to a client (docs/FAILURES.md):

    sc = gateway.scenario
    sc.reject_next(201, "Order rejected - reason: margin")    # next placeOrder refused
    sc.hold_fills()  ... sc.release_fills()                   # accepted, nothing reaches the exchange
    sc.delay_fills(120)                                       # orders reach the exchange 120 sim s later
    sc.partial_next(1, rest_after=60)                         # 1 of N now, the rest 60 sim s later
    sc.stagger_legs(0.2)                                      # leg executions reported 0.2 s apart
    sc.fill_on_cancel()                                       # the next cancel loses the race: 10148
    sc.drop(7)                                                # drop client 7's connection
    sc.connectivity_lost() / sc.connectivity_restored(data_lost=True)   # 1100, then 1101 / 1102
    sc.farm_broken() / sc.farm_ok()                           # 2103 (ticks stop), 2104
    sc.send_error(10197, "No market data during competing live session")

Knobs that are not faults but unknowns of a simulation (the simulator cannot prove IB's exact
behaviour) are plain attributes: `status_sequence` (statuses of a new order before any fill),
`cancel_error_202`, `commission_delay_s`, `report_bag_execution`, `execution_days`.

Delays of reporting (`stagger_legs`, `commission_delay_s`) are in real seconds; delays of the
market (`delay_fills`, `partial_next(rest_after=)`) are in simulated seconds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .server import SimGateway


@dataclass(frozen=True)
class Rejection:
    code: int
    message: str


@dataclass(frozen=True)
class Partial:
    quantity: int
    rest_after: float | None  # simulated seconds; None: held until release_fills()


class Scenario:
    def __init__(self):
        self._gateway: SimGateway | None = None
        self._rejections: deque[Rejection] = deque()
        self._partials: deque[Partial] = deque()
        self.fills_held = False
        self.fill_delay_s = 0.0  # simulated seconds between acceptance and the exchange
        self.leg_stagger_s = 0.0  # real seconds between the executions of a combo's legs
        self.cancels_lose_race = 0
        self.ticks_paused = False  # a broken data farm: no market data
        self.link_down = False  # 1100: IB <-> gateway link lost
        # behaviours the simulator cannot prove (status sequences, error texts, timing)
        self.status_sequence: tuple[str, ...] = ("PreSubmitted", "Submitted")
        self.cancel_error_202 = True
        self.commission_delay_s = 0.0
        self.report_bag_execution = True
        self.execution_days = 1  # reqExecutions answers this many days (IB: today)

    def attach(self, gateway: SimGateway) -> None:
        self._gateway = gateway

    def _gw(self) -> SimGateway:
        if self._gateway is None:
            raise RuntimeError("scenario is not attached to a running gateway")
        return self._gateway

    # --- orders -----------------------------------------------------------------------------
    def reject_next(self, code: int = 201, message: str = "Order rejected - reason: simulated rejection") -> None:
        """The next placeOrder (not a what-if) is refused with this error; nothing is placed."""
        self._rejections.append(Rejection(code, message))

    def take_rejection(self) -> Rejection | None:
        return self._rejections.popleft() if self._rejections else None

    def hold_fills(self) -> None:
        """New orders are accepted but not sent to the exchange, and working ones are not
        matched (the exchange is not advanced), until `release_fills()`."""
        self.fills_held = True

    def release_fills(self) -> None:
        self.fills_held = False
        if self._gateway is not None:
            self._gateway.release_held("scenario")

    def delay_fills(self, seconds: float) -> None:
        """Orders reach the exchange `seconds` (simulated) after they are accepted."""
        self.fill_delay_s = float(seconds)

    def partial_next(self, quantity: int, rest_after: float | None = None) -> None:
        """The next order sends only `quantity` to the exchange at first; the rest follows
        `rest_after` simulated seconds later (None: held until `release_fills()`), so the
        client sees a partial fill, then the rest."""
        self._partials.append(Partial(int(quantity), rest_after))

    def take_partial(self) -> Partial | None:
        return self._partials.popleft() if self._partials else None

    def stagger_legs(self, seconds: float) -> None:
        """Report a combo fill leg by leg, `seconds` (real) apart (the exchange fills the
        combo at once: Cboe combos are all-or-none; only the reports are spread)."""
        self.leg_stagger_s = float(seconds)

    def fill_on_cancel(self, times: int = 1) -> None:
        """The next cancel loses its race: the order fills at its limit first, the cancel is
        refused with 10148 (FAILURES.md scenario 10)."""
        self.cancels_lose_race += times

    def take_fill_on_cancel(self) -> bool:
        if self.cancels_lose_race > 0:
            self.cancels_lose_race -= 1
            return True
        return False

    # --- connection and system messages --------------------------------------------------------
    def drop(self, client_id: int) -> bool:
        """Close a client's connection from the gateway side (True when it was connected)."""
        return self._gw().drop_client(client_id)

    def send_error(self, code: int, message: str, req_id: int = -1, client_id: int | None = None) -> None:
        """Send an error/system message to one client, or to all."""
        self._gw().send_error(code, message, req_id, client_id)

    def connectivity_lost(self) -> None:
        """1100: no market data and no order events reach the clients until restored; orders
        already at the exchange still fill meanwhile (those fills are not re-sent); new orders
        are acknowledged by "TWS" (PreSubmitted) and reach the exchange when the link is back."""
        self.link_down = True
        self.send_error(1100, "Connectivity between IB and Trader Workstation has been lost.")

    def connectivity_restored(self, data_lost: bool = True) -> None:
        """1101 (market data subscriptions are dropped: resubscribe) or 1102 (kept)."""
        self.link_down = False
        gw = self._gw()
        gw.release_held("link")
        if data_lost:
            gw.drop_subscriptions()
            self.send_error(1101, "Connectivity between IB and Trader Workstation has been restored - data lost.")
        else:
            self.send_error(1102, "Connectivity between IB and Trader Workstation has been restored - data maintained.")

    def farm_broken(self, farm: str = "usopt") -> None:
        self.ticks_paused = True
        self.send_error(2103, f"Market data farm connection is broken:{farm}")

    def farm_ok(self, farm: str = "usopt") -> None:
        self.ticks_paused = False
        self.send_error(2104, f"Market data farm connection is OK:{farm}")

"""Simulated IB paper gateway: the TWS API wire protocol over the simulated exchange, so that
unmodified `ib_async` / `ib_insync` clients connect to it exactly as to IB Gateway.

Modules: `protocol` (framing, handshake, request parsers), `messages` (what the server sends),
`mapping` (IB contracts/orders <-> domain), `listing` (what is listed), `quotes` and `bars`
(market data), `orders` (the gateway's order table), `scenarios` (fault injection), `server`
(`SimGateway`), `runner` (`serve`, `run_gateway` for `spx-bot sim-gateway`).

Behaviour follows the public TWS API documentation and the clients' decoders, not a recorded
gateway: status sequences, error texts and commission timing are configurable in `Scenario`.
"""

from .runner import GatewayParams, GatewayStartError, params_from_config, run_gateway, serve
from .scenarios import Scenario
from .server import Limits, SimGateway

__all__ = ["GatewayParams", "GatewayStartError", "Limits", "Scenario", "SimGateway", "params_from_config", "run_gateway", "serve"]

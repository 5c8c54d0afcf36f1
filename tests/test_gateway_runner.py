"""The standalone entry (`serve` / `run_gateway`, what `spx-bot sim-gateway` calls): parameters
from the config, a real client served until stopped, and a user error reported in one line."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

from test_gateway_support import ib_errors  # noqa: F401 - fixture

from bot.calendar import ny_time
from bot.sim.gateway import GatewayParams, params_from_config, run_gateway, serve


async def test_serve_until_stopped(make_cfg, ib_errors):
    import ib_async

    cfg = make_cfg(**{"market.source": "synthetic"})
    params = params_from_config(cfg, port=0, speed="600", start=date(2022, 3, 1))
    assert params.state_path == Path(cfg.sim.state_path) and params.speed == 600.0
    ready: asyncio.Future = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(params, ready=ready.set_result, stop=stop))
    gateway = await asyncio.wait_for(ready, 30)
    ib = ib_async.IB()
    await ib.connectAsync("127.0.0.1", gateway.port, clientId=3, timeout=5)
    now = await ib.reqCurrentTimeAsync()
    assert abs((now - ny_time(date(2022, 3, 1), "09:25")).total_seconds()) < 600  # simulated, 09:25 start
    ib.disconnect()
    await asyncio.sleep(0.05)
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0
    assert Path(cfg.sim.state_path).exists()


def test_run_gateway_reports_missing_history_in_one_line(short_tmp, capsys):
    params = GatewayParams(state_path=short_tmp / "s.sqlite", port=0, source="history",
                           data_dir=short_tmp / "nothing-here", start=date(2022, 3, 1))
    assert run_gateway(params) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sim-gateway: ")


def test_bad_port_and_speed_are_one_line_errors(short_tmp, capsys):
    """Issue 10: `sim-gateway --speed abc`, `--port 99999`, `--port -1`, `speed = 1e-300`."""
    base = GatewayParams(state_path=short_tmp / "s.sqlite", source="synthetic", start=date(2022, 3, 1))
    for overrides in ({"port": 99999}, {"port": -1}, {"speed": "abc"}, {"speed": 1e-300}, {"speed": "nan"},
                      {"speed": "inf"}):
        assert run_gateway(base, **overrides) == 2, overrides
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("sim-gateway: --"), (overrides, err)

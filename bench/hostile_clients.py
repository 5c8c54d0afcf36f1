"""FAILURES.md scenario 30, measured: the resident memory of a standalone `spx-bot sim-gateway`
before, during and after N hostile connections that each announce a giant frame and send
part of it, plus a few malformed requests; then a normal client must still be served.

    .venv/bin/python bench/hostile_clients.py [--connections 40] [--frame-mib 15] [--send-mib 15]

Prints one line per phase (RSS in MB from /proc/<pid>/status) and exits non-zero if the normal
client is not served afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.sim.gateway.protocol import API_PREFIX, HEADER, frame  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def hostile(port: int, frame_bytes: int, send_bytes: int, handshake: bool, client_id: int) -> str:
    """Announce `frame_bytes`, send `send_bytes` of it, hold the line open; what happened."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as e:
        return f"refused:{type(e).__name__}"
    try:
        if handshake:  # a session, then a giant request
            offer = b"v157..178"
            writer.write(API_PREFIX + HEADER.pack(len(offer)) + offer)
            writer.write(frame([71, 2, client_id, ""]))
        else:  # a giant version offer
            writer.write(API_PREFIX)
        writer.write(struct.pack(">I", frame_bytes))
        chunk = b"1\0" * 32768
        sent = 0
        while sent < send_bytes:
            writer.write(chunk)
            sent += len(chunk)
            await asyncio.wait_for(writer.drain(), 5)
        return "sent"
    except (OSError, asyncio.TimeoutError) as e:
        return f"closed:{type(e).__name__}"
    finally:
        await asyncio.sleep(0)
        hostile.writers.append(writer)


hostile.writers = []


async def served(port: int) -> bool:
    import ib_async

    ib = ib_async.IB()
    try:
        await ib.connectAsync("127.0.0.1", port, clientId=77, timeout=20)
        return (await ib.reqCurrentTimeAsync()) is not None and bool(ib.managedAccounts())
    except Exception as e:  # noqa: BLE001 - report, do not crash the bench
        print(f"normal client failed: {e!r}")
        return False
    finally:
        ib.disconnect()


async def main(args) -> int:
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="hostile-"))
    cfg = tmp / "cfg.toml"
    cfg.write_text(f'[sim]\nstate_path = "{tmp}/sim.sqlite"\n[bot]\nlog_path = "{tmp}/bot.jsonl"\n'
                   '[market]\nsource = "synthetic"\n')
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "sim-gateway", "--config", str(cfg), "--port",
                             str(port), "--speed", "60", "--start", "2022-03-01"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        before = rss_mb(proc.pid)
        print(f"before: {before:.0f} MB")
        outcomes = await asyncio.gather(*(hostile(port, args.frame_mib * 2**20, args.send_mib * 2**20, i % 2 == 0,
                                                  1000 + i)
                                          for i in range(args.connections)))
        await asyncio.sleep(1.0)
        during = rss_mb(proc.pid)
        counts = {o: outcomes.count(o) for o in sorted(set(outcomes))}
        print(f"during: {during:.0f} MB with {args.connections} hostile connections open ({counts})")
        for w in hostile.writers:
            w.close()
        await asyncio.sleep(2.0)
        after = rss_mb(proc.pid)
        print(f"after:  {after:.0f} MB once they closed")
        ok = await served(port)
        print(f"a normal client is served afterwards: {ok}")
        return 0 if ok else 1
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if "Traceback" in (err or ""):
            print("gateway stderr had a traceback:\n" + err)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=40)
    p.add_argument("--frame-mib", type=int, default=15)
    p.add_argument("--send-mib", type=int, default=15)
    raise SystemExit(asyncio.run(main(p.parse_args())))

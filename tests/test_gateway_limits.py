"""FAILURES.md scenario 30: a hostile local client on the gateway port (partial giant frames,
many connections, malformed numbers) → bounded memory, that session closed with an error,
others served. Driven through raw sockets speaking the wire protocol, next to a real client."""

from __future__ import annotations

import asyncio
import struct

import pytest
from structlog.testing import capture_logs
from test_gateway_support import connect, ib_errors, lib, make_sim, sim, wait_for  # noqa: F401 - fixtures

from bot.sim.gateway import Limits
from bot.sim.gateway.protocol import API_PREFIX, HEADER, decode_body, frame

TIMEOUT = 10.0  # generous: two shared cores


class RawClient:
    """A client that speaks the framing by hand, to send what no library would."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.version = 0

    @classmethod
    async def open(cls, port: int) -> RawClient:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def hello(self, offer: str = "v157..178") -> list[str]:
        self.writer.write(API_PREFIX + HEADER.pack(len(offer)) + offer.encode())
        reply = await self.read()
        self.version = int(reply[0])
        return reply

    async def start(self, client_id: int = 31) -> None:
        await self.hello()
        self.send([71, 2, client_id, ""])
        await self.until(lambda f: f[0] == "9")

    def send(self, fields: list) -> None:
        self.writer.write(frame(fields))

    async def read(self) -> list[str]:
        (size,) = HEADER.unpack(await asyncio.wait_for(self.reader.readexactly(4), TIMEOUT))
        return decode_body(await asyncio.wait_for(self.reader.readexactly(size), TIMEOUT))

    async def until(self, predicate) -> list[str]:
        while True:
            fields = await self.read()
            if predicate(fields):
                return fields

    async def error_for(self, req_id: int) -> tuple[int, str]:
        fields = await self.until(lambda f: f[0] == "4" and f[2] == str(req_id) and not f[3].startswith("21"))
        return int(fields[3]), fields[4]

    async def closed(self) -> bool:
        """True once the server has closed the connection (EOF within the timeout)."""
        try:
            while await asyncio.wait_for(self.reader.read(65536), TIMEOUT):
                pass
        except ConnectionError:
            return True  # a reset is a close too
        except asyncio.TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.writer.close()


def spx_contract(strike="") -> list:
    return [0, "SPX", "OPT", "20220302", strike, "P", "", "SMART", "", "USD", "", "SPXW"]


def no_tracebacks(logs) -> None:
    bad = [e for e in logs if e.get("log_level") in ("error", "critical") or "exc_info" in e]
    assert not bad, bad


@pytest.mark.parametrize("text", ["1e999", "inf", "nan", "9" * 4400, "-Infinity"])
async def test_malformed_numbers_answer_320_and_the_session_goes_on(sim, text):
    raw = await RawClient.open(sim.port)
    await raw.start()
    with capture_logs() as logs:
        raw.send([9, 8, 5, *spx_contract(strike=text), 0, "", "", ""])  # reqContractDetails, strike malformed
        code, message = await raw.error_for(5)
        assert code == 320 and "Unable to parse data" in message
        raw.send([62, 1, text, "All", "NetLiquidation"])  # reqAccountSummary, the id itself malformed
        code, _ = await raw.error_for(-1)
        assert code == 320
        raw.send([49, 1])  # still served
        assert (await raw.until(lambda f: f[0] == "49"))[0] == "49"
    no_tracebacks(logs)
    raw.close()


async def test_a_giant_partial_frame_closes_that_session_and_others_are_served(sim, connect, lib):
    ib = await connect(sim)
    raw = await RawClient.open(sim.port)
    await raw.start()
    with capture_logs() as logs:
        raw.writer.write(struct.pack(">I", 15 * 2**20) + b"9\0" * 1000)  # announces 15 MiB, sends 2 kB
        code, message = await raw.error_for(-1)
        assert code == 320 and "exceeds" in message
        assert await raw.closed()
        assert sim.gateway._buffered == 0
        assert (await ib.reqCurrentTimeAsync()) is not None  # the other client is served
    assert any(e["event"] == "gateway.client_over_limit" for e in logs)
    no_tracebacks(logs)


async def test_the_total_read_budget_is_shared_and_returned(make_sim):
    sim = await make_sim(limits=Limits(max_frame=64 * 1024, max_buffered=100 * 1024))
    first, second = await RawClient.open(sim.port), await RawClient.open(sim.port)
    await first.start(1)
    await second.start(2)
    first.writer.write(struct.pack(">I", 60 * 1024) + b"x" * 10)  # holds 60 KiB of the budget
    await wait_for(lambda: sim.gateway._buffered == 60 * 1024, TIMEOUT, "the reservation")
    second.writer.write(struct.pack(">I", 60 * 1024) + b"x" * 10)  # would pass 100 KiB in total
    code, message = await second.error_for(-1)
    assert code == 320 and "all clients" in message
    assert await second.closed()
    first.close()
    await wait_for(lambda: sim.gateway._buffered == 0, TIMEOUT, "the budget returned")
    third = await RawClient.open(sim.port)
    await third.start(3)  # a new client is served
    third.close()


async def test_connections_beyond_the_cap_are_refused(make_sim):
    sim = await make_sim(limits=Limits(max_connections=3))
    held = [await RawClient.open(sim.port) for _ in range(3)]
    for i, raw in enumerate(held):
        await raw.start(10 + i)
    with capture_logs() as logs:
        extra = await RawClient.open(sim.port)
        assert await extra.closed()
    assert any(e["event"] == "gateway.connection_refused" for e in logs)
    held[0].close()
    await wait_for(lambda: len(sim.gateway._connections) == 2, TIMEOUT, "the slot freed")
    again = await RawClient.open(sim.port)
    await again.start(20)
    for raw in [*held[1:], again]:
        raw.close()


async def test_a_silent_client_is_closed_after_the_handshake_timeout(make_sim):
    sim = await make_sim(limits=Limits(handshake_timeout=0.5))
    silent = await RawClient.open(sim.port)  # never says API
    half = await RawClient.open(sim.port)
    await half.hello()  # never sends startApi
    with capture_logs() as logs:
        assert await silent.closed()
        code, _ = await half.error_for(-1)
        assert code == 502
        assert await half.closed()
    assert sum(e["event"] == "gateway.handshake_timeout" for e in logs) == 2


async def test_an_unserviceable_version_is_told_why(sim):
    raw = await RawClient.open(sim.port)
    reply = await raw.hello("v100..151")
    assert len(reply) == 2 and reply[0] == "176"
    fields = await raw.read()
    assert fields[0] == "4" and fields[3] == "506" and "176..178" in fields[4] and "100..151" in fields[4]
    assert await raw.closed()


async def test_an_oversized_version_offer_is_refused_quietly(sim):
    raw = await RawClient.open(sim.port)
    with capture_logs() as logs:
        raw.writer.write(API_PREFIX + struct.pack(">I", 10 * 2**20) + b"v1")
        assert await raw.closed()
        raw2 = await RawClient.open(sim.port)
        raw2.writer.write(API_PREFIX + frame(["v" + "9" * 4400]))
        assert await raw2.closed()
    no_tracebacks(logs)

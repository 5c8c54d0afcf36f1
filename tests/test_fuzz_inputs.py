"""A fuzz suite over everything a user (or a disk) hands the bot: config keys, command-line
arguments, data files, state files and control-socket payloads (issue 10).

Every case must end in one of two ways: it runs (exit 0), or it is refused with exit 2 and
exactly one line on stderr, no traceback. Cases go through the CLI's `main()` in-process (fast);
`test_zz_counts` prints how many were tried and how many ended cleanly.

Hypothesis generates the values; the example counts are kept small enough for two shared cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import string
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot import cli
from bot.config import FIRST_START, LAST_START, Config
from bot.control import ControlServer, request

from conftest import data_dir

COUNTS: Counter = Counter()
FUZZ = settings(max_examples=int(os.environ.get("SPX_FUZZ_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])


def outcome(kind: str, argv: list[str], capsys, allowed=(0, 2)) -> int:
    """Run main(argv) in-process; assert it ended cleanly; count it."""
    COUNTS[f"{kind}: tried"] += 1
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    assert code in allowed, (argv, code, captured.err)
    if code == 2:
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1, (argv, captured.err)
    COUNTS[f"{kind}: clean"] += 1
    COUNTS[f"{kind}: {'refused' if code == 2 else 'ran'}"] += 1
    return code


# --- config keys ---------------------------------------------------------------------------
def _keys() -> list[tuple[str, str]]:
    keys = []
    for section, field in Config.model_fields.items():
        sub = getattr(field.annotation, "model_fields", None)
        if sub is None:
            keys.append(("", section))
            continue
        for key, f in sub.items():
            keys.append((section, key))
            for leaf in getattr(f.annotation, "model_fields", None) or {}:
                keys.append((f"{section}.{key}", leaf))
    return keys


KEYS = _keys()

toml_scalars = st.one_of(
    st.booleans().map(lambda b: "true" if b else "false"),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
    st.sampled_from(["0", "-1", "1e308", "-1e308", "1e-300", "nan", "inf", "-inf", "0.0", "1_000", "0x10"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr).filter(lambda s: "e" in s or "." in s),
    st.text(alphabet=string.printable.replace('"', "").replace("\\", ""), max_size=40).map(lambda s: json.dumps(s)),
    st.sampled_from(['"10"', '"10:00:30"', '"1000"', '"25:00"', '"09:30"', '""', '"max"', '"yes"', '"/"',
                     '"/tmp"', '"/proc/x"', '"' + "a" * 300 + '"', "1999-01-01", "9999-12-31", "0001-01-01",
                     "2022-03-01", "10:00:00", "1979-05-27T07:32:00Z"]),
)
toml_values = st.one_of(
    toml_scalars,
    st.lists(toml_scalars, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
    st.integers(min_value=1, max_value=3000).map(lambda n: "[" * n + "]" * n),
    st.just("{ a = 1 }"),
)


@pytest.fixture
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fz")


def _config_text(folder: Path, section: str, key: str, value: str) -> str:
    base = (f'[bot]\nlog_path = "{folder}/bot.jsonl"\nstore_path = "{folder}/bot.sqlite"\n'
            f'control_socket = "{folder}/c.sock"\nconsole_log = false\n')
    if section == "bot":
        base = "\n".join(line for line in base.splitlines() if not line.startswith(f"{key} =")) + "\n"
        return base + f"{key} = {value}\n"
    if not section:
        return f"{key} = {value}\n" + base
    return base + f"[{section}]\n{key} = {value}\n"


@FUZZ
@given(key=st.sampled_from(KEYS), value=toml_values)
def test_fuzz_config_keys_check_config(fuzz_dir, capsys, key, value):
    path = fuzz_dir / "c.toml"
    path.write_text(_config_text(fuzz_dir, key[0], key[1], value))
    outcome("config", ["check-config", str(path)], capsys)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=400))
def test_fuzz_config_bytes(fuzz_dir, capsys, raw):
    path = fuzz_dir / "b.toml"
    path.write_bytes(raw)
    outcome("config bytes", ["check-config", str(path)], capsys)


def test_fuzz_config_accepted_values_also_run(fuzz_dir, capsys):
    """A sample of values check-config accepts: run must accept them too (same validation)."""
    rng = random.Random(10)
    accepted = [("sim", "seed", "0"), ("sim", "speed", '"max"'), ("condor", "credit_floor", "0.0"),
                ("hedge", "rebalance_time", '"10:05"'), ("bot", "allow_live", "false"), ("sim", "start", "2022-03-01")]
    for section, key, value in rng.sample(accepted, 4):
        folder = fuzz_dir / f"run-{key}"
        folder.mkdir()
        path = folder / "c.toml"
        sim = f'state_path = "{folder}/s.sqlite"\n' + (f"{key} = {value}\n" if section == "sim" else "")
        text = _config_text(folder, "hedge", "enabled", "false") + f"[sim]\n{sim}"
        if section not in ("sim", "hedge"):
            text = _config_text(folder, section, key, value) + f"[sim]\n{sim}[hedge]\nenabled = false\n"
        elif section == "hedge":
            text = _config_text(folder, section, key, value) + f"[sim]\n{sim}"
        path.write_text(text)
        assert outcome("config run", ["check-config", str(path)], capsys) == 0
        code = outcome("config run", ["run", "--config", str(path), "--speed", "max", "--start", "2022-03-01",
                                      "--for", "1d"], capsys)
        assert code == 0


# --- command-line arguments ----------------------------------------------------------------
arg_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["0d", "1d", "99999w", "1000000000d", "-1d", "1.5h", "1e9s", "0.0000001s", "5d", "3660d",
                     "3661d", "2022-03-01", "2022-03-01T10:00", "2022-03-01T25:00", "9999-12-31", "0001-01-01",
                     "1899-01-01", "abc", "max", "0", "-1", "1e-300", "inf", "nan", "65536", "99999", ""]),
)


@FUZZ
@given(flag=st.sampled_from(["--for", "--start", "--speed"]), value=arg_text)
def test_fuzz_run_arguments(capsys, flag, value):
    """Parse only (a run per case would take seconds): every value either parses into a
    bounded value or is refused in one line."""
    assume("\x00" not in value)
    COUNTS["cli args: tried"] += 1
    parser = cli.build_parser()
    try:
        args = parser.parse_args(["run", flag, value])
    except SystemExit as exc:
        assert exc.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        COUNTS["cli args: clean"] += 1
        COUNTS["cli args: refused"] += 1
        return
    if args.duration is not None:
        assert 0 < args.duration.total_seconds() <= cli.MAX_DURATION.total_seconds()
    if args.start is not None:
        assert FIRST_START <= args.start[0] <= LAST_START
    COUNTS["cli args: clean"] += 1
    COUNTS["cli args: ran"] += 1  # parsed into bounded values


@FUZZ
@given(argv=st.lists(st.one_of(arg_text, st.sampled_from(["--port", "--speed", "--start", "--workers", "--from",
                                                          "--to", "--json", "--flatten", "--reason", "--event"])),
                     max_size=4),
       command=st.sampled_from(["sim-gateway", "backtest", "status", "kill", "resume", "logs", "check-config", "data"]))
def test_fuzz_other_commands_refuse_bad_arguments_in_one_line(capsys, fuzz_dir, command, argv):
    """Only the parse and the config lookup: no gateway is started, no backtest run."""
    assume(all("\x00" not in a for a in argv))
    COUNTS["cli args: tried"] += 1
    parser = cli.build_parser()
    try:
        parser.parse_args([command, *argv])
    except SystemExit as exc:
        err = capsys.readouterr().err.strip()
        if exc.code == 0:  # --help
            COUNTS["cli args: clean"] += 1
            COUNTS["cli args: ran"] += 1
            return
        assert exc.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
        COUNTS["cli args: clean"] += 1
        COUNTS["cli args: refused"] += 1
        return
    COUNTS["cli args: clean"] += 1
    COUNTS["cli args: ran"] += 1  # parsed


# --- data files ----------------------------------------------------------------------------
WINDOW = ("2021-10-01", "2022-06-30")


@pytest.fixture(scope="module")
def small_history(tmp_path_factory):
    """The three required files (and VVIX), cut to a few months so each case loads fast."""
    src = data_dir()
    if src is None:
        pytest.skip("history files not found")
    out = tmp_path_factory.mktemp("hist")
    for name in ("spx_daily.csv", "vix_daily.csv", "vix_futures_term.csv", "vvix_daily.csv"):
        lines = (src / name).read_text().splitlines()
        keep = [lines[0]] + [ln for ln in lines[1:] if WINDOW[0] <= ln[:10] <= WINDOW[1]]
        (out / name).write_text("\n".join(keep) + "\n")
    return out


def _mutate(text: str, rng: random.Random, how: str) -> str:
    lines = text.splitlines()
    i = rng.randrange(1, len(lines))
    cells = lines[i].split(",")
    j = rng.randrange(len(cells))
    if how == "cell":
        cells[j] = rng.choice(["", "nan", "-1", "1e999", "abc", "0", "2022-13-45", "9" * 400, "inf", "1e-300"])
        lines[i] = ",".join(cells)
    elif how == "drop":
        del lines[i]
    elif how == "dup":
        lines.insert(i, lines[i])
    elif how == "header":
        lines[0] = lines[0].replace(rng.choice(lines[0].split(",")), "x", 1)
    elif how == "truncate":
        return text[: rng.randrange(len(text))]
    elif how == "binary":
        return "".join(rng.choice(string.printable + "\x00\xff") for _ in range(200))
    return "\n".join(lines) + "\n"


@settings(max_examples=14, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["spx_daily.csv", "vix_daily.csv", "vix_futures_term.csv"]),
       how=st.sampled_from(["cell", "drop", "dup", "header", "truncate", "binary"]), seed=st.integers(0, 10**6))
def test_fuzz_data_files(small_history, fuzz_dir, capsys, name, how, seed):
    case = Path(tempfile.mkdtemp(dir=fuzz_dir))
    folder = case / "data"
    shutil.copytree(small_history, folder)
    path = folder / name
    path.write_text(_mutate(path.read_text(), random.Random(seed), how), errors="surrogateescape")
    cfgfile = case / "c.toml"
    cfgfile.write_text(_config_text(case, "hedge", "enabled", "false") +
                       f'[sim]\nstate_path = "{case}/sim.sqlite"\n[market]\nsource = "history"\n')
    outcome("data files", ["run", "--config", str(cfgfile), "--speed", "max", "--start", "2022-03-01", "--for", "1d",
                           "--data", str(folder)], capsys)


# --- state files ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def state_with_history(tmp_path_factory):
    folder = tmp_path_factory.mktemp("state")
    cfgfile = folder / "c.toml"
    cfgfile.write_text(_config_text(folder, "condor", "credit_floor", "0.0") + f'[sim]\nstate_path = "{folder}/sim.sqlite"\n'
                       '[hedge]\nenabled = false\n')
    code = cli.main(["run", "--config", str(cfgfile), "--speed", "max", "--start", "2022-03-01", "--for", "1d"])
    assert code == 0
    return {"store": (folder / "bot.sqlite").read_bytes(), "account": (folder / "sim.sqlite").read_bytes()}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["store", "account"]), offset=st.floats(0, 1), length=st.integers(1, 5000),
       mode=st.sampled_from(["overwrite", "truncate", "zero"]), seed=st.integers(0, 2**32 - 1))
def test_fuzz_state_files(state_with_history, fuzz_dir, capsys, which, offset, length, mode, seed):
    folder = Path(tempfile.mkdtemp(dir=fuzz_dir))
    data = {k: bytearray(v) for k, v in state_with_history.items()}
    target = data[which]
    at = int(offset * (len(target) - 1))
    if mode == "overwrite":
        target[at:at + length] = random.Random(seed).randbytes(min(length, len(target) - at))
    elif mode == "truncate":
        del target[at:]
    else:
        target[:] = b""
    (folder / "bot.sqlite").write_bytes(bytes(data["store"]))
    (folder / "sim.sqlite").write_bytes(bytes(data["account"]))
    before = {p: p.read_bytes() for p in (folder / "bot.sqlite", folder / "sim.sqlite")}
    cfgfile = folder / "c.toml"
    cfgfile.write_text(_config_text(folder, "hedge", "enabled", "false") + f'[sim]\nstate_path = "{folder}/sim.sqlite"\n')
    # 1: no daemon, the store was read and printed: a changed byte inside a row's text (a journaled
    # signal's JSON) is no damage SQLite can see, and is not refused
    code = outcome("state files", ["status", "--config", str(cfgfile)], capsys, allowed=(1, 2))
    if code == 2:  # refused: nothing was rewritten
        assert all(p.read_bytes() == b for p, b in before.items())


# --- control-socket payloads ---------------------------------------------------------------
class _Handler:
    async def status(self):
        return {"ok": 1}

    async def kill(self, flatten, reason):
        return {"halted": True, "flatten": flatten}

    async def resume(self):
        return {"halted": False}


payloads = st.one_of(
    st.binary(max_size=300),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                 lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                 max_leaves=10).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"cmd": st.sampled_from(["status", "kill", "resume", "x", ""]),
                           "flatten": st.one_of(st.booleans(), st.integers(), st.none()),
                           "reason": st.one_of(st.text(max_size=20), st.integers())}).map(lambda v: json.dumps(v).encode()),
    st.integers(1, 20000).map(lambda n: b"[" * n + b"]" * n),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(payloads, min_size=1, max_size=5))
def test_fuzz_control_socket_payloads(short_tmp, batch):
    async def scenario():
        server = ControlServer(_Handler(), short_tmp / "c.sock", request_timeout=2.0)
        await server.start()
        try:
            for raw in batch:
                COUNTS["control payloads: tried"] += 1
                reader, writer = await asyncio.open_unix_connection(short_tmp / "c.sock", limit=2**21)
                writer.write(raw.replace(b"\n", b" ") + b"\n")
                await writer.drain()
                line = await asyncio.wait_for(reader.readline(), 10)
                writer.close()
                answer = json.loads(line)
                assert isinstance(answer, dict) and isinstance(answer.get("ok"), bool)
                COUNTS["control payloads: clean"] += 1
            # and the server still serves a good request afterwards
            assert (await request(short_tmp / "c.sock", {"cmd": "status"}))["ok"] is True
        finally:
            await server.close()

    asyncio.run(scenario())


def test_zz_counts(capsys):
    """The suite's counts (tried, clean) for the closing note; every case tried ended cleanly."""
    kinds = sorted({k.split(":")[0] for k in COUNTS})
    with capsys.disabled():
        print()
        for kind in kinds:
            print(f"fuzz {kind}: {COUNTS[kind + ': tried']} tried, {COUNTS[kind + ': clean']} clean"
                  f" ({COUNTS[kind + ': ran']} ran, {COUNTS[kind + ': refused']} refused)", file=sys.stderr)
    for kind in kinds:
        assert COUNTS[kind + ": tried"] == COUNTS[kind + ": clean"]

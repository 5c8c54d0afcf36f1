"""The dashboard in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, installed by `make browser`, which `.ci/run` calls) over WebDriver, against
a running simulated daemon (`spx-bot run` as a subprocess on the simulated gateway).

The clock runs at 120 simulated seconds per real second from 15:20 New York on 2022-03-01: the
1DTE condor opens at 15:30 and the hedge buys its three layers right after; after the 16:00
close the market stands still until the next open (about 9 real minutes away), so every figure
on the page must equal `spx-bot status --json` exactly. Everything waits on events (log lines,
page frames), with generous timeouts for a loaded 2-core machine; no fixed sleeps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import ROOT

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
BIN = [sys.executable, "-m", "bot.cli"]

webdriver = pytest.importorskip("selenium.webdriver")
if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} / {CHROMEDRIVER} missing: .ci/run must run `make browser` first")
    pytest.skip("chromium / chromium-driver not installed (make browser)", allow_module_level=True)

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402



def write_config(tmp: Path) -> Path:
    path = tmp / "cfg.toml"
    path.write_text(f"""
[bot]
log_path = "{tmp}/bot.jsonl"
store_path = "{tmp}/bot.sqlite"
control_socket = "{tmp}/ctl.sock"
console_log = false
[broker]
kind = "sim-gateway"
[sim]
state_path = "{tmp}/sim.sqlite"
speed = 120
[market]
source = "synthetic"
[condor]
credit_floor = 0.05
[http]
enabled = true
port = 0
dashboard_interval_s = 0.5
""")
    return path


def events(tmp: Path) -> list[dict]:
    path = tmp / "bot.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(pred, timeout: float, what: str, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = pred()
        if result:
            return result
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"daemon exited ({proc.returncode}) waiting for {what}: {proc.stderr.read()[-2000:]}")
        time.sleep(0.1)
    raise AssertionError(f"{what}: not met within {timeout}s")


def named(tmp: Path, name: str) -> list[dict]:
    return [e for e in events(tmp) if e["event"] == name]


def status_json(cfg: Path) -> dict:
    out = subprocess.run([*BIN, "status", "--json", "--config", str(cfg)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def money(text: str) -> Decimal:
    """'-$1,234.50' -> Decimal('-1234.50')."""
    return Decimal(text.replace("$", "").replace(",", ""))


@pytest.fixture
def daemon(short_tmp):
    cfg = write_config(short_tmp)
    proc = subprocess.Popen([*BIN, "run", "--config", str(cfg), "--start", "2022-03-01T15:20"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = wait_for(lambda: [e["url"] for e in named(short_tmp, "http.listening")], 120, "http.listening",
                       proc)[0]
        yield short_tmp, cfg, url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,2200", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def frame_no(driver) -> int:
    return int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-frame") or -1)


def text(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


READ_PAGE = """
const t = (id) => document.getElementById(id).innerText;
const cells = (sel) => [...document.querySelectorAll(sel)].map(tr => [...tr.cells].map(td => td.innerText));
return {time: document.body.dataset.statusTime, frame: document.body.dataset.frame,
        ids: ["acct-id", "nl", "cash", "realized", "unrealized", "spx", "halt", "conn", "vix", "tier"]
             .reduce((o, id) => (o[id] = t(id), o), {}),
        condors: cells("#condors tbody tr"), hedge: cells("#hedge tbody tr"), orders: cells("#orders tbody tr")};
"""


def page_figures(driver) -> dict:
    """What a person reads on the page, parsed back into numbers: read in one script, so from
    one frame (the page re-renders its tables on every frame)."""
    raw = driver.execute_script(READ_PAGE)
    condors = [{"condor_id": c[0], "expiry": c[1], "quantity": int(c[2]),
                "strikes": [Decimal(x) for x in c[3].split(" / ")], "credit": Decimal(c[4]),
                "value": money(c[5]), "unrealized_pnl": money(c[6]),
                "distance_put": Decimal(c[7]), "distance_call": Decimal(c[8])} for c in raw["condors"]]
    layers = {c[0]: {"held": int(c[1]), "short": int(c[2]), "market_value": money(c[3]),
                     "premium_paid": money(c[4]), "premium_collected": money(c[5]),
                     "realized_pnl": money(c[6]), "unrealized_pnl": money(c[7])} for c in raw["hedge"]}
    t = raw["ids"]
    return {"time": raw["time"], "account": t["acct-id"], "nl": money(t["nl"]), "cash": money(t["cash"]),
            "realized": money(t["realized"]), "unrealized": money(t["unrealized"]), "condors": condors,
            "layers": layers, "spx": Decimal(t["spx"]), "orders": len(raw["orders"]), "halt": t["halt"],
            "conn": t["conn"], "vix": t["vix"], "tier": t["tier"]}


def _dig(obj, path):
    for key in path:
        obj = obj[key]
    return obj


def q2(value) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def test_dashboard_live_in_chromium_matches_status(daemon, browser, tmp_path):
    tmp, cfg, url, proc = daemon
    # the condor and the hedge are on, and the session has closed: the market stands still now
    wait_for(lambda: named(tmp, "condor.opened"), 240, "condor.opened", proc)
    wait_for(lambda: named(tmp, "hedge.bought"), 240, "hedge.bought", proc)
    wait_for(lambda: named(tmp, "account.summary"), 240, "account.summary (after the close)", proc)

    browser.get(url + "/")
    wait = WebDriverWait(browser, 90, poll_frequency=0.2)
    wait.until(lambda d: frame_no(d) >= 0 and d.find_elements(By.CSS_SELECTOR, "#condors tbody tr"))
    assert "live" == text(browser, "stream")

    # live: frames keep arriving over the one event stream, without a reload
    first = frame_no(browser)
    wait.until(lambda d: frame_no(d) >= first + 3)
    entries = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert entries and all(e.startswith(url) for e in entries), entries  # nothing from a CDN: works offline
    # no polling: the page fetched its four static files once; the event stream stays open
    assert sorted(e.removeprefix(url) for e in entries) == [
        "/static/dashboard.css", "/static/dashboard.js", "/static/vendor/uPlot.iife.min.js",
        "/static/vendor/uPlot.min.css"], entries

    # Model marks (condor and VIX option mids) still drift with the simulated clock after the
    # close (time decay at 120x), so the page's frame is bracketed by two `status --json` reads:
    # state (account, cash, strikes, credit, contracts, premiums, realized P&L, SPX) must equal
    # both; a mark must lie between its two readings.
    before = status_json(cfg)
    wait.until(lambda d: (d.find_element(By.TAG_NAME, "body").get_attribute("data-status-time") or "")
               > before["time"])
    page = page_figures(browser)
    page_time = page["time"]
    after = status_json(cfg)
    assert before["time"] < page_time <= after["time"]
    status = after

    def same(shown, key_path):
        values = [q2(_dig(s, key_path)) for s in (before, after)]
        assert values[0] == values[1] == shown, (key_path, shown, values)

    def between(shown, key_path):
        lo, hi = sorted(q2(_dig(s, key_path)) for s in (before, after))
        assert lo - Decimal("0.01") <= shown <= hi + Decimal("0.01"), (key_path, shown, lo, hi)

    acct = status["account"]
    assert page["account"] == f"{acct['id']} (paper)"
    same(page["nl"], ("account", "net_liquidation"))
    same(page["cash"], ("account", "cash"))
    same(page["realized"], ("pnl", "realized"))
    between(page["unrealized"], ("pnl", "unrealized"))
    same(page["spx"], ("market", "spx"))
    assert page["conn"] == "broker: connected" and page["halt"] == "trading"
    assert page["orders"] == len(status["working_orders"])
    assert len(page["condors"]) == len(status["open_condors"]) == 1
    for i, (shown, c) in enumerate(zip(page["condors"], status["open_condors"], strict=True)):
        assert shown["condor_id"] == c["condor_id"] and shown["expiry"] == c["expiry"]
        assert shown["quantity"] == c["quantity"] and shown["credit"] == q2(c["credit"])
        assert shown["strikes"] == [Decimal(s) for s in c["strikes"]]
        between(shown["value"], ("open_condors", i, "value"))
        between(shown["unrealized_pnl"], ("open_condors", i, "unrealized_pnl"))
        same(shown["distance_put"], ("open_condors", i, "distance_put"))
        same(shown["distance_call"], ("open_condors", i, "distance_call"))
    layers = status["hedge"]["layers"]
    assert set(page["layers"]) == set(layers) == {"front", "mid", "back"}
    assert sum(b["held"] for b in layers.values()) > 0
    for name, b in layers.items():
        shown = page["layers"][name]
        for key in ("held", "short"):
            assert shown[key] == b[key] == before["hedge"]["layers"][name][key], (name, key)
        for key in ("premium_paid", "premium_collected", "realized_pnl"):
            same(shown[key], ("hedge", "layers", name, key))
        for key in ("market_value", "unrealized_pnl"):
            between(shown[key], ("hedge", "layers", name, key))
    signal = status["ops"]["signal"]
    assert page["vix"] == f"{float(signal['vix']):.2f}"
    assert page["tier"] == str(status["hedge"]["tier"])
    # the charts drew: an equity point per journaled open/close, VIX/RSI/MACD from the signals
    assert browser.execute_script("return document.querySelectorAll('canvas').length") == 4
    assert "condor.opened" in text(browser, "events")

    shot = tmp_path / "dashboard.png"
    browser.save_screenshot(str(shot))
    print(f"\nscreenshot: {shot}")

    # read-only: nothing but GET/HEAD is routed
    for path in ("/", "/events"):
        req = urllib.request.Request(url + path, method="POST", data=b"")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 405

    # the kill switch, pressed from the command line, reaches the open page by itself
    out = subprocess.run([*BIN, "kill", "--reason", "browser test", "--config", str(cfg)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    wait.until(lambda d: text(d, "halt") == "HALTED")
    wait.until(lambda d: "browser test" in text(d, "halt-reason"))
    wait.until(lambda d: "killswitch.engaged" in text(d, "events"))
    halted = tmp_path / "dashboard-halted.png"
    browser.save_screenshot(str(halted))
    print(f"screenshot: {halted}")

    # a phone: one column, nothing wider than the screen
    browser.set_window_size(390, 844)
    wait.until(lambda d: d.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1"))
    phone = tmp_path / "dashboard-phone.png"
    browser.save_screenshot(str(phone))
    print(f"screenshot: {phone}")
    keep = os.environ.get("SPX_BOT_SCREENSHOTS")  # e.g. for a report: copy them somewhere lasting
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for p in (shot, halted, phone):
            shutil.copy(p, Path(keep) / p.name)

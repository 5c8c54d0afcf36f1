"""The deployment files, validated as far as this machine can: the systemd unit parsed for the
keys it must have and run through `systemd-analyze verify` (any warning fails), the compose
file parsed and checked (paper mode, IBC restart time inside the bot's maintenance window,
credentials from secret files, no port off loopback), the Dockerfile (slim base, non-root,
installed from the repository), the logrotate example, and the example configs."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import yaml

from bot.config import load_config
from bot.ops.maintenance import window_at

from conftest import ROOT

DEPLOY = ROOT / "deploy"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)  # systemd repeats some keys
    parser.optionxform = str
    parser.read(DEPLOY / "spx-bot.service")
    return parser


def test_unit_has_notify_watchdog_restart_user_and_hardening():
    u = unit()
    s = u["Service"]
    assert s["Type"] == "notify" and int(s["WatchdogSec"]) > 0 and s["Restart"] == "on-failure"
    assert s["User"] == "spx-bot" and s["Group"] == "spx-bot"
    assert s["ExecStart"].split()[1:] == ["run", "--config", "/etc/spx-bot/config.toml"]
    assert s["ExecReload"].endswith("-HUP $MAINPID")  # reopens the log
    assert set(s["RestartPreventExitStatus"].split()) == {"2", "3"}
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "",
                       "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6"}.items():
        assert s[key] == value, key
    assert s["StateDirectory"] == "spx-bot" and s["LogsDirectory"] == "spx-bot"
    assert u["Install"]["WantedBy"] == "multi-user.target"
    # the paths the unit grants are the ones config/systemd.toml writes to
    cfg = load_config(ROOT / "config" / "systemd.toml")
    assert cfg.bot.store_path.startswith("/var/lib/spx-bot/") and cfg.bot.log_path.startswith("/var/log/spx-bot/")
    assert cfg.notify.targets[0].url_file == "/run/credentials/spx-bot.service/notify_url"
    assert "notify_url:" in s["LoadCredential"]


def test_systemd_analyze_verify_without_warnings(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:  # pragma: no cover - Debian images used here ship it with systemd
        pytest.skip("systemd-analyze is not installed")
    text = (DEPLOY / "spx-bot.service").read_text()
    exe = shutil.which("spx-bot") or str(ROOT / ".venv" / "bin" / "spx-bot")
    (tmp_path / "spx-bot.service").write_text(text.replace("/opt/spx-bot/bin/spx-bot", exe))
    r = subprocess.run([analyze, "verify", "--man=no", str(tmp_path / "spx-bot.service")],
                       capture_output=True, text=True, timeout=60)
    complaints = [line for line in (r.stdout + r.stderr).splitlines() if "spx-bot.service" in line]
    assert r.returncode == 0 and complaints == [], r.stdout + r.stderr


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_compose_gateway_paper_ibc_secrets_loopback_and_restart_in_window():
    c = compose()
    gw, bot = c["services"]["ib-gateway"], c["services"]["spx-bot"]
    assert gw["image"].startswith("ghcr.io/gnzsnz/ib-gateway:")
    env = gw["environment"]
    assert env["TRADING_MODE"] == "paper"
    assert "TWS_PASSWORD" not in env and env["TWS_PASSWORD_FILE"] == "/run/secrets/ib_password"
    assert env["TWS_USERID"].startswith("${")  # from .env, not written here
    assert env["TWOFA_TIMEOUT_ACTION"] == "restart"
    assert "ports" not in gw  # reached on the compose network only
    # every published port binds the host's loopback
    for service in c["services"].values():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port
    # secrets are files
    for name in ("ib_password", "notify_url", "http_token"):
        assert c["secrets"][name]["file"].startswith("./secrets/")
    assert set(bot["secrets"]) == {"notify_url", "http_token"} and gw["secrets"] == ["ib_password"]
    # the bot's config is the one mounted, and it points at the gateway's paper relay
    mounted = [v for v in bot["volumes"] if v.endswith(":/etc/spx-bot/config.toml:ro")]
    assert mounted == ["../config/docker.toml:/etc/spx-bot/config.toml:ro"]
    cfg = load_config(ROOT / "config" / "docker.toml")
    assert (cfg.broker.kind, cfg.broker.host, cfg.broker.port) == ("ib", "ib-gateway", 4004)
    assert not cfg.bot.allow_live
    assert cfg.http.token_file == "/run/secrets/http_token" and cfg.notify.targets[0].url_file == "/run/secrets/notify_url"
    # a volume for state and logs, where the config writes them
    assert any(v.startswith("spx-bot-data:/var/lib/spx-bot") for v in bot["volumes"]) and "spx-bot-data" in c["volumes"]
    assert cfg.bot.store_path.startswith("/var/lib/spx-bot/") and cfg.bot.log_path.startswith("/var/lib/spx-bot/")
    # IBC's nightly restart falls inside the bot's maintenance window, every day of the week
    restart = datetime.strptime(env["AUTO_RESTART_TIME"], "%I:%M %p").time()
    assert env["TIME_ZONE"] == cfg.maintenance.timezone
    for day in range(6, 13):  # 2022-03-06 (Sunday) .. 2022-03-12
        moment = datetime(2022, 3, day, restart.hour, restart.minute, tzinfo=ZoneInfo(env["TIME_ZONE"]))
        assert window_at(moment, cfg.maintenance.windows, cfg.maintenance.timezone) is not None, moment
    assert bot["build"]["dockerfile"] == "deploy/Dockerfile" and bot["build"]["context"] == ".."
    assert bot["read_only"] is True and "ALL" in bot["cap_drop"]


def test_dockerfile_slim_non_root_installed_from_the_repo():
    text = (DEPLOY / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms and all(re.fullmatch(r"python:3\.\d+-slim", f) for f in froms), froms
    assert "pip install --no-cache-dir ." in text
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] == "spx-bot"
    assert 'ENTRYPOINT ["spx-bot"]' in text and "HEALTHCHECK" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "state", "deploy/secrets"} <= set(ignored)


def test_logrotate_example_signals_the_bot():
    text = (DEPLOY / "logrotate.conf").read_text()
    assert "/var/log/spx-bot/bot.jsonl" in text and "delaycompress" in text
    assert "systemctl reload spx-bot.service" in text
    logrotate = shutil.which("logrotate")
    if logrotate:  # pragma: no cover - not on every machine
        r = subprocess.run([logrotate, "--debug", str(DEPLOY / "logrotate.conf")], capture_output=True, text=True)
        assert "error" not in r.stderr.lower(), r.stderr


@pytest.mark.parametrize("name", ["sim.toml", "paper.toml", "monthly.toml", "low-credit.toml", "docker.toml",
                                  "systemd.toml"])
def test_every_shipped_config_is_valid(name):
    load_config(ROOT / "config" / name)


def test_compose_validates_with_docker_compose(tmp_path):
    """Docker's own validation where a compose CLI is installed: `docker compose config` (v2),
    or the Python `docker-compose` 1.x, whose older schema predates the top-level `name`."""
    text = (DEPLOY / "docker-compose.yml").read_text()
    v2 = shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    v1 = shutil.which("docker-compose")
    if not (v2 or v1):
        pytest.skip("no docker compose CLI on this machine (the structural checks above still ran)")
    work = tmp_path / "deploy"
    (work / "secrets").mkdir(parents=True)
    for name in ("ib_password", "notify_url", "http_token"):
        (work / "secrets" / f"{name}.txt").write_text("x")
    if not v2:
        text = "\n".join(line for line in text.splitlines() if not line.startswith("name:"))
    (work / "docker-compose.yml").write_text(text)
    cmd = ["docker", "compose"] if v2 else [v1]
    r = subprocess.run([*cmd, "-f", str(work / "docker-compose.yml"), "config"], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin:/usr/local/bin", "TWS_USERID": "paper-login"}, timeout=60)
    assert r.returncode == 0, r.stderr
    rendered = yaml.safe_load(r.stdout)
    assert rendered["services"]["ib-gateway"]["environment"]["TRADING_MODE"] == "paper"

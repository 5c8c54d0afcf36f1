import asyncio
from datetime import date, datetime, timedelta, timezone

import pytest

from bot.calendar import NY, TradingCalendar, ny_time
from bot.clock import SimClock
from bot.schedule import CronJob, IntervalJob, SessionJob

UTC = timezone.utc


@pytest.fixture(scope="module")
def cal():
    return TradingCalendar()


def test_calendar_holidays_and_early_close(cal):
    assert not cal.is_session(date(2022, 12, 26))  # Christmas observed
    assert not cal.is_session(date(2022, 3, 5))  # Saturday
    _, close = cal.open_close(date(2022, 11, 25))  # day after Thanksgiving: 13:00 ET
    assert close.astimezone(NY).hour == 13
    assert cal.next_session(date(2022, 12, 23)) == date(2022, 12, 27)


def test_entry_job_fires_1530_new_york_on_sessions_only(cal):
    job = CronJob("entry", 15, 30)
    t = ny_time(date(2022, 3, 4), "16:00")  # Friday after the entry
    nxt = job.next_fire(cal, t)
    assert nxt.astimezone(NY) == datetime(2022, 3, 7, 15, 30, tzinfo=NY)
    # across a DST change the wall-clock time stays 15:30 New York
    assert job.next_fire(cal, ny_time(date(2022, 3, 11), "16:00")).astimezone(NY).hour == 15
    # Good Friday 2022-04-15 is skipped
    assert job.next_fire(cal, ny_time(date(2022, 4, 14), "16:00")).date() == date(2022, 4, 18)


def test_entry_moves_before_an_early_close(cal):
    job = CronJob("entry", 15, 30, before_close=timedelta(minutes=30))
    nxt = job.next_fire(cal, ny_time(date(2022, 11, 24), "09:00"))
    assert nxt.astimezone(NY) == datetime(2022, 11, 25, 12, 30, tzinfo=NY)
    assert CronJob("entry", 15, 30).next_fire(cal, ny_time(date(2022, 11, 24), "09:00")).date() == date(2022, 11, 28)


def test_first_session_of_week(cal):
    job = CronJob("monthly", 10, 0, "mon", first_of_week=True)
    # Memorial Day 2022-05-30 (Monday holiday): fires Tuesday
    assert job.next_fire(cal, ny_time(date(2022, 5, 27), "12:00")).astimezone(NY).date() == date(2022, 5, 31)
    assert job.next_fire(cal, ny_time(date(2022, 5, 31), "12:00")).astimezone(NY).date() == date(2022, 6, 6)


def test_interval_and_session_jobs(cal):
    mon = IntervalJob("m", 300)
    open_, close = cal.open_close(date(2022, 3, 1))
    assert mon.next_fire(cal, open_ - timedelta(hours=1)) == open_ + timedelta(minutes=5)
    assert mon.next_fire(cal, close - timedelta(minutes=1)) == close
    assert mon.next_fire(cal, close).date() == date(2022, 3, 2)
    sess = SessionJob("close", "close", timedelta(minutes=1))
    assert sess.next_fire(cal, open_) == close + timedelta(minutes=1)


async def test_simclock_manual_wakes_in_order():
    clock = SimClock(datetime(2022, 3, 1, 14, 0, tzinfo=UTC))
    woke = []

    async def sleeper(name, s):
        await clock.sleep(s)
        woke.append((name, clock.now()))

    tasks = [asyncio.create_task(sleeper("b", 20)), asyncio.create_task(sleeper("a", 10))]
    await asyncio.sleep(0)
    await clock.advance(15)
    assert [n for n, _ in woke] == ["a"]
    await clock.advance(10)
    await asyncio.gather(*tasks)
    assert [n for n, _ in woke] == ["a", "b"]
    assert woke[0][1] == datetime(2022, 3, 1, 14, 0, 10, tzinfo=UTC)


async def test_simclock_max_jumps_and_accelerated_runs_fast():
    t0 = datetime(2022, 3, 1, 14, 0, tzinfo=UTC)
    clock = SimClock(t0, "max")
    await clock.sleep(86400)
    assert clock.now() == t0 + timedelta(days=1)
    fast = SimClock(t0, 3600.0)  # one simulated hour per real second
    await fast.sleep(36)  # 10 ms of real time
    assert fast.now() >= t0 + timedelta(seconds=36)


def test_simclock_refuses_naive_time_and_bad_speed():
    with pytest.raises(ValueError):
        SimClock(datetime(2022, 3, 1))
    with pytest.raises(ValueError):
        SimClock(datetime(2022, 3, 1, tzinfo=UTC), -1)

"""bot.american: American options by a CRR tree with the European control variate."""

from __future__ import annotations

import numpy as np
import pytest

from bot import pricing
from bot.american import american_price, american_price_greeks


def test_a_call_without_dividends_is_worth_its_european_price():
    # early exercise of a call on an asset paying nothing never pays: the premium is zero
    assert american_price(50, 50, 5 / 12, 0.4, 0.1, 0.0, True) == pytest.approx(
        pricing.bs_price(50, 50, 5 / 12, 0.4, 0.1, 0.0, True), abs=1e-9)


def test_hulls_american_put():
    # Hull, Options, Futures and Other Derivatives, the American put of the binomial chapter
    # (S 50, K 50, 5 months, r 10%, vol 40%): 4.28 with many steps, against 4.08 European
    assert american_price(50, 50, 5 / 12, 0.4, 0.1, 0.0, False) == pytest.approx(4.284, abs=0.01)
    assert pricing.bs_price(50, 50, 5 / 12, 0.4, 0.1, 0.0, False) == pytest.approx(4.076, abs=0.001)


def test_bounds_early_exercise_and_dividends():
    k = np.array([400.0, 450.0, 500.0, 600.0])
    am = american_price_greeks(450.0, k, 0.25, 0.2, 0.05, 0.013, False)["mid"]
    eu = pricing.bs_price_greeks(450.0, k, 0.25, 0.2, 0.05, 0.013, False)["mid"]
    assert np.all(am >= eu - 1e-9) and np.all(am >= np.maximum(k - 450.0, 0.0) - 1e-9)
    assert am[-1] == pytest.approx(150.0, abs=0.01)  # so deep that it is exercised at once
    # a call on a high-yield asset is worth more than its European price
    assert american_price(100, 80, 1.0, 0.2, 0.01, 0.08, True) > pricing.bs_price(100, 80, 1.0, 0.2, 0.01, 0.08, True)


def test_greeks_agree_with_the_price():
    s, h = 450.0, 2.0  # wide enough to smooth the tree's small steps in S
    g = american_price_greeks(s, 460.0, 0.1, 0.2, 0.05, 0.013, False)
    up = american_price(s + h, 460.0, 0.1, 0.2, 0.05, 0.013, False)
    down = american_price(s - h, 460.0, 0.1, 0.2, 0.05, 0.013, False)
    assert g["delta"][0] == pytest.approx((up - down) / (2 * h), abs=0.01)
    assert g["gamma"][0] == pytest.approx((up - 2 * g["mid"][0] + down) / h**2, rel=0.15)
    assert g["theta"][0] < 0 and g["vega"][0] > 0


def test_expired_options_are_worth_their_intrinsic_value():
    g = american_price_greeks([440.0, 460.0], 450.0, [0.0, -1.0], 0.2, 0.05, 0.0, [False, True])
    assert list(g["mid"]) == [10.0, 10.0]

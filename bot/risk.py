"""Pre-trade guards that do not belong to any one strategy."""

from __future__ import annotations

from bot.broker.base import FatalBrokerError
from bot.domain import AccountSummary


def check_paper_account(account: AccountSummary, allow_live: bool) -> None:
    """Paper accounts only (IB paper account ids start with "D"), unless the config says
    `allow_live = true`."""
    if not account.is_paper and not allow_live:
        raise FatalBrokerError(
            f"account {account.account} is not a paper account; refusing to trade it "
            "(set bot.allow_live = true in the config to allow a live account)"
        )

"""Running unattended: IB's maintenance schedule, notifications, health and metrics over HTTP,
systemd's notify protocol. Wired by the CLI around the engine; the engine knows none of it
beyond `Engine.entry_blockers` and `Engine.last_loop`."""

"""A stand-in daemon for the supervisor's watchdog test: it pings its watchdog the way
the daemons do (singlewindow.daemon) for PING_FOR seconds, then hangs."""

from __future__ import annotations

import asyncio
import contextlib

from singlewindow import daemon

#: Seconds it keeps pinging before it hangs.
PING_FOR = 2.0


async def main() -> None:
    daemon.notify("READY=1")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(daemon.watchdog(), PING_FOR)
    await asyncio.sleep(3600)  # hung: no more pings


if __name__ == "__main__":
    asyncio.run(main())

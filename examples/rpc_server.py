# aRPC, the serving side: a lamp machine served over TCP on 127.0.0.1.
#
# It shows:
#   - `am.rpc.serve(mach, host, port, token=...)` exposing a machine with handlers
#     (its schema mixes in `am.rpc.STATE_SOURCE_SCHEMA`, for errors sent by clients),
#   - that remote mutations run the source's own handlers: `Brightness_enter` refuses
#     a level above 100, and the client's `add` then returns CANCELED,
#   - a change the server makes by itself (On forks a task that adds Warm a moment
#     later), which reaches every client as a clock push,
#   - `server.addr`, the address actually bound (port 0 picks a free one), printed
#     as the line `LISTENING <host> <port>` for whoever started this process.
#
# Run it:   python examples/rpc_server.py
#   It prints its address and exits after --lifetime seconds (3 by default, so that
#   running every example stays quick), or as soon as its stdin reaches EOF.
#   examples/rpc_client.py starts it as a child process and talks to it.
# Then try:
#   - in one terminal `python examples/rpc_server.py --port 7700 --lifetime 60`, in
#     another `python examples/rpc_client.py --addr 127.0.0.1:7700` (twice: the
#     second run finds the lamp where the first left it),
#   - `--token s3cret` here and no token on the client: it gets am.rpc.AuthError,
#   - `--host 0.0.0.0` without a token: serve() refuses to start (ValueError).
from __future__ import annotations

import argparse
import contextlib
import sys
import threading

import anyio
import anyio.from_thread
import anyio.lowlevel

import asyncmachine as am

LAMP_SCHEMA: dict[str, am.State] = {
    "Off": am.State(remove=["On"]),
    "On": am.State(remove=["Off"]),
    # set by the lamp itself, a moment after On
    "Warm": am.State(require=["On"]),
    # multi: every add with a new level activates it again
    "Brightness": am.State(multi=True, require=["On"]),
    **am.rpc.STATE_SOURCE_SCHEMA,
}
WARM_UP = 0.3  # seconds from On to Warm


def say(msg: str) -> None:
    print(f"server: {msg}", flush=True)


class Lamp:
    """The lamp's handlers; they run in this process, whoever asked for the change."""

    def __init__(self) -> None:
        self.level = 0

    def On_state(self, e: am.Event) -> None:
        say("switched on, warming up")
        mach = e.machine
        mach.fork(e, self.warm_up, mach, ctx=mach.new_state_ctx("On"))

    async def warm_up(self, mach: am.Machine) -> None:
        await anyio.sleep(WARM_UP)
        mach.add("Warm")
        say("warm")

    def Off_state(self, e: am.Event) -> None:
        self.level = 0
        say("switched off")

    def Brightness_enter(self, e: am.Event) -> bool:
        if level_of(e) is None:
            say(f"refused brightness {e.args.get('level')!r}")
            return False
        return True

    def Brightness_state(self, e: am.Event) -> None:
        self.level = level_of(e) or 0
        say(f"brightness {self.level}%")


def level_of(e: am.Event) -> int | None:
    """The brightness level in the args, if it is valid (0 to 100)."""
    level = e.args.get("level")
    if isinstance(level, int) and 0 <= level <= 100:
        return level
    return None


def watch_stdin(stop: anyio.Event) -> None:
    """Set *stop* once stdin reaches EOF (a daemon thread blocks on it)."""
    stdin = sys.stdin
    if stdin is None:  # no stdin at all: only the lifetime applies
        return
    token = anyio.lowlevel.current_token()

    def read() -> None:
        with contextlib.suppress(OSError, ValueError):
            for _ in stdin.buffer:
                pass
        with contextlib.suppress(RuntimeError):  # the event loop already ended
            anyio.from_thread.run_sync(stop.set, token=token)

    threading.Thread(target=read, name="stdin-watch", daemon=True).start()


async def main(args: argparse.Namespace) -> None:
    lamp = am.Machine(LAMP_SCHEMA, handlers=Lamp(), id="lamp")
    lamp.add("Off")
    stop = anyio.Event()
    watch_stdin(stop)
    async with (
        am.rpc.serve(lamp, args.host, args.port, token=args.token) as server,
        lamp,  # the lamp's runtime: the warm-up task runs in it
    ):
        host, port = server.addr
        print(f"LISTENING {host} {port}", flush=True)
        say(f"serving {lamp.id} {lamp} for {args.lifetime:g} s")
        with anyio.move_on_after(args.lifetime):
            await stop.wait()
        say(f"stopping: {lamp}, {len(server.sessions)} client(s) connected")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve a lamp machine over aRPC.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", default=None, help="a shared secret for clients")
    parser.add_argument(
        "--lifetime", type=float, default=3.0, help="exit after this many seconds"
    )
    return parser.parse_args()


if __name__ == "__main__":
    anyio.run(main, parse_args())

# Orchestrating a blocking API through states: downloads that run in worker threads.
#
# It shows:
#   - `Fetching_state` forking a task with `e.machine.fork(e, fn, ..., ctx=...)`, where
#     the ctx is the state context of Fetching: the task lives exactly as long as this
#     activation of Fetching,
#   - the blocking call running in a worker thread (`anyio.to_thread.run_sync`), so the
#     event loop and the machine stay responsive,
#   - the worker thread reporting progress with `add_threadsafe` (a plain `mach.add`
#     from that thread raises RuntimeError, shown at the start),
#   - cancellation: removing Fetching mid-download expires the state context, the task
#     is cancelled and the worker thread stops at its next chunk,
#   - a timeout (`anyio.fail_after`) turned into an error state, ErrTimeout,
#   - an exception in the forked task becoming the Exception state by itself.
#
# Run it:   python examples/blocking_api.py
# Then try:
#   - `--backend trio`: the same program on trio (anyio runs both),
#   - raise FETCH_TIMEOUT to 2.0 and watch slow.bin arrive instead of timing out,
#   - in `Fetching_state`, drop the `ctx=` of the fork: removing Fetching no longer
#     stops the download (step 2 then runs into the timeout),
#   - set `log_level=2` on the machine (logging is configured below) to see every
#     state change.
from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable

import anyio
import anyio.from_thread
import anyio.to_thread

import asyncmachine as am

CHUNK_KB = 64
FETCH_TIMEOUT = 0.4  # seconds a download may take
# The fake servers: url -> (chunks, seconds per chunk). missing.bin has no server.
SERVERS = {
    "small.bin": (4, 0.02),
    "big.iso": (20, 0.05),
    "slow.bin": (10, 0.15),
}


class States(am.Schema):
    """The machine's states; each attribute reads as its name (a str)."""

    Start = am.state()
    # One download at a time: Fetching and Fetched remove each other.
    Fetching = am.state(require=[Start], remove="Fetched")
    Fetched = am.state(remove=[Fetching])
    # Each progress report activates Progress again, so it is multi.
    Progress = am.state(multi=True, require=[Fetching])
    # A worker thread is running the blocking call.
    ThreadBusy = am.state()
    # A download ran out of time. Err* states require Exception, by convention.
    ErrTimeout = am.state(require=["Exception"], remove=[Fetching])


def blocking_download(url: str, on_chunk: Callable[[int, int], None]) -> bytes:
    """
    A stand-in for a blocking client library: no async, no timeout of its own.

    It calls ``on_chunk(done, total)`` after every chunk, in the calling thread.
    """
    if url not in SERVERS:
        raise FileNotFoundError(f"404: {url}")
    chunks, delay = SERVERS[url]
    data = bytearray()
    for n in range(1, chunks + 1):
        time.sleep(delay)  # the network
        data += b"\0" * CHUNK_KB * 1024
        on_chunk(n, chunks)
    return bytes(data)


async def fetch(mach: am.Machine, url: str) -> None:
    """The forked task: runs the blocking download in a worker thread."""

    def on_chunk(done: int, total: int) -> None:
        # This runs in the worker thread. It first checks the cancel flag that anyio
        # keeps for the task waiting on this thread: if the task was cancelled (its
        # state context expired, or the timeout below fired), this raises and the
        # download stops here.
        anyio.from_thread.check_cancelled()
        # Then it reports back. From this thread only the *_threadsafe methods work;
        # .result() waits until the event loop thread ran the mutation.
        mach.add_threadsafe(States.Progress, {"pct": 100 * done // total}).result(1)

    mach.add(States.ThreadBusy)
    try:
        with anyio.fail_after(FETCH_TIMEOUT):
            data = await anyio.to_thread.run_sync(blocking_download, url, on_chunk)
    except TimeoutError as err:
        # A timeout is expected: give it its own error state. Any other exception
        # leaves this task and becomes the Exception state (fork does that).
        mach.add_err_state(States.ErrTimeout, err, {"url": url})
        return
    finally:
        # Runs on success, error and cancellation alike, after the thread returned.
        mach.remove(States.ThreadBusy)
    mach.add(States.Fetched, {"url": url, "kib": len(data) // 1024})


class Handlers:
    """The machine's handlers; plain synchronous methods."""

    def Fetching_state(self, e: am.Event) -> None:
        url = str(e.args["url"])
        print(f"  Fetching_state: start {url} in a worker thread")
        mach = e.machine
        # The task is cancelled when this activation of Fetching ends: by remove,
        # by Fetched or ErrTimeout (which remove Fetching), or by dispose().
        mach.fork(e, fetch, mach, url, ctx=mach.new_state_ctx(States.Fetching))

    def Progress_state(self, e: am.Event) -> None:
        print(f"  Progress_state: {e.args['pct']}%")

    def Fetched_state(self, e: am.Event) -> None:
        print(f"  Fetched_state: {e.args['url']}, {e.args['kib']} KiB")

    def Fetching_end(self, e: am.Event) -> None:
        print("  Fetching_end: Fetching is inactive, its state context expired")

    def Exception_state(self, e: am.Event) -> None:
        print(f"  Exception_state: {e.args['err']!r}")


async def main() -> None:
    mach = am.Machine(States, handlers=Handlers(), id="fetcher")

    print("The machine is not bound to an event loop yet. `async with mach:` binds it")
    print("and starts its runtime, the task group that runs forked tasks.\n")
    async with mach:
        print("A plain add() from another thread now raises:")
        try:
            await anyio.to_thread.run_sync(mach.add, States.Start)
        except RuntimeError as err:
            print(f"  RuntimeError: {err}\n")
        mach.add(States.Start)

        print("1. Download small.bin and wait for Fetched:")
        mach.add(States.Fetching, {"url": "small.bin"})
        with anyio.fail_after(2):
            await mach.when(States.Fetched)
            await mach.when_not(States.ThreadBusy)
        print(f"  {mach}\n")

        print("2. Download big.iso, and remove Fetching once it reached 15%:")
        mach.add(States.Fetching, {"url": "big.iso"})
        with anyio.fail_after(2):
            await mach.when_args(States.Progress, {"pct": 15})
            print("  main: enough, remove(Fetching)")
            mach.remove(States.Fetching)
            # The task was cancelled; its worker thread finishes the chunk in hand,
            # sees the cancel flag and returns. Then the task removes ThreadBusy.
            await mach.when_not(States.ThreadBusy)
        print(f"  the worker thread stopped; {mach}\n")

        print(f"3. Download slow.bin with a {FETCH_TIMEOUT}s timeout:")
        mach.add(States.Fetching, {"url": "slow.bin"})
        with anyio.fail_after(5):
            # Fetched and ErrTimeout both remove Fetching: wait for either.
            await mach.when_not(States.Fetching)
            await mach.when_not(States.ThreadBusy)
        print(f"  {mach}, mach.err() = {mach.err()!r}")
        mach.remove([States.ErrTimeout, "Exception"])
        print(f"  after remove(ErrTimeout, Exception): {mach}\n")

        print("4. Download missing.bin: the blocking call raises in the thread:")
        mach.add(States.Fetching, {"url": "missing.bin"})
        with anyio.fail_after(2):
            await mach.when_err()
            await mach.when_not(States.ThreadBusy)
        print(f"  {mach}")
        mach.remove([States.Fetching, "Exception"])
        print(f"  after remove(Fetching, Exception): {mach}\n")

        print("5. Download big.iso and leave `async with mach:` at 5%:")
        mach.add(States.Fetching, {"url": "big.iso"})
        with anyio.fail_after(2):
            await mach.when_args(States.Progress, {"pct": 5})
    print("  Leaving the block cancelled the task and waited for it and its thread.")
    print(f"  No task runs, but the states stay as they were: {mach}\n")

    print("dispose() removes Start first, which Fetching requires:")
    mach.dispose()
    print(f"  is_disposed: {mach.is_disposed}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A blocking API driven by states.")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    cli = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="  log: %(message)s", stream=sys.stdout
    )
    anyio.run(main, backend=cli.backend)

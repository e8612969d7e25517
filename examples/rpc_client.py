# aRPC, the client side: drive the lamp of examples/rpc_server.py from another process.
#
# It shows:
#   - starting the server as a child process (`sys.executable`) and reading its
#     `LISTENING <host> <port>` line; its output is shown here, indented,
#   - `async with am.rpc.Client(addr) as client:`, which returns after the handshake
#     with `client.netmach`, a local mirror of the lamp, and `client.mach`, the
#     connection's own states (Connected, HandshakeDone, Ready, ...),
#   - remote mutations (`await nm.add(...)`) that return the lamp's result, with the
#     mirror already updated when they return; a refused one returns CANCELED,
#   - local reads (`nm.is_active`, `str(nm)`) and a local wait (`await nm.when(...)`)
#     woken by a clock push, when the lamp changes by itself,
#   - a remote wait, `await nm.when_args(...)`, matched on the lamp's side,
#   - stopping the server cleanly: closing its stdin makes it exit.
#
# Run it:   python examples/rpc_client.py
# Then try:
#   - `python examples/rpc_server.py --port 7700 --lifetime 60` in another terminal,
#     then `python examples/rpc_client.py --addr 127.0.0.1:7700`, a few times,
#   - the same with `--token s3cret` on the server only: the client gets
#     am.rpc.AuthError; pass `--token s3cret` to both and it works again,
#   - `--addr 127.0.0.1:1`, where nothing listens: am.rpc.RpcConnectionError after
#     the connection retries.
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream
from anyio.streams.buffered import BufferedByteReceiveStream

import asyncmachine as am

SERVER = Path(__file__).with_name("rpc_server.py")
SERVER_LIFETIME = 30.0  # seconds; the server exits earlier when we close its stdin
TIMEOUT = 20.0  # seconds for the whole conversation


def say(msg: str) -> None:
    print(f"client: {msg}", flush=True)


async def use_lamp(addr: tuple[str, int], token: str | None) -> None:
    """The conversation with the lamp."""
    async with am.rpc.Client(addr, token=token, id="wall-switch") as client:
        nm = client.netmach
        say(f"connected to {nm.remote_id!r} at {addr[0]}:{addr[1]}")
        say(f"client.mach: {client.mach.active_states()}")
        say(f"the mirror: {nm}, states {nm.state_names()}")

        res = await nm.add("On")  # remote: runs the lamp's handlers over there
        say(f"add On -> {res}; the mirror already shows it: {nm}")

        # A local wait: Warm is set by the lamp itself, the push wakes us.
        await nm.when("Warm")
        say(f"the lamp warmed up by itself (a clock push): {nm}")

        res = await nm.add("Brightness", {"level": 70})
        say(f"brightness 70 -> {res}, tick of Brightness {nm.tick('Brightness')}")
        res = await nm.add("Brightness", {"level": 150})
        say(f"brightness 150 -> {res} (Brightness_enter refused it)")

        # A remote wait: the lamp matches the args of its own Brightness_state.
        async with anyio.create_task_group() as tg:

            async def dim_later() -> None:
                await anyio.sleep(0.1)
                await nm.add("Brightness", {"level": 30})

            tg.start_soon(dim_later)
            matched = await nm.when_args("Brightness", {"level": 30})
        say(f"when_args(Brightness, level=30) -> {matched}")

        res = await nm.add("Off")
        say(f"add Off -> {res}: {nm.string_all()}")
    say(f"closed; client.mach: {client.mach.active_states()}")


async def read_line(lines: BufferedByteReceiveStream) -> str | None:
    """The next line of the server's output, or None at its end."""
    try:
        return (await lines.receive_until(b"\n", 65536)).decode()
    except (anyio.IncompleteRead, anyio.EndOfStream):
        return None


async def wait_listening(lines: BufferedByteReceiveStream) -> tuple[str, int]:
    """Show the server's output up to its `LISTENING host port` line; the address."""
    while (line := await read_line(lines)) is not None:
        if line.startswith("LISTENING "):
            _, host, port = line.split()
            return host, int(port)
        print(f"    | {line}", flush=True)
    raise RuntimeError("the server exited before it listened")


async def show_output(lines: BufferedByteReceiveStream) -> None:
    """Show the server's output, indented, until it exits."""
    while (line := await read_line(lines)) is not None:
        print(f"    | {line}", flush=True)


async def with_child_server(token: str | None) -> int:
    """Start rpc_server.py, talk to it, stop it; its exit code."""
    cmd = [sys.executable, str(SERVER), "--lifetime", str(SERVER_LIFETIME)]
    if token is not None:
        cmd += ["--token", token]
    say(f"starting {SERVER.name}")
    async with await anyio.open_process(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as proc:
        assert proc.stdin is not None
        assert isinstance(proc.stdout, ByteReceiveStream)
        lines = BufferedByteReceiveStream(proc.stdout)
        with anyio.fail_after(TIMEOUT):
            addr = await wait_listening(lines)
            async with anyio.create_task_group() as tg:
                tg.start_soon(show_output, lines)
                await use_lamp(addr, token)
                await proc.stdin.aclose()  # EOF on its stdin: the server exits
                code = await proc.wait()
    say(f"the server exited with code {code}")
    return code


async def main(args: argparse.Namespace) -> int:
    try:
        if args.addr is None:
            return await with_child_server(args.token)
        host, _, port = args.addr.rpartition(":")
        with anyio.fail_after(TIMEOUT):
            await use_lamp((host, int(port)), args.token)
    except am.rpc.AuthError as err:
        say(f"refused: {err!r}")
        return 1
    except am.rpc.RpcConnectionError as err:
        say(f"no connection: {err}")
        return 1
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Drive the aRPC lamp server.")
    parser.add_argument(
        "--addr",
        help="host:port of a running rpc_server.py (default: start one here)",
    )
    parser.add_argument("--token", default=None, help="the server's shared secret")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(anyio.run(main, parse_args()))

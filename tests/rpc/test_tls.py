"""aRPC over TLS with a throwaway CA (trustme): serving, trust failures, reconnects."""

from __future__ import annotations

import ssl

import anyio
import pytest
import trustme
from anyio.streams.tls import TLSAttribute
from faultproxy import FaultProxy, fast_client, new_source, wait_handshakes

import asyncmachine as am

pytestmark = pytest.mark.anyio

LIMIT = 5  # seconds: every test body runs under this
FAST_FAIL = am.rpc.RetryPolicy(retries=1, delay=0.01, max_delay=0.02)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A certificate authority made for this module."""
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ctx(ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 signed by the test CA."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    """A client context that trusts the test CA (and verifies host names)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(ctx)
    return ctx


async def test_tls_round_trip(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    """Over TLS: handshake, remote mutation, push; both ends really speak TLS."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, ssl_context=server_ctx, push_interval=0) as server,
            fast_client(server.addr, ssl_context=client_ctx) as client,
        ):
            nm = client.netmach
            assert await nm.add(["Foo", "Bar"]) == am.Result.EXECUTED
            src.add("B")
            assert await nm.when("B")
            assert nm.clock() == src.clock()
            (session,) = server.sessions.values()
            assert session.link.stream.extra(TLSAttribute.cipher) is not None
            link = client._link
            assert link is not None
            cert = link.stream.extra(TLSAttribute.peer_certificate)
            assert cert is not None
            assert ("IP Address", "127.0.0.1") in cert["subjectAltName"]


async def test_plain_client_against_tls_server_fails_cleanly(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    """A plain-TCP client gets RpcConnectionError (not a group); the server records
    ErrNetwork and keeps serving TLS clients."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with am.rpc.serve(src, ssl_context=server_ctx) as server:
            plain = fast_client(server.addr, connect_retry=FAST_FAIL)
            with pytest.raises(am.rpc.RpcConnectionError) as info:
                async with plain:
                    pass
            assert not isinstance(info.value, BaseExceptionGroup)
            assert not plain.mach.is_active("Ready")
            assert server.mach.is_active("ErrNetwork")
            assert server.sessions == {}
            async with fast_client(server.addr, ssl_context=client_ctx) as client:
                assert await client.netmach.add("D") == am.Result.EXECUTED


async def test_client_hanging_up_during_tls_handshake_leaves_server_up(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    """A TCP connection closed before the TLS handshake ends costs only itself."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with am.rpc.serve(src, ssl_context=server_ctx) as server:
            raw = await anyio.connect_tcp(*server.addr)
            await raw.aclose()
            await server.mach.when("ErrNetwork")
            async with fast_client(server.addr, ssl_context=client_ctx) as client:
                assert await client.netmach.add("D") == am.Result.EXECUTED


@pytest.mark.parametrize("mistake", ["untrusted", "hostname"])
async def test_unverifiable_server_fails_cleanly(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, mistake: str
) -> None:
    """An untrusted CA or a wrong host name: RpcConnectionError, server unharmed."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with am.rpc.serve(src, ssl_context=server_ctx) as server:
            if mistake == "untrusted":
                bad = fast_client(
                    server.addr,
                    ssl_context=ssl.create_default_context(),  # system CAs only
                    connect_retry=FAST_FAIL,
                )
            else:
                bad = fast_client(
                    server.addr,
                    ssl_context=client_ctx,
                    tls_hostname="other.example",
                    connect_retry=FAST_FAIL,
                )
            with pytest.raises(am.rpc.RpcConnectionError) as info:
                async with bad:
                    pass
            assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
            assert bad.mach.is_active("ErrNetwork")
            async with fast_client(server.addr, ssl_context=client_ctx) as client:
                assert await client.netmach.add("D") == am.Result.EXECUTED


async def test_mutual_tls(ca: trustme.CA, client_ctx: ssl.SSLContext) -> None:
    """A server requiring client certificates serves a client holding one and
    refuses one without it, cleanly."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(server_ctx)
    with_cert = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(with_cert)
    ca.issue_cert("client.example").configure_cert(with_cert)
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with am.rpc.serve(src, ssl_context=server_ctx) as server:
            with pytest.raises(am.rpc.RpcConnectionError):
                async with fast_client(
                    server.addr, ssl_context=client_ctx, connect_retry=FAST_FAIL
                ):
                    pass
            async with fast_client(server.addr, ssl_context=with_cert) as client:
                assert await client.netmach.add("D") == am.Result.EXECUTED
                (session,) = server.sessions.values()
                peer = session.link.stream.extra(TLSAttribute.peer_certificate)
                assert peer is not None
                assert ("DNS", "client.example") in peer["subjectAltName"]


async def test_tls_reconnect_after_connection_loss(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    """A TLS connection reset mid-session: the client reconnects over TLS and its
    mirror catches up with what changed meanwhile."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, ssl_context=server_ctx) as server,
            FaultProxy(server.addr, raw=True) as proxy,
            fast_client(
                proxy.addr, ssl_context=client_ctx, tls_hostname="127.0.0.1"
            ) as client,
        ):
            proxy.refuse = True
            await proxy.kill_all()
            await client.mach.when("Disconnected")
            src.add("Bar")
            proxy.refuse = False
            await wait_handshakes(client, 2)
            assert client.netmach.clock() == src.clock()
            assert await client.netmach.add("D") == am.Result.EXECUTED
            assert proxy.accepted == 2

"""`anyws.testing`: the scripted server and the fault-injecting proxy, each behaviour seen
from the anyws client over real loopback sockets, on both backends."""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import time

import anyio
import anyio.abc
import pytest

import anyws
from anyws import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidMessage,
    InvalidStatus,
)
from anyws.testing import (
    Accept,
    ClientGone,
    RawResponse,
    Reject,
    ServerConnection,
    close_frame,
    fault_proxy,
    frame,
    serve,
)
from anyws.testing._proxy import Direction, _Link, _Pipe

from .conftest import memory_pair

pytestmark = pytest.mark.anyio

HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


# -- the server ---------------------------------------------------------------------------


async def test_echo_and_the_request_the_server_saw() -> None:
    async with serve() as server:
        async with anyws.connect(
            server.uri + "room?x=1", additional_headers={"X-Test": "1"}, subprotocols=["chat", "v2"]
        ) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01")
            assert await ws.recv() == b"\x00\x01"
            assert ws.subprotocol == "chat"  # the first offered, by default
            assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        (connection,) = server.connections
        assert server.requests == [connection.request]
        assert connection.request.path == "/room?x=1"
        assert connection.request.headers["x-test"] == "1"
        assert connection.request.headers["Sec-WebSocket-Protocol"] == "chat, v2"
        assert "permessage-deflate" in connection.request.headers["Sec-WebSocket-Extensions"]
        assert connection.request.headers["Host"] == server.uri[5:-1]
        await connection.wait_closed()
        assert (connection.close_code, connection.closed) == (1000, True)
        assert "closed 1000" in repr(connection)
        assert server.uri in repr(server)


async def test_a_burst_then_a_close_code_reaches_the_client() -> None:
    async def burst(connection: ServerConnection) -> None:
        for index in range(200):
            await connection.send(f"message {index}")
        await connection.close(4000, "done")

    received = []
    async with serve(burst) as server, anyws.connect(server.uri, max_queue=2) as ws:
        with contextlib.suppress(ConnectionClosedError):
            while True:
                received.append(await ws.recv())
    assert received == [f"message {index}" for index in range(200)]
    assert (ws.close_code, ws.close_reason) == (4000, "done")
    assert server.connections[0].close_code == 4000  # our reply echoes the code


async def test_fragmented_messages_arrive_whole_or_as_fragments() -> None:
    async def fragments(connection: ServerConnection) -> None:
        await connection.send_fragments(["he", "ll", "o"])
        await connection.send_fragments([b"ab", b"cd"])
        await connection.recv()  # until the client says it is done

    async with serve(fragments) as server, anyws.connect(server.uri) as ws:
        assert await ws.recv() == "hello"
        # Both frames may come in one read, and are then given at once.
        assert [piece async for piece in ws.recv_streaming()] in ([b"ab", b"cd"], [b"abcd"])
        await ws.send("done")


async def test_compression_can_be_refused_and_subprotocols_chosen() -> None:
    accepts = [(Accept(compression=False), "chat"), (Accept("v2"), "v2"), (Accept(None), None)]
    for accept, subprotocol in accepts:
        async with (
            serve(handshake=accept) as server,
            anyws.connect(server.uri, subprotocols=["chat", "v2"]) as ws,
        ):
            assert ws.subprotocol == subprotocol
            assert ("Sec-WebSocket-Extensions" in ws.response.headers) is accept.compression


async def test_an_oversized_message_closes_with_1009() -> None:
    async def big(connection: ServerConnection) -> None:
        await connection.send("x" * 5000)
        await connection.wait_closed()

    async with serve(big) as server, anyws.connect(server.uri, max_size=1000) as ws:
        with pytest.raises(ConnectionClosedError) as caught:
            await ws.recv()
    assert caught.value.sent is not None
    assert caught.value.sent.code == 1009
    assert server.connections[0].close_code == 1009


@pytest.mark.parametrize("ending", ["drop", "abort"])
async def test_a_dropped_or_reset_connection_is_1006(ending: str) -> None:
    checked = anyio.Event()  # a handler still running when the server exits is cancelled

    async def end(connection: ServerConnection) -> None:
        await connection.send("last")
        await getattr(connection, ending)()
        with pytest.raises(ClientGone):
            await connection.send("too late")
        checked.set()

    async with serve(end) as server, anyws.connect(server.uri) as ws:
        assert await ws.recv() == "last"
        with pytest.raises(ConnectionClosedError):
            await ws.recv()
        await checked.wait()
    assert ws.close_code == 1006


async def test_unanswered_pings_fail_the_connection_with_1011() -> None:
    async def silent(connection: ServerConnection) -> None:
        connection.answer_pings = False
        await connection.wait_closed()

    async with serve(silent) as server:
        async with anyws.connect(server.uri, ping_interval=0.05, ping_timeout=0.05) as ws:
            with pytest.raises(ConnectionClosedError) as caught:
                await ws.recv()
        assert caught.value.sent is not None
        assert caught.value.sent.code == 1011
        assert server.connections[0].pings_received  # they arrived, unanswered


async def test_a_server_that_stops_reading_leaves_the_client_close_timeout() -> None:
    async def stop(connection: ServerConnection) -> None:
        connection.stop_reading()
        await connection.wait_closed()

    async with serve(stop) as server:
        started = time.monotonic()
        async with anyws.connect(server.uri, close_timeout=0.2) as ws:
            await ws.send("unread")
        assert time.monotonic() - started >= 0.2
        assert ws.close_code == 1006  # no reply to our close frame came
        connection = server.connections[0]
        connection.resume_reading()
        assert await connection.recv() == "unread"  # it was there all along
        with pytest.raises(ClientGone):
            await connection.recv()


async def test_the_server_pings_and_records_pongs() -> None:
    async def pinger(connection: ServerConnection) -> None:
        pong = await connection.ping(b"tick")
        await pong.wait()
        assert pong.arrived
        await connection.send(f"got {sorted(connection.pongs_received)}")
        connection.stop_reading()  # so that no pong can arrive
        unanswered = await connection.ping(b"never answered")
        await connection.abort()
        with pytest.raises(ClientGone, match="before the pong"):
            await unanswered.wait()
        assert not unanswered.arrived
        checked.set()

    checked = anyio.Event()
    async with serve(pinger) as server, anyws.connect(server.uri) as ws:
        await ws.pong(b"unsolicited")
        await ws.ping(b"tock")
        assert await ws.recv() == "got [b'tick', b'unsolicited']"
        with pytest.raises(ConnectionClosedError):
            await ws.recv()
        await checked.wait()
    assert server.connections[0].pings_received == [b"tock"]


async def test_rejected_handshake_carries_status_headers_and_body() -> None:
    refusal = Reject(429, [("Retry-After", "3")], b"slow down")
    async with serve(handshake=refusal) as server:
        with pytest.raises(InvalidStatus) as caught:
            async with anyws.connect(server.uri):
                pass
    response = caught.value.response
    assert (response.status_code, response.body) == (429, b"slow down")
    assert response.headers["Retry-After"] == "3"
    assert server.connections == []
    assert len(server.requests) == 1


async def test_a_handshake_answer_chosen_per_request() -> None:
    def by_path(request: anyws.Request) -> Accept | Reject:
        return Accept() if request.path == "/ok" else Reject(404)

    async with serve(handshake=by_path) as server:
        async with anyws.connect(server.uri + "ok") as ws:
            await ws.send("fine")
            assert await ws.recv() == "fine"
        with pytest.raises(InvalidStatus, match="404"):
            async with anyws.connect(server.uri + "missing"):
                pass


async def test_garbage_or_no_answer_to_the_handshake() -> None:
    async with serve(handshake=RawResponse(b"HTTP/1.1 200 OK\r\nnot a header\r\n\r\n")) as server:
        with pytest.raises(InvalidMessage):
            async with anyws.connect(server.uri):
                pass
    async with serve(handshake=RawResponse(b"")) as server:
        with pytest.raises(TimeoutError):
            async with anyws.connect(server.uri, open_timeout=0.1):
                pass


async def test_hand_made_frames_reach_the_client_as_they_are() -> None:
    async def bad(connection: ServerConnection) -> None:
        await connection.send_raw(frame(0x1, b"ok"))
        await connection.send_raw(frame(0x3, b"reserved opcode"))
        await connection.wait_closed()

    async with serve(bad) as server, anyws.connect(server.uri) as ws:
        assert await ws.recv() == "ok"
        with pytest.raises(ConnectionClosedError) as caught:
            await ws.recv()
    assert caught.value.sent is not None
    assert caught.value.sent.code == 1002
    assert server.connections[0].close_code == 1002


async def test_a_close_frame_built_by_hand() -> None:
    async def closing(connection: ServerConnection) -> None:
        await connection.send_raw(close_frame(None))
        await connection.wait_closed()

    async with serve(closing) as server, anyws.connect(server.uri) as ws:
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
    assert ws.close_code == 1005


def test_frame_builds_every_length_form_and_refuses_impossible_ones() -> None:
    assert frame(0x2, b"x" * 125)[:2] == b"\x82\x7d"
    assert frame(0x2, b"x" * 126)[:4] == b"\x82\x7e\x00\x7e"
    assert frame(0x2, b"x" * 2**16)[:10] == b"\x82\x7f" + (2**16).to_bytes(8, "big")
    assert frame(0x1, b"", fin=False, rsv=4) == b"\x41\x00"
    assert close_frame(1000, "bye") == b"\x88\x05\x03\xe8bye"
    assert repr(Accept()) == "Accept(subprotocol=FIRST_OFFERED, compression=True, headers=())"
    with pytest.raises(ValueError, match="opcode"):
        frame(16)
    with pytest.raises(ValueError, match="rsv"):
        frame(1, rsv=8)


async def test_a_test_drives_the_connection_itself() -> None:
    async with serve(None) as server, anyws.connect(server.uri) as ws:
        connection = await server.accept()
        await ws.send("from the client")
        assert await connection.recv() == "from the client"
        await connection.send("from the server")
        assert await ws.recv() == "from the server"
        await connection.close(1001, "going away")
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
        assert ws.close_code == 1001
        await connection.close()  # closed already: nothing to do
        await connection.drop()
        await connection.abort()
    with pytest.raises(RuntimeError, match="stopped"):
        await server.accept()
    client_stream, server_stream = memory_pair()
    async with client_stream, server_stream:
        with pytest.raises(RuntimeError, match="stopped"):
            server.attach(server_stream)


async def test_close_while_not_reading_closes_tcp_at_once() -> None:
    async with serve(None) as server, anyws.connect(server.uri) as ws:
        connection = await server.accept()
        connection.stop_reading()
        connection.stop_reading()  # twice is the same
        await connection.close(1000)
        assert connection.closed
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
        assert connection.close_code == 1006  # the client's reply was never read


async def test_handler_errors_reach_the_test_when_the_server_exits() -> None:
    async def broken(connection: ServerConnection) -> None:
        await connection.recv()
        raise LookupError("handler bug")

    async def trigger() -> None:
        async with serve(broken) as server, anyws.connect(server.uri) as ws:
            await ws.send("trigger")
            with pytest.raises(ConnectionClosedError):
                await ws.recv()  # the server dropped the connection

    with pytest.raises(LookupError, match="handler bug"):
        await trigger()


async def test_a_handler_may_let_client_gone_escape() -> None:
    async def strict_echo(connection: ServerConnection) -> None:
        while True:  # recv() raises ClientGone once the client left
            await connection.send(await connection.recv())

    async with serve(strict_echo) as server, anyws.connect(server.uri) as ws:
        await ws.send("once")
        assert await ws.recv() == "once"
    await server.connections[0].wait_closed()


async def test_misused_sends_are_refused_clearly() -> None:
    async def misuse(connection: ServerConnection) -> None:
        with pytest.raises(TypeError, match="not int"):
            await connection.send(3)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="all str or all bytes"):
            await connection.send_fragments(["a", b"b"])
        with pytest.raises(ValueError, match="non-empty"):
            await connection.send_fragments([])
        await connection.send("checked")

    async with serve(misuse) as server, anyws.connect(server.uri) as ws:
        assert await ws.recv() == "checked"


async def test_attach_serves_an_in_memory_stream() -> None:
    async with serve() as server:
        client_stream, server_stream = memory_pair()
        server.attach(server_stream)
        async with anyws.connect("ws://memory/", stream=client_stream) as ws:
            await ws.send("in memory")
            assert await ws.recv() == "in memory"


async def test_a_unix_socket_server(tmp_path: anyio.Path) -> None:
    path = str(tmp_path / "ws.sock")
    async with serve(unix_path=path) as server:
        assert (server.unix_path, server.port, server.uri) == (path, 0, "ws://localhost/")
        async with anyws.unix_connect(path, server.uri) as ws:
            await ws.send("over unix")
            assert await ws.recv() == "over unix"
        with pytest.raises(ValueError, match="Unix socket"):
            async with fault_proxy(server):
                pass


async def test_a_client_that_breaks_the_protocol_is_failed_with_1002() -> None:
    async with serve() as server, await anyio.connect_tcp("127.0.0.1", server.port) as tcp:
        await tcp.send(HANDSHAKE)
        response = b""
        while b"\r\n\r\n" not in response:
            response += await tcp.receive()
        await tcp.send(frame(0x1, b"unmasked"))  # RFC 6455 §5.1: clients must mask
        received = b""
        with contextlib.suppress(anyio.EndOfStream):
            while True:
                received += await tcp.receive()
        assert received[:1] == b"\x88"
        assert received[2:4] == (1002).to_bytes(2, "big")
        assert server.connections[0].protocol_error
        assert server.connections[0].close_code == 1006


async def test_frames_sent_with_the_handshake_are_not_missed() -> None:
    async with serve() as server, await anyio.connect_tcp("127.0.0.1", server.port) as tcp:
        masked_text = b"\x81\x85\x00\x00\x00\x00hello"  # a zero mask keeps the payload
        await tcp.send(HANDSHAKE + masked_text)
        received = b""
        while not received.endswith(b"\x81\x05hello"):
            received += await tcp.receive()


async def test_a_client_that_vanishes_unnoticed_while_the_server_is_not_reading() -> None:
    async with serve(None) as server:
        client_stream, server_stream = memory_pair()
        server.attach(server_stream)
        async with anyws.connect("ws://memory/", stream=client_stream, close_timeout=0):
            connection = await server.accept()
            connection.stop_reading()
        with pytest.raises(ClientGone, match="dropped"):
            await connection.send("to nobody")
        with pytest.raises(ClientGone, match="closed"):
            await connection.send("still nobody")


async def test_a_client_that_leaves_before_the_handshake() -> None:
    async with serve() as server:
        async with await anyio.connect_tcp("127.0.0.1", server.port):
            pass
        tcp = await anyio.connect_tcp("127.0.0.1", server.port)
        await tcp.send(b"GET / HTTP/1.1\r\n")
        await tcp.aclose()
    assert server.requests == []


# -- the proxy ----------------------------------------------------------------------------


async def echo_through(uri: str, messages: list[str | bytes]) -> None:
    async with anyws.connect(uri) as ws:
        for message in messages:
            await ws.send(message)
            assert await ws.recv() == message


async def test_the_proxy_forwards_both_ways() -> None:
    async with serve() as server, fault_proxy(server) as proxy:
        await echo_through(proxy.uri, ["through", b"the proxy"])
        assert proxy.accepted == 1
        assert proxy.to_server.bytes_forwarded > proxy.to_client.bytes_forwarded > 0
        assert str(server.port) in repr(proxy)
        assert "to_server" in repr(proxy.to_server)


async def test_one_byte_at_a_time_and_random_splits_change_nothing() -> None:
    messages: list[str | bytes] = ["é" * 300, b"\x00" * 70000, "short"]
    async with serve() as server, fault_proxy(("127.0.0.1", server.port)) as proxy:
        proxy.to_client.chunk_size = 1
        proxy.to_server.split = random.Random(7)
        await echo_through(proxy.uri, messages[::2])
        proxy.to_client.chunk_size = None
        proxy.to_client.split = random.Random(8)
        await echo_through(proxy.uri, messages)


async def test_delay_and_bandwidth_slow_the_traffic_down() -> None:
    async with serve() as server, fault_proxy(server) as proxy:
        proxy.to_client.delay = 0.05
        proxy.to_server.bandwidth = 100_000  # the handshake alone takes > 2 ms
        started = time.monotonic()
        await echo_through(proxy.uri, ["slow"])
        assert time.monotonic() - started >= 0.1  # the 101 response and the echo


async def test_a_stall_holds_bytes_until_resumed_or_for_a_while() -> None:
    async with serve() as server, fault_proxy(server) as proxy, anyws.connect(proxy.uri) as ws:
        proxy.to_client.stall()
        await ws.send("held")
        with anyio.move_on_after(0.1) as waited:
            await ws.recv()
        assert waited.cancelled_caught
        proxy.to_client.resume()
        assert await ws.recv() == "held"
        proxy.to_server.stall(0.05)
        started = time.monotonic()
        await ws.send("held briefly")
        assert await ws.recv() == "held briefly"
        assert time.monotonic() - started >= 0.04  # held, then let go on its own


async def test_a_blackhole_accepts_and_never_answers() -> None:
    async with serve() as server, fault_proxy(server) as proxy:
        proxy.blackhole = True
        with pytest.raises(TimeoutError):
            async with anyws.connect(proxy.uri, open_timeout=0.1):
                pass
        assert server.requests == []
        assert proxy.accepted == 1


async def test_reset_cuts_live_connections() -> None:
    async with serve(None) as server, fault_proxy(server) as proxy:
        async with anyws.connect(proxy.uri) as ws:
            connection = await server.accept()
            await proxy.reset()
            with pytest.raises(ConnectionClosedError):
                await ws.recv()
            await connection.wait_closed()
        assert ws.close_code == connection.close_code == 1006


async def test_reset_mid_frame_delivers_nothing_of_the_message() -> None:
    async with serve(None) as server, fault_proxy(server) as proxy:
        async with anyws.connect(proxy.uri, compression=None) as ws:
            connection = await server.accept()
            before = proxy.to_client.bytes_forwarded
            proxy.to_client.chunk_size = 2
            proxy.to_client.reset_after(3)  # the header and one byte of the payload
            await connection.send("cut short")
            with pytest.raises(ConnectionClosedError):
                await ws.recv()
        assert proxy.to_client.bytes_forwarded == before + 3


async def test_reset_before_any_byte() -> None:
    async with serve(None) as server, fault_proxy(server) as proxy:
        async with anyws.connect(proxy.uri) as ws:
            connection = await server.accept()
            proxy.to_server.reset_after(0)
            await ws.send("never arrives")  # written: the proxy resets when it reads it
            with pytest.raises(ConnectionClosedError):
                await ws.recv()
            await connection.wait_closed()
        assert connection.close_code == 1006


async def test_half_close_toward_the_server() -> None:
    async with (
        serve(None) as server,
        fault_proxy(server) as proxy,
        anyws.connect(proxy.uri, close_timeout=0.1) as ws,
    ):
        connection = await server.accept()
        await proxy.to_server.half_close()
        await connection.wait_closed()  # EOF: it closed its end
        assert connection.close_code == 1006
        await ws.send("discarded")  # the client's side still accepts writes
        with pytest.raises(ConnectionClosedError):
            await ws.recv()


async def test_an_unreachable_target_closes_the_client_connection(
    unused_tcp_port: int,
) -> None:
    async with fault_proxy(("127.0.0.1", unused_tcp_port)) as proxy:
        with pytest.raises(ConnectionResetError):
            async with anyws.connect(proxy.uri):
                pass


def test_faults_are_validated() -> None:
    async def check() -> None:
        async with serve() as server, fault_proxy(server) as proxy:
            direction = proxy.to_server
            for name, value in [
                ("delay", -1),
                ("delay", float("nan")),
                ("delay", float("inf")),
                ("bandwidth", 0),
                ("chunk_size", 0),
                ("chunk_size", 1.5),
            ]:
                with pytest.raises(ValueError, match=name):
                    setattr(direction, name, value)
            with pytest.raises(ValueError, match="seconds"):
                direction.stall(-1)
            with pytest.raises(ValueError, match="count"):
                direction.reset_after(-1)
            direction.delay, direction.bandwidth, direction.chunk_size = 0.5, 10.0, 2
            assert (direction.delay, direction.bandwidth, direction.chunk_size) == (0.5, 10, 2)

    anyio.run(check)
    anyio.run(check, backend="trio")


async def test_nothing_outlives_the_blocks() -> None:
    async with serve() as server, fault_proxy(server) as proxy:
        tcp = await anyio.connect_tcp("127.0.0.1", proxy.port)
        await tcp.send(HANDSHAKE)
        assert b" 101 " in await tcp.receive()
        ports = server.port, proxy.port
    # The blocks closed every socket they owned: the client's connection ended and the
    # ports are free again.
    async with tcp:
        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            await tcp.receive()
    for port in ports:
        with socket.socket() as sock:
            # Linux refuses the bind, even with SO_REUSEADDR, while a socket listens.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))


async def test_a_pipe_stops_when_its_destination_vanished_or_was_shut_down() -> None:
    # Which end of a proxied connection notices a vanished peer first is up to the
    # kernel's timing; each pipe's part is checked here on its own, over memory streams.
    client, client_peer = memory_pair()
    upstream, upstream_peer = memory_pair()
    link = _Link(client, upstream)  # type: ignore[arg-type]
    pipe = _Pipe(Direction("to_client"), upstream, client, link)
    await pipe.send_eof()
    assert await pipe._write(b"after EOF") is True  # discarded: the direction is shut
    await client_peer.aclose()
    pipe = _Pipe(Direction("to_client"), upstream, client, link)
    with anyio.CancelScope() as scope, link.scope:
        assert await pipe._write(b"to nobody") is False
    assert scope.cancel_called is False
    assert link.scope.cancel_called
    await upstream_peer.aclose()


async def test_shutting_down_a_socket_the_peer_reset_is_not_an_error() -> None:
    # Found by the chaos suite: trio's shutdown() raises a bare OSError (ENOTCONN) on a
    # socket the peer reset; the proxy's FIN forwarding and the server's drop() use it.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        stream = await anyio.connect_tcp("127.0.0.1", listener.getsockname()[1])
        peer, _ = listener.accept()
    async with stream:
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # RST
        with contextlib.suppress(anyio.BrokenResourceError, anyio.EndOfStream):
            await stream.receive()  # the RST has arrived
        pipe = _Pipe(Direction("to_client"), stream, stream, _Link(stream, stream))
        await pipe.send_eof()


async def test_an_error_in_the_block_comes_out_as_itself() -> None:
    with pytest.raises(KeyError):
        async with serve():
            raise KeyError("from the test")
    async with serve() as server:
        with pytest.raises(KeyError):
            async with fault_proxy(server):
                raise KeyError("from the test")


async def test_waiting_for_the_clients_pings() -> None:
    async with serve(None) as server, anyws.connect(server.uri, ping_interval=0.01) as ws:
        connection = await server.accept()
        keepalive = await connection.wait_ping()
        assert len(keepalive) == 4  # anyws's keepalive payload: 4 random bytes
        await ws.ping(b"mine")
        while await connection.wait_ping() != b"mine":
            pass
        await connection.abort()
        with pytest.raises(ClientGone):
            await connection.wait_ping()


async def test_a_write_waiting_while_drop_sends_eof_is_refused() -> None:
    # Found by the chaos suite: the server's reader answered a ping after drop() had sent
    # EOF (it checked before waiting for the write lock); asyncio raised RuntimeError.
    refused = []
    async with serve(None) as server, anyws.connect(server.uri) as ws:
        connection = await server.accept()

        async def send() -> None:
            with pytest.raises(ClientGone, match="dropped"):
                await connection.send("after EOF")
            refused.append(True)

        async with anyio.create_task_group() as tg:
            await connection._write_lock.acquire()  # drop() and the send queue behind it
            tg.start_soon(connection.drop)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(send)
            await anyio.wait_all_tasks_blocked()
            connection._write_lock.release()  # drop() goes first: it queued first
        with pytest.raises(ConnectionClosedError):
            await ws.recv()
    assert refused == [True]

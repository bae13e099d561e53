"""`python -m anyws URI` (also the `anyws` command): a WebSocket client for the terminal.

Interactive when stdin is a terminal: every incoming message is printed (text as is,
binary as its size and first bytes in hex), each line typed is sent, Ctrl-D closes
cleanly, Ctrl-C exits at once. In a pipe it sends each line of stdin, prints what comes
back, and exits once stdin ended and the closing handshake is done:
`echo hi | python -m anyws ws://localhost:8765/`.

Exit status: 0 after a normal close, 1 when connecting, the handshake or the connection
failed (the reason on stderr; a refused handshake with its status and the first lines of
its body), 2 for bad input (a malformed URI, an unknown option), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import queue
import signal
import ssl
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn, TextIO

import anyio
import anyio.abc

from ._client import _WebSocketContext, open_websocket
from ._connection import ClientConnection
from ._exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
    ProxyError,
)
from ._types import Data
from ._version import __version__

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

PROMPT = "> "
BINARY_PREVIEW = 32  # bytes of a binary message shown in hex
BODY_LINES = 5  # lines of a refused handshake's body shown


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line and status 2, not the usage block: the message says what is wrong.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The command line's options."""
    parser = _Parser(
        prog="anyws",
        description="Talk to a WebSocket server: type lines to send them, see what comes back.",
    )
    parser.add_argument("uri", help="ws:// or wss:// URI")
    parser.add_argument("--version", action="version", version=f"anyws {__version__}")
    parser.add_argument(
        "--backend", choices=("asyncio", "trio"), default="asyncio", help="event loop"
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        type=_header,
        metavar="NAME:VALUE",
        help="add a header to the handshake request (repeatable)",
    )
    parser.add_argument(
        "--subprotocol",
        action="append",
        default=[],
        metavar="NAME",
        help="offer a subprotocol (repeatable)",
    )
    parser.add_argument("--origin", help="the Origin header")
    parser.add_argument(
        "--no-compression", action="store_true", help="don't offer permessage-deflate"
    )
    proxy = parser.add_mutually_exclusive_group()
    proxy.add_argument("--proxy", help="HTTP(S) or SOCKS proxy URL (default: from the environment)")
    proxy.add_argument(
        "--no-proxy", action="store_true", help="connect directly, whatever the environment says"
    )
    parser.add_argument(
        "--insecure", action="store_true", help="don't verify the server's TLS certificate"
    )
    parser.add_argument("--cafile", help="trust the CA certificates in this PEM file")
    parser.add_argument(
        "--ping", type=_seconds, metavar="SECONDS", help="ping this often and print the latency"
    )
    parser.add_argument(
        "--linger",
        type=_seconds_or_zero,
        default=0.5,
        metavar="SECONDS",
        help="once stdin ended, wait until no message came for this long, then close "
        "(default 0.5: the replies to the last lines arrive first)",
    )
    parser.add_argument("--json", action="store_true", help="pretty-print JSON messages")
    parser.add_argument(
        "--verbose", action="store_true", help="log the connection and every frame on stderr"
    )
    return parser


def _header(value: str) -> tuple[str, str]:
    name, colon, content = value.partition(":")
    if not colon or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE, got {value!r}")
    return name.strip(), content.strip()


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {value!r}")
    return seconds


def _seconds_or_zero(value: str) -> float:
    return 0.0 if value.strip() in ("0", "0.0") else _seconds(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    with _verbose_log() if args.verbose else contextlib.nullcontext():
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    try:
        context = _connect(args)
    except (InvalidURI, ProxyError, ValueError, TypeError, OSError) as exc:
        print(f"anyws: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    console = Console(sys.stdout, sys.stderr, interactive=sys.stdin.isatty(), json=args.json)
    try:
        return anyio.run(_session, context, args, console, backend=args.backend)
    except KeyboardInterrupt:
        console.note("interrupted")
        return EXIT_INTERRUPTED


@contextlib.contextmanager
def _verbose_log() -> Iterator[None]:
    """Show the debug log of anyws (the connection, every frame) on stderr while it runs."""
    logger = logging.getLogger("anyws")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


def _connect(args: argparse.Namespace) -> _WebSocketContext:
    options: dict[str, Any] = {
        "additional_headers": args.header,
        "subprotocols": args.subprotocol or None,
        "origin": args.origin,
        "compression": None if args.no_compression else "deflate",
        "proxy": None if args.no_proxy else args.proxy or True,
    }
    if args.uri.lower().startswith("wss:") and (args.insecure or args.cafile):
        context = ssl.create_default_context(cafile=args.cafile)
        if args.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        options["ssl"] = context
    return open_websocket(args.uri, **options)


async def _session(context: _WebSocketContext, args: argparse.Namespace, console: Console) -> int:
    """Connect and converse; on Ctrl-C, leave at once (the connection closes with 1001
    without waiting for the server).
    """
    status = EXIT_INTERRUPTED
    async with anyio.create_task_group() as tg:

        async def interrupt_on_ctrl_c() -> None:
            # The same on both backends and every Python: Ctrl-C cancels the session.
            with anyio.open_signal_receiver(signal.SIGINT) as signals:
                async for _ in signals:
                    console.end()
                    console.note("interrupted")
                    tg.cancel_scope.cancel()

        tg.start_soon(interrupt_on_ctrl_c)
        status = await _connect_and_converse(context, args, console)
        tg.cancel_scope.cancel()
    return status


async def _connect_and_converse(
    context: _WebSocketContext, args: argparse.Namespace, console: Console
) -> int:
    try:
        async with context as ws:
            console.note(
                f"connected to {args.uri}" + (f" ({ws.subprotocol})" if ws.subprotocol else "")
            )
            return await _converse(ws, args, console)
    except InvalidStatus as refused:
        response = refused.response
        console.note(
            f"the server refused the upgrade: HTTP {response.status_code} {response.reason_phrase}"
        )
        for line in response.body.decode("utf-8", "replace").splitlines()[:BODY_LINES]:
            console.note(f"  {line}")
        return EXIT_FAILED
    except (InvalidHandshake, OSError, TimeoutError) as exc:
        console.note(f"connection failed: {type(exc).__name__}: {exc}")
        return EXIT_FAILED


async def _converse(ws: ClientConnection, args: argparse.Namespace, console: Console) -> int:
    """Send stdin's lines, print what arrives, until either side closes."""
    outcome = EXIT_OK
    arrived = anyio.Event()  # set by each incoming message (replaced once seen)
    lines = _StdinLines(console)
    async with anyio.create_task_group() as tg:

        async def print_incoming() -> None:
            nonlocal outcome
            try:
                async for message in ws:
                    console.incoming(message)
                    arrived.set()
            except ConnectionClosedError:
                outcome = EXIT_FAILED
            console.end()
            console.note(_describe_close(ws))
            tg.cancel_scope.cancel()  # stop reading stdin: the conversation is over

        async def ping_periodically(interval: float) -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await anyio.sleep(interval)
                    latency = await (await ws.ping())
                    console.note(f"ping: {latency * 1000:.1f} ms")

        tg.start_soon(print_incoming)
        if args.ping is not None:
            tg.start_soon(ping_periodically, args.ping)
        try:
            # If the server closes first, sending fails: print_incoming says how it ended.
            with contextlib.suppress(ConnectionClosed):
                while (line := await _next_line(lines)) is not None:
                    await ws.send(line)
                # stdin ended. Closing at once would race the replies to the last lines (a
                # server may drop them once it sees our close frame): wait until it's quiet.
                while args.linger:
                    arrived = anyio.Event()
                    with anyio.move_on_after(args.linger) as quiet:
                        await arrived.wait()
                    if quiet.cancelled_caught:
                        break
                await ws.close()
        finally:
            # A worker thread left waiting in `_next_line` (the conversation ended first)
            # is released: anyio's worker threads on asyncio would keep the process alive.
            lines.end()
    return outcome


async def _next_line(lines: _StdinLines) -> str | None:
    """The next line of stdin (None at its end). Cancel-safe: the waiting worker thread is
    abandoned, and released by `_StdinLines.end()`.
    """
    return await anyio.to_thread.run_sync(lines.queue.get, abandon_on_cancel=True)


class _StdinLines:
    """Stdin's lines, read by a daemon thread (a blocked read must not keep the process
    alive after Ctrl-C) into a queue, None at the end. The thread never calls into the
    event loop, so it may outlive the conversation harmlessly; it stops at the first line
    read after `end()`.
    """

    def __init__(self, console: Console) -> None:
        self.queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._over = threading.Event()
        threading.Thread(
            target=self._read, args=(console,), name="anyws stdin", daemon=True
        ).start()

    def _read(self, console: Console) -> None:
        while not self._over.is_set():
            line = console.read_line()
            self.queue.put(line)
            if line is None:
                return

    def end(self) -> None:
        """The conversation is over: stop reading, release a worker left waiting."""
        self._over.set()
        self.queue.put(None)


def _describe_close(ws: ClientConnection) -> str:
    code, reason = ws.close_code, ws.close_reason
    return f"connection closed: {code}" + (f" ({reason})" if reason else "")


class Console:
    """Where the conversation is shown: messages on stdout, notes on stderr; in a
    terminal, each incoming message on its own line with the prompt redrawn after it.
    """

    def __init__(self, out: TextIO, err: TextIO, *, interactive: bool, json: bool) -> None:
        self._out = out
        self._err = err
        self.interactive = interactive
        self._json = json
        self._lock = threading.Lock()  # the stdin thread prints the prompt too
        self._prompting = interactive

    def end(self) -> None:
        """The conversation is over: no prompt any more."""
        self._prompting = False

    def read_line(self) -> str | None:
        """The next line of stdin without its newline, or None at its end."""
        try:
            if self.interactive:
                return input(PROMPT)
            line = sys.stdin.readline()
        except EOFError:
            return None
        return line.rstrip("\n") if line else None

    def incoming(self, message: Data) -> None:
        """Show a message from the server."""
        if isinstance(message, bytes):
            preview = message[:BINARY_PREVIEW].hex()
            more = "…" if len(message) > BINARY_PREVIEW else ""
            text = f"<binary, {len(message)} bytes: {preview}{more}>"
        elif self._json:
            try:
                text = json.dumps(json.loads(message), indent=2, ensure_ascii=False)
            except ValueError:
                text = message
        else:
            text = message
        self._write(self._out, f"< {text}" if self.interactive else text)

    def note(self, text: str) -> None:
        """Show a note about the connection (on stderr)."""
        self._write(self._err, text)

    def _write(self, stream: TextIO, text: str) -> None:
        with self._lock:
            if self.interactive:
                # Over the prompt, then the prompt again below: lines never interleave.
                stream.write(f"\r\x1b[K{text}\n")
                stream.flush()
                if self._prompting:
                    self._out.write(PROMPT)
                    self._out.flush()
            else:
                stream.write(f"{text}\n")
                stream.flush()

"""`python -m anyws`: driven for real (a subprocess in pipe mode, an interactive run in a
pseudo-terminal) and in-process (every path, measured by coverage), against real servers."""

from __future__ import annotations

import fcntl
import importlib
import io
import json
import os
import pty
import runpy
import select
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme

from anyws import _cli
from anyws.testing import ServerConnection

from .test_sync import background_server

ROOT = Path(__file__).resolve().parent.parent


def run_cli(
    args: list[str], stdin: str = "", timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    """`python -m anyws ...` as a user runs it, stdin a pipe."""
    return subprocess.run(
        [sys.executable, "-m", "anyws", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


async def replies(connection: ServerConnection) -> None:
    """Answers "json" with a JSON text, "binary" with bytes, "bye" with a 1011 close,
    "quit" with "bye" and a normal close; echoes anything else."""
    async for message in connection:
        if message == "quit":
            await connection.send("bye")
            await connection.close()
            return
        if message == "json":
            await connection.send('{"price": 42, "tags": ["a"]}')
        elif message == "binary":
            await connection.send(bytes(range(40)))
        elif message == "bye":
            await connection.close(1011, "server broke")
            return
        else:
            await connection.send(message)


def echo_until_quit(server_ws: Any) -> None:
    """A `websockets` handler: echoes, and closes after echoing "quit"."""
    for message in server_ws:
        server_ws.send(message)
        if message == "quit":
            return


@pytest.fixture(scope="module")
def uri() -> Iterator[str]:
    with background_server(replies) as uri:
        yield uri


# -- as a process -----------------------------------------------------------------------


def test_pipe_mode(uri: str) -> None:
    # stdin ends: the replies to the last lines still come (the client lingers until
    # the server is quiet), then the client closes.
    result = run_cli(["--linger", "2", uri], stdin="hi\nthere\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\nthere\n"
    assert result.stderr.splitlines() == [f"connected to {uri}", "connection closed: 1000"]


def test_pipe_mode_until_the_server_closes(uri: str) -> None:
    result = run_cli([uri], stdin="hi\nquit\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\nbye\n"


def test_pipe_mode_on_trio_with_binary_and_json(uri: str) -> None:
    result = run_cli(["--backend", "trio", "--json", uri], stdin="binary\njson\nquit\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"<binary, 40 bytes: {bytes(range(32)).hex()}…>"
    assert json.loads("\n".join(lines[1:-1])) == {"price": 42, "tags": ["a"]}
    assert lines[-1] == "bye"
    assert "\n  " in result.stdout  # pretty-printed


def test_server_close_is_reported_with_its_code(uri: str) -> None:
    result = run_cli([uri], stdin="bye\nnever sent\n")
    assert result.returncode == 1
    assert "connection closed: 1011 (server broke)" in result.stderr


BAD_INPUT = [
    (["ws://bad host/"], "characters a host can't have"),
    (["http://example.com/"], "scheme isn't ws or wss"),
    (["--nope", "ws://example.com/"], "unrecognized arguments: --nope"),
    (["--header", "no colon", "ws://example.com/"], "expected NAME:VALUE"),
    (["--ping", "0", "ws://example.com/"], "seconds > 0"),
    (["--ping", "soon", "ws://example.com/"], "seconds > 0"),
    (["--linger", "-1", "ws://example.com/"], "seconds > 0"),
    ([], "required: uri"),
    (["--proxy", "ftp://proxy.example", "ws://example.com/"], "unsupported scheme 'ftp'"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_is_one_line_and_status_2(args: list[str], message: str) -> None:
    result = run_cli(args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_refused_handshake_shows_status_and_body() -> None:
    def refuse(connection: Any, request: Any) -> Any:
        return connection.respond(403, "no entry\nfor you\n")

    from websockets.sync.server import serve

    with serve(lambda ws: None, "127.0.0.1", 0, process_request=refuse) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            result = run_cli([f"ws://127.0.0.1:{server.socket.getsockname()[1]}/"])
        finally:
            server.shutdown()
            thread.join()
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "the server refused the upgrade: HTTP 403 Forbidden",
        "  no entry",
        "  for you",
    ]


def test_version() -> None:
    result = run_cli(["--version"])
    assert result.returncode == 0
    assert result.stdout.startswith("anyws ")


def read_until(fd: int, marker: bytes, timeout: float = 15) -> bytes:
    """Read a pseudo-terminal until `marker` shows up (or fail after `timeout`)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {marker!r} in {seen!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:  # the process ended: the terminal is gone
                break
    return seen


def take_terminal() -> None:
    """In the child: a new session whose controlling terminal is the pseudo-terminal on
    stdin, so that Ctrl-C typed there is its SIGINT."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@contextmanager
def interactive(uri: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Run the client with a pseudo-terminal as its stdin, stdout and stderr."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "anyws", uri],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        cwd=ROOT,
        preexec_fn=take_terminal,
    )
    os.close(terminal)
    try:
        yield process, controller
    finally:
        if process.poll() is None:  # pragma: no cover (only if a test failed)
            process.kill()
        process.wait(timeout=10)
        os.close(controller)


def test_interactive_session_in_a_terminal(uri: str) -> None:
    with interactive(uri) as (process, terminal):
        read_until(terminal, b"> ")
        os.write(terminal, b"hello\r")
        # The message is printed over the prompt, which is drawn again after it.
        shown = read_until(terminal, b"< hello\r\n> ")
        assert b"\r\x1b[K< hello\r\n> " in shown
        os.write(terminal, b"binary\r")
        read_until(terminal, b"<binary, 40 bytes")
        os.write(terminal, b"\x04")  # Ctrl-D: a clean close
        read_until(terminal, b"connection closed: 1000")
        assert process.wait(timeout=10) == 0


def test_ctrl_c_exits_promptly(uri: str) -> None:
    with interactive(uri) as (process, terminal):
        read_until(terminal, b"connected to")
        os.write(terminal, b"\x03")  # Ctrl-C
        read_until(terminal, b"interrupted")
        assert process.wait(timeout=10) == 130


# -- in-process (every path, with coverage) -----------------------------------------------


class Terminal(io.StringIO):
    """A stdin that says it is a terminal, for `Console`; `input()` is patched apart."""

    def isatty(self) -> bool:
        return True


def run_main(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    stdin: str = "",
    *,
    tty: bool = False,
) -> tuple[int, str, str]:
    if tty:
        lines = iter(stdin.splitlines())

        def fake_input(prompt: str) -> str:
            sys.stdout.write(prompt)
            try:
                return next(lines)
            except StopIteration:
                raise EOFError from None

        monkeypatch.setattr("builtins.input", fake_input)
        monkeypatch.setattr(sys, "stdin", Terminal())
    else:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = _cli.main(args)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_main_pipe_with_every_option(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    seen: dict[str, Any] = {}

    def handler(server_ws: Any) -> None:
        seen["headers"] = server_ws.request.headers  # case-insensitive
        echo_until_quit(server_ws)

    from websockets.sync.server import serve

    with serve(handler, "127.0.0.1", 0, subprotocols=["chat"]) as server:  # type: ignore[list-item]
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            port = server.socket.getsockname()[1]
            status, out, err = run_main(
                monkeypatch,
                capsys,
                [
                    "--backend",
                    backend,
                    "--header",
                    "X-Token: secret",
                    "--subprotocol",
                    "chat",
                    "--origin",
                    "http://origin.example",
                    "--no-compression",
                    "--no-proxy",
                    "--verbose",
                    "--json",
                    f"ws://127.0.0.1:{port}/",
                ],
                "not json\nquit\n",
            )
        finally:
            server.shutdown()
            thread.join()
    assert status == 0, err
    assert out == "not json\nquit\n"
    assert "(chat)" in err
    # Frame by frame, as the connection's logger traces them at debug level.
    assert "anyws.client: > TEXT 'not json' [8 bytes]" in err
    assert "anyws.client: < TEXT 'not json' [8 bytes]" in err
    headers = seen["headers"]
    assert headers["X-Token"] == "secret"
    assert headers["Origin"] == "http://origin.example"
    assert "Sec-WebSocket-Extensions" not in headers


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_main_interactive(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], uri: str, backend: str
) -> None:
    args = ["--backend", backend, uri]
    status, out, err = run_main(monkeypatch, capsys, args, "binary\nquit\n", tty=True)
    assert status == 0, err
    assert "\r\x1b[K< <binary, 40 bytes" in out
    assert "\r\x1b[Kconnection closed: 1000\n" in err


def test_main_ping(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], uri: str
) -> None:
    # stdin that ends only after a latency was printed: the pings go out meanwhile.
    pinged = threading.Event()

    class Errors(io.StringIO):
        def write(self, text: str) -> int:
            if "ping:" in text:
                pinged.set()
            return super().write(text)

    class SlowStdin(io.StringIO):
        def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
            pinged.wait(10)
            return ""

    errors = Errors()
    monkeypatch.setattr(sys, "stdin", SlowStdin())
    monkeypatch.setattr(sys, "stderr", errors)
    status = _cli.main(["--ping", "0.01", uri])
    assert status == 0
    assert "ping: " in errors.getvalue()


def test_main_failures(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tls_ca: trustme.CA,
    unused_tcp_port: int,
    tmp_path: Path,
) -> None:
    status, _, err = run_main(monkeypatch, capsys, [f"ws://127.0.0.1:{unused_tcp_port}/"])
    assert status == 1
    assert "connection failed: ConnectionRefusedError" in err
    status, _, err = run_main(monkeypatch, capsys, ["ws://bad host/"])
    assert status == 2
    assert "anyws: error:" in err
    status, _, err = run_main(
        monkeypatch, capsys, ["--cafile", str(tmp_path / "missing.pem"), "wss://example.com/"]
    )
    assert status == 2
    assert "No such file" in err


def test_main_tls_options(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tls_ca: trustme.CA,
    tmp_path: Path,
) -> None:
    import ssl

    from websockets.sync.server import serve

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(context)
    cafile = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(cafile))

    with serve(echo_until_quit, "127.0.0.1", 0, ssl=context) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            url = f"wss://127.0.0.1:{server.socket.getsockname()[1]}/"
            status, _, err = run_main(monkeypatch, capsys, [url], "quit\n")
            assert status == 1
            assert "SSLCertVerificationError" in err
            args = ["--cafile", str(cafile), url]
            status, out, _ = run_main(monkeypatch, capsys, args, "x\nquit\n")
            assert (status, out) == (0, "x\nquit\n")
            status, out, _ = run_main(monkeypatch, capsys, ["--insecure", url], "y\nquit\n")
            assert (status, out) == (0, "y\nquit\n")
        finally:
            server.shutdown()
            thread.join()


def test_main_interrupted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupt(*args: Any, **kwargs: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr("anyio.run", interrupt)
    status, _, err = run_main(monkeypatch, capsys, ["ws://example.com/"])
    assert status == 130
    assert err == "interrupted\n"


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_main_bad_input(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    try:
        status, _, err = run_main(monkeypatch, capsys, args)
    except SystemExit as exit:  # argparse's own errors
        status, err = int(exit.code or 0), capsys.readouterr().err
    assert status == 2
    assert err.splitlines() == [err.strip()]
    assert message in err


def test_main_refused_and_closed_with_an_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], uri: str
) -> None:
    def refuse(connection: Any, request: Any) -> Any:
        return connection.respond(403, "line one\nline two\n")

    from websockets.sync.server import serve

    with serve(echo_until_quit, "127.0.0.1", 0, process_request=refuse) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            port = server.socket.getsockname()[1]
            status, _, err = run_main(monkeypatch, capsys, [f"ws://127.0.0.1:{port}/"])
        finally:
            server.shutdown()
            thread.join()
    assert status == 1
    assert err.splitlines()[-2:] == ["  line one", "  line two"]
    # The server closes with 1011: status 1. The line after it is never sent.
    status, _, err = run_main(monkeypatch, capsys, ["--linger", "5", uri], "bye\n")
    assert status == 1
    assert "connection closed: 1011 (server broke)" in err


def test_main_empty_stdin_without_lingering(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], uri: str
) -> None:
    status, out, err = run_main(monkeypatch, capsys, ["--linger", "0", uri], "")
    assert (status, out) == (0, "")
    assert err.endswith("connection closed: 1000\n")


def test_main_stdin_after_the_end(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], uri: str
) -> None:
    # A line typed after the server closed: the thread reading stdin finds the
    # conversation over and ends quietly.
    ended = threading.Event()
    lines = iter(["quit\n"])

    class LateStdin(io.StringIO):
        def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
            line = next(lines, None)
            if line is not None:
                return line
            ended.wait(10)
            return "too late\n"

    monkeypatch.setattr(sys, "stdin", LateStdin())
    assert _cli.main([uri]) == 0
    ended.set()
    for thread in threading.enumerate():
        if thread.name == "anyws stdin":
            thread.join(10)
    assert "connection closed: 1000" in capsys.readouterr().err


def test_main_module(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # `python -m anyws` runs anyws/__main__.py: here in-process, for coverage.
    monkeypatch.setattr(sys, "argv", ["anyws", "--version"])
    with pytest.raises(SystemExit) as exit:
        runpy.run_module("anyws", run_name="__main__")
    assert exit.value.code == 0
    assert capsys.readouterr().out.startswith("anyws ")
    # Imported (not run), it does nothing.
    assert importlib.import_module("anyws.__main__").main is _cli.main


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_main_ctrl_c(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], uri: str, backend: str
) -> None:
    # SIGINT while the conversation goes on (as Ctrl-C sends it): status 130, at once.
    release = threading.Event()

    class InterruptingStdin(io.StringIO):
        def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
            os.kill(os.getpid(), signal.SIGINT)
            release.wait(10)
            return ""

    monkeypatch.setattr(sys, "stdin", InterruptingStdin())
    try:
        assert _cli.main(["--backend", backend, uri]) == 130
    finally:
        release.set()
    assert capsys.readouterr().err.endswith("interrupted\n")

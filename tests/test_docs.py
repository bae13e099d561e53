"""Every Python block of the documentation (docs/ and README.md, which the pages include)
runs against the local echo server, unless its first line says it needs a public server.
"localhost:8765" and "127.0.0.1:8765" in a block are the echo server's address."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_sync import background_server

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PUBLIC_SERVER = "# needs a public server"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


SNIPPET = re.compile(r'^--8<-- "([^"]+)"$', re.MULTILINE)


def blocks() -> list[tuple[str, str]]:
    found = []
    for page in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]:
        for index, code in enumerate(BLOCK.findall(page.read_text())):
            # A block may include a file, as the docs build does (pymdownx.snippets).
            code = SNIPPET.sub(lambda match: (ROOT / match[1]).read_text(), code)
            found.append((f"{page.relative_to(ROOT)}#{index + 1}", code))
    return found


@pytest.fixture(scope="module")
def echo_uri_for_docs() -> Iterator[str]:
    with background_server() as uri:
        yield uri


def test_the_pages_have_python_blocks() -> None:
    assert len(blocks()) >= 14


@pytest.mark.parametrize(("where", "code"), blocks(), ids=[where for where, _ in blocks()])
def test_a_documented_block_runs(where: str, code: str, echo_uri_for_docs: str) -> None:
    if code.startswith(PUBLIC_SERVER):
        pytest.skip("needs a public server")
    address = echo_uri_for_docs.removeprefix("ws://").rstrip("/")
    code = code.replace("localhost:8765", address).replace("127.0.0.1:8765", address)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=25,
        check=False,
    )
    assert result.returncode == 0, f"{where}:\n{result.stderr}"

"""Echo servers for the benchmark, each run in its own process on 127.0.0.1.

python bench/servers.py picows PORT             # fast echo server (Cython), W1-W4
python bench/servers.py websockets-deflate PORT  # permessage-deflate echo server, W5
"""

from __future__ import annotations

import asyncio
import resource
import sys
from typing import Any


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


async def picows_server(port: int) -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    class Echo(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif frame.msg_type == WSMsgType.PING:
                transport.send_pong(frame.get_payload_as_bytes())
            elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
                transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)

    server = await ws_create_server(lambda _request: Echo(), "127.0.0.1", port)
    print("ready", flush=True)
    await server.serve_forever()


async def websockets_deflate_server(port: int) -> None:
    from websockets.asyncio.server import serve

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", port, compression="deflate", max_size=None) as server:
        print("ready", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    raise_fd_limit()
    kind, port_text = sys.argv[1:3]
    main = {"picows": picows_server, "websockets-deflate": websockets_deflate_server}[kind]
    asyncio.run(main(int(port_text)))

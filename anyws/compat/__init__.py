"""Drop-in modules for code written for other WebSocket client libraries.

`anyws.compat.httpx_ws` has the API of `httpx-ws` (change the import, keep the code).
"""

"""Interop: the Python `websockets` library as a TLS echo server, for our client.

Usage: python_server.py CERT.pem KEY.pem
Listens on 127.0.0.1 (a port of its own), prints "listening PORT", echoes every message, and
exits when its standard input closes.
"""

import asyncio
import ssl
import sys

from websockets.asyncio.server import serve


async def echo(ws) -> None:
    async for message in ws:
        await ws.send(message)


async def main(cert: str, key: str) -> None:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    async with serve(echo, "127.0.0.1", 0, ssl=tls, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening {port}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))

"""Interop: the Python `websockets` library as a client of ws-echo, with permessage-deflate.

Usage: python_client.py ws://HOST:PORT/ | wss://HOST:PORT/ CA.pem
Sends text, binary, fragmented and large messages, checks every echo, closes cleanly, and
prints "ok" with a summary.
"""

import asyncio
import ssl
import sys

import websockets


async def main(url: str, ca: str | None) -> None:
    # wss:// trusts the test CA only.
    tls = ssl.create_default_context(cafile=ca) if url.startswith("wss://") else None
    async with websockets.connect(
        url, ssl=tls, max_size=None, open_timeout=10, close_timeout=10
    ) as ws:
        # The library offers permessage-deflate by default; the server accepts it.
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert "permessage-deflate" in extensions, f"not negotiated: {extensions!r}"
        checks = 0
        for message in ["hello", "κόσμε 𝄞", b"\x00\x01\x02binary", "", b""]:
            await ws.send(message)
            echo = await ws.recv()
            assert echo == message, f"echo of {message!r} was {echo!r}"
            checks += 1
        # Fragmented: an iterable is sent as one message in several frames.
        await ws.send(["frag", "mented ", "κό", "σμε"])
        assert await ws.recv() == "fragmented κόσμε"
        await ws.send([b"\x01" * 1000, b"\x02" * 1000])
        assert await ws.recv() == b"\x01" * 1000 + b"\x02" * 1000
        checks += 2
        # Large messages.
        for size in [65536, 1 << 20, 16 << 20]:
            payload = bytes(i % 251 for i in range(size))
            await ws.send(payload)
            assert await ws.recv() == payload, f"{size}-byte echo differs"
            text = "x" * size
            await ws.send(text)
            assert await ws.recv() == text
            checks += 2
        pong = await ws.ping(b"interop")
        await asyncio.wait_for(pong, 10)
        checks += 1
    assert ws.close_code == 1000, f"close code {ws.close_code}"
    over = "TLS " + ws.transport.get_extra_info("ssl_object").version() if tls else "TCP"
    print(f"ok: {checks} checks over {over} with {extensions}, closed with {ws.close_code}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))

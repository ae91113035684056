"""A TLS endpoint in front of a burst replica, standing in for SkyServe's load balancer with
`service.tls` (which terminates TLS with the operator's certificate and forwards in plain HTTP
to its replicas). Standard library only: it runs with the lab VM's own python3.

    python3 tls_terminator.py CERT KEY LISTEN_PORT TARGET_PORT COUNT_FILE

Every completed TLS handshake adds a line to COUNT_FILE, so a test can tell that traffic came in
over TLS; a client that does not speak TLS (or does not finish the handshake) is dropped."""

from __future__ import annotations

import asyncio
import ssl
import sys


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def main(cert: str, key: str, listen: int, target: int, count_file: str) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        # asyncio calls this only after the handshake completed.
        with open(count_file, "a", encoding="ascii") as count:
            count.write("handshake\n")
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))

    server = await asyncio.start_server(handle, "0.0.0.0", listen, ssl=context)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]))

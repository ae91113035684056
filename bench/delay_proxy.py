#!/usr/bin/env python3
"""An SSH ProxyCommand that adds a fixed one-way delay to both directions of a connection.

The lab's hosts are containers on the controller's own bridge: zero latency. A real fleet is
tens of milliseconds from the controller, and that is where round trips per task matter. This
kernel has no netem qdisc, so the delay is added here, in user space, between ssh and the host:

    ssh -o ProxyCommand="python3 bench/delay_proxy.py --one-way-ms 15 %h %p" host

Each chunk read from one side is written to the other side one-way-ms later, in order, so the
round-trip time grows by twice that and the byte stream is unchanged. The process ends when
either side closes (ssh ends its ProxyCommand when the connection ends).
"""

from __future__ import annotations

import argparse
import asyncio
import sys


async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy reader to writer, each chunk `delay` seconds after it was read."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            await asyncio.sleep(due - loop.time())
            if not data:
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    while data := await reader.read(65536):
        queue.put_nowait((loop.time() + delay, data))
    queue.put_nowait((loop.time() + delay, b""))
    await sender


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one-way-ms", type=float, required=True, help="delay added to each direction")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    args = parser.parse_args()
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin.buffer)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout.buffer)
    stdout = asyncio.StreamWriter(transport, protocol, None, loop)
    remote_reader, remote_writer = await asyncio.open_connection(args.host, args.port)
    delay = args.one_way_ms / 1000
    directions = [asyncio.create_task(relay(stdin, remote_writer, delay)),
                  asyncio.create_task(relay(remote_reader, stdout, delay))]
    # A host that vanished never closes its side; ssh closing ours is the end either way.
    await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)


if __name__ == "__main__":
    asyncio.run(main())

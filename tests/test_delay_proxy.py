"""bench/delay_proxy.py, the ProxyCommand bench/converge.py puts between ssh and the lab hosts:
it must pass both directions through byte for byte, whatever the chunking, and end when ssh
closes its side. (How long it delays is a benchmark figure, not asserted here.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

from wrinklefree_lab.helpers import ROOT


def echo_server() -> tuple[socket.socket, threading.Thread]:
    """A loopback server that sends back what it reads, then closes, for one connection."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


def test_bytes_pass_both_ways_unchanged_and_it_ends_with_ssh():
    server, thread = echo_server()
    payload = os.urandom(300_000) + b"".join(bytes([i]) * i for i in range(256))
    proxy = subprocess.Popen(
        [sys.executable, ROOT / "bench" / "delay_proxy.py", "--one-way-ms", "5", "127.0.0.1",
         str(server.getsockname()[1])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    echoed = bytearray()

    def read_back() -> None:
        while len(echoed) < len(payload) and (chunk := proxy.stdout.read1(65536)):
            echoed.extend(chunk)

    reader = threading.Thread(target=read_back, daemon=True)
    reader.start()
    proxy.stdin.write(payload)
    proxy.stdin.flush()
    reader.join(timeout=60)
    proxy.stdin.close()  # what ssh does when its connection ends
    assert proxy.wait(timeout=30) == 0, proxy.stderr.read().decode()
    server.close()
    thread.join(timeout=10)
    assert echoed == payload


def test_refuses_a_missing_delay():
    proxy = subprocess.run([sys.executable, ROOT / "bench" / "delay_proxy.py", "127.0.0.1", "22"],
                           capture_output=True, text=True, timeout=30, check=False)
    assert proxy.returncode == 2
    assert "--one-way-ms" in proxy.stderr

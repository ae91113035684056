#!/usr/bin/env python3
"""Benchmark: WireGuard mesh convergence (playbooks/wireguard.yml) on 3 and 6 lab hosts.

For each size, in one invocation: a fresh lab of its own, base.yml (not timed), then the mesh
play twice: the first run builds the mesh, the second must change nothing. Prints the wall
times, the per-host changed counts and the ratios (second / first, 6 hosts / 3 hosts).

    .venv/bin/python bench/mesh.py [--sizes 3 6]     (as root: it runs podman)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from wrinklefree_lab.helpers import changed_hosts, output, playbook, run
from wrinklefree_lab.labs import Lab

ROOT = Path(__file__).resolve().parent.parent



def timed(path: str, lab: Lab, **kwargs) -> tuple[float, int, list]:
    """Wall seconds, total changed count and the runner's events of one playbook run (kwargs go
    to ansible_runner.run)."""
    start = time.perf_counter()
    runner = playbook(path, lab, **kwargs)
    seconds = time.perf_counter() - start
    if runner.rc != 0:
        raise SystemExit(f"{path} failed:\n{output(runner)[-4000:]}")
    return seconds, sum(changed_hosts(runner).values()), list(runner.events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 6])
    args = parser.parse_args()
    run("ansible-playbook", "-i", ROOT / "inventories" / "controller", "playbooks/lab/image.yml")
    rows = []
    for size in args.sizes:
        lab = Lab(Path(tempfile.mkdtemp(prefix="wf-bench-mesh-")), "wf-bench-", "wrinklefree-bench", "10.213.9.0/24")
        try:
            lab.up(size)
            timed("playbooks/base.yml", lab)
            first = timed("playbooks/wireguard.yml", lab)
            second = timed("playbooks/wireguard.yml", lab)
        finally:
            lab.down()
        rows.append((size, first, second))

    print(f"WireGuard mesh convergence (playbooks/wireguard.yml), {os.cpu_count()} CPUs, userspace wireguard-go")
    print(f"{'hosts':>5} {'first run s':>12} {'changed':>8} {'second run s':>13} {'changed':>8} {'second/first':>13}")
    for size, (t1, c1, _), (t2, c2, _) in rows:
        print(f"{size:>5} {t1:>12.1f} {c1:>8} {t2:>13.1f} {c2:>8} {t2 / t1:>13.2f}")
    if len(rows) > 1:
        (small, (a, *_), _), (big, (b, *_), _) = rows[0], rows[-1]
        print(f"first run, {big} hosts / {small} hosts: {b / a:.2f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Benchmark: build the inventory of 1,000 Cloud + 200 dedicated servers from the fake Hetzner APIs.

Prints the median wall time and the API requests of `ansible-inventory --list` cold (cache
flushed) and cached, with the project's hetzner_fleet plugin, and the bundled
hetzner.hcloud.hcloud plugin on the Cloud part as the baseline, all in this one invocation.

    .venv/bin/python bench/inventory.py [--runs 5] [--cloud 1000] [--robot 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from wrinklefree_lab.fake_hetzner import (CLOUD_TOKEN, ROBOT_PASSWORD, ROBOT_USER, FakeHetzner, make_cloud_servers,
                                          make_robot_servers)

ROOT = Path(__file__).resolve().parent.parent


def measure(fake: FakeHetzner, source: Path, runs: int, *extra: str) -> tuple[float, float, int]:
    """(median seconds, requests per run, hosts) of `ansible-inventory --list` over `runs` runs."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), HCLOUD_TOKEN=CLOUD_TOKEN,
               HROBOT_API_USER=ROBOT_USER, HROBOT_API_PASSWORD=ROBOT_PASSWORD,
               PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    times, before = [], sum(fake.requests.values())
    for _ in range(runs):
        start = time.perf_counter()
        out = subprocess.run(["ansible-inventory", "-i", str(source), "--list", *extra], cwd=ROOT, env=env,
                             check=True, capture_output=True, text=True).stdout
        times.append(time.perf_counter() - start)
    hosts = out.count('"hetzner_source"') or out.count('"hcloud_id"')
    return statistics.median(times), (sum(fake.requests.values()) - before) / runs, hosts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cloud", type=int, default=1000)
    parser.add_argument("--robot", type=int, default=200)
    args = parser.parse_args()

    fake = FakeHetzner(make_cloud_servers(args.cloud), make_robot_servers(args.robot)).start()
    with tempfile.TemporaryDirectory(prefix="wf-bench-") as tmp:
        ours = Path(tmp, "fleet.hetzner.yml")
        ours.write_text(f"plugin: wrinklefree.deployer.hetzner_fleet\ncloud_endpoint: {fake.cloud_url}\nrobot_endpoint: {fake.robot_url}\n"
                        "cloud_status: []\ncache: true\ncache_plugin: ansible.builtin.jsonfile\n"
                        "cache_connection: cache\ncache_timeout: 3600\n")
        cloud_only = Path(tmp, "cloud.hetzner.yml")
        cloud_only.write_text(f"plugin: wrinklefree.deployer.hetzner_fleet\ncloud_endpoint: {fake.cloud_url}\nrobot: false\ncloud_status: []\n")
        bundled = Path(tmp, "fleet.hcloud.yml")
        bundled.write_text(f"plugin: hetzner.hcloud.hcloud\napi_endpoint: {fake.cloud_url}\n")

        rows = [
            ("bundled hetzner.hcloud, Cloud only (baseline)", *measure(fake, bundled, args.runs)),
            ("hetzner_fleet, Cloud only", *measure(fake, cloud_only, args.runs)),
            ("hetzner_fleet, Cloud + Robot, cold (--flush-cache)", *measure(fake, ours, args.runs, "--flush-cache")),
            ("hetzner_fleet, Cloud + Robot, cached", *measure(fake, ours, args.runs)),
        ]
    fake.stop()

    print(f"inventory of {args.cloud} Cloud + {args.robot} dedicated servers from the fake APIs, "
          f"median of {args.runs} runs, {os.cpu_count()} CPUs")
    print(f"{'source':<52} {'seconds':>8} {'requests':>9} {'hosts':>6} {'vs baseline':>12}")
    baseline = rows[0][1]
    for name, seconds, requests, hosts in rows:
        print(f"{name:<52} {seconds:>8.2f} {requests:>9.0f} {hosts:>6} {seconds / baseline:>11.2f}x")
    cold, cached = rows[2][1], rows[3][1]
    print(f"cached / cold: {cached / cold:.2f} ({cold / cached:.1f}x faster, {rows[3][2]:.0f} API requests)")


if __name__ == "__main__":
    main()

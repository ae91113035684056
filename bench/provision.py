#!/usr/bin/env python3
"""Benchmark: provision 20 and 100 Cloud servers from an empty project against the fake Cloud API.

Runs playbooks/provision.yml (roles/provision) with its default batch of servers created at once,
and the same playbook one server at a time (provision_batch=1) as the baseline, each on a fresh
fake project with the API's rate limit (3600 requests an hour) and create actions that take
`--action-seconds`. Prints API requests, requests refused by the rate limit, wall time, and the
ratio of wall times, all from this one invocation.

    .venv/bin/python bench/provision.py [--sizes 20 100] [--action-seconds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from wrinklefree_lab.fake_hetzner import CLOUD_TOKEN, SSH_KEY, FakeHetzner

ROOT = Path(__file__).resolve().parent.parent


def provision(count: int, batch: int, action_seconds: float) -> tuple[float, int, int]:
    """(wall seconds, API requests, requests refused with 429) of one run from an empty project."""
    fake = FakeHetzner(server_limit=count, action_seconds=action_seconds).start()
    try:
        with tempfile.TemporaryDirectory(prefix="wf-bench-") as tmp:
            declared = Path(tmp, "fleet.json")
            declared.write_text(json.dumps({
                "provision_hcloud_endpoint": fake.cloud_url, "provision_hcloud_token": CLOUD_TOKEN,
                "provision_ssh_keys": [{"name": "admin", "public_key": SSH_KEY}], "provision_batch": batch,
                "provision_layers": [{"name": "base", "count": count, "server_type": "cx22",
                                      "locations": ["fsn1", "nbg1", "hel1"]}]}))
            env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
                       PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
            start = time.perf_counter()
            subprocess.run(["ansible-playbook", "-i", "inventories/controller", "playbooks/provision.yml",
                            f"-e@{declared}"], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
            wall = time.perf_counter() - start
        assert len(fake.project.servers) == count, f"{len(fake.project.servers)} servers, wanted {count}"
        return wall, sum(fake.requests.values()), fake.refused
    finally:
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--action-seconds", type=float, default=2.0,
                        help="how long the fake's create action runs (Hetzner's take tens of seconds)")
    args = parser.parse_args()

    print(f"{'servers':>7} {'run':<22} {'requests':>8} {'429s':>5} {'wall s':>7} {'vs baseline':>11}")
    for count in args.sizes:
        ours = provision(count, 10, args.action_seconds)
        base = provision(count, 1, args.action_seconds)
        for name, (wall, requests, refused) in (("batches of 10", ours), ("one at a time (base)", base)):
            print(f"{count:>7} {name:<22} {requests:>8} {refused:>5} {wall:>7.1f} {base[0] / wall:>10.2f}x")


if __name__ == "__main__":
    main()

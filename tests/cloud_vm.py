"""A fresh lab host playing a cloud VM for a rendered SkyPilot task, reached over SSH as SkyPilot
reaches its VMs: the file mounts copied to their destinations, then the task's setup and run,
each a bash script with the task's envs and secrets exported, in ~/sky_workdir (SkyPilot's
layout for a task without workdir), the run detached (a transient systemd unit, sky-run) and logged to ~/sky_logs/run.log."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from helpers import env


class CloudVM:
    def __init__(self, inventory: Path, address: str):
        state = Path(inventory) / ".state"
        self.address = address
        # One multiplexed connection, as SkyPilot keeps to its VMs.
        self._ssh = ["-i", str(state / "id_ed25519"), "-o", f"UserKnownHostsFile={state / 'known_hosts'}",
                     "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ControlMaster=auto",
                     "-o", f"ControlPath={state / 'vm-%C'}", "-o", "ControlPersist=120"]

    def ssh(self, command: str, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(["ssh", *self._ssh, f"root@{self.address}", command], input=stdin, env=env(),
                              capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{command!r} on {self.address} exited {done.returncode}: {done.stdout}{done.stderr}")
        return done

    def _script(self, spec: dict, secrets: dict, body: str) -> str:
        exports = {**{k: str(v) for k, v in (spec.get("envs") or {}).items()}, **secrets}
        lines = [f"export {name}={shlex.quote(value)}" for name, value in exports.items()]
        return "\n".join([*lines, "mkdir -p ~/sky_workdir ~/sky_logs && cd ~/sky_workdir", body])

    def file_mounts(self, spec: dict) -> None:
        for dest, src in (spec.get("file_mounts") or {}).items():
            remote = dest.replace("~/", "", 1) if dest.startswith("~/") else dest
            self.ssh(f"mkdir -p {shlex.quote(str(Path(remote).parent))}")
            subprocess.run(["scp", "-q", *self._ssh, src, f"root@{self.address}:{remote}"], env=env(), check=True)

    def setup(self, spec: dict, secrets: dict) -> subprocess.CompletedProcess:
        """The task's setup, to its end; the caller checks the return code and output."""
        return self.ssh("bash -s", self._script(spec, secrets, spec.get("setup") or "true"), check=False)

    def start(self, spec: dict, secrets: dict) -> None:
        """The task's run, detached (it serves until stopped); its output goes to ~/sky_logs/run.log."""
        self.ssh("cat > ~/sky_run.sh", self._script(spec, secrets, spec["run"]))
        # Detached from the SSH session as SkyPilot's job runner detaches it: a transient unit.
        self.ssh('mkdir -p ~/sky_logs && systemd-run --quiet --unit=sky-run --collect -E HOME="$HOME" '
                 '-p StandardOutput=append:"$HOME/sky_logs/run.log" -p StandardError=append:"$HOME/sky_logs/run.log" '
                 'bash "$HOME/sky_run.sh"')

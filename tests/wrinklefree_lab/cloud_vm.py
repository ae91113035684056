"""A fresh lab host playing a cloud VM for a rendered SkyPilot task, reached over SSH as SkyPilot
reaches its VMs: the file mounts copied to their destinations, then the task's setup and run,
each a bash script with the task's envs and secrets exported, in ~/sky_workdir (SkyPilot's
layout for a task without workdir), the run in a transient systemd unit (sky-run, or one per
node of a job) logged to ~/sky_logs/UNIT.log."""

from __future__ import annotations

import datetime
import ipaddress
import json
import shlex
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from wrinklefree_lab.helpers import ROOT, env, output, playbook


class CloudVM:
    def __init__(self, inventory: Path, address: str):
        state = Path(inventory) / ".state"
        self.address = address
        # One multiplexed connection, as SkyPilot keeps to its VMs; its socket in /tmp, as a
        # socket path must fit in 108 bytes (%C: a hash of address, port and user).
        self._ssh = ["-i", str(state / "id_ed25519"), "-o", f"UserKnownHostsFile={state / 'known_hosts'}",
                     "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ControlMaster=auto",
                     "-o", "ControlPath=/tmp/wf-ssh-%C", "-o", "ControlPersist=120"]

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
            self.copy(src, remote)

    def copy(self, src, remote: str) -> None:
        """A local file or directory to `remote` (relative: under root's home) over the same connection."""
        subprocess.run(["scp", "-q", "-r", *self._ssh, str(src), f"root@{self.address}:{remote}"], env=env(), check=True)

    def setup(self, spec: dict, secrets: dict) -> subprocess.CompletedProcess:
        """The task's setup, to its end; the caller checks the return code and output."""
        return self.ssh("bash -s", self._script(spec, secrets, spec.get("setup") or "true"), check=False)

    def start(self, spec: dict, secrets: dict, unit: str = "sky-run") -> None:
        """The task's run, detached from the SSH session as SkyPilot's job runner detaches it: a
        transient unit, its output in ~/sky_logs/UNIT.log, its exit status, once it ends, in
        ~/sky_logs/UNIT.rc (a unit killed whole leaves none)."""
        self.ssh(f"cat > ~/{unit}.sh", self._script(spec, secrets, spec["run"]))
        self.ssh(f'mkdir -p ~/sky_logs && rm -f ~/sky_logs/{unit}.rc && systemd-run --quiet --unit={unit} --collect '
                 f'-E HOME="$HOME" -p StandardOutput=append:"$HOME/sky_logs/{unit}.log" '
                 f'-p StandardError=append:"$HOME/sky_logs/{unit}.log" '
                 f"bash -c 'bash ~/{unit}.sh; echo $? > ~/sky_logs/{unit}.rc'")

    def wait(self, unit: str, timeout: float = 600) -> tuple[int, str]:
        """The exit status of a run started by start(), and its log's last lines, once it ended."""
        deadline = time.time() + timeout
        while (rc := self.ssh(f"cat ~/sky_logs/{unit}.rc", check=False)).returncode:
            if time.time() > deadline or self.ssh(f"systemctl is-active --quiet {unit}", check=False).returncode:
                rc = self.ssh(f"cat ~/sky_logs/{unit}.rc", check=False)  # it may have ended just now
                break
            time.sleep(0.5)
        log = self.ssh(f"tail -n 60 ~/sky_logs/{unit}.log", check=False).stdout
        return (int(rc.stdout) if rc.returncode == 0 else -1), log

    def kill(self, *units: str) -> None:
        """Every process of the runs' units at once, as a VM's end takes them (SIGKILL)."""
        self.ssh(f"systemctl kill --signal=SIGKILL {' '.join(units)}")
        while not self.ssh(f"systemctl is-active --quiet {' '.join(units)}", check=False).returncode:
            time.sleep(0.2)


def self_signed(directory, address: str):
    """A certificate and key for the endpoint `address` (its IP address in the SAN, as a client
    checks it), as an operator would give serve_tls_certfile/keyfile."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
            .sign(key, hashes.SHA256()))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))


def burst_spec(inventory, tmp: Path, key: str, endpoint: str, **extravars) -> dict:
    """serve.yml on a lab's inventory with the recording SDK fake as SkyPilot client: the spec
    `serve up` would send, from the base hosts' real releases and model (TLS files in tmp, made
    for the service's endpoint address); `extravars` are serve.yml's further inputs."""
    self_signed(tmp, endpoint)
    runner = playbook("playbooks/serve.yml", inventory,
                      extravars={"sky_client": "localhost", "serve_release_dir": str(tmp / "client"),
                                 "serve_tls_certfile": str(tmp / "cert.pem"), "serve_tls_keyfile": str(tmp / "key.pem"),
                                 **extravars},
                      # HOME for the SDK's state only: SSH's control sockets stay where every other run keeps
                      # them, as a socket path must fit in 108 bytes (a test's tmp_path under xdist does not).
                      envvars=env(WF_SKY_SDK="wrinklefree_lab.fake_sky", PYTHONPATH=str(ROOT / "tests"), HOME=str(tmp),
                                  ANSIBLE_SSH_CONTROL_PATH_DIR=str(Path.home() / ".ansible" / "cp"),
                                  FAKE_SKY_STATE=str(tmp / "sky.json"), BITNET_API_KEY=key))
    assert runner.rc == 0, output(runner)[-4000:]
    assert key not in output(runner)
    calls = json.loads((tmp / "sky.json").read_text())["calls"]
    return next(c for c in calls if c["call"] == "serve.up")["spec"]


def start_replica(vm: CloudVM, spec: dict, key: str, port: int = 8080) -> None:
    """File mounts, setup and run of the burst task on `vm`; returns once /health answers."""
    vm.file_mounts(spec)
    setup = vm.setup(spec, {"BITNET_API_KEY": key})
    assert setup.returncode == 0, setup.stdout + setup.stderr
    vm.start(spec, {"BITNET_API_KEY": key})
    for _ in range(60):
        try:
            urllib.request.urlopen(f"http://{vm.address}:{port}/health", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("the burst replica never answered /health:\n" + vm.ssh("cat ~/sky_logs/sky-run.log", check=False).stdout)


def start_tls_endpoint(vm: CloudVM, cert: Path, key: Path, port: int, target: int) -> None:
    """SkyServe's TLS endpoint in front of the replica on `vm` (tls_terminator.py), with the
    service's certificate; it counts handshakes in ~/sky_logs/tls-handshakes."""
    vm.ssh("mkdir -p ~/tls && chmod 700 ~/tls")
    for local, remote in ((cert, "tls/cert.pem"), (key, "tls/key.pem"), (Path(__file__).parent / "tls_terminator.py", "tls/terminator.py")):
        vm.copy(local, remote)
    vm.ssh(f'systemd-run --quiet --unit=sky-tls --collect python3 "$HOME/tls/terminator.py" "$HOME/tls/cert.pem" '
           f'"$HOME/tls/key.pem" {port} {target} "$HOME/sky_logs/tls-handshakes"')
    for _ in range(20):
        try:
            socket.create_connection((vm.address, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.25)
    raise AssertionError("the TLS endpoint never listened: " + vm.ssh("journalctl -u sky-tls --no-pager", check=False).stdout)

"""SkyPilot: the sky_tasks/ templates rendered over a matrix and validated by the installed
SkyPilot's own loader; the sky_job/sky_service modules run through Ansible's module machinery
against a recording fake of the SDK boundary (tests/wrinklefree_lab/fake_sky.py), whose signatures are checked
against the real SDK; bad input to train.yml/serve.yml fails before any SDK call."""

from __future__ import annotations

import copy
import hashlib
import hmac
import inspect
import itertools
import json
from pathlib import Path
import subprocess
import sys

import pytest
import sky

from wrinklefree_lab import fake_sky
from wrinklefree_lab.helpers import ROOT, adhoc, env, output, playbook, render

sys.path.insert(0, str(ROOT / "plugins" / "module_utils"))
from sky_sdk import server_checks  # noqa: E402

CONTROLLER = ROOT / "inventories" / "controller"
TRAINER = "git+https://git.example/wrinklefree/trainer.git@" + "0123456789abcdef" * 2 + "01234567"
TRAIN_CASES = [{"train_stage": stage, "train_scale": scale, "train_accelerator": accel, "train_max_restarts": restarts,
                "train_model": model, "train_checkpoint_bucket": bucket, "train_trainer": TRAINER}
               for (stage, scale), accel, restarts, (model, bucket) in zip(
                   itertools.product(["1", "1.9", "2", "3"], ["xs", "s", "m", "l", "xl"]),
                   itertools.cycle(["H100", "A100", "L4"]), itertools.cycle([0, 3, 10]),
                   itertools.cycle([("1bitLLM/bitnet_b1_58-large", "s3://ckpt"),
                                    ("microsoft/bitnet-b1.58-2B-4T", "gs://wf-ckpt/runs")]))]
SERVE_CASES = [{"serve_min_replicas": lo, "serve_max_replicas": hi, "serve_cloud_infra": infra, "serve_port": port,
                "serve_target_qps_per_replica": qps, "serve_cloud_cpus": cpus, "serve_ondemand_fallback": dynamic,
                "serve_base_ondemand_replicas": base, "serve_load_balancing_policy": policy}
               for (lo, hi), infra, port, qps, cpus, (dynamic, base), policy in zip(
                   [(0, 1), (0, 6), (3, 12), (20, 60)], [["aws"], ["aws", "gcp"], ["gcp", "azure", "lambda"], ["runpod"]],
                   [8080, 80, 9000, 30001], [1, 2.5, 4, 10], ["4+", "8", "16+", "32+"],
                   [(True, 0), (False, 0), (True, 2), (False, 1)],
                   ["least_load", "round_robin", "least_load", "round_robin"])]


RELEASES = [{"release": "x86_avx512-i2_s-0123456789ab", "profile": "x86_avx512", "os": "debian:12", "arch": "x86_64",
             "cpu_flags": ["avx", "avx2", "avx512bw", "avx512dq", "avx512f", "f16c", "fma"]},
            {"release": "x86_avx2-i2_s-ba9876543210", "profile": "x86_avx2", "os": "debian:12", "arch": "x86_64",
             "cpu_flags": ["avx", "avx2", "f16c", "fma"]}]
MODEL = {"name": "tiny", "port": 8080, "url": "https://models.example/tiny.gguf", "sha256": "ab" * 32,
         "args": ["-c", "4096", "-np", "4", "--mlock"], "parallel": 4}


def burst_inputs(tmp_path) -> dict:
    """What serve.yml reads besides its own defaults: the base hosts' bitnet facts (two releases,
    best last), their tarballs in the controller's artifact cache, TLS files on the client."""
    cache = tmp_path / "artifacts"
    cache.mkdir(exist_ok=True)
    for release in RELEASES:
        (cache / f"{release['release']}.tar.gz").write_bytes(release["release"].encode())
        # The digest the bitnet role recorded when it built the release.
        (cache / f"{release['release']}.tar.gz.sha256").write_text(hashlib.sha256(release["release"].encode()).hexdigest() + "\n")
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text(f"not a real {name}\n")
    facts = [{**release, "models": [{**MODEL, "release": release["release"]}]} for release in reversed(RELEASES)]
    return {"serve_base_facts": facts, "bitnet_artifact_cache": str(cache), "serve_release_dir": str(tmp_path / "client"),
            "serve_tls_certfile": str(tmp_path / "cert.pem"), "serve_tls_keyfile": str(tmp_path / "key.pem")}


def test_every_training_render_is_a_valid_skypilot_task(tmp_path):
    for case, spec in zip(TRAIN_CASES, render(tmp_path, "train.yaml.j2", TRAIN_CASES)):
        task = sky.Task.from_yaml_config(copy.deepcopy(spec), secrets_overrides=[("WANDB_API_KEY", "k")])
        server_checks(task, "jobs launch", "train")
        gpus, nodes = {"xs": (1, 1), "s": (2, 1), "m": (4, 1), "l": (8, 1), "xl": (8, 2)}[case["train_scale"]]
        resources = next(iter(task.resources))
        assert resources.job_recovery["max_restarts_on_errors"] == case["train_max_restarts"]
        if case["train_stage"] == "1":
            # SubLN insertion needs no GPU: CPUs of the base layer's node pool, no spot.
            assert not resources.accelerators and not resources.use_spot and resources.infra.to_str() == "ssh/hetzner-base"
            assert task.num_nodes == 1 and task.envs["INPUT_DIR"] == ""
        else:
            assert resources.accelerators == {case["train_accelerator"]: gpus} and resources.use_spot, case
            assert task.num_nodes == nodes
            before = {"1.9": "1", "2": "1.9", "3": "2"}[case["train_stage"]]
            assert task.envs["INPUT_DIR"].endswith(f"/stage-{before}/final")
        assert task.envs["OUTPUT_DIR"].endswith(f"/stage-{case['train_stage']}") and task.envs["TRAINER"] == TRAINER
        assert task.envs["WANDB_RUN_ID"].endswith("-stage-" + {"1": "subln", "1.9": "layerwise-distill", "2": "continued-pretrain",
                                                                "3": "distill-finetune"}[case["train_stage"]])
        assert spec["secrets"] == {"WANDB_API_KEY": None}  # the key itself never enters the spec


def test_every_service_render_passes_skypilots_server_checks(tmp_path):
    inputs = burst_inputs(tmp_path)
    (tmp_path / "client").mkdir()
    releases = []
    for release in RELEASES:
        (tmp_path / "client" / f"{release['release']}.tar.gz").write_text("release")
        releases.append({"key": release["release"], "sha256": "cd" * 32, "arch": release["arch"], "cpu_flags": release["cpu_flags"]})
    common = {**inputs, "serve__releases": releases, "serve__model": MODEL, "serve__image": "docker:debian:12"}
    for case, spec in zip(SERVE_CASES, render(tmp_path, "serve.yaml.j2", [{**common, **c} for c in SERVE_CASES])):
        task = sky.Task.from_yaml_config(copy.deepcopy(spec), secrets_overrides=[("BITNET_API_KEY", "key-" * 5)])
        server_checks(task, "serve up", "bitnet")
        assert task.service.min_replicas == case["serve_min_replicas"]
        assert task.service.max_replicas == case["serve_max_replicas"]
        # The probe asks for a completion with the key, which only the loaded task holds.
        assert task.service.readiness_path == "/completion"
        assert task.service.readiness_headers == {"Authorization": "Bearer " + "key-" * 5}
        assert spec["secrets"] == {"BITNET_API_KEY": None} and "key-key" not in json.dumps(spec)
        assert task.service.tls_credential.certfile == inputs["serve_tls_certfile"]
        assert spec["envs"]["BITNET_RELEASES"].splitlines()[0].startswith("x86_avx512-i2_s-0123456789ab " + "cd" * 32)
        assert spec["envs"]["SERVER_ARGS"] == "-c 4096 -np 4 --mlock"
        assert "sha256sum --check" in spec["setup"] and "llama-server" not in spec["setup"].split("\n")[-2]
        assert spec["run"].rstrip().endswith('--api-key-file "$keyfile"') and "apt-get" not in spec["run"]
        assert all(str(r.image_id) and "docker:debian:12" in str(r.image_id) for r in task.resources)
        assert task.service.dynamic_ondemand_fallback is case["serve_ondemand_fallback"]
        assert task.service.base_ondemand_fallback_replicas == case["serve_base_ondemand_replicas"]
        assert task.service.load_balancing_policy == case["serve_load_balancing_policy"]
        # Public clouds only, every one of them spot: no replica on the base layer's node pool.
        assert sorted(str(r.cloud).lower() for r in task.resources) == sorted(case["serve_cloud_infra"]), case
        assert all(r.use_spot for r in task.resources) and not any("ssh" in str(r.infra) for r in task.resources)


def skypilot_node(tmp_path, spec: dict, **node_env) -> tuple[dict, Path]:
    """The environment SkyPilot gives a node's setup and run: the task's envs (the bucket mount
    /checkpoints here under tmp_path), SKYPILOT_* as given, and on PATH stand-ins for python and
    torchrun that record their arguments and the W&B and FSDP variables."""
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    record = tmp_path / "started"
    for name in ("python", "torchrun"):
        (stubs / name).write_text(f"#!/bin/sh\n{{ echo {name}; printf '%s\\n' \"$@\"; echo \"FSDP=${{WF_FSDP:-}}\"; "
                                  f"echo \"RUN=$WANDB_RUN_ID/$WANDB_RESUME\"; }} > {record}\n")
        (stubs / name).chmod(0o755)
    envs = {k: v.replace("/checkpoints", str(tmp_path / "bucket")) for k, v in spec["envs"].items()}
    return {**env(), **envs, **node_env, "PATH": f"{stubs}:{env()['PATH']}"}, record


def test_the_stage_runs_as_skypilot_runs_it_on_each_node(tmp_path):
    """The rendered setup and run under bash with SkyPilot's node environment: one process on one
    device, torchrun with FSDP for 1 node x 2 GPUs and on each of 2 nodes x 1 GPU; the input is
    required and the newest checkpoint resumed."""
    spec = render(tmp_path, "train.yaml.j2", [{"train_stage": "2", "train_scale": "s", "train_trainer": TRAINER}])[0]
    node, record = skypilot_node(tmp_path, spec, SKYPILOT_NUM_NODES="1", SKYPILOT_NUM_GPUS_PER_NODE="1",
                                 SKYPILOT_NODE_RANK="0", SKYPILOT_NODE_IPS="10.0.0.5")
    subprocess.run(["bash", "-c", spec["setup"]], env=node, check=True)
    assert record.read_text().splitlines()[:5] == ["python", "-m", "pip", "install", "--quiet"] and TRAINER in record.read_text()
    # Stage 2 without stage 1.9's final/: refused before the trainer starts.
    record.unlink()
    missing = subprocess.run(["bash", "-c", spec["run"]], env=node, capture_output=True, text=True)
    assert missing.returncode == 2 and "stage 2: its input" in missing.stderr and "run that stage first" in missing.stderr
    assert not record.exists()
    inputs, outputs = Path(node["INPUT_DIR"]), Path(node["OUTPUT_DIR"])
    inputs.mkdir(parents=True)
    for name in ("checkpoint-3", "checkpoint-12", "checkpoint-7", "checkpoint-20.tmp"):
        (outputs / name).mkdir(parents=True)
    expected = ["--model", "1bitLLM/bitnet_b1_58-large", "--stage", "2", "--output-dir", str(outputs), "--input-dir",
                str(inputs), "--resume-from", str(outputs / "checkpoint-12")]
    run_id = "RUN=1bitllm-bitnet-b1-58-large-stage-continued-pretrain/allow"
    subprocess.run(["bash", "-c", spec["run"]], env=node, check=True)
    assert record.read_text().splitlines() == ["python", "-m", "wrinklefree.train", *expected, "FSDP=", run_id]
    for nodes, gpus, rank in (("1", "2", "0"), ("2", "1", "0"), ("2", "1", "1")):
        node.update(SKYPILOT_NUM_NODES=nodes, SKYPILOT_NUM_GPUS_PER_NODE=gpus, SKYPILOT_NODE_RANK=rank,
                    SKYPILOT_NODE_IPS="10.0.0.5\n10.0.0.6")
        subprocess.run(["bash", "-c", spec["run"]], env=node, check=True)
        assert record.read_text().splitlines() == [
            "torchrun", "--nnodes", nodes, "--nproc-per-node", gpus, "--node-rank", rank, "--master-addr", "10.0.0.5",
            "--master-port", "29500", "-m", "wrinklefree.train", *expected, "FSDP=1", run_id]


def test_server_checks_refuse_what_the_loader_accepts():
    """A spot/on-demand mix and a bad service name load offline, and the server refuses them."""
    mixed = {"service": {"readiness_probe": "/health", "replica_policy": {"min_replicas": 1}},
             "resources": {"ports": 8080, "ordered": [{"infra": "aws", "use_spot": True}, {"infra": "aws"}]},
             "run": "true"}
    task = sky.Task.from_yaml_config(copy.deepcopy(mixed))
    with pytest.raises(ValueError, match="must either all use spot or none use spot"):
        server_checks(task, "serve up", "bitnet")
    mixed["resources"] = {"ports": 8080, "use_spot": True}
    with pytest.raises(ValueError, match="Service name 'Bad name!' is invalid"):
        server_checks(sky.Task.from_yaml_config(mixed), "serve up", "Bad name!")
    job = {"run": "true", "resources": {"any_of": [{"infra": "aws", "job_recovery": "EAGER_NEXT_REGION"},
                                                   {"infra": "gcp", "job_recovery": "FAILOVER"}]}}
    with pytest.raises(ValueError, match="same job recovery strategy"):
        server_checks(sky.Task.from_yaml_config(job), "jobs launch", "train")


# -- the modules, against the recording fake ------------------------------------------------------
@pytest.fixture
def sdk(tmp_path, monkeypatch):
    """Run playbooks with the fake SDK; returns a reader of what the fake recorded."""
    state = tmp_path / "fake-sky.json"
    extra = {"WF_SKY_SDK": "wrinklefree_lab.fake_sky", "PYTHONPATH": str(ROOT / "tests"), "FAKE_SKY_STATE": str(state),
             "WANDB_API_KEY": "wandb-secret-value", "BITNET_API_KEY": "burst-secret-value-0123", "HOME": str(tmp_path)}
    monkeypatch.setattr(sys.modules[__name__], "BURST", {**burst_inputs(tmp_path), "train_trainer": TRAINER})
    monkeypatch.setattr("wrinklefree_lab.helpers.env", lambda **more: env(**{**extra, **more}))

    def recorded(fail: dict | None = None) -> dict:
        data = json.loads(state.read_text()) if state.exists() else {"calls": [], "jobs": [], "services": {},
                                                                     "results": {}, "fail": {}}
        if fail is not None:
            data["fail"] = fail
            state.write_text(json.dumps(data))
        return data
    return recorded


def calls(recorded: dict, prefix: str = "") -> list[str]:
    return [c["call"] for c in recorded["calls"] if c["call"].startswith(prefix) and not c["call"].endswith(("queue", "status"))]


BURST: dict = {}


def sky_play(path: str, cmdline: str = "", **extravars):
    return playbook(path, CONTROLLER, extravars={"sky_client": "localhost", **BURST, **extravars}, cmdline=cmdline)


def test_job_is_launched_once_and_cancelled(sdk):
    assert sky_play("playbooks/train.yml", "--check").rc == 0
    assert calls(sdk()) == []  # check mode sends no launch
    first = sky_play("playbooks/train.yml")
    assert first.rc == 0 and first.stats["changed"] == {"localhost": 1}
    second = sky_play("playbooks/train.yml")
    assert second.rc == 0 and second.stats["changed"] == {}
    assert calls(sdk()) == ["jobs.launch"]
    launch = next(c for c in sdk()["calls"] if c["call"] == "jobs.launch")
    assert launch["name"] == "1bitllm-bitnet-b1-58-large-stage-continued-pretrain"
    assert launch["spec"]["envs"]["OUTPUT_DIR"] == "/checkpoints/1bitllm-bitnet-b1-58-large/stage-2"
    assert launch["spec"]["envs"]["INPUT_DIR"] == "/checkpoints/1bitllm-bitnet-b1-58-large/stage-1.9/final"
    cancel = sky_play("playbooks/train.yml", train_state="absent")
    assert cancel.rc == 0 and calls(sdk()) == ["jobs.launch", "jobs.cancel"]
    # Cancelled is not active: present launches again, resuming from the checkpoint directory.
    assert sky_play("playbooks/train.yml").rc == 0
    assert calls(sdk()) == ["jobs.launch", "jobs.cancel", "jobs.launch"]


def test_service_up_update_and_down(sdk, tmp_path):
    assert sky_play("playbooks/serve.yml").rc == 0
    assert sky_play("playbooks/serve.yml").stats["changed"] == {}
    # The record of what was applied is its owner's alone and holds only an HMAC of the secrets:
    # a plain hash would let whoever reads it test guesses of the key offline (issue 32, finding 9).
    state = tmp_path / ".sky" / "wrinklefree-deployer" / "services"
    [record_path] = state.glob("*.json")
    record, key = json.loads(record_path.read_text()), (state / ".fingerprint-key").read_bytes()
    secrets = {"BITNET_API_KEY": "burst-secret-value-0123"}
    canonical = json.dumps([record["spec"], sorted(secrets.items())], sort_keys=True).encode()
    assert sorted(record) == ["hmac", "spec"] and record["hmac"] == hmac.new(key, canonical, hashlib.sha256).hexdigest()
    assert hashlib.sha256(canonical).hexdigest() not in record_path.read_text() and len(key) == 32
    assert {oct(path.stat().st_mode & 0o777) for path in (state, record_path, state / ".fingerprint-key")} <= {"0o600", "0o700"}
    # A record an earlier version wrote (a plain hash) is taken once, without an update, and replaced.
    record_path.write_text(json.dumps({"spec": record["spec"], "fingerprint": hashlib.sha256(canonical).hexdigest()}))
    assert sky_play("playbooks/serve.yml").stats["changed"] == {}
    assert json.loads(record_path.read_text()) == record
    check = sky_play("playbooks/serve.yml", "--check --diff", serve_max_replicas=9)
    assert check.rc == 0 and check.stats["changed"] == {"localhost": 1}
    assert "-    max_replicas: 4" in output(check) and "+    max_replicas: 9" in output(check)
    assert calls(sdk()) == ["serve.up"]
    assert sky_play("playbooks/serve.yml", serve_max_replicas=9, serve_mode="blue_green").rc == 0
    update = sdk()["calls"][-2]
    assert update["call"] == "serve.update" and update["mode"] == "blue_green"
    assert update["spec"]["service"]["replica_policy"]["max_replicas"] == 9
    assert sky_play("playbooks/serve.yml", serve_max_replicas=9).stats["changed"] == {}
    assert sky_play("playbooks/serve.yml", serve_state="absent").rc == 0
    assert calls(sdk()) == ["serve.up", "serve.update", "serve.down"]


MIXED_SERVICE = {"service": {"readiness_probe": "/health", "replica_policy": {"min_replicas": 0, "max_replicas": 2,
                                                                            "target_qps_per_replica": 1}},
                 "resources": {"ports": 8080, "ordered": [{"infra": "aws", "use_spot": True}, {"infra": "gcp"}]},
                 "run": "true"}


@pytest.mark.parametrize("cmdline", ["", "--check"])
def test_spec_the_server_would_refuse_fails_before_any_request(sdk, cmdline):
    args = json.dumps({"name": "burst", "task": MIXED_SERVICE})
    runner = adhoc("wrinklefree.deployer.sky_service", args, CONTROLLER, pattern="localhost", cmdline=cmdline)
    assert runner.rc != 0
    assert ("SkyPilot's API server would refuse this serve up: Resources must either all use spot or none use spot"
            in " ".join(output(runner).split()))
    assert sdk()["calls"] == []


def test_fake_server_refuses_as_skypilots_does(tmp_path, monkeypatch):
    """The fake is as strict as the server: a spec the modules' checks were skipped for is refused."""
    monkeypatch.setenv("FAKE_SKY_STATE", str(tmp_path / "fake-sky.json"))
    task = sky.Task.from_yaml_config(copy.deepcopy(MIXED_SERVICE))
    with pytest.raises(sky.exceptions.ClientError, match="server refused serve.up: Resources must either all use spot"):
        fake_sky.serve.up(task, "burst")
    assert not fake_sky._load()["services"]


def test_sdk_error_fails_with_skypilots_message(sdk):
    sdk(fail={"jobs.launch": "No launchable resource: quota exceeded in every region"})
    runner = sky_play("playbooks/train.yml")
    assert runner.rc != 0
    assert "SkyPilot jobs launch failed: ClientError: No launchable resource: quota exceeded" in " ".join(
        output(runner).split())


def test_secrets_never_appear_in_output(sdk):
    runner = sky_play("playbooks/train.yml", "-vvv")
    assert runner.rc == 0 and "wandb-secret-value" not in output(runner)
    runner = sky_play("playbooks/serve.yml", "-vvv --diff")
    assert runner.rc == 0 and "burst-secret-value-0123" not in output(runner)
    # A refused input prints the role's argument spec: its defaults hold no key.
    runner = sky_play("playbooks/serve.yml", "-vvv", serve_load_balancing_policy="random")
    assert runner.rc != 0 and "argument_spec_data" in output(runner) and "burst-secret-value-0123" not in output(runner)
    runner = sky_play("playbooks/train.yml", "-vvv", train_state="gone")
    assert runner.rc != 0 and "argument_spec_data" in output(runner) and "wandb-secret-value" not in output(runner)


def test_service_ships_the_base_layers_releases_and_model(sdk, tmp_path):
    assert sky_play("playbooks/serve.yml").rc == 0
    spec = next(c for c in sdk()["calls"] if c["call"] == "serve.up")["spec"]
    # Best first (the release that needs more flags), each copied to the client, with its sha256.
    lines = [line.split() for line in spec["envs"]["BITNET_RELEASES"].splitlines()]
    assert [line[0] for line in lines] == [r["release"] for r in RELEASES]
    for key, digest, arch, flags in lines:
        shipped = tmp_path / "client" / f"{key}.tar.gz"
        assert spec["file_mounts"][f"~/wrinklefree/releases/{key}.tar.gz"] == str(shipped)
        assert hashlib.sha256(shipped.read_bytes()).hexdigest() == digest and arch == "x86_64"
    assert flags.split(",") == RELEASES[1]["cpu_flags"]
    assert spec["envs"]["MODEL_URL"] == MODEL["url"] and spec["envs"]["MODEL_SHA256"] == MODEL["sha256"]
    assert spec["envs"]["SERVER_ARGS"] == "-c 4096 -np 4 --mlock"
    # SkyPilot keeps an image per region; null is every region.
    assert all(r["image_id"] == {"null": "docker:debian:12"} for r in spec["resources"]["any_of"])
    # The probe sends the key: SkyPilot puts the secret's value into the loaded task, never our spec.
    assert spec["service"]["readiness_probe"]["headers"] == {"Authorization": "Bearer burst-secret-value-0123"}


@pytest.mark.parametrize("extravars,message", [
    ({"train_stage": "4"}, "train_stage must be one of 1, 1.9, 2, 3, got 4"),
    ({"train_scale": "xxl"}, "train_scale must be one of xs, s, m, l, xl, got xxl"),
    ({"train_trainer": ""}, "train_trainer is empty: name the trainer to install, pinned"),
    ({"train_trainer": "git+https://git.example/t.git@main"}, "train_trainer must be pinned: git+https://HOST/REPO.git@COMMIT"),
    ({"train_trainer": "wrinklefree-trainer>=1.0"}, "train_trainer must be pinned"),
    ({"train_trainer": "wrinklefree-trainer"}, "train_trainer must be pinned"),
    ({"train_trainer": "wrinklefree-trainer==1.0\n"}, "train_trainer must be pinned"),
    ({"train_from": "3"}, 'train_from must name a stage before stage 2 (1, 1.9), got "3"'),
    ({"train_stage": "1", "train_from": "1.9"}, "train_from must name a stage before stage 1 (none: it starts from the model)"),
    ({"train_wandb_api_key": ""}, "train_wandb_api_key is empty"),
    ({"train_max_restarts": -1}, "train_max_restarts must be 0 or more, got -1"),
    ({"train_accelerator": "H1000"}, 'train_accelerator must be an accelerator SkyPilot\'s catalogue knows (common GPUs: A10,'),
    ({"train_accelerator": "H100:8"}, 'catalogues count too), got "H100:8"'),
    ({"train_state": "paused"}, "train_state must be one of: present, absent, got: paused"),
])
def test_bad_training_input_fails_before_any_sdk_call(sdk, extravars, message):
    runner = sky_play("playbooks/train.yml", **extravars)
    assert runner.rc != 0 and message in " ".join(output(runner).split())
    assert sdk()["calls"] == []


@pytest.mark.parametrize("extravars,message", [
    ({"serve_min_replicas": 5, "serve_max_replicas": 2}, "serve_min_replicas (5) must be a whole number from 0 to serve_max_replicas (2)"),
    ({"serve_min_replicas": -1}, "serve_min_replicas (-1) must be a whole number from 0"),
    ({"serve_max_replicas": 0}, "serve_max_replicas (0), which must be at least 1"),
    ({"serve_base_ondemand_replicas": 9}, "serve_base_ondemand_replicas (9) from 0 to serve_max_replicas"),
    ({"serve_cloud_infra": ["aws", "nosuchcloud"]}, "unknown: ['nosuchcloud']"),
    ({"serve_cloud_infra": []}, "serve_cloud_infra must name at least one public cloud"),
    ({"serve_cloud_infra": ["ssh/hetzner-base"]}, "unknown: ['ssh/hetzner-base']"),
    ({"serve_load_balancing_policy": "random"}, "serve_load_balancing_policy must be one of: least_load, round_robin, got: random"),
    ({"serve_mode": "canary"}, "serve_mode must be one of: rolling, blue_green, got: canary"),
    ({"serve_port": 0}, "serve_port must be 1-65535, got 0"),
    ({"serve_cloud_cpus": "lots"}, "SkyPilot rejected the task"),
    ({"serve_api_key": ""}, "serve_api_key is missing or shorter than 16 characters"),
    ({"serve_tls_certfile": ""}, "serve_tls_certfile and serve_tls_keyfile are required: the burst endpoint is public"),
    ({"serve_tls_keyfile": "/nonexistent/key.pem"}, "serve_tls_certfile/serve_tls_keyfile: /nonexistent/key.pem does not exist"),
    ({"serve_base_facts": []}, "no base host records a BitNet release: run playbooks/bitnet.yml"),
    ({"serve_model": "huge"}, 'serve_model "huge" is not served by the base layer (it serves: tiny)'),
    ({"serve_base_facts": [{**RELEASES[0], "models": [{"name": "tiny", "port": 8080, "args": []}]}]},
     "model tiny needs a url and a sha256 in bitnet_models"),
])
def test_bad_serving_input_fails_before_any_sdk_call(sdk, extravars, message):
    runner = sky_play("playbooks/serve.yml", **extravars)
    assert runner.rc != 0 and message in " ".join(output(runner).split())
    assert sdk()["calls"] == []


def test_a_release_unlike_its_recorded_digest_is_never_shipped(sdk):
    cache = Path(BURST["bitnet_artifact_cache"])
    (cache / f"{RELEASES[1]['release']}.tar.gz").write_bytes(b"tampered")
    runner = sky_play("playbooks/serve.yml")
    assert runner.rc != 0 and sdk()["calls"] == []
    assert (f"{cache}/{RELEASES[1]['release']}.tar.gz does not match the digest its build recorded"
            in " ".join(output(runner).split()))
    (cache / f"{RELEASES[1]['release']}.tar.gz.sha256").unlink()
    runner = sky_play("playbooks/serve.yml")
    assert runner.rc != 0 and "is not in the controller's artifact cache" in " ".join(output(runner).split())


def test_missing_sdk_is_a_clear_error(sdk, monkeypatch):
    monkeypatch.setattr("wrinklefree_lab.helpers.env", lambda **more: env(WF_SKY_SDK="sky_not_installed", WANDB_API_KEY="wandb-key-1234", **more))
    runner = sky_play("playbooks/train.yml")
    assert runner.rc != 0
    assert "the SkyPilot SDK (sky_not_installed) cannot be imported" in " ".join(output(runner).split())


@pytest.mark.parametrize("fake,real", [
    (fake_sky.jobs.launch, sky.jobs.launch), (fake_sky.jobs.queue, sky.jobs.queue),
    (fake_sky.jobs.cancel, sky.jobs.cancel), (fake_sky.serve.up, sky.serve.up),
    (fake_sky.serve.update, sky.serve.update), (fake_sky.serve.down, sky.serve.down),
    (fake_sky.serve.status, sky.serve.status), (fake_sky.get, sky.get),
], ids=lambda f: getattr(f, "__qualname__", str(f)))
def test_fake_matches_the_installed_sdk(fake, real):
    """An upgrade of SkyPilot that renames or reorders what the modules call fails here."""
    def shape(function):
        return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]
    assert shape(fake) == shape(real)


def test_job_wait_times_out_naming_the_status(sdk):
    args = json.dumps({"name": "probe", "task": {"name": "probe", "run": "true"}, "wait": True,
                       "timeout": 1, "poll_interval": 1})
    runner = adhoc("wrinklefree.deployer.sky_job", args, CONTROLLER, pattern="localhost")
    assert runner.rc != 0
    assert "job [1] still PENDING after 1 s" in " ".join(output(runner).split())
    assert calls(sdk()) == ["jobs.launch"]


def test_runbooks_scale_teardown_and_train_actions(sdk):
    assert sky_play("playbooks/runbooks/serve-scale.yml").rc != 0
    assert sky_play("playbooks/runbooks/serve-scale.yml", serve_max_replicas=7).rc == 0
    assert sky_play("playbooks/runbooks/serve-scale.yml", serve_max_replicas=8).rc == 0
    assert calls(sdk(), "serve") == ["serve.up", "serve.update"]
    assert sky_play("playbooks/runbooks/serve-teardown.yml").rc == 0
    assert calls(sdk(), "serve")[-1] == "serve.down"
    assert sky_play("playbooks/runbooks/train-stage.yml", train_stage="2", train_action="stop").rc != 0
    assert sky_play("playbooks/runbooks/train-stage.yml", train_stage="2", train_action="launch").rc == 0
    assert sky_play("playbooks/runbooks/train-stage.yml", train_stage="2", train_action="resume").stats["changed"] == {}
    assert sky_play("playbooks/runbooks/train-stage.yml", train_stage="2", train_action="cancel").rc == 0
    assert calls(sdk(), "jobs") == ["jobs.launch", "jobs.cancel"]


def test_status_lists_the_burst_replicas_from_the_sdk(sdk, tmp_path):
    assert sky_play("playbooks/serve.yml").rc == 0
    report = tmp_path / "status.json"
    runner = sky_play("playbooks/runbooks/status.yml", status_json=str(report))
    assert runner.rc == 0, output(runner)[-3000:]
    burst = json.loads(report.read_text())["burst"]
    assert burst["status"] == "READY" and burst["replicas"] == [
        {"replica_id": 1, "infra": "AWS (us-east-1)", "is_spot": True, "status": "READY"}]
    assert "replica 1: AWS (us-east-1) spot READY" in output(runner)

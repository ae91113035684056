"""BitNet build profiles: which profile a CPU's flags allow, and the CMake options it stands for."""

from __future__ import annotations

import json
import os
import re

from ansible.errors import AnsibleFilterError

from ansible_collections.wrinklefree.deployer.plugins.filter.pip_lock import pip_lock_problems
from ansible_collections.wrinklefree.deployer.plugins.module_utils.mesh_entry import is_interface_name
from ansible_collections.wrinklefree.deployer.plugins.module_utils.inputs import as_int, is_login_name, is_plain_name, shared_values

_X86_MINIMUM = ("avx2", "fma", "f16c")


def _flags(value):
    return set(value.split() if isinstance(value, str) else value)


def bitnet_cpu_profile(flags, arch, profiles, wanted="auto"):
    """The build profile for a CPU: with ``wanted`` 'auto', the highest-ranked profile of
    ``profiles`` for ``arch`` whose ``requires`` are all in ``flags``; otherwise ``wanted``,
    checked against the CPU. Errors name the missing flags."""
    have = _flags(flags)
    if arch == "x86_64" and not have.issuperset(_X86_MINIMUM):
        missing = sorted(set(_X86_MINIMUM) - have)
        raise AnsibleFilterError(
            f"this x86_64 CPU lacks {', '.join(missing)}: BitNet's x86 kernels need AVX2, FMA and F16C "
            "(without them they produce garbage), so the host cannot serve BitNet")
    if wanted not in ("auto", "native"):
        if wanted not in profiles:
            raise AnsibleFilterError(f"unknown BitNet profile {wanted!r}; known: auto, native, {', '.join(sorted(profiles))}")
        spec = profiles[wanted]
        missing = sorted(set(spec["requires"]) - have)
        if spec["arch"] != arch or missing:
            raise AnsibleFilterError(
                f"BitNet profile {wanted} needs an {spec['arch']} CPU with {', '.join(spec['requires'])}; "
                f"this {arch} CPU lacks {', '.join(missing) or 'nothing but the architecture'}")
        return wanted
    fitting = [(spec.get("rank", 0), name) for name, spec in profiles.items()
               if spec["arch"] == arch and have.issuperset(spec["requires"])]
    if not fitting:
        raise AnsibleFilterError(f"no BitNet profile fits this {arch} CPU (known: {', '.join(sorted(profiles))})")
    return wanted if wanted == "native" else max(fitting)[1]


def bitnet_cmake_args(profile, profiles, kernel, compiler_version, extra=None):
    """CMake's -D options for a profile and kernel: explicit instruction sets with GGML_NATIVE=OFF
    (so one artifact serves every host of the profile), or GGML_NATIVE=ON for 'native'."""
    options = {
        "CMAKE_BUILD_TYPE": "Release",
        "CMAKE_C_COMPILER": f"clang-{compiler_version}",
        "CMAKE_CXX_COMPILER": f"clang++-{compiler_version}",
        # Self-contained binaries: the artifact is copied to hosts that have no build tree.
        "BUILD_SHARED_LIBS": "OFF",
        "LLAMA_BUILD_EXAMPLES": "ON",
        "LLAMA_BUILD_SERVER": "ON",
        "BITNET_X86_TL2": "ON" if kernel == "tl2" else "OFF",
        "BITNET_ARM_TL1": "ON" if kernel == "tl1" else "OFF",
    }
    if profile == "native":
        options["GGML_NATIVE"] = "ON"
    else:
        if profile not in profiles:
            raise AnsibleFilterError(f"unknown BitNet profile {profile!r}; known: native, {', '.join(sorted(profiles))}")
        options["GGML_NATIVE"] = "OFF"
        options.update({k: v if isinstance(v, str) else ("ON" if v else "OFF") for k, v in profiles[profile]["cmake"].items()})
    return [f"-D{k}={v}" for k, v in options.items()] + list(extra or [])


def bitnet_model_rates(models, bench_results, previous):
    """Each model with its llama-bench rates (``pp``, ``tg`` tokens/s): from ``bench_results`` (the
    registered loop of llama-bench -o json runs) when measured now, else from ``previous`` (the
    last local fact) when the name, release and sha256 are the same, else without rates."""
    measured = {}
    for result in bench_results:
        if result.get("skipped") or "stdout" not in result:
            continue
        try:
            records = json.loads(result["stdout"])
            measured[result["item"]["name"]] = {
                "pp": round(next(r["avg_ts"] for r in records if r["n_prompt"]), 2),
                "tg": round(next(r["avg_ts"] for r in records if r["n_gen"]), 2)}
        except (ValueError, KeyError, StopIteration) as exc:
            raise AnsibleFilterError(f"llama-bench output of model {result['item']['name']}: {exc}") from None
    known = {(m.get("name"), m.get("release"), m.get("sha256")): m for m in previous if "tg" in m}
    result = []
    for model in models:
        rates = measured.get(model["name"]) or known.get((model["name"], model.get("release"), model.get("sha256")))
        result.append({**model, **({"pp": rates["pp"], "tg": rates["tg"]} if rates else {})})
    return result


def bitnet_server_args(model, ctx_size, parallel, mlock, extra_args):
    """A model's llama-server flags beyond model path, address, port and threads: the ones the
    base layer's units and the burst layer's replicas share (a model's own ``ctx_size``,
    ``parallel`` and ``extra_args`` before the role's defaults). ``--alias`` names the model as
    the fleet does, so that every server, base or burst, answers clients (``/v1/models``, the
    ``model`` of each completion) with that name rather than its own file path."""
    args = ["--alias", str(model["name"]), "-c", str(model.get("ctx_size", ctx_size)), "-np", str(model.get("parallel", parallel))]
    return args + (["--mlock"] if mlock else []) + [str(a) for a in list(extra_args) + list(model.get("extra_args", []))]


# llama-server flags the role sets itself, each with the input that sets it: an extra argument
# may not override one (the last of two flags wins in llama-server).
_MANAGED_FLAGS = {
    ("-m", "--model", "-mu", "--model-url", "-hf", "-hfr", "--hf-repo", "-hff", "--hf-file"): "bitnet_models (url or src)",
    ("-a", "--alias"): "bitnet_models[].name",
    ("--host",): "bitnet_server_bind (or the mesh address)",
    ("--port",): "bitnet_models[].port",
    ("--api-key", "--api-key-file"): "bitnet_server_api_key",
    ("-t", "--threads"): "bitnet_server_threads or bitnet_models[].threads",
    ("-c", "--ctx-size"): "bitnet_server_ctx_size or bitnet_models[].ctx_size",
    ("-np", "--parallel"): "bitnet_server_parallel or bitnet_models[].parallel",
    ("--mlock", "--no-mmap"): "bitnet_server_mlock",
    # A server with these answers no completion: the front door and the burst layer need them.
    ("--embedding", "--embeddings", "--reranking", "--rerank"): "nothing: the fleet's servers serve completions",
    # Serves a directory of the host's files over HTTP.
    ("--path",): "nothing: the servers serve no static files",
}
_FLAG_INPUT = {flag: what for flags, what in _MANAGED_FLAGS.items() for flag in flags}
# One word of the unit's argument line: no spaces, quotes, newlines or $ (systemd expands those).
_ARG = re.compile(r"^[A-Za-z0-9_./:,+=@%-]{1,256}$")


def bitnet_server_arg_problems(extra_args, where="bitnet_server_extra_args"):
    """What is wrong with llama-server extra arguments, one message each naming ``where``: a flag
    the role manages (with the input to set instead), or an argument that is not one plain word
    of 1 to 256 characters (the env file and systemd split the line on spaces and expand $)."""
    problems = []
    for arg in extra_args:
        arg = str(arg)
        if not _ARG.match(arg):
            problems.append(f"{where}: {json.dumps(arg)} must be one word of 1-256 letters, digits and _./:,+=@%-")
            continue
        flag = arg.split("=", 1)[0]
        if flag in _FLAG_INPUT:
            problems.append(f"{where}: {flag} is set by the role; set {_FLAG_INPUT[flag]} instead")
    return problems


def _at_least(problems, name, value, least, unset=None):
    """A problem unless ``value`` is a whole number of at least ``least`` (or None, when ``unset``
    says what None means)."""
    if value is None and unset:
        return
    number = as_int(value)
    if number is None or number < least:
        allowed = f"unset ({unset}) or at least {least}" if unset else f"at least {least}" if least else "0 or more"
        problems.append(f"{name} must be {allowed}, got {json.dumps(value)}")


_COMMIT = re.compile(r"[0-9a-f]{40}")
_SUBMODULE_PATH = re.compile(r"[A-Za-z0-9_./-]+")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_WILDCARDS = ("0.0.0.0", "::", "*", "[::]")


def _venv_lock_problems(path):
    if not path:
        return []
    if not os.path.isabs(path) or not os.path.isfile(path):
        problems = ["no such absolute path"]
    else:
        with open(path, encoding="utf-8") as handle:
            problems = pip_lock_problems(handle.read())
    if not problems:
        return []
    return [f"bitnet_venv_requirements ({path}) must be the absolute path of a hash lock on the controller, every requirement "
            f"pinned with == and hashed (uv pip compile --generate-hashes): {'; '.join(problems[:5])}"]


def _model_problems(index, model, checksum_required):
    if not isinstance(model, dict):
        return [f"bitnet_models[{index}] must be a mapping, got {json.dumps(model, default=str)}"]
    where = f"bitnet_models[{index}] ({model.get('name')})"
    problems = []
    if not is_plain_name(model.get("name")):
        problems.append("name must be letters, digits and _.-")
    if ("url" in model) == ("src" in model):
        problems.append("give exactly one of url and src")
    if "sha256" not in model:
        if checksum_required:
            problems.append("sha256 is required (bitnet_model_checksum_required)")
    elif not isinstance(model["sha256"], str) or not _SHA256.fullmatch(model["sha256"]):
        problems.append(f"sha256 must be 64 hex digits, got {json.dumps(model['sha256'], default=str)}")
    port = as_int(model.get("port"))
    if port is None or not 1024 <= port <= 65535:
        problems.append(f"port must be 1024-65535, got {json.dumps(model.get('port'), default=str)}")
    for key in ("threads", "ctx_size", "parallel"):
        if key in model and (as_int(model[key]) is None or as_int(model[key]) < 1):
            problems.append(f"{key} must be at least 1, got {json.dumps(model[key], default=str)}")
    return [f"{where}: {problem}" for problem in problems] + bitnet_server_arg_problems(
        model.get("extra_args") or [], f"bitnet_models[{index}].extra_args")


def bitnet_input_problems(inputs, profiles):
    """What is wrong with the bitnet role's inputs (``inputs``: the variables by name), one
    message each naming the variable and what it may be; ``profiles`` are the role's build
    profiles. Checks that need no facts, so preflight runs them on every host before any change."""
    problems = []
    version = inputs["bitnet_version"]
    if not isinstance(version, str) or not _COMMIT.fullmatch(version):
        problems.append("bitnet_version must be a whole commit id (40 lowercase hex digits: a short one can become "
                        f"ambiguous), got {json.dumps(version, default=str)}")
    paths = sorted(str(k) for k in inputs["bitnet_submodule_urls"] or {} if not _SUBMODULE_PATH.fullmatch(str(k)))
    if paths:
        problems.append(f"bitnet_submodule_urls keys must be submodule paths like 3rdparty/llama.cpp, got {json.dumps(paths)}")
    problems += _venv_lock_problems(inputs["bitnet_venv_requirements"])
    key = inputs["bitnet_server_api_key"] or ""
    if key and (len(key) < 16 or re.search(r"\s", key)):
        problems.append("bitnet_server_api_key must be empty or at least 16 characters without spaces")
    if inputs["bitnet_profile"] not in ["auto", "native", *profiles]:
        problems.append(f"bitnet_profile {json.dumps(inputs['bitnet_profile'], default=str)} is unknown; allowed: auto, native, "
                        + ", ".join(sorted(profiles)))
    clang = inputs["bitnet_clang_version"]
    if clang is not None and (as_int(clang) is None or as_int(clang) < 18):
        problems.append(f"bitnet_clang_version must be unset (the distribution's) or 18 and newer, got {json.dumps(clang, default=str)}")
    _at_least(problems, "bitnet_keep_releases", inputs["bitnet_keep_releases"], 1)
    _at_least(problems, "bitnet_server_threads", inputs["bitnet_server_threads"], 1, unset="physical cores")
    _at_least(problems, "bitnet_server_ctx_size", inputs["bitnet_server_ctx_size"], 1)
    _at_least(problems, "bitnet_server_parallel", inputs["bitnet_server_parallel"], 1)
    _at_least(problems, "bitnet_health_timeout", inputs["bitnet_health_timeout"], 0)
    _at_least(problems, "bitnet_rolling_batch", inputs["bitnet_rolling_batch"], 1)
    if inputs["bitnet_server_bind"] in _WILDCARDS:
        problems.append(f"bitnet_server_bind must be a single address, never a wildcard, got {json.dumps(inputs['bitnet_server_bind'])}")
    if not is_interface_name(inputs["bitnet_mesh_interface"]):
        problems.append("bitnet_mesh_interface must be an interface name (1-15 letters, digits and _=+.-), "
                        f"got {json.dumps(inputs['bitnet_mesh_interface'], default=str)}")
    problems += bitnet_server_arg_problems(inputs["bitnet_server_extra_args"] or [])
    if not is_login_name(inputs["bitnet_user"]) or inputs["bitnet_user"] == "root":
        problems.append(f"bitnet_user must be a login name other than root, got {json.dumps(inputs['bitnet_user'], default=str)}")
    models = inputs["bitnet_models"] or []
    for index, model in enumerate(models):
        problems += _model_problems(index, model, bool(inputs["bitnet_model_checksum_required"]))
    for field in ("name", "port"):
        if shared := shared_values(models, field):
            problems.append(f"bitnet_models: two models share the {field} {', '.join(shared)}")
    return problems


class FilterModule:
    """BitNet build helpers."""

    def filters(self):
        return {"bitnet_cpu_profile": bitnet_cpu_profile, "bitnet_cmake_args": bitnet_cmake_args,
                "bitnet_model_rates": bitnet_model_rates, "bitnet_server_args": bitnet_server_args,
                "bitnet_server_arg_problems": bitnet_server_arg_problems, "bitnet_input_problems": bitnet_input_problems}

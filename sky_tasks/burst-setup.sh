# Burst replica setup (SkyPilot runs it with bash in the replica's container, the task's envs
# set): the BitNet release of the base layer that fits this CPU, checked against its sha256,
# its OpenMP runtime, and the model, checked against its sha256. Fails with the reason.
set -euo pipefail
# Under the replica user's home (the file mounts land in ~/wrinklefree/releases).
BITNET_HOME=$HOME/wrinklefree/bitnet
fail() { echo "burst setup: $*" >&2; exit 1; }
arch=$(uname -m)
flags=" $(grep -m1 -E '^(flags|Features)[[:space:]]*:' /proc/cpuinfo | cut -d: -f2) "
if [[ $arch == x86_64 && $flags != *" avx2 "* ]]; then
  fail "this CPU has no AVX2, which BitNet's x86 kernels need: choose an instance type with AVX2 (every current x86 cloud CPU has it)"
fi
# BITNET_RELEASES: one release per line, best first: KEY SHA256 ARCH FLAG,FLAG,...
chosen=
while read -r key sum release_arch needs; do
  [[ -n $key && $release_arch == "$arch" ]] || continue
  fits=1
  for flag in ${needs//,/ }; do [[ $flags == *" $flag "* ]] || fits=0; done
  if (( fits )); then chosen="$key $sum"; break; fi
done <<< "$BITNET_RELEASES"
[[ -n $chosen ]] || fail "no shipped BitNet release runs on this $arch CPU (releases and the flags they need: $(tr '\n' ';' <<< "$BITNET_RELEASES")); build one for a profile it has on a base host (bitnet_profile)"
read -r key sum <<< "$chosen"
tarball=$HOME/wrinklefree/releases/$key.tar.gz
echo "$sum  $tarball" | sha256sum --check --quiet - || fail "release $key: $tarball does not match its sha256 $sum"

release=$BITNET_HOME/releases/$key
if [[ ! -f $release/manifest.json ]]; then
  rm -rf "$release.partial" && mkdir -p "$release.partial"
  tar -C "$release.partial" -xzf "$tarball"
  mv "$release.partial" "$release"
fi
ln -sfn "$release" "$BITNET_HOME/current"

clang=$(sed -n 's/.*"compiler": *"clang-\([0-9]*\)".*/\1/p' "$release/manifest.json")
sudo=; [[ $(id -u) == 0 ]] || sudo=sudo
if ! command -v curl > /dev/null || ldd "$release/bin/llama-server" | grep -q 'not found'; then
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends curl ca-certificates "libomp5-$clang"
fi
"$release/bin/llama-server" --version > /dev/null || fail "release $key does not run here"

model=$BITNET_HOME/models/$MODEL_NAME.gguf
mkdir -p "$BITNET_HOME/models"
if ! echo "$MODEL_SHA256  $model" | sha256sum --check --quiet - 2> /dev/null; then
  curl -fsSL --retry 3 -o "$model.partial" "$MODEL_URL" || fail "model $MODEL_NAME: cannot fetch $MODEL_URL"
  echo "$MODEL_SHA256  $model.partial" | sha256sum --check --quiet - \
    || fail "model $MODEL_NAME: $MODEL_URL has sha256 $(sha256sum < "$model.partial" | cut -d' ' -f1), expected $MODEL_SHA256"
  mv "$model.partial" "$model"
fi
echo "burst setup: release $key, model $MODEL_NAME ready"

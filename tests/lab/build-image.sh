#!/usr/bin/env bash
# Build the lab's Debian 12 base image from Debian packages and import it into podman.
# Usage: build-image.sh IMAGE_REF
# The lab playbook tags the image with a hash of this file, so editing the recipe rebuilds it.
set -euo pipefail

image=${1:?usage: build-image.sh IMAGE_REF}
suite=bookworm
packages=python3,systemd,systemd-sysv,openssh-server,sudo,iproute2,procps,iputils-ping,ca-certificates

# Use the mirror this machine already trusts (no image can be pulled here); override with WF_LAB_MIRROR.
mirror=${WF_LAB_MIRROR:-}
if [[ -z $mirror ]]; then
  mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
fi
if [[ -z $mirror ]]; then
  mirror=$(awk '$1 == "deb" && $3 == "'$suite'" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
if [[ -z $mirror ]]; then
  echo "build-image: no Debian mirror found in /etc/apt; set WF_LAB_MIRROR" >&2
  exit 2
fi

rootfs=$(mktemp -d /var/tmp/wf-lab-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror"

# Security and point-release updates, so unattended-upgrades has an origin to follow.
base=${mirror%/debian}
cat > "$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb $base/debian-security $suite-security main
SOURCES

# What the roles never read, left out of every package the lab's hosts install, as in Debian's slim
# container images: package lists without translations, no documentation or manual pages, and dpkg
# without fsync (a container's disk is thrown away). Each lab's first run installs the same
# packages on every host; these cut what that costs, not what the roles do.
cat > "$rootfs/etc/apt/apt.conf.d/90lab-slim" <<'APT'
Acquire::Languages "none";
APT
cat > "$rootfs/etc/dpkg/dpkg.cfg.d/90lab-slim" <<'DPKG'
force-unsafe-io
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
DPKG

# Every container must get its own SSH host keys and machine id, generated at first boot.
rm -f "$rootfs"/etc/ssh/ssh_host_*
: > "$rootfs/etc/machine-id"
mkdir -p "$rootfs/etc/systemd/system/ssh.service.d"
cat > "$rootfs/etc/systemd/system/ssh.service.d/lab-hostkeys.conf" <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
tar -C "$rootfs" -c . | podman import --change 'CMD ["/sbin/init"]' - "$image"
# Molecule scenarios name the newest lab image by this tag.
podman tag "$image" localhost/wrinklefree-lab:latest

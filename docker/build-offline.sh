#!/usr/bin/env bash
# Build the images docker-compose.yml expects without an image registry: a Debian
# bookworm base made with debootstrap from this machine's own apt mirror, imported and
# tagged as the public images the stack starts from (python:3.11-slim, redis:7), with
# pip configured like this machine's and its CA bundle trusted; then the cmq image from
# the one Dockerfile, as `docker-compose build` makes it where a registry is reachable.
#
#   sudo docker/build-offline.sh [MIRROR]      # needs root (debootstrap) and a docker engine
#
# DOCKER_HOST picks the engine (.ci/dockerd starts a private one). Prints the time each
# step took and the images' sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
mirror=${1:-$(scripts/debian-mirror)}
[ -n "$mirror" ] || { echo "build-offline.sh: no Debian mirror in this machine's apt sources; give MIRROR" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "build-offline.sh: debootstrap needs root" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "build-offline.sh: debootstrap is not installed" >&2; exit 2; }
docker version --format '{{.Server.Version}}' >/dev/null \
    || { echo "build-offline.sh: no docker engine answers (DOCKER_HOST=${DOCKER_HOST:-unset})" >&2; exit 3; }

work=$(mktemp -d "${TMPDIR:-/var/tmp}/cmq-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
step() { printf 'build-offline: %-44s' "$1"; started=$SECONDS; }
took() { echo " $((SECONDS - started)) s"; }

step "debootstrap bookworm from the machine's apt mirror"
# What the stack's images have in common: Python (cmq), ssh both ways and rsync (workers
# and machine containers), Redis (the broker service), CA certificates, tini (PID 1).
debootstrap --variant=minbase \
    --include=python3,python3-venv,openssh-server,openssh-client,rsync,redis-server,ca-certificates,tini,procps \
    bookworm "$root" "$mirror" > "$work/debootstrap.log" 2>&1 \
    || { echo; tail -20 "$work/debootstrap.log" >&2; exit 1; }
took

step "configure: pip, CA bundle, trimmed"
# This machine's CA bundle, so that what it trusts (a proxy, a private index) is trusted.
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
# pip as this machine has it: its index and trusted hosts; local folders it names are not
# in the image and are left out.
python3 - "$root/etc/pip.conf" <<'PY'
import configparser, os, subprocess, sys
conf = configparser.ConfigParser()
conf["global"] = {"cert": "/etc/ssl/certs/ca-certificates.crt"}
listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
for line in listed.splitlines():
    key, _, value = line.partition("=")
    name = key.rpartition(".")[2]
    value = value.strip().strip("'\"")
    if name in ("index-url", "extra-index-url", "trusted-host", "timeout", "default-timeout"):
        kept = [v for v in value.split() if not v.startswith("file:") and not v.startswith("/")]
        if kept:
            conf["global"][name] = " ".join(kept)
with open(sys.argv[1], "w") as f:
    conf.write(f)
PY
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
rm -f "$root"/etc/ssh/ssh_host_*                    # each machine container gets its own
took

step "docker import (python:3.11-slim, redis:7)"
tar -C "$root" -c . | docker import --change 'CMD ["/bin/bash"]' - cmq-base:bookworm >/dev/null
docker tag cmq-base:bookworm python:3.11-slim
docker tag cmq-base:bookworm redis:7
took

step "docker build (the cmq image)"
docker build --network=host -q -t cmq:latest . > "$work/build.log" 2>&1 \
    || { echo; tail -30 "$work/build.log" >&2; exit 1; }
took
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^(cmq|python|redis):' | sed 's/^/build-offline: /'

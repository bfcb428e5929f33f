#!/usr/bin/env bash
# End-to-end run of `cmq vagrant` on this machine, with no network beyond it:
#   1. builds the bookworm libvirt box with vagrant/build-box.sh if it is missing;
#   2. starts a private libvirtd inside a network namespace made here (its NAT network,
#      dnsmasq and iptables rules exist only there) and a mount namespace (its config and
#      state live in the work directory; /etc/libvirt and /var/lib/libvirt stay as they were);
#   3. `cmq up`, `cmq vagrant up 2` (agents, QEMU in software), a map of 40 jobs with a sum
#      reduce through both VMs, `cmq vagrant destroy`, `cmq down`, timing each step.
#
#   sudo vagrant/e2e.sh          (work directory: $CMQ_E2E_DIR, default /var/tmp/cmq-e2e)
#
# Needs root (debootstrap, namespaces, libvirtd) and Debian's packages listed in PACKAGES,
# which it installs when they are missing.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${CMQ_E2E_DIR:-/var/tmp/cmq-e2e}
vms=${CMQ_E2E_VMS:-2}
box=$work/cmq-bookworm.box
cmq=${CMQ_BIN:-$repo/.venv/bin/cmq}
PACKAGES="vagrant vagrant-libvirt libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86
          qemu-utils debootstrap dnsmasq-base iptables openssh-client"

step() {  # step NAME COMMAND...: run, print its time, keep it for the summary
    local name=$1; shift
    local t0=$SECONDS
    echo "+ $*"
    "$@" | tee "$work/step.out"
    echo "  ($name: $((SECONDS - t0)) s)"
    printf '| %s | %d s |\n' "$name" $((SECONDS - t0)) >> "$work/timings.md"
}

stop_daemons() {  # the private libvirtd and virtlogd, by their pidfiles (no newline in them)
    local f
    for f in "$lv/run/libvirtd.pid" "$lv/run/virtlogd.pid"; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
        rm -f "$f"
    done
    return 0
}

inside() {
    # Private copies of libvirt's configuration and state, and a passwd with the
    # libvirt-qemu user that its QEMU driver looks up, seen only in this mount namespace.
    lv=$work/libvirt
    mkdir -p "$lv"/{etc,lib,log,cache,run}
    cp -n /etc/libvirt/* "$lv/etc/" 2>/dev/null || true
    printf 'user = "root"\ngroup = "root"\nsecurity_driver = "none"\n' > "$lv/etc/qemu.conf"
    cp /etc/passwd "$lv/passwd"; cp /etc/group "$lv/group"
    grep -q '^libvirt-qemu:' "$lv/passwd" || echo 'libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin' >> "$lv/passwd"
    grep -q '^libvirt-qemu:' "$lv/group" || echo 'libvirt-qemu:x:64055:' >> "$lv/group"
    mount --make-rprivate /
    mount --bind "$lv/etc" /etc/libvirt
    mount --bind "$lv/passwd" /etc/passwd
    mount --bind "$lv/group" /etc/group
    for d in lib log cache; do
        mkdir -p "/var/$d/libvirt"
        mount --bind "$lv/$d" "/var/$d/libvirt"
    done
    mkdir -p /run/libvirt
    mount -t tmpfs -o mode=0755 tmpfs /run/libvirt
    stop_daemons       # a stale run's, if any
    virtlogd -d -p "$lv/run/virtlogd.pid"
    libvirtd -d -p "$lv/run/libvirtd.pid"
    for _ in $(seq 100); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.1; done
    virsh -q -c qemu:///system version >/dev/null

    export VAGRANT_HOME=$work/vagrant.d
    vagrant box list 2>/dev/null | grep -q '^cmq/bookworm ' \
        || step "vagrant box add" vagrant box add --name cmq/bookworm "$box"

    local run=$work/run
    rm -rf "$run"; mkdir -p "$run"
    install -d -m 0700 "$run/home"
    cp -r "$work/seed/wheelhouse" "$run/home/"
    export PIP_NO_INDEX=1      # no network in here: agents install from the wheelhouse only
    printf 'machines: {}\n' > "$run/cmq.yaml"
    export CMQ_CONFIG=$run/cmq.yaml CMQ_HOME=$run/home
    unset CMQ_BROKER CMQ_HISTORY
    cd "$run"
    trap 'set +e; "$cmq" vagrant destroy; "$cmq" down; stop_daemons' EXIT
    step "cmq up" "$cmq" up
    step "cmq vagrant up $vms" "$cmq" vagrant up "$vms" --box=cmq/bookworm --accel=tcg --memory=768 --slots=2
    step "cmq machines" "$cmq" machines
    step "cmq map (40 jobs, sum)" "$cmq" map --label vagrant --reduce=sum 'echo $(( {} * {} ))' ::: $(seq 1 40)
    expected=$(seq 1 40 | awk '{s += $1 * $1} END {print s}')
    echo "expected (computed here): $expected"
    [ "$(cat "$work/step.out")" = "$expected" ] || { echo "e2e.sh: the map's sum is wrong" >&2; exit 1; }
    echo "+ cmq jobs --last=41 --json: where the map's jobs ran"
    "$cmq" jobs --last=41 --json | python3 -c 'import collections, json, sys
jobs = [j for j in json.load(sys.stdin) if j["machine"]]
print(dict(sorted(collections.Counter(j["machine"] + " " + j["state"] for j in jobs).items())))'
    step "cmq vagrant destroy" "$cmq" vagrant destroy
    # A VM that does not answer in time: vagrant's boot timeout, one line from cmq, and
    # nothing left in the inventory.
    echo "+ $cmq vagrant up 1 --timeout=1 (expected to fail)"
    local t0=$SECONDS
    if "$cmq" vagrant up 1 --box=cmq/bookworm --accel=tcg --memory=768 --mode=ssh --timeout=1 \
            > "$work/timeout.out" 2>&1; then
        echo "e2e.sh: a 1 s boot timeout did not fail" >&2; exit 1
    fi
    grep -v '^==> vm1:  --\|^    vm1: ' "$work/timeout.out" | tail -4
    printf '| cmq vagrant up 1 --timeout=1 (fails) | %d s |\n' $((SECONDS - t0)) >> "$work/timings.md"
    [ ! -e "$run/cmq.vagrant.yaml" ] || { echo "e2e.sh: the inventory kept a VM that never answered" >&2; exit 1; }
    step "cmq vagrant status" "$cmq" vagrant status
    step "cmq vagrant destroy" "$cmq" vagrant destroy
    step "cmq down" "$cmq" down
}

if [ "${1:-}" = "--inside" ]; then
    inside
    exit
fi

[ "$(id -u)" = 0 ] || { echo "e2e.sh: needs root (namespaces, libvirtd, debootstrap)" >&2; exit 2; }
missing=$(for p in $PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
    echo "e2e.sh: installing $(echo $missing)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
fi
mkdir -p "$work"
: > "$work/timings.md"
[ -f "$box" ] || step "build-box.sh" "$repo/vagrant/build-box.sh" "$box"
# The namespace has no network: build the agents' wheelhouse (cmqueue and its dependencies
# for the box's Python 3.11.2, and setuptools to build cmqueue) before going in.
step "wheelhouse" "$repo/.venv/bin/python" -c "import sys; from pathlib import Path; \
from cmqueue.fleet.agents import build_wheelhouse; build_wheelhouse(Path(sys.argv[1]), '3.11.2')" "$work/seed"
"$repo/.venv/bin/python" -m pip download -q -d "$work/seed/wheelhouse" 'setuptools>=77' wheel
ns=cmq-e2e-$$
ip netns add "$ns"
trap 'ip netns delete "$ns"' EXIT
ip -n "$ns" link set lo up
t0=$SECONDS
ip netns exec "$ns" unshare --mount "$0" --inside
echo "total inside the namespace: $((SECONDS - t0)) s"
echo; echo "| step | time |"; echo "|---|---:|"; cat "$work/timings.md"

#!/bin/sh
# The stack's ssh keys, made once into the keys volume (/keys) and kept across restarts:
# the controller's login key, a host key per machine container, the known_hosts that pins
# them (host keys stay checked) and the machines' authorized_keys.
#   cmq-stack-keys node01 node02 ...
set -eu
umask 077
mkdir -p /keys
cd /keys
[ -f id_ed25519 ] || ssh-keygen -q -t ed25519 -N '' -C cmq-stack -f id_ed25519
cp id_ed25519.pub authorized_keys
: > known_hosts.new
for machine in "$@"; do
    [ -f "host_$machine" ] || ssh-keygen -q -t ed25519 -N '' -C "$machine" -f "host_$machine"
    printf '%s %s\n' "$machine" "$(cut -d' ' -f1,2 "host_$machine.pub")" >> known_hosts.new
done
mv known_hosts.new known_hosts
chmod 0644 authorized_keys known_hosts ./*.pub
echo "keys: ready for $*"

#!/bin/sh
# Turn this machine into a cmq agent worker (run by `cmq machines join NAME` over ssh).
#   sh bootstrap.sh AGENT_DIR NAME
# AGENT_DIR holds what the controller sent: wheelhouse/ (cmqueue and its dependencies,
# built on the controller: machines need no internet), cmq.yaml (the worker's config,
# with the broker password: kept 0600), tls/ when the broker is reached on TLS (the CA,
# this machine's client certificate and key: 0600 in a 0700 folder) and these scripts.
# Installs a venv in AGENT_DIR/venv, then runs `cmq worker NAME` under a supervisor: a
# systemd unit where systemd runs and we are root, else supervise.sh as a pidfile daemon.
# Prints one line "supervisor: systemd" or "supervisor: pidfile PID".
set -eu
dir=$1 name=$2
cd "$dir"
dir=$(pwd -P)
chmod 600 cmq.yaml
if [ -d tls ]; then chmod 700 tls && chmod 600 tls/*; fi
command -v python3 >/dev/null 2>&1 || { echo "cmq-agent: python3 is missing on this machine" >&2; exit 3; }
if [ ! -x venv/bin/python ] || [ "$(cat venv/.wheels 2>/dev/null)" != "$(ls wheelhouse | cksum)" ]; then
  rm -rf venv
  python3 -m venv venv >venv.log 2>&1 || { echo "cmq-agent: cannot make a venv (Debian: apt-get install python3-venv)" >&2; tail -3 venv.log >&2; exit 3; }
  venv/bin/python -m pip install --quiet --no-index --find-links wheelhouse cmqueue >pip.log 2>&1 \
    || { echo "cmq-agent: installing cmqueue from the wheelhouse failed:" >&2; tail -3 pip.log >&2; exit 3; }
  ls wheelhouse | cksum > venv/.wheels
fi
sh "$dir/leave.sh" "$dir" "$name" --keep-config >/dev/null 2>&1 || true   # a previous agent, if any
if [ "$(id -u)" = 0 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  unit="cmq-agent-$name.service"
  cat > "/etc/systemd/system/$unit" <<UNIT
[Unit]
Description=cmq agent worker $name
After=network-online.target

[Service]
Environment=CMQ_HOME=$dir/home
ExecStart=$dir/venv/bin/python -m cmqueue --config $dir/cmq.yaml worker $name
WorkingDirectory=$dir
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
UNIT
  systemctl daemon-reload
  systemctl enable --now "$unit" >/dev/null 2>&1
  echo systemd > supervisor
  echo "supervisor: systemd"
else
  rm -f stop
  nohup setsid sh "$dir/supervise.sh" "$dir" "$name" >>supervise.log 2>&1 </dev/null &
  echo $! > supervise.pid
  echo pidfile > supervisor
  echo "supervisor: pidfile $!"
fi

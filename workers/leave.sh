#!/bin/sh
# Stop this machine's cmq agent worker and remove its config (the broker password) and its
# TLS client key.
#   sh leave.sh AGENT_DIR NAME [--keep-config]
# The venv and wheelhouse stay, so joining again is quick.
dir=$1 name=$2
cd "$dir" 2>/dev/null || exit 0
case "$(cat supervisor 2>/dev/null)" in
  systemd)
    systemctl disable --now "cmq-agent-$name.service" >/dev/null 2>&1
    rm -f "/etc/systemd/system/cmq-agent-$name.service"
    systemctl daemon-reload 2>/dev/null ;;
  pidfile)
    touch stop
    pid=$(cat supervise.pid 2>/dev/null)
    if [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; then
      i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
      kill -KILL "$pid" 2>/dev/null
    fi
    w=$(cat worker.pid 2>/dev/null)
    [ -n "$w" ] && kill -0 "$w" 2>/dev/null && kill -KILL "$w" 2>/dev/null
    rm -f supervise.pid worker.pid ;;
esac
rm -f supervisor
[ "${3:-}" = --keep-config ] || rm -rf cmq.yaml tls
echo "left"

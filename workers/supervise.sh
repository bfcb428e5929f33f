#!/bin/sh
# Keep `cmq worker NAME` running (where there is no systemd): restart it when it exits,
# waiting 1, 2, 4 ... up to 30 s between quick failures. SIGTERM (or a file AGENT_DIR/stop)
# stops the worker and this loop.
#   sh supervise.sh AGENT_DIR NAME
dir=$1 name=$2 child= wait=1
trap 'touch "$dir/stop"; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null; wait; exit 0' TERM INT
cd "$dir" || exit 1
while [ ! -e "$dir/stop" ]; do
  started=$(date +%s)
  CMQ_HOME="$dir/home" "$dir/venv/bin/python" -m cmqueue --config "$dir/cmq.yaml" worker "$name" >>"$dir/worker.log" 2>&1 &
  child=$!
  echo "$child" > "$dir/worker.pid"
  wait "$child"
  code=$?
  child=
  [ -e "$dir/stop" ] && break
  if [ $(( $(date +%s) - started )) -ge 60 ]; then wait=1; fi
  echo "$(date '+%F %T') worker exited ($code); restarting in ${wait}s"
  sleep "$wait"
  wait=$(( wait * 2 > 30 ? 30 : wait * 2 ))
done

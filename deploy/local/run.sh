#!/usr/bin/env bash
# Runs the whole pipeline on the embedded defaults: the tansu broker (SQLite storage under
# .omni/, so data survives a broker restart), Request Tracker on 127.0.0.1:8099, Dovecot on
# 127.0.0.1:1143, and every omni service.
#   deploy/local/run.sh            foreground; Ctrl-C stops everything
#   deploy/local/run.sh --detach   background; returns once every service is ready (make up)
#   deploy/local/run.sh --stop     stops what --detach started (make down)
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
state=${OMNI_STATE_DIR:-$here/.omni}
bin=${OMNI_BIN_DIR:-$here/target/debug}
export PATH="$HOME/.cargo/bin:$PATH"
export OMNI_STATE_DIR="$state"
mkdir -p "$state/logs"
# The Asterisk CDR file omni-calllog follows by default ([calllog.files.pbx] path, relative to the
# working directory: the repository under `make run`).
mkdir -p "$here/var/asterisk"
services=(gateway email normalizer router calllog)
admin_ports=(9181 9184 9182 9183 9185)

stop_all() {
  for name in "${services[@]}" broker; do
    if [ -f "$state/$name.pid" ]; then
      kill "$(cat "$state/$name.pid")" 2>/dev/null || true
    fi
  done
  for name in "${services[@]}" broker; do
    if [ -f "$state/$name.pid" ]; then
      pid=$(cat "$state/$name.pid")
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$state/$name.pid"
    fi
  done
  "$here/deploy/local/rt.sh" stop 8099
  "$here/deploy/local/dovecot.sh" stop 1143
}

wait_http() { # url what
  for _ in $(seq 300); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.2; done
  echo "$2 did not become ready; see $state/logs" >&2; return 1
}

if [ "${1:-}" = "--stop" ]; then stop_all; echo "stopped"; exit 0; fi

"$here/deploy/local/rt.sh" start 8099
"$here/deploy/local/dovecot.sh" start 1143
if ! (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; then
  # tansu reads the path of a sqlite:// URL relative to its working directory.
  (cd "$state" && exec nohup tansu broker \
    --listener-url tcp://127.0.0.1:9092 \
    --advertised-listener-url tcp://127.0.0.1:9092 \
    --storage-engine "sqlite://tansu.db" > "$state/logs/broker.log" 2>&1) &
  echo $! > "$state/broker.pid"
fi
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null && break; sleep 0.1; done
"$here/deploy/local/tansu-index.sh" "$state/tansu.db"
echo "broker listening on 127.0.0.1:9092 (storage $state/tansu.db)"

for i in "${!services[@]}"; do
  name=${services[$i]}
  nohup "$bin/omni-$name" > "$state/logs/$name.log" 2>&1 &
  echo $! > "$state/$name.pid"
done
for i in "${!services[@]}"; do
  wait_http "http://127.0.0.1:${admin_ports[$i]}/readyz" "omni-${services[$i]}"
  echo "omni-${services[$i]} ready (admin http://127.0.0.1:${admin_ports[$i]}/readyz)"
done
cat <<MSG

omni is running. Send a message:
  curl -sS -X POST http://127.0.0.1:8080/v1/messages -H 'Authorization: Bearer omni-dev-token' \\
    -H 'Content-Type: application/json' -d @crates/omni-channels/tests/fixtures/api/contact-form-tr.json
Or drop a mail into the local mailbox (IMAP 127.0.0.1:1143, support / support):
  ./target/debug/omni mail append crates/omni-channels/tests/fixtures/email/tr-windows-1254.eml
Or log calls the way Asterisk's cdr_csv does (omni-calllog follows var/asterisk/Master.csv):
  cat crates/omni-channels/tests/fixtures/asterisk/Master.csv >> var/asterisk/Master.csv
Tickets: http://127.0.0.1:8099/REST/2.0/tickets?query=id>0 (root / password)
Logs: $state/logs
MSG

if [ "${1:-}" = "--detach" ]; then exit 0; fi
trap 'echo; echo "stopping"; stop_all; exit 0' INT TERM
echo "Ctrl-C stops everything."
while true; do
  for name in "${services[@]}"; do
    if ! kill -0 "$(cat "$state/$name.pid")" 2>/dev/null; then
      echo "omni-$name exited; its log:" >&2; tail -20 "$state/logs/$name.log" >&2; stop_all; exit 1
    fi
  done
  sleep 1
done

#!/usr/bin/env bash
# Runs the whole pipeline on the embedded defaults: the tansu broker (SQLite storage under
# .omni/, so data survives a broker restart), Request Tracker on 127.0.0.1:8099, Dovecot on
# 127.0.0.1:1143, Postfix on 127.0.0.1:2525 (delivers every message to Dovecot's catch-all
# customers / customers), and every omni service.
#   deploy/local/run.sh            foreground; Ctrl-C stops everything: the services first (each
#                                  drains, up to its drain_timeout_secs), then the broker
#   deploy/local/run.sh --detach   background; returns once every service is ready (make up)
#   deploy/local/run.sh --stop     stops what --detach started (make down)
# Every process it starts carries OMNI_STACK=<state dir> in its environment. A second start sees
# what is already running: a service still running its current binary is kept, one whose binary
# was rebuilt since (its /proc/<pid>/exe is "(deleted)") is restarted, and one the pid files lost
# track of is stopped first. --stop stops every process that carries the mark, pid file or not.
# Each process runs in a session of its own (setsid): a Ctrl-C in the terminal reaches this script
# only, which stops the services while the broker they drain into still runs.
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
services=(gateway email normalizer router calllog replies sender notifier)
admin_ports=(9181 9184 9182 9183 9185 9186 9187 9188)

# Pids of every live process this stack started (marked by OMNI_STACK=$state).
stack_pids() {
  local environ pid
  for environ in /proc/[0-9]*/environ; do
    pid=${environ#/proc/}; pid=${pid%/environ}
    [ "$pid" = "$$" ] && continue
    tr '\0' '\n' 2>/dev/null < "$environ" | grep -xF "OMNI_STACK=$state" >/dev/null && echo "$pid"
  done
  return 0
}

# The pid in $state/NAME.pid when that process is alive and one of this stack's: marked, or
# (started by a run.sh from before the mark) running the binary the name stands for.
live_pid() {
  local pid exe
  pid=$(cat "$state/$1.pid" 2>/dev/null) || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  stack_pids | grep -x "$pid" >/dev/null && { echo "$pid"; return 0; }
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  exe=${exe% (deleted)}
  case "$1" in
    broker) [ "${exe##*/}" = tansu ] ;;
    prometheus) [ "${exe##*/}" = prometheus ] ;;
    *) [ "${exe##*/}" = "omni-$1" ] ;;
  esac && echo "$pid"
}

# Waits up to N tenths of a second for every pid to be gone; fails if one is still there.
wait_gone() { # tenths pid...
  local tenths=$1 pid alive; shift
  for _ in $(seq "$tenths"); do
    alive=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && return 0
    sleep 0.1
  done
  return 1
}

# Seconds a stopped process has to exit before it is killed: longer than the longest
# drain_timeout_secs in config/default.toml (the router's 15 s).
stop_wait_secs=${OMNI_STOP_WAIT_SECS:-20}

stop_pids() { # pid... : TERM, wait up to stop_wait_secs, then KILL
  [ $# -gt 0 ] || return 0
  kill "$@" 2>/dev/null || true
  wait_gone "$((stop_wait_secs * 10))" "$@" && return 0
  local pid
  for pid in "$@"; do
    kill -0 "$pid" 2>/dev/null && echo "pid $pid ($(cat "/proc/$pid/comm" 2>/dev/null)) still running after ${stop_wait_secs}s; killing it" >&2
  done
  kill -9 "$@" 2>/dev/null || true
  wait_gone 20 "$@" || true
}

stop_all() {
  local pids
  # Services first, so they do not log the broker going away; then whatever else is marked.
  mapfile -t pids < <(for name in "${services[@]}" sandbox prometheus; do live_pid "$name" || true; done)
  stop_pids "${pids[@]}"
  mapfile -t pids < <(stack_pids)
  stop_pids "${pids[@]}"
  for name in "${services[@]}" sandbox prometheus broker; do rm -f "$state/$name.pid"; done
  "$here/deploy/local/rt.sh" stop 8099
  "$here/deploy/local/postfix.sh" stop 2525
  "$here/deploy/local/dovecot.sh" stop 1143
}

# Starts omni-NAME unless this stack already runs its current binary.
start_service() {
  local name=$1 pid
  if pid=$(live_pid "$name"); then
    if readlink "/proc/$pid/exe" 2>/dev/null | grep -q ' (deleted)$'; then
      echo "omni-$name (pid $pid) runs a binary that was rebuilt since; restarting it"
      stop_pids "$pid"
    else
      echo "omni-$name already running (pid $pid)"
      return 0
    fi
  fi
  OMNI_STACK="$state" setsid nohup "$bin/omni-$name" > "$state/logs/$name.log" 2>&1 &
  echo $! > "$state/$name.pid"
}

wait_http() { # url what [pid]: the pid, when given, must stay alive (not another copy answering)
  for _ in $(seq 300); do
    if [ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null; then
      echo "$2 exited; see $state/logs" >&2; return 1
    fi
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "$2 did not become ready; see $state/logs" >&2; return 1
}

if [ "${1:-}" = "--stop" ]; then stop_all; echo "stopped"; exit 0; fi

# Processes of this stack that no pid file names (a pid file overwritten by an earlier start
# whose copies could not bind their ports): stop them before starting anything.
known=$(for name in "${services[@]}" sandbox prometheus broker; do live_pid "$name" || true; done)
mapfile -t strays < <(stack_pids | grep -vxF -f <(echo "${known:-none}") || true)
if [ ${#strays[@]} -gt 0 ]; then
  echo "stopping ${#strays[@]} process(es) of an earlier start that no pid file names: ${strays[*]}"
  stop_pids "${strays[@]}"
fi

"$here/deploy/local/rt.sh" start 8099
"$here/deploy/local/dovecot.sh" start 1143
"$here/deploy/local/postfix.sh" start 2525 1143
if pid=$(live_pid broker); then
  echo "broker already running (pid $pid)"
elif (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; then
  echo "a broker this stack did not start listens on 127.0.0.1:9092; using it"
else
  # tansu reads the path of a sqlite:// URL relative to its working directory.
  (cd "$state" && OMNI_STACK="$state" exec setsid nohup tansu broker \
    --listener-url tcp://127.0.0.1:9092 \
    --advertised-listener-url tcp://127.0.0.1:9092 \
    --storage-engine "sqlite://tansu.db" > "$state/logs/broker.log" 2>&1) &
  echo $! > "$state/broker.pid"
fi
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null && break; sleep 0.1; done
"$here/deploy/local/tansu-index.sh" "$state/tansu.db"
echo "broker listening on 127.0.0.1:9092 (storage $state/tansu.db)"

# The chat providers' send APIs, which the embedded config's sender accounts answer through.
start_service sandbox
wait_http "http://127.0.0.1:8095/readyz" "omni-sandbox" "$(cat "$state/sandbox.pid")"
echo "omni-sandbox ready (what omni sent to chat providers: http://127.0.0.1:8095/_sandbox/requests)"
for name in "${services[@]}"; do start_service "$name"; done
for i in "${!services[@]}"; do
  wait_http "http://127.0.0.1:${admin_ports[$i]}/readyz" "omni-${services[$i]}" "$(cat "$state/${services[$i]}.pid")"
  echo "omni-${services[$i]} ready (admin http://127.0.0.1:${admin_ports[$i]}/readyz)"
done
# Prometheus (Debian's package, installed by `make deps`) scraping every service with omni's
# alert rules (deploy/prometheus/), when it is installed and the port is free.
if pid=$(live_pid prometheus); then
  echo "prometheus already running (pid $pid)"
elif ! command -v prometheus >/dev/null; then
  echo "prometheus is not installed (make deps installs it); the stack runs without it"
elif (exec 3<>/dev/tcp/127.0.0.1/9090) 2>/dev/null; then
  echo "something this stack did not start listens on 127.0.0.1:9090; not starting Prometheus"
else
  OMNI_STACK="$state" setsid nohup prometheus --config.file="$here/deploy/prometheus/prometheus.yml" \
    --web.listen-address=127.0.0.1:9090 --storage.tsdb.path="$state/prometheus" \
    > "$state/logs/prometheus.log" 2>&1 &
  echo $! > "$state/prometheus.pid"
  wait_http "http://127.0.0.1:9090/-/ready" "prometheus" "$(cat "$state/prometheus.pid")"
  echo "prometheus ready (http://127.0.0.1:9090, alerts: http://127.0.0.1:9090/alerts)"
fi
cat <<MSG

omni is running. Send a message:
  curl -sS -X POST http://127.0.0.1:8080/v1/messages -H 'Authorization: Bearer omni-dev-token' \\
    -H 'Content-Type: application/json' -d @crates/omni-channels/src/api/fixtures/contact-form-tr.json
Or drop a mail into the local mailbox (IMAP 127.0.0.1:1143, support / support):
  ./target/debug/omni mail append crates/omni-channels/src/email/fixtures/tr-windows-1254.eml
Or log calls the way Asterisk's cdr_csv does (omni-calllog follows var/asterisk/Master.csv):
  cat crates/omni-channels/src/asterisk/fixtures/Master.csv >> var/asterisk/Master.csv
Tickets: http://127.0.0.1:8099/REST/2.0/tickets?query=id>0 (root / password)
Mail omni sends (SMTP 127.0.0.1:2525) lands in IMAP 127.0.0.1:1143, customers / customers
Chat answers omni sends (WhatsApp, Messenger, Instagram, Telegram, Slack, SMS) are listed at
  http://127.0.0.1:8095/_sandbox/requests
Metrics and alerts: http://127.0.0.1:9090 (Prometheus, when installed)
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

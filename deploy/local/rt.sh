#!/usr/bin/env bash
# A project-owned Request Tracker 5 for `make run` and the tests: its own site config and its own
# SQLite database under $OMNI_STATE_DIR/rt, copied from the pristine database Debian's package
# creates, with omni's custom fields and API user (omni / omni-local) loaded. It never touches
# /etc/request-tracker5's database.
#
#   deploy/local/rt.sh start PORT   start (idempotent) and wait until REST2 answers
#   deploy/local/rt.sh stop PORT    stop the instance on PORT
#   deploy/local/rt.sh reset PORT   stop, forget its database, start afresh
set -euo pipefail
cmd=${1:?usage: rt.sh start|stop|reset PORT}
port=${2:-8099}
here=$(cd "$(dirname "$0")/../.." && pwd)
state=${OMNI_STATE_DIR:-$here/.omni}/rt-$port
pristine=/var/lib/dbconfig-common/sqlite3/request-tracker5/rtdb
server=/usr/share/request-tracker5/libexec/rt-server

answers() { curl -fsS -o /dev/null -u root:password "http://127.0.0.1:$port/REST/2.0/queue/1" 2>/dev/null; }

stop() {
  if [ -f "$state/pid" ]; then
    kill "$(cat "$state/pid")" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$(cat "$state/pid")" 2>/dev/null || break; sleep 0.1; done
    rm -f "$state/pid"
  fi
}

start() {
  if answers; then echo "request tracker already answers on 127.0.0.1:$port"; return 0; fi
  [ -x "$server" ] || { echo "request tracker is not installed: run deploy/local/install.sh" >&2; exit 1; }
  mkdir -p "$state/etc.d"
  cat > "$state/RT_SiteConfig.pm" <<CONF
Set(\$DatabaseType, 'SQLite');
Set(\$DatabaseName, '$state/rtdb');
Set(\$rtname, 'omni-local');
Set(\$Organization, 'omni.local');
Set(\$WebDomain, '127.0.0.1');
Set(\$WebPort, $port);
Set(\$WebPath, '');
Set(\$WebBaseURL, 'http://127.0.0.1:$port');
Set(\$CorrespondAddress, 'support@omni.local');
Set(\$CommentAddress, 'support-comment@omni.local');
Set(\$LogToSTDERR, 'warning');
Set(\$LogToSyslog, undef);
# No MTA runs here: keep RT from trying to mail requestors on every ticket.
Set(\$MailCommand, 'testfile');
1;
CONF
  export RT_SITE_CONFIG="$state/RT_SiteConfig.pm" RT_SITE_CONFIG_DIR="$state/etc.d"
  if [ ! -f "$state/rtdb" ]; then
    cp "$pristine" "$state/rtdb"
    OMNI_RT_PASSWORD=omni-local /usr/sbin/rt-setup-database --action insert --skip-create \
      --datafile "$here/deploy/request-tracker/omni-initialdata" > "$state/setup.log" 2>&1 \
      || { cat "$state/setup.log" >&2; rm -f "$state/rtdb"; exit 1; }
    # No MTA runs here, so RT's notification and autoreply scrips only render mail nobody gets,
    # which doubles the time of every correspondence. (For a real RT, disable at least "On
    # Correspond Notify Requestors and Ccs" for omni's queue: see the README.)
    sqlite3 "$state/rtdb" "UPDATE Scrips SET Disabled = 1 WHERE Description LIKE '%Notify%' OR Description LIKE '%Autoreply%';"
  fi
  # A session of its own: a Ctrl-C in the terminal of `make run` does not stop it under the router.
  setsid nohup "$server" --port "$port" > "$state/rt.log" 2>&1 &
  echo $! > "$state/pid"
  for _ in $(seq 120); do
    if answers; then echo "request tracker answers on http://127.0.0.1:$port (root / password)"; return 0; fi
    kill -0 "$(cat "$state/pid")" 2>/dev/null || break
    sleep 0.5
  done
  echo "request tracker did not start; its log:" >&2; tail -20 "$state/rt.log" >&2; exit 1
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  reset) stop; rm -rf "$state"; start ;;
  *) echo "usage: rt.sh start|stop|reset PORT" >&2; exit 64 ;;
esac

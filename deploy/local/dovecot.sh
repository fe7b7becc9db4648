#!/usr/bin/env bash
# A project-owned Dovecot IMAP server for `make run` and the tests: its own config, mail
# directory and run directory under $OMNI_STATE_DIR/dovecot-PORT, plain IMAP on loopback only,
# one account support / support. It never touches /etc/dovecot.
#
#   deploy/local/dovecot.sh start PORT        start (idempotent), wait until IMAP answers
#   deploy/local/dovecot.sh stop PORT         stop it
#   deploy/local/dovecot.sh reset PORT        stop, delete its mail, start afresh
#   deploy/local/dovecot.sh deliver PORT FILE [FOLDER]
#                                             deliver a message to a folder of support (default
#                                             INBOX) with doveadm save, as local delivery does
set -euo pipefail
cmd=${1:?usage: dovecot.sh start|stop|reset|deliver PORT [FILE]}
port=${2:-1143}
here=$(cd "$(dirname "$0")/../.." && pwd)
state=${OMNI_STATE_DIR:-$here/.omni}/dovecot-$port
conf=$state/dovecot.conf

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port" && head -c 4 <&3 | grep -q '\* OK') 2>/dev/null; }

write_config() {
  mkdir -p "$state/run" "$state/state" "$state/mail"
  chown dovecot:dovecot "$state/mail"
  echo "support:{PLAIN}support" > "$state/passwd"
  cat > "$conf" <<CONF
protocols = imap
listen = 127.0.0.1
base_dir = $state/run
state_dir = $state/state
log_path = $state/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 100
mail_location = maildir:$state/mail/%u
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $state/passwd
}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home=$state/mail/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
}
CONF
}

start() {
  if answers; then echo "dovecot already answers on 127.0.0.1:$port"; return 0; fi
  command -v dovecot >/dev/null || { echo "dovecot is not installed: run deploy/local/install.sh" >&2; exit 1; }
  write_config
  # Detach its stdio: the daemon would otherwise hold the caller's stdout open (a pipe reading
  # `make up` would never end).
  dovecot -c "$conf" </dev/null >>"$state/dovecot.log" 2>&1
  for _ in $(seq 100); do
    if answers; then echo "dovecot answers on 127.0.0.1:$port (support / support)"; return 0; fi
    sleep 0.1
  done
  echo "dovecot did not start; its log:" >&2; tail -20 "$state/dovecot.log" >&2; exit 1
}

stop() {
  [ -f "$conf" ] && doveadm -c "$conf" stop 2>/dev/null || true
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  reset) stop; rm -rf "$state"; start ;;
  deliver) doveadm -c "$conf" save -u support -m "${4:-INBOX}" < "${3:?a message file}" ;;
  *) echo "usage: dovecot.sh start|stop|reset|deliver PORT [FILE]" >&2; exit 64 ;;
esac

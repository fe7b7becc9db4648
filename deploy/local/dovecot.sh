#!/usr/bin/env bash
# A project-owned Dovecot IMAP server for `make run` and the tests: its own config, mail
# directory and run directory under $OMNI_STATE_DIR/dovecot-PORT, loopback only, two accounts:
# support / support (the mailbox omni reads) and customers / customers (the catch-all into whose
# Maildir, mail/customers, the local SMTP server deploy/local/postfix.sh delivers every message
# omni sends). It never touches /etc/dovecot.
#
#   127.0.0.1:PORT      IMAP; plain login allowed, STARTTLS offered
#   127.0.0.1:PORT+1    IMAPS (TLS from the first byte)
#   XOAUTH2 / OAUTHBEARER: a bearer token is checked by POSTing it (token=...) to
#   http://127.0.0.1:PORT+2/introspect (RFC 7662); an answer {"active": true, "username":
#   "support"} logs in. Nothing listens there unless a test starts it.
#
# The certificate (for 127.0.0.1 and localhost) is signed by a CA made once per state
# directory: $OMNI_STATE_DIR/dovecot-PORT/tls/ca.pem, the `ca_file` a client needs.
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

# A CA and a server certificate for 127.0.0.1 and localhost, made once per state directory.
make_certificates() {
  local tls=$state/tls
  [ -f "$tls/server.pem" ] && [ -f "$tls/ca.pem" ] && return 0
  command -v openssl >/dev/null || { echo "openssl is not installed (apt-get install openssl)" >&2; exit 1; }
  mkdir -p "$tls"
  (
    umask 077
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj "/CN=omni local test CA ($port)" -keyout "$tls/ca-key.pem" -out "$tls/ca.pem" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj "/CN=localhost" -keyout "$tls/server-key.pem" -out "$tls/server.csr"
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
      "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" > "$tls/server.ext"
    openssl x509 -req -days 3650 -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca-key.pem" \
      -CAcreateserial -extfile "$tls/server.ext" -out "$tls/server.pem"
  ) >"$tls/openssl.log" 2>&1 || { echo "cannot make the TLS certificates:" >&2; cat "$tls/openssl.log" >&2; exit 1; }
  chmod 644 "$tls/ca.pem" "$tls/server.pem"
}

write_config() {
  mkdir -p "$state/run" "$state/state" "$state/mail"
  chown dovecot:dovecot "$state/mail"
  printf '%s\n' "support:{PLAIN}support" "customers:{PLAIN}customers" > "$state/passwd"
  make_certificates
  cat > "$state/oauth2.conf.ext" <<CONF
# Token introspection (RFC 7662) by a local test server; see dovecot.sh.
introspection_mode = post
introspection_url = http://127.0.0.1:$((port + 2))/introspect
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 5000
CONF
  cat > "$conf" <<CONF
protocols = imap
listen = 127.0.0.1
base_dir = $state/run
state_dir = $state/state
log_path = $state/dovecot.log
# TLS: STARTTLS on the IMAP port, IMAPS on the next one. Plain login stays allowed on the
# IMAP port (loopback only) for make run and the tests.
ssl = yes
ssl_cert = <$state/tls/server.pem
ssl_key = <$state/tls/server-key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 100
mail_location = maildir:$state/mail/%u
# Passwords for LOGIN / PLAIN and for lookups without a login (\`none\`: doveadm, the static
# userdb); bearer tokens only for XOAUTH2 / OAUTHBEARER.
passdb {
  driver = passwd-file
  mechanisms = plain login none
  args = scheme=PLAIN username_format=%u $state/passwd
}
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $state/oauth2.conf.ext
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
    address = 127.0.0.1
    port = $((port + 1))
    ssl = yes
  }
}
CONF
}

start() {
  if answers; then
    echo "dovecot already answers on 127.0.0.1:$port$([ -f "$state/tls/ca.pem" ] && echo "; CA: $state/tls/ca.pem")"
    return 0
  fi
  command -v dovecot >/dev/null || { echo "dovecot is not installed: run deploy/local/install.sh" >&2; exit 1; }
  write_config
  # Detach its stdio: the daemon would otherwise hold the caller's stdout open (a pipe reading
  # `make up` would never end).
  dovecot -c "$conf" </dev/null >>"$state/dovecot.log" 2>&1
  for _ in $(seq 100); do
    if answers; then
      echo "dovecot answers on 127.0.0.1:$port (support / support; STARTTLS), IMAPS on 127.0.0.1:$((port + 1)); CA: $state/tls/ca.pem"
      return 0
    fi
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

#!/usr/bin/env bash
# A project-owned Postfix SMTP server for `make run` and the tests: a real MTA that accepts mail
# from loopback without authentication and delivers EVERY message, whatever its recipients'
# domains, into one catch-all mailbox of the project's Dovecot (deploy/local/dovecot.sh): IMAP user
# customers / customers, INBOX. Nothing ever leaves the machine.
#
# Its own instance under $OMNI_STATE_DIR/postfix-SMTP_PORT: config directory (etc/: main.cf and a
# master.cf of its own, nothing chrooted), queue/, data/ and its log postfix.log. It never
# touches /etc/postfix's configuration or queue, needs no systemd, and instances on other ports
# run beside it.
#
#   127.0.0.1:SMTP_PORT  SMTP (ESMTP, 8BITMIME, PIPELINING, SMTPUTF8; no AUTH, no STARTTLS);
#                        relays for 127.0.0.0/8 only
#
# Delivery: every envelope recipient is rewritten to customers@omni.local (virtual_alias_maps
# static:), and every address is routed (transport_maps static:) to Postfix's virtual(8) agent,
# which writes each message, as user dovecot, into the Maildir Dovecot on DOVECOT_PORT serves as
# customers' INBOX ($OMNI_STATE_DIR/dovecot-DOVECOT_PORT/mail/customers, dovecot.sh's
# mail_location). One file per envelope recipient: a message to two addresses (a Bcc) arrives
# twice, each copy with its own `X-Original-To: <address as sent>`. Headers are otherwise kept as
# sent (no Message-ID, From or Date added, no address rewritten); Postfix prepends Return-Path:,
# Delivered-To: customers@omni.local, X-Original-To: and its Received: line.
# Why a Maildir and not Dovecot's LMTP: Dovecot 2.3's LMTP does not offer SMTPUTF8, so Postfix
# bounces every message whose client asked for SMTPUTF8 (lettre does for a non-ASCII address,
# ayşe@örnek.com.tr); virtual(8) has no such limit, and delivers while Dovecot is stopped too.
#
#   deploy/local/postfix.sh start SMTP_PORT [DOVECOT_PORT]  start (idempotent), wait until SMTP
#                                                        answers; DOVECOT_PORT defaults to 1143
#   deploy/local/postfix.sh stop SMTP_PORT                  stop it, and every process it started
#   deploy/local/postfix.sh reset SMTP_PORT [DOVECOT_PORT]  stop, delete its queue, start afresh
#                                        (the mailbox is Dovecot's: dovecot.sh reset empties it)
set -euo pipefail
cmd=${1:?usage: postfix.sh start|stop|reset SMTP_PORT [DOVECOT_PORT]}
port=${2:-2525}
dovecot_port=${3:-1143}
here=$(cd "$(dirname "$0")/../.." && pwd)
root=${OMNI_STATE_DIR:-$here/.omni}
state=$root/postfix-$port
conf=$state/etc
mailroot=$root/dovecot-$dovecot_port/mail

answers() {
  ( exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    IFS= read -r -t 2 line <&3 || exit 1
    printf 'QUIT\r\n' >&3
    [[ $line == 220* ]] ) 2>/dev/null
}

# This instance's master runs (`master -t` succeeds when it does NOT: no lock is held).
running() {
  [ -f "$conf/main.cf" ] || return 1
  ! "$(postconf -dh daemon_directory)/master" -t -c "$conf" 2>/dev/null
}

# Every process of this instance: Postfix passes MAIL_CONFIG (its config directory) on to all
# the daemons its master starts.
instance_pids() {
  local environ pid
  for environ in /proc/[0-9]*/environ; do
    pid=${environ#/proc/}; pid=${pid%/environ}
    [ "$pid" = "$$" ] && continue
    tr '\0' '\n' 2>/dev/null < "$environ" | grep -xF "MAIL_CONFIG=$conf" >/dev/null && echo "$pid"
  done
  return 0
}

# Writes FILE from stdin unless it already holds exactly that; sets changed=1 when it wrote.
# The file is dated 2 s back: Postfix programs wait (up to 1.5 s) while main.cf looks freshly
# modified, as if an edit were in progress, which would slow a fresh start threefold.
put() {
  local new
  new=$(cat)
  if [ ! -f "$1" ] || [ "$(cat "$1")" != "$new" ]; then
    printf '%s\n' "$new" > "$1"
    touch -d "@$(($(date +%s) - 2))" "$1"
    changed=1
  fi
}

write_config() {
  changed=0
  # The queue's subdirectories are made by `postfix start` (post-install create-missing).
  mkdir -p "$conf" "$state/queue" "$state/data"
  chmod 755 "$state" "$conf" "$state/queue"
  chown "$(postconf -dh mail_owner):" "$state/data"
  chmod 700 "$state/data"
  put "$conf/main.cf" <<CONF
# Written by deploy/local/postfix.sh; rewritten on every start.
compatibility_level = 3.6
queue_directory = $state/queue
data_directory = $state/data
maillog_file = $state/postfix.log
maillog_file_prefixes = $state
syslog_name = postfix-$port
myhostname = smtp.omni.local
mydomain = omni.local
myorigin = \$myhostname
smtpd_banner = \$myhostname ESMTP omni local SMTP (delivers everything to customers@omni.local)

# Loopback only, relay for loopback clients only, no AUTH and no TLS.
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
smtpd_sasl_auth_enable = no
smtpd_tls_security_level = none
smtp_tls_security_level = none
smtpd_peername_lookup = no
disable_vrfy_command = yes
smtpd_error_sleep_time = 0
message_size_limit = 52428800

# No domain is local, relayed or virtual: no delivery to system users, no aliases.
mydestination =
relay_domains =
virtual_alias_domains =
virtual_mailbox_domains =
local_recipient_maps =
alias_maps =
alias_database =
# The catch-all: every envelope recipient becomes customers@omni.local (envelope only; the
# headers keep the addresses as sent), and every address goes to virtual(8), which writes into
# Dovecot's Maildir of customers (mail_location = maildir:.../mail/%u) as Dovecot's user.
virtual_alias_maps = static:customers@omni.local
transport_maps = static:virtual
virtual_mailbox_base = $mailroot
virtual_mailbox_maps = static:customers/
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
virtual_minimum_uid = $uid
virtual_mailbox_limit = 0
default_transport = error:5.7.1 the omni local SMTP server delivers nothing off this machine
local_transport = \$default_transport
relay_transport = \$default_transport

# Headers as sent: no address rewriting, no Message-ID, Date or From added.
local_header_rewrite_clients =
remote_header_rewrite_domain =
append_dot_mydomain = no
always_add_missing_headers = no
biff = no

# Deliver at once; a deferred message (Dovecot's mail directory missing) is retried every
# second or two, for an hour.
in_flow_delay = 0
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
maximal_queue_lifetime = 1h
bounce_queue_lifetime = 1h
CONF
  put "$conf/master.cf" <<CONF
# Written by deploy/local/postfix.sh. Nothing chrooted (column 5 is n): the daemons use the
# state directory and Dovecot's Maildir at their real paths.
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:$port inet n - n - - smtpd
pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
proxywrite unix  -       -       n       -       1       proxymap
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
virtual    unix  -       n       n       -       -       virtual
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
CONF
}

start() {
  command -v postfix >/dev/null && command -v postconf >/dev/null \
    || { echo "postfix is not installed: run deploy/local/install.sh" >&2; exit 1; }
  [ "$(id -u)" = 0 ] || { echo "postfix.sh runs Postfix's master, which needs root" >&2; exit 1; }
  uid=$(id -u dovecot 2>/dev/null) && gid=$(id -g dovecot) \
    || { echo "no user dovecot: run deploy/local/install.sh" >&2; exit 1; }
  write_config
  if running; then
    if [ "$changed" = 1 ]; then
      postfix -c "$conf" reload >/dev/null 2>&1 || true
    fi
  else
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "something else already listens on 127.0.0.1:$port" >&2; exit 1
    fi
    # Detach its stdio, as dovecot.sh does: a pipe reading the caller would never end.
    postfix -c "$conf" start </dev/null >>"$state/postfix.log" 2>&1 \
      || { echo "postfix did not start; its log:" >&2; tail -20 "$state/postfix.log" >&2; exit 1; }
  fi
  [ -d "$mailroot" ] || echo "warning: $mailroot does not exist yet; mail waits in the queue" \
    "until \`deploy/local/dovecot.sh start $dovecot_port\` makes it" >&2
  for _ in $(seq 100); do
    if answers; then
      echo "postfix answers SMTP on 127.0.0.1:$port; every message goes to IMAP customers / customers on Dovecot 127.0.0.1:$dovecot_port (log: $state/postfix.log)"
      return 0
    fi
    sleep 0.1
  done
  echo "postfix does not answer on 127.0.0.1:$port; its log:" >&2; tail -20 "$state/postfix.log" >&2; exit 1
}

stop() {
  local pids
  # `postfix stop` waits up to 5 s for its master, then kills its process group.
  if running; then postfix -c "$conf" stop </dev/null >/dev/null 2>&1 || true; fi
  # Whatever still carries this instance's mark (a daemon in the middle of a delivery).
  mapfile -t pids < <(instance_pids)
  [ ${#pids[@]} -gt 0 ] || return 0
  kill "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 50); do
    mapfile -t pids < <(instance_pids)
    [ ${#pids[@]} -gt 0 ] || return 0
    sleep 0.1
  done
  kill -9 "${pids[@]}" 2>/dev/null || true
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  reset) stop; rm -rf "$state"; start ;;
  *) echo "usage: postfix.sh start|stop|reset SMTP_PORT [DOVECOT_PORT]" >&2; exit 64 ;;
esac

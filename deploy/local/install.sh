#!/usr/bin/env bash
# Installs what the embedded defaults and the tests need, once; later runs find it and return
# at once. Used by `make run`, `make test` and .ci/run.
#   - the tansu broker (a Kafka-compatible broker in Rust), built from its published sources with
#     omni's patches to its group coordinator and its SQLite statements
#     (deploy/local/tansu/build.sh: ~12 min once, then cached in ~/.cargo/bin; docs/adr/0001 and
#     0004 say why);
#   - Request Tracker 5 with SQLite from Debian's packages (the local helpdesk);
#   - Dovecot from Debian's packages (the local IMAP mailbox);
#   - Postfix from Debian's packages (the local SMTP server, deploy/local/postfix.sh; the package's
#     own instance on port 25 is not used, and may not even start in a container);
#   - Python packages for the independent protobuf consumer used in tests, and the providers'
#     official SDKs (twilio, slack_sdk) that sign the webhook tests' requests;
#   - wrk from Debian's packages, the load generator of `make bench-webhooks`;
#   - promtool, from Debian's prometheus package, which checks and unit-tests the alert rules and
#     the dashboard's queries (deploy/prometheus, deploy/grafana);
#   - kubernetes-validate and check-jsonschema (PyPI), which check deploy/kubernetes and the
#     compose file against their schemas without a cluster or a Docker engine;
#   - Chromium and ChromeDriver from Debian's packages, the real browser the chat widget's tests
#     drive (tests/tests/web_chat.rs).
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH"

need_apt=()
[ -x /usr/share/request-tracker5/libexec/rt-server ] || need_apt+=(request-tracker5 rt5-db-sqlite rt5-standalone)
command -v dovecot >/dev/null || need_apt+=(dovecot-imapd)
[ -x /usr/sbin/postfix ] || need_apt+=(postfix)
# sqlite3 adds the index tansu 0.6 lacks on its record headers (deploy/local/tansu-index.sh).
command -v sqlite3 >/dev/null || need_apt+=(sqlite3)
command -v curl >/dev/null || need_apt+=(curl)
command -v patch >/dev/null || need_apt+=(patch)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v chromedriver >/dev/null || need_apt+=(chromium chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing from Debian: ${need_apt[*]} (about 2 minutes, once)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

"$(dirname "$0")/tansu/build.sh"

if ! python3 -c 'import confluent_kafka, google.protobuf, grpc_tools, twilio, slack_sdk, requests, kubernetes_validate, check_jsonschema' 2>/dev/null; then
  echo "installing python packages for the independent consumer check, webhook signing and deploy file checks"
  python3 -m pip install --quiet --disable-pip-version-check confluent-kafka protobuf grpcio-tools twilio==9.13.0 slack_sdk==3.47.0 requests \
    kubernetes-validate==1.37.0 check-jsonschema==0.39.0
fi
echo "dependencies ready"

# omni: `make help` lists the targets. CI (.ci/run) calls the same targets.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
# The Request Tracker, Dovecot and Postfix instances the end-to-end tests use (separate from
# `make run`'s).
TEST_RT_PORT ?= 8098
TEST_IMAP_PORT ?= 11143
TEST_SMTP_PORT ?= 12525
# Size of the backfill test's mailbox in `make test` (`make test-backfill` uses 10,000).
TEST_BACKFILL_MESSAGES ?= 300
TEST_ENV = OMNI_TEST_RT_URL=http://127.0.0.1:$(TEST_RT_PORT) OMNI_TEST_IMAP_PORT=$(TEST_IMAP_PORT) \
  OMNI_TEST_DOVECOT_CONF=$(CURDIR)/.omni/dovecot-$(TEST_IMAP_PORT)/dovecot.conf OMNI_TEST_SMTP_PORT=$(TEST_SMTP_PORT)
# Fresh test servers before a run, stopped after it (keeping the run's exit status).
TEST_SERVERS_RESET = deploy/local/rt.sh reset $(TEST_RT_PORT) && deploy/local/dovecot.sh reset $(TEST_IMAP_PORT) \
  && deploy/local/postfix.sh reset $(TEST_SMTP_PORT) $(TEST_IMAP_PORT)
TEST_SERVERS_STOP = status=$$?; deploy/local/postfix.sh stop $(TEST_SMTP_PORT); deploy/local/rt.sh stop $(TEST_RT_PORT); \
  deploy/local/dovecot.sh stop $(TEST_IMAP_PORT); exit $$status

.PHONY: help deps build run up down test test-unit test-backfill bench chaos bench-email bench-webhooks bench-chat bench-routing bench-state bench-understand accuracy fuzz fuzz-short lint doc fmt clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

deps: ## install the broker, Request Tracker and python test packages (cached after the first time)
	@deploy/local/install.sh

build: ## build every service and the omni CLI
	cargo build --workspace --bins

run: deps build ## run the whole pipeline in the foreground on the embedded defaults; Ctrl-C stops it
	@deploy/local/run.sh

up: deps build ## start the whole pipeline in the background (keeps what runs), return once everything is ready
	@deploy/local/run.sh --detach

down: ## stop every process `make up` or `make run` started
	@deploy/local/run.sh --stop

test: deps build ## run every test: unit tests, then end-to-end tests against tansu, Request Tracker, Dovecot and Postfix
	@$(TEST_SERVERS_RESET)
	$(TEST_ENV) OMNI_TEST_BACKFILL_MESSAGES=$(TEST_BACKFILL_MESSAGES) OMNI_TEST_BACKFILL_THREAD=30 \
	  cargo test --workspace --no-fail-fast; \
	  $(TEST_SERVERS_STOP)

test-backfill: deps build ## the 10,000-message mailbox through connector kills (long: RT takes ~0.4 s per correspondence)
	@$(TEST_SERVERS_RESET)
	$(TEST_ENV) OMNI_TEST_BACKFILL_MESSAGES=10000 OMNI_TEST_BACKFILL_THREAD=100 \
	  cargo test -p omni-e2e --test email_backfill -- --nocapture a_large_mailbox; \
	  $(TEST_SERVERS_STOP)

# `make bench BENCH_ARGS="--messages 5000 --rate 20"`: sizes and durations are flags (`--help` lists them).
BENCH_ARGS ?=
bench: deps ## benchmark the whole pipeline and the website chat (release build); write target/bench/report.{md,json}, chat.json
	cargo build --release --workspace --bins
	@$(TEST_SERVERS_RESET)
	$(TEST_ENV) target/release/omni-bench $(BENCH_ARGS) && \
	  $(TEST_ENV) OMNI_BENCH_REPORT_DIR=$(CURDIR)/target/bench cargo test --release -p omni-e2e --test web_chat -- --ignored --nocapture chat_benchmark; \
	  $(TEST_SERVERS_STOP)

# `make chaos CHAOS_ARGS="--load-secs 600 --kills 50"`; `make test` runs a short variant.
CHAOS_ARGS ?=
chaos: deps build ## SIGKILL every service, restart the broker, fail the helpdesk under load: 0 lost, 0 duplicated or exit 1
	@$(TEST_SERVERS_RESET)
	$(TEST_ENV) target/debug/omni-chaos $(CHAOS_ARGS); \
	  $(TEST_SERVERS_STOP)

bench-email: deps build ## print email normalization and backfill rates (figures, not a test)
	cargo bench -p omni-channels --bench normalize_email
	@deploy/local/dovecot.sh reset $(TEST_IMAP_PORT)
	$(TEST_ENV) cargo test -p omni-e2e --test email_backfill -- --ignored --nocapture backfill_and_normalization_benchmark; \
	  status=$$?; deploy/local/dovecot.sh stop $(TEST_IMAP_PORT); exit $$status

bench-webhooks: deps build ## print accepted webhooks/s and p50/p99 latency, broker ack included (wrk on loopback; figures, not a test)
	cargo test -p omni-e2e --test webhooks_bench -- --ignored --nocapture webhook_load_benchmark

bench-chat: deps build ## print chat figures: agent answer -> widget and message -> ack p50/p99, MiB per 1,000 idle connections (figures, not a test)
	@$(TEST_SERVERS_RESET)
	$(TEST_ENV) cargo test -p omni-e2e --test web_chat -- --ignored --nocapture chat_benchmark; \
	  $(TEST_SERVERS_STOP)

bench-routing: deps build ## print routed events/s and ingest-to-delivery p50/p99 against a Zendesk-shaped stub (figures, not a test)
	@$(TEST_SERVERS_RESET)
	$(TEST_ENV) cargo test -p omni-e2e --test routing_bench -- --ignored --nocapture routing_benchmark; \
	  $(TEST_SERVERS_STOP)

# `make bench-router BENCH_ARGS="--sweep-delays-ms 100 --sweep-in-flight 32"` for one run.
bench-router: deps build ## print the router alone against the Zendesk-shaped stub per helpdesk delay and in-flight bound (debug build; figures, not a test)
	@$(TEST_SERVERS_RESET)
	$(TEST_ENV) target/debug/omni-bench --router-only $(BENCH_ARGS); \
	  $(TEST_SERVERS_STOP)

# cargo-fuzz needs nightly flags (sanitizers): RUSTC_BOOTSTRAP lets the stable toolchain take them.
# Built as shipped (-O: release, no debug assertions, which cargo-fuzz would turn on for every
# crate, mail-parser's internal ones included) but with overflow checks on.
FUZZ_SECONDS ?= 600
# libFuzzer flags; fuzz-short fixes the seed so CI's run is the same every time.
FUZZ_FLAGS ?=
# `make bench-state OMNI_BENCH_STATE_EVENTS=1000000` for a million delivered events.
bench-state: deps ## print the router's state restore time and memory for a large state, and its expiry (release build; figures, not a test)
	cargo build --release --workspace --bins
	@$(TEST_SERVERS_RESET)
	$(TEST_ENV) OMNI_TEST_READY_SECS=900 cargo test --release -p omni-e2e --test router_state_retention -- --ignored --nocapture router_state_restore_benchmark; \
	  $(TEST_SERVERS_STOP)

bench-understand: ## print messages/s of language detection + tagging alone (figures, not a test)
	cargo bench -p omni-understand --bench understand

accuracy: ## print language accuracy and per-tag precision/recall on the labelled set (tests/labelled)
	cargo test -p omni-understand --test accuracy -- --nocapture

fuzz: ## fuzz every adapter's parsing/normalization and the signature checks, FUZZ_SECONDS per target (long)
	@command -v cargo-fuzz >/dev/null || cargo install --quiet --locked cargo-fuzz
	cargo run --quiet -p omni-channels --example fuzz_seeds -- fuzz/corpus
	cd fuzz && for target in normalize webhook; do \
	  RUSTFLAGS=-Coverflow-checks=on RUSTC_BOOTSTRAP=1 cargo fuzz run -O $$target corpus/$$target -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 $(FUZZ_FLAGS) || exit 1; \
	done

fuzz-short: ## the CI-sized fuzz run: 60 s per target
	$(MAKE) fuzz FUZZ_SECONDS=60 FUZZ_FLAGS=-seed=1

test-unit: ## run the unit tests only (no servers needed)
	cargo test --workspace --exclude omni-e2e

lint: ## formatting and clippy, warnings are errors
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

doc: ## the crates' API docs (target/doc), rustdoc warnings are errors (not in CI: a fresh machine checks every dependency again)
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace

fmt: ## format the code
	cargo fmt --all

clean: ## remove build output and local state (.omni)
	cargo clean
	rm -rf .omni

# DriftDB: two commands do everything on a fresh Debian 12 machine.
#   make run   set up, build, start Postgres 15 with DriftDB and a demo database, open psql
#   make test  set up, then run every test on PostgreSQL 15, 17 and 18
#   make bench DriftDB vs heap vs periods side by side; results into docs/benchmarks.md
#   make bench-scale  DriftDB vs heap at 10M rows and 10k / 1M commits of history (#19)
.PHONY: run stop test setup lint bench bench-scale kill-test

run:
	@bash scripts/run.sh

stop:
	@bash scripts/stop.sh

test:
	@bash scripts/test.sh

bench:
	@bash bench/run.sh
	@bash bench/tpcb.sh
	@bash bench/onekey.sh

bench-scale:
	@bash bench/scale.sh

setup:
	@bash scripts/setup.sh

# The long kill -9 run (make test runs 20 cycles; this runs 200 per version).
kill-test:
	@bash scripts/killtest.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

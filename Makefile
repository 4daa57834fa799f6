# One-line aliases; the logic lives in xtask (cargo xtask --help).
.PHONY: demo test services tidy

# The main job on the embedded defaults: init, migrate, build the client, serve, and query through it from Deno.
demo:
	cargo xtask demo

# Every check: starts the databases the tests need, then fmt, clippy and all tests.
test:
	cargo xtask test

services:
	cargo xtask services

tidy:
	cargo xtask tidy

# Shortcuts; each target is one documented command.
.PHONY: local test bench lambdas events fmt

local:     ## run the whole system locally on http://127.0.0.1:8000
	cargo run --release --bin gpufleet -- serve

test:      ## everything CI runs (installs what the tests need)
	scripts/test.sh

bench:     ## claim / free-count / wake-latency benchmark (release build)
	scripts/bench.sh

lambdas:   ## debug build of every Lambda binary
	cargo build -p gpufleet-functions --bins

events:    ## regenerate the sample API Gateway events in events/
	python3 events/generate.py

fmt:
	cargo fmt --all

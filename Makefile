# Shortcuts; each target is one documented command.
.PHONY: local test bench coldstart lambdas lambda-build template-check events fmt

local:     ## run the whole system locally on http://127.0.0.1:8000
	cargo run --release --bin gpufleet -- serve

test:      ## everything CI runs (installs what the tests need)
	scripts/test.sh

bench:     ## claim / free-count / wake-latency benchmark (release build)
	scripts/bench.sh

coldstart: ## cold start (exec to ready, to first answer) and peak RSS of Lambda bootstraps
	scripts/coldstart.sh

lambdas:   ## debug build of every Lambda binary
	cargo build -p gpufleet-functions --bins

lambda-build: ## release build of every function for deployment (target/lambda/<function>/bootstrap)
	scripts/lambda_build.sh

template-check: ## cfn-lint and sam validate --lint on template.yaml (tools in .venv)
	.venv/bin/cfn-lint --regions us-east-1 -- template.yaml
	SAM_CLI_TELEMETRY=0 .venv/bin/sam validate --lint --region us-east-1 --template-file template.yaml

events:    ## regenerate the sample API Gateway events in events/
	python3 events/generate.py

fmt:
	cargo fmt --all

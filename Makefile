# Shortcuts; each target is one documented command.
.PHONY: local test bench coldstart lambda lambda-build template template-check events fmt

local:     ## run the whole system locally on http://127.0.0.1:8000
	cargo run --release --bin gpufleet -- serve

test:      ## everything CI runs (installs what the tests need)
	scripts/test.sh

bench:     ## claim / free-count / wake-latency benchmark (release build)
	scripts/bench.sh

coldstart: ## cold start (exec to ready, to first answer) and peak RSS of Lambda bootstraps
	scripts/coldstart.sh

lambda:    ## debug build of the Lambda artifact (for this machine)
	cargo build -p gpufleet-functions --bin gpufleet-lambda

lambda-build: ## release build of the one artifact every function runs (target/lambda/gpufleet-lambda/bootstrap)
	scripts/lambda_build.sh

template:  ## regenerate template.yaml from infra/template.base.yaml, the function catalogue and the routes
	cargo run -q --bin gpufleet -- template --out template.yaml

template-check: ## cfn-lint and sam validate --lint on template.yaml (tools in .venv)
	.venv/bin/cfn-lint --regions us-east-1 -- template.yaml
	SAM_CLI_TELEMETRY=0 .venv/bin/sam validate --lint --region us-east-1 --template-file template.yaml

events:    ## regenerate the sample API Gateway events in events/
	python3 events/generate.py

fmt:
	cargo fmt --all

# tokenwarden Makefile. Every tool is pinned and installed into bin/ through
# the Go module proxy; `make test` on a fresh machine needs nothing but Go.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)

# How much each fuzz target runs inside `make test`: a count of inputs, not a
# duration, because Go 1.26's fuzzer can fail a duration run with "context
# deadline exceeded" at the deadline (go.dev/issue/75804). For a longer run:
# make fuzz FUZZTIME=200000x (or a duration such as 5m, which may hit that bug).
FUZZTIME ?= 30000x
TEST_TIMEOUT ?= 30m
# Envtest cases mostly wait on real time (the §7 fault scenarios last minutes):
# more of them at once than the default GOMAXPROCS (2 here).
TEST_PARALLEL ?= 6
E2E_TIMEOUT ?= 20m
IMG ?= tokenwarden:dev

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-16s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRD and RBAC manifests from the markers, and copy them into the Helm chart.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./..." output:crd:artifacts:config=config/crd/bases
	@$(MAKE) --no-print-directory -s helm-crds

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: fmt
fmt: ## Run gofmt on the code.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: golangci-lint ## Run golangci-lint.
	$(GOLANGCI_LINT) run ./...

.PHONY: control-plane
control-plane: ## Build (or find) kube-apiserver and etcd for envtest; prints their folder.
	@hack/control-plane.sh $(LOCALBIN)

.PHONY: test
test: manifests generate vet helm promtool ## Unit and envtest suites against a real kube-apiserver and etcd (the chart and the alert rules included), then a short fuzz of each parser.
	@assets="$$(hack/control-plane.sh $(LOCALBIN))"; \
	echo "Using control plane binaries in $$assets"; \
	KUBEBUILDER_ASSETS="$$assets" go test -race -parallel $(TEST_PARALLEL) -timeout $(TEST_TIMEOUT) ./... ; \
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME)

.PHONY: test-e2e
test-e2e: ## End to end: the built manager and sandbox against a real control plane with the shipped CRD and RBAC, and `make demo` driven to Ready and Ctrl-C (needs kubectl).
	go build -o $(LOCALBIN)/manager ./cmd
	go build -o $(LOCALBIN)/sandbox ./cmd/sandbox
	@assets="$$(hack/control-plane.sh $(LOCALBIN))"; \
	echo "Using control plane binaries in $$assets"; \
	KUBEBUILDER_ASSETS="$$assets" go test -tags e2e -count=1 -v -timeout $(E2E_TIMEOUT) ./test/e2e/...

.PHONY: bench
bench: ## Benchmark the built manager against a real control plane and the sandbox: one table, and JSON under bench/results/ (BENCH_SCALE=quick: a short run).
	go build -o $(LOCALBIN)/manager ./cmd
	go run ./test/bench -manager $(LOCALBIN)/manager

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each.
	@for pkg in $$(go list ./...); do \
	  for target in $$(go test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$target for $(FUZZTIME)"; \
	    go test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

.PHONY: verify
verify: manifests generate fmt ## Fail when go.mod/go.sum are not tidy or generated code, manifests or formatting drift from the source (whole tree).
	@if ! go mod tidy -diff; then \
	  echo "go.mod or go.sum is not tidy; run go mod tidy and commit (the diff above)"; \
	  exit 1; \
	fi
	@if [ -n "$$(git status --porcelain)" ]; then \
	  echo "the tree is not clean after make manifests generate fmt; commit the changes (or add stray files to .gitignore):"; \
	  git status --porcelain; \
	  git --no-pager diff --stat; \
	  exit 1; \
	fi
	@echo "verify: clean"

##@ Build

.PHONY: build
build: manifests generate vet ## Build the manager binary into bin/.
	CGO_ENABLED=0 go build -trimpath -o $(LOCALBIN)/manager ./cmd

.PHONY: run
run: manifests generate ## Run the manager against the cluster of the current kubeconfig.
	go run ./cmd --leader-elect=false

.PHONY: demo
demo: ## Run a local control plane, the sandbox provider and the operator with the four samples; watch tokens refresh live. Ctrl-C stops everything.
	@echo "demo: building bin/manager, bin/sandbox and bin/demo"
	@go build -o $(LOCALBIN)/manager ./cmd
	@go build -o $(LOCALBIN)/sandbox ./cmd/sandbox
	@go build -o $(LOCALBIN)/demo ./cmd/demo
	@echo "demo: kube-apiserver and etcd from bin/k8s, or built from source on the first run (8-15 minutes, progress below)"
	@assets="$$(hack/control-plane.sh $(LOCALBIN))"; \
	KUBEBUILDER_ASSETS="$$assets" exec $(LOCALBIN)/demo $(DEMO_ARGS)

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build -t $(IMG) .

##@ Deployment

.PHONY: install
install: manifests ## Install the CRD into the cluster of the current kubeconfig.
	kubectl apply -k config/crd

.PHONY: uninstall
uninstall: manifests ## Remove the CRD from the cluster of the current kubeconfig.
	kubectl delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: manifests ## Deploy the operator into the cluster of the current kubeconfig.
	kubectl apply -k config/default

.PHONY: undeploy
undeploy: ## Remove the operator from the cluster of the current kubeconfig.
	kubectl delete --ignore-not-found -k config/default

##@ Tools

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN)
$(CONTROLLER_GEN):
	@mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	@mv $(LOCALBIN)/controller-gen $@

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT)
$(GOLANGCI_LINT):
	@mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	@mv $(LOCALBIN)/golangci-lint $@

# Targets of the larger pieces (the real node, the image, the chart, the
# monitoring bundle, the kubectl plugin) live in their own files.
include $(sort $(wildcard hack/make/*.mk))

# The kubectl plugin (`kubectl tokenwarden`, cmd/kubectl-tokenwarden): its
# binary, the release archives the krew manifest names, and its tests.

PLUGIN ?= $(LOCALBIN)/kubectl-tokenwarden
PLUGIN_DIST ?= $(CURDIR)/dist/plugin
PLUGIN_PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
PLUGIN_TEST_TIMEOUT ?= 10m
PLUGIN_LDFLAGS ?= -s -w

##@ kubectl plugin

.PHONY: plugin
plugin: ## Build the kubectl plugin into bin/kubectl-tokenwarden (put bin/ on your PATH to run `kubectl tokenwarden`).
	CGO_ENABLED=0 go build -trimpath -ldflags '$(PLUGIN_LDFLAGS)' -o $(PLUGIN) ./cmd/kubectl-tokenwarden

.PHONY: plugin-test
plugin-test: ## The plugin's tests: status, renew and inspect against a real kube-apiserver, check offline, every --help.
	@assets="$$(hack/control-plane.sh $(LOCALBIN))"; \
	echo "Using control plane binaries in $$assets"; \
	KUBEBUILDER_ASSETS="$$assets" go test -count=1 -timeout $(PLUGIN_TEST_TIMEOUT) ./internal/plugin/... ./cmd/kubectl-tokenwarden/...

.PHONY: plugin-dist
plugin-dist: ## Build the krew archives (dist/plugin/kubectl-tokenwarden_<os>_<arch>.tar.gz) and print their sha256 for plugins/krew/tokenwarden.yaml.
	@rm -rf $(PLUGIN_DIST) && mkdir -p $(PLUGIN_DIST)
	@for p in $(PLUGIN_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; dir=$(PLUGIN_DIST)/$${os}_$${arch}; \
		mkdir -p $$dir; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch go build -trimpath -ldflags '$(PLUGIN_LDFLAGS)' -o $$dir/kubectl-tokenwarden ./cmd/kubectl-tokenwarden; \
		tar -C $$dir --sort=name --owner=0 --group=0 --numeric-owner --mtime='1970-01-01' -czf $(PLUGIN_DIST)/kubectl-tokenwarden_$${os}_$${arch}.tar.gz .; \
		rm -rf $$dir; \
	done
	@cd $(PLUGIN_DIST) && sha256sum *.tar.gz

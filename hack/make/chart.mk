# The Helm chart (charts/tokenwarden) and the monitoring bundle
# (config/prometheus). helm and promtool build from the Go module proxy into
# bin/, like controller-gen. See docs/helm.md and docs/monitoring.md.

HELM_VERSION ?= v3.22.0
PROMTOOL_VERSION ?= v0.316.0
HELM ?= $(LOCALBIN)/helm-$(HELM_VERSION)
PROMTOOL ?= $(LOCALBIN)/promtool-$(PROMTOOL_VERSION)
CHART_DIR ?= charts/tokenwarden
CHART_TEST_TIMEOUT ?= 10m

##@ Chart and monitoring

.PHONY: helm-crds
helm-crds: ## Copy into the chart (run after make manifests) what it takes from config/: the CRDs (crds/), the RBAC of config/rbac, the alert rules and the dashboard (files/).
	@mkdir -p $(CHART_DIR)/crds $(CHART_DIR)/files
	rm -f $(CHART_DIR)/crds/*.yaml
	cp config/crd/bases/*.yaml $(CHART_DIR)/crds/
	rm -rf $(CHART_DIR)/files/rbac && mkdir -p $(CHART_DIR)/files/rbac
	cp config/rbac/*.yaml $(CHART_DIR)/files/rbac/
	cp config/prometheus/rules.yaml $(CHART_DIR)/files/prometheus-rules.yaml
	cp config/prometheus/dashboard.json $(CHART_DIR)/files/dashboard.json

.PHONY: helm-lint
helm-lint: helm ## helm lint the chart: defaults, namespaced mode, every optional piece on, every optional piece off.
	$(HELM) lint --strict $(CHART_DIR)
	$(HELM) lint --strict $(CHART_DIR) --values $(CHART_DIR)/ci/namespaced-values.yaml
	$(HELM) lint --strict $(CHART_DIR) --values $(CHART_DIR)/ci/full-values.yaml
	$(HELM) lint --strict $(CHART_DIR) --values $(CHART_DIR)/ci/minimal-values.yaml

.PHONY: helm-test
helm-test: helm controller-gen ## Render the chart, server-side dry-run every object on a real kube-apiserver, compare RBAC and Pod settings with the kustomize install (test/chart).
	@assets="$$(hack/control-plane.sh $(LOCALBIN))"; \
	echo "Using control plane binaries in $$assets"; \
	HELM="$(HELM)" CONTROLLER_GEN="$(CONTROLLER_GEN)" KUBEBUILDER_ASSETS="$$assets" \
	  go test -count=1 -v -timeout $(CHART_TEST_TIMEOUT) ./test/chart/... 2>&1 | grep -E '^(=== RUN|--- |\s+\S+_test\.go|ok|FAIL|PASS|panic)'

.PHONY: monitoring-test
monitoring-test: promtool ## promtool check and test the alert rules (a firing and a silent case each); check every query of the rules and the dashboard names an exported metric (test/monitoring).
	PROMTOOL="$(PROMTOOL)" go test -count=1 -v ./test/monitoring/... 2>&1 | grep -Ev '^\s*$$'

.PHONY: helm
helm: $(HELM)
$(HELM):
	@mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	@mv $(LOCALBIN)/helm $@

.PHONY: promtool
promtool: $(PROMTOOL)
$(PROMTOOL):
	@mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)
	@mv $(LOCALBIN)/promtool $@

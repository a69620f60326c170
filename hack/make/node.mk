##@ Real node

NODE_IMAGE_DIR ?= $(LOCALBIN)/images/node
NODE_TEST_TIMEOUT ?= 30m
# The kubelet's syncFrequency for the run; the test measures the default
# (1m) separately on the same node.
NODE_SYNC_FREQUENCY ?= 10s

.PHONY: node-build
node-build: ## Build kubelet, kube-controller-manager, kube-scheduler, kube-proxy and containerd into bin/ (and apt-get install runc and the CNI plugins when missing).
	@hack/node/build.sh $(LOCALBIN) >/dev/null

.PHONY: node-images
node-images: ## Single-arch images for the node (manager tokenwarden:node, sandbox, consumer, pause) as tarballs in bin/images/node, with Go tooling only.
	@mkdir -p $(NODE_IMAGE_DIR)
	@go build -o $(LOCALBIN)/image ./hack/image
	@set -e; for spec in ./cmd:/manager:tokenwarden \
	    ./cmd/sandbox:/sandbox:tokenwarden-sandbox \
	    ./hack/node/consumer:/consumer:tokenwarden-consumer \
	    ./hack/node/pause:/pause:tokenwarden-pause; do \
	  IFS=: read -r pkg entry name <<<"$$spec"; \
	  SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(LOCALBIN)/image -pkg $$pkg -entrypoint $$entry \
	    -name $$name:node -tar $(NODE_IMAGE_DIR)/$$name.tar >/dev/null; \
	done
	@echo "node images in $(NODE_IMAGE_DIR)"

.PHONY: node-shell
node-shell: node-build node-images ## A shell next to a real node (root): KUBECONFIG is set; exit to stop and clean up.
	@hack/node/run.sh bash -c 'export KUBECONFIG=$$NODE_KUBECONFIG; exec bash -i'

.PHONY: test-node
test-node: node-build node-images ## The shipped install on a real node (kubelet, containerd): Pod Security, leader Lease, metrics auth, consumer Pods across refreshes, Secret-to-file delays (root; about 15 minutes).
	go build -o $(LOCALBIN)/sandbox ./cmd/sandbox
	go test -c -tags node -o $(LOCALBIN)/node.test ./test/node
	NODE_SYNC_FREQUENCY=$(NODE_SYNC_FREQUENCY) hack/node/run.sh \
	  $(LOCALBIN)/node.test -test.v -test.count=1 -test.timeout $(NODE_TEST_TIMEOUT) \
	    -repo $(CURDIR) -sandbox $(LOCALBIN)/sandbox

.PHONY: test-node-helm
test-node-helm: node-build node-images helm ## As test-node, with the operator installed by helm install of charts/tokenwarden (root; about 6 minutes, no default-sync phase).
	go build -o $(LOCALBIN)/sandbox ./cmd/sandbox
	go test -c -tags node -o $(LOCALBIN)/node.test ./test/node
	NODE_SYNC_FREQUENCY=$(NODE_SYNC_FREQUENCY) hack/node/run.sh \
	  $(LOCALBIN)/node.test -test.v -test.count=1 -test.timeout $(NODE_TEST_TIMEOUT) \
	    -repo $(CURDIR) -sandbox $(LOCALBIN)/sandbox -helm $(HELM) -default-sync-samples 0

##@ Image (no Docker engine)

# Every timestamp in the image is the commit's time, so one commit gives one
# digest wherever it is built; 0 outside a git checkout.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64
IMAGE_DIR ?= $(LOCALBIN)/images

.PHONY: image
image: ## Build the operator image $(IMG) as an OCI index (IMAGE_PLATFORMS) with Go tooling only: bin/images/tokenwarden (OCI layout) and bin/images/tokenwarden.tar; prints its digest.
	@mkdir -p $(IMAGE_DIR)
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) go run ./hack/image -pkg ./cmd -entrypoint /manager \
	  -platforms $(IMAGE_PLATFORMS) -name $(IMG) \
	  -layout $(IMAGE_DIR)/tokenwarden -tar $(IMAGE_DIR)/tokenwarden.tar

.PHONY: test-image
test-image: ## Build the image twice and compare digests; check it against the Dockerfile.
	go test -count=1 -timeout 20m ./hack/image/...

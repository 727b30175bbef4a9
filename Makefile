# Thin wrappers around the scripts the README names; the scripts need no make.
.PHONY: all setup demo test unit scenarios bench fmt vet

all: vet unit

setup:
	bash scripts/host-setup.sh

demo:
	./scripts/demo.sh

test:
	./scripts/test.sh

unit:
	go test $$(go list ./... | grep -v /scenarios)

scenarios:
	go test -v -timeout 85m ./scenarios/...

fmt:
	gofmt -w .

vet:
	go vet ./...

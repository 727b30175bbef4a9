# Thin wrappers around the scripts the README names; the scripts need no make.
.PHONY: all setup demo test unit scenarios bench fmt vet

all: vet unit

setup:
	bash scripts/host-setup.sh

demo:
	./scripts/demo.sh

test:
	./scripts/test.sh

# Every test that boots no VM: all packages but scenarios/, and the tests of
# scenarios/ that -short leaves (its boot tests skip themselves under it).
unit:
	go test $$(go list ./... | grep -v '/scenarios$$')
	go test -short ./scenarios/

scenarios:
	go test -v -timeout 85m ./scenarios/...

fmt:
	gofmt -w .

vet:
	go vet ./...

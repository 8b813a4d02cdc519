# Shortcuts; the README's two commands need only Go.
.PHONY: run test test-pg vet fmt build docker

run:
	go run .

test:
	go test ./...

# The CI run: gofmt, vet, and the suite on SQLite and a fresh PostgreSQL database.
test-pg:
	bash .ci/run

vet:
	go vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

build:
	CGO_ENABLED=0 go build -trimpath -o bin/smartauth .

docker:
	docker build -t smartauth .

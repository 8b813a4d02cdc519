# Shortcuts; the README's two commands need only Go.
.PHONY: run test test-pg vet fmt build docker bench

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

# Load test on a scratch PostgreSQL database, created and dropped here.
BENCH_PG ?= postgres://postgres@127.0.0.1:5432
bench: build
	@db=smartauth_bench_$$$$; \
	psql "$(BENCH_PG)/postgres" -qc "CREATE DATABASE $$db" && \
	DATABASE_URL="$(BENCH_PG)/$$db?sslmode=disable" SMARTAUTH_MASTER_KEY=$$(head -c 32 /dev/urandom | base64) \
		./bin/smartauth bench $(BENCH_FLAGS); \
	status=$$?; psql "$(BENCH_PG)/postgres" -qc "DROP DATABASE $$db WITH (FORCE)"; exit $$status

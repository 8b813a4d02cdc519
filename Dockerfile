# Pure Go (no cgo, SQLite included), so the binary runs on a static base image.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /smartauth .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /smartauth /smartauth
ENV SMARTAUTH_ADDR=0.0.0.0:8080 SMARTAUTH_DATA_DIR=/data
EXPOSE 8080
USER nonroot
ENTRYPOINT ["/smartauth"]
CMD ["serve"]

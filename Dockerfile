# Pure Go (no cgo, SQLite included), so the binary runs on a static base image.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /smartauth . && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /smartauth /smartauth
# The data folder (the embedded database and its generated master key)
# belongs to the unprivileged user and is a volume, so it outlives the
# container. The demo stays off: the server listens on every interface.
# (/out holds only the folder, so the folder is what gets the owner.)
COPY --from=build --chown=65532:65532 /out /
ENV SMARTAUTH_ADDR=0.0.0.0:8080 SMARTAUTH_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080
USER nonroot
ENTRYPOINT ["/smartauth"]
CMD ["serve"]

# syntax=docker/dockerfile:1
#
# digicert-sidecar container image.
#
#   docker build -t digicert-sidecar:0.1.0 .
#   docker run --rm digicert-sidecar:0.1.0 --help
#
# Build stage: a static (musl) release binary, so the final stage needs no libc.
# Final stage: `scratch` with the binary, CA roots, a passwd entry for the numeric
# non-root user, nothing else: no shell, no package manager. That is also why there is
# no HEALTHCHECK here: orchestrators probe GET /healthz and /readyz on the admin port
# (9901) instead (see deploy/kubernetes and deploy/compose).
#
# For reproducible builds, pin the base image by digest as well as by tag
# (rust:1.95-bookworm@sha256:...) once you build in your own CI.

FROM rust:1.95-bookworm AS build

# musl-tools gives musl-gcc, which `ring` (the TLS crypto) needs to compile its C and
# assembly for the musl target.
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl

WORKDIR /src
COPY . .

# The cache mounts keep the crate registry and the target directory between builds
# (BuildKit); the binary is copied out of the cached target dir in the same step.
# `--version` proves the static binary runs before it is shipped.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl --bin digicert-sidecar \
    && install -D -m 0755 target/x86_64-unknown-linux-musl/release/digicert-sidecar /out/usr/local/bin/digicert-sidecar \
    && /out/usr/local/bin/digicert-sidecar --version \
    && install -D -m 0644 /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ca-certificates.crt \
    && mkdir -p /out/etc/digicert-sidecar \
    && printf 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' > /out/etc/passwd \
    && printf 'nonroot:x:65532:\n' > /out/etc/group

FROM scratch

LABEL org.opencontainers.image.title="digicert-sidecar" \
      org.opencontainers.image.description="A local credential sidecar for the DigiCert APIs: plain HTTP in, authenticated HTTPS out." \
      org.opencontainers.image.licenses="Apache-2.0"

# The binary bundles the web PKI roots (webpki-roots); the system bundle is there for
# tools and for `ca_file` users who want to point at it.
COPY --from=build /out/ /

ENV PATH=/usr/local/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

# Numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532

# 8080: the proxy listener. Keep it on 127.0.0.1 and share the network namespace with
# the application (a pod, or `network_mode: service:sidecar` in Compose): the sidecar
# refuses a non-loopback listen address unless `allow_non_loopback = true`.
# 9901: the admin listener (/healthz, /readyz, /metrics); it may bind 0.0.0.0 so that
# kubelet probes and Prometheus reach it.
EXPOSE 8080 9901

# The configuration is mounted, never baked in: a ConfigMap in Kubernetes, a read-only
# bind mount in Compose. Credentials are mounted files under /run/secrets/...
ENTRYPOINT ["digicert-sidecar"]
CMD ["run", "--config", "/etc/digicert-sidecar/config.toml"]

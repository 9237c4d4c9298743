# syntax=docker/dockerfile:1
#
# digicert-sidecar container image: one static binary in `scratch`.
#
#   docker build -t digicert-sidecar:0.1.0 .
#   docker run --rm digicert-sidecar:0.1.0 --help
#
# From a static binary built beside the image (what CI does, with buildah: .ci/image):
#
#   deploy/release-build
#   mkdir -p dist && cp target/x86_64-unknown-linux-gnu/release/digicert-sidecar dist/
#   docker build --build-arg BINARY=prebuilt -f Dockerfile -t digicert-sidecar:0.1.0 dist
#
# Build stage: deploy/release-build, the ordinary gnu target linked statically
# (`+crt-static`, a static-pie binary), so the final stage needs no libc, and optimised with
# the profile in deploy/pgo (profile-guided optimisation; skipped, with a message, if the
# image's Rust is not the one the profile was made with).
# Final stage: `scratch` with the binary, nothing else: no shell, no libraries, no CA
# bundle (the web PKI roots are built in; SSL_CERT_FILE/SSL_CERT_DIR add corporate ones),
# no passwd file (the user is numeric). That is also why there is no HEALTHCHECK here:
# orchestrators probe GET /healthz and /readyz on the admin port (9901) instead (see
# deploy/kubernetes and deploy/compose).
#
# For reproducible builds, pin the base image by digest as well as by tag
# (rust:1.95-bookworm@sha256:...) once you build in your own CI.

# Where the binary comes from: "build" (compiled here) or "prebuilt" (a static
# digicert-sidecar at the top of the build context).
ARG BINARY=build

# The exact Rust release: the PGO profile in deploy/pgo is read only by the rustc that made it
# (deploy/pgo/rustc); another one builds without it.
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the crate registry and the target directory between builds
# (BuildKit); the binary is copied out of the cached target dir in the same step.
# Debug info and symbols are stripped (panic locations stay); `--version` proves the binary runs.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    deploy/release-build \
    && install -D -m 0755 target/x86_64-unknown-linux-gnu/release/digicert-sidecar /out/usr/local/bin/digicert-sidecar \
    && strip --strip-unneeded /out/usr/local/bin/digicert-sidecar \
    && /out/usr/local/bin/digicert-sidecar --version

FROM scratch AS prebuilt
COPY --chmod=0755 digicert-sidecar /out/usr/local/bin/digicert-sidecar

# hadolint ignore=DL3006
FROM ${BINARY} AS binary

FROM scratch

LABEL org.opencontainers.image.title="digicert-sidecar" \
      org.opencontainers.image.description="A local credential sidecar for the DigiCert APIs: plain HTTP in, authenticated HTTPS out." \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=binary /out/ /

ENV PATH=/usr/local/bin

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

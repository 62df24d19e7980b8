# syntax=docker/dockerfile:1
#
# pullgate admission webhook image.
#   docker build -t pullgate:0.1.0 --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
# The runtime image holds glibc, libgcc and CA certificates (distroless cc), the binary, and nothing else:
# no shell, no package manager. It runs as the numeric user 65532 so runAsNonRoot can verify it.

FROM rust:1-bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src

# Dependencies first, in their own layer: compile them against a dummy crate so that editing src/ does not
# rebuild the whole dependency graph. Explicit [[bench]], [[test]] and [[example]] targets get a dummy
# file too, or cargo would refuse to load the manifest.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches tests examples \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && awk '/^\[\[(bench|test|example)\]\]/ { kind = $0; gsub(/[][]/, "", kind); next } \
         /^\[/ { kind = "" } \
         kind != "" && /^name *=/ { name = $0; gsub(/^name *= *"|".*$/, "", name); print kind "s", name }' Cargo.toml \
    | sed 's/^benchs /benches /' \
    | while read -r dir name; do echo 'fn main() {}' > "${dir}/${name}.rs"; done \
 && cargo build --release --locked --bin pullgate \
 && rm -rf src benches tests examples

# The real build. The dummy crate's fingerprints are removed so cargo cannot mistake it for this one.
COPY . .
RUN rm -rf target/release/.fingerprint/pullgate-* target/release/deps/pullgate-* target/release/deps/libpullgate-* \
 && cargo build --release --locked --bin pullgate \
 && install -D -m 0555 target/release/pullgate /out/pullgate \
 && /out/pullgate --help > /dev/null

FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="pullgate" \
      org.opencontainers.image.description="Kubernetes admission webhook that keeps imagePullSecrets and images in step" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=build /out/pullgate /usr/local/bin/pullgate

USER 65532:65532
# 8443: HTTPS admission (/mutate, /validate, /healthz, /readyz); 9090: plain-HTTP /metrics.
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/pullgate"]
CMD ["serve"]

# The `gantry` binary, which every Gantry component runs (scheduler, webhook, node agent, quota
# API; see charts/gantry). No registry publishes it: build it from the repository root and push it
# to yours, then install the chart with image.repository set to it (docs/install.md):
#   docker build -t REGISTRY/gantry:0.1.0 . && docker push REGISTRY/gantry:0.1.0
#
# Builder: the Rust toolchain the workspace is tested with; SQLite is compiled in (rusqlite's
# bundled feature) and protoc comes vendored, so nothing else is installed.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The image's binary carries no debug information and no symbol table (the workspace's release
# profile keeps `debug = 1` for local profiling): about a seventh of the size (179 MB stripped to
# 27 MB). Panics still print their message and location; backtraces lose function names.
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=symbols
RUN cargo build --release --locked -p gantry \
 && install -D -m 0755 target/release/gantry /out/gantry

# Runtime: glibc and libgcc only, no shell, non-root (uid 65532, as the chart's pods run).
# NVML (libnvidia-ml.so.1) is not in the image: the node agent loads it at run time from what the
# NVIDIA container runtime injects on GPU nodes.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/gantry /usr/local/bin/gantry
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/gantry"]

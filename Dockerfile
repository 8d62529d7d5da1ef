# The `gantry` binary, which every Gantry component runs (scheduler, webhook, node agent, quota
# API; see charts/gantry). Build from the repository root:
#   docker build -t ghcr.io/gantry-dev/gantry:0.1.0 .
#
# Builder: the Rust toolchain the workspace is tested with; SQLite is compiled in (rusqlite's
# bundled feature) and protoc comes vendored, so nothing else is installed.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p gantry \
 && install -D -m 0755 target/release/gantry /out/gantry

# Runtime: glibc and libgcc only, no shell, non-root (uid 65532, as the chart's pods run).
# NVML (libnvidia-ml.so.1) is not in the image: the node agent loads it at run time from what the
# NVIDIA container runtime injects on GPU nodes.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/gantry /usr/local/bin/gantry
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/gantry"]

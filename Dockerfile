# syntax=docker/dockerfile:1
# Build: the full toolchain; protoc is not needed (build.rs compiles the proto with protox).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ibex-api

# Run: only the binary, on a distroless base (glibc, CA certificates, no shell), as non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/ibex-api /usr/local/bin/ibex-api
USER nonroot:nonroot
ENV IBEX_API_HOST=0.0.0.0 \
    IBEX_API_PORT=8010
# 8010: the API; 9464: Prometheus metrics (IBEX_API_METRICS_ADDR).
EXPOSE 8010 9464
# The binary probes its own /health: no curl or shell in the image.
HEALTHCHECK --interval=10s --timeout=4s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/ibex-api", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/ibex-api"]

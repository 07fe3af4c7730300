# The fraudstream image of docker-compose.yml: the binary, the topologies
# (relative to WORKDIR /app), and curl for the compose file's health check.
# Build and run stages are both Debian bookworm (same glibc).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin fraudstream

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
# A user of its own; /state (checkpoints, report) is its, and a new named
# volume mounted there takes that ownership.
RUN useradd --system --no-create-home --home-dir /app fraudstream \
    && mkdir /state && chown fraudstream /state
COPY --from=build /src/target/release/fraudstream /usr/local/bin/fraudstream
COPY topologies /app/topologies
WORKDIR /app
USER fraudstream
# GET /health and /metrics: service.listen, 0.0.0.0:9464 in docker-compose.yml.
EXPOSE 9464
ENTRYPOINT ["fraudstream"]

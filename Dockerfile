# The fraudstream engine image used by docker-compose.yml.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin fraudstream

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/fraudstream /usr/local/bin/fraudstream
COPY topologies /app/topologies
WORKDIR /app
ENTRYPOINT ["fraudstream"]

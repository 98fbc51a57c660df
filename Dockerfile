# ioc-sync: drop-in replacement image for opencti/connector-crowdstrike-endpoint-security.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Without the default `demo` feature: the production binary links no simulator.
RUN cargo build --release --locked -p ioc-sync-bin --no-default-features --bin ioc-sync

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/ioc-sync --create-home ioc-sync
COPY --from=build /src/target/release/ioc-sync /usr/local/bin/ioc-sync
ENV CONNECTOR_TYPE=STREAM \
    IOC_SYNC_STATE_FILE=/var/lib/ioc-sync/state.json \
    IOC_SYNC_DEAD_LETTER_FILE=/var/lib/ioc-sync/dead-letter.jsonl
USER ioc-sync
WORKDIR /var/lib/ioc-sync
VOLUME ["/var/lib/ioc-sync"]
EXPOSE 9113
ENTRYPOINT ["/usr/local/bin/ioc-sync"]
CMD ["run"]

//! What the HTTP layer's tests share, the unit tests in `src/lib.rs`
//! included.

use std::sync::Arc;

use streams_core::serde::StringSerde;
use streams_http::{QueryServer, RunningServer};
use streams_kafka::{HostInfo, KafkaStreams};

/// A query server over a streams client (application `app`) that is never
/// started, with the key-value store `counts` (`/health` answers 503,
/// which is an answer).
pub(crate) fn unstarted(app: &str) -> QueryServer {
    let config = streams_core::StreamsConfig::new(app)
        .set("bootstrap.servers", "127.0.0.1:1")
        .set("application.server", "127.0.0.1:7");
    let builder = streams_core::StreamsBuilder::new();
    builder
        .stream_with(
            ["in"],
            streams_core::dsl::Consumed::with(StringSerde, StringSerde),
        )
        .group_by_key_with(streams_core::dsl::Grouped::default())
        .count_with(streams_core::dsl::Materialized::named("counts"));
    let streams = KafkaStreams::new(builder.build().unwrap(), config).unwrap();
    QueryServer::new(Arc::new(streams)).key_value_store::<String, i64>("counts", StringSerde)
}

/// `server` serving on a free loopback port, and where it listens.
pub(crate) fn serve(server: QueryServer) -> (RunningServer, HostInfo) {
    let running = server.serve("127.0.0.1:0".parse().unwrap()).unwrap();
    let host = HostInfo {
        host: "127.0.0.1".into(),
        port: running.local_addr().port(),
    };
    (running, host)
}

//! The routes of window and session stores (`/state/windowed/...`,
//! `/state/session/...`) on a server whose streams client is never
//! started: every request gets a clear status and message. Their answers
//! on a running application are tested end to end in the `tests` crate
//! (`windowed_queries.rs`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use streams_core::dsl::{Consumed, Grouped, Materialized};
use streams_core::serde::{I64Serde, StringSerde};
use streams_core::window::{SessionWindows, TimeWindows};
use streams_core::{StreamsBuilder, StreamsConfig};
use streams_http::{QueryServer, Request, Response, get};
use streams_kafka::{HostInfo, KafkaStreams};

/// A never-started client with a key-value store `counts`, a window store
/// `clicks` and a session store `visits` (string keys), and a window store
/// `by-id` (i64 keys), each registered with its kind.
fn server() -> QueryServer {
    let builder = StreamsBuilder::new();
    let grouped = builder
        .stream_with(["in"], Consumed::with(StringSerde, StringSerde))
        .group_by_key_with(Grouped::default());
    grouped.count_with(Materialized::named("counts"));
    grouped
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(60)).unwrap())
        .count_with(Materialized::named("clicks"));
    grouped
        .windowed_by(
            SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_secs(5)).unwrap(),
        )
        .count_with(Materialized::named("visits"));
    builder
        .stream_with(["ids"], Consumed::with(I64Serde, StringSerde))
        .group_by_key_with(Grouped::default())
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(60)).unwrap())
        .count_with(Materialized::named("by-id"));
    let config = StreamsConfig::new("windowed-routes")
        .set("bootstrap.servers", "127.0.0.1:1")
        .set("application.server", "127.0.0.1:7");
    let streams = KafkaStreams::new(builder.build().unwrap(), config).unwrap();
    QueryServer::new(Arc::new(streams))
        .key_value_store::<String, i64>("counts", StringSerde)
        .window_store::<String, i64>("clicks", StringSerde)
        .session_store::<String, i64>("visits", StringSerde)
        .window_store::<i64, i64>("by-id", I64Serde)
}

/// The answer's status and its error message.
fn error_of(response: &Response) -> (u16, String) {
    let body = response.body_json().unwrap_or(Value::Null);
    let message = body["error"].as_str().unwrap_or_default().to_owned();
    (response.status, message)
}

fn ask(server: &QueryServer, path: &str) -> (u16, String) {
    error_of(&server.handle(&Request::get(path)))
}

#[test]
fn bad_times_are_400s_that_say_what_is_wrong() {
    let server = server();
    for route in ["windowed/clicks", "session/visits"] {
        for (query, says) in [
            (
                "from=noon",
                "from must be a time in ms since the epoch (an integer), not `noon`",
            ),
            (
                "to=1.5",
                "to must be a time in ms since the epoch (an integer), not `1.5`",
            ),
            ("from=", "not ``"),
            ("to=99999999999999999999", "not `99999999999999999999`"),
            ("from=10&to=9", "from (10) is after to (9)"),
        ] {
            let (status, message) = ask(&server, &format!("/state/{route}/ann?{query}"));
            assert_eq!(status, 400, "{route}?{query}: {message}");
            assert!(message.contains(says), "{route}?{query}: {message}");
        }
    }
}

#[test]
fn keys_that_do_not_parse_are_400s() {
    let server = server();
    let (status, message) = ask(&server, "/state/windowed/by-id/abc");
    assert_eq!(status, 400, "{message}");
    assert_eq!(message, "`abc` is not a key of store by-id");
    // Even when forwarded here: the key is read before the store.
    let mut forwarded = Request::get("/state/windowed/by-id/abc");
    forwarded.forwarded = true;
    assert_eq!(server.handle(&forwarded).status, 400);
}

#[test]
fn unknown_stores_are_404s_naming_the_route_of_another_kind() {
    let server = server();
    let (status, message) = ask(&server, "/state/windowed/nope/a");
    assert_eq!(
        (status, message.as_str()),
        (404, "no queryable window store `nope`")
    );
    let (status, message) = ask(&server, "/state/session/nope/a");
    assert_eq!(
        (status, message.as_str()),
        (404, "no queryable session store `nope`")
    );
    // Registered, but as another kind.
    let (status, message) = ask(&server, "/state/windowed/counts/a");
    assert_eq!(status, 404);
    assert!(
        message.ends_with("it is read at /state/keyvalue/counts/..."),
        "{message}"
    );
    let (status, message) = ask(&server, "/state/session/clicks/a");
    assert_eq!(status, 404);
    assert!(
        message.ends_with("it is read at /state/windowed/clicks/..."),
        "{message}"
    );
    let (status, message) = ask(&server, "/state/windowed/visits/a");
    assert_eq!(status, 404);
    assert!(
        message.ends_with("it is read at /state/session/visits/..."),
        "{message}"
    );
    // The store is checked before the times.
    assert_eq!(ask(&server, "/state/windowed/nope/a?from=x").0, 404);
    // No route lists a whole windowed store.
    assert_eq!(ask(&server, "/state/windowed/clicks").0, 404);
}

#[test]
fn before_start_a_lookup_is_a_503_to_retry() {
    let server = server();
    for path in [
        "/state/windowed/clicks/ann",
        "/state/windowed/clicks/ann?from=0&to=60000",
        "/state/session/visits/ann",
        "/state/session/visits/ann?to=5",
    ] {
        // No instance holds any partition yet.
        let (status, message) = ask(&server, path);
        assert_eq!(status, 503, "{path}: {message}");
        assert!(message.contains("retry"), "{path}: {message}");
        // Forwarded here, it is answered here: the store is not queryable.
        let mut forwarded = Request::get(path);
        forwarded.forwarded = true;
        let (status, message) = error_of(&server.handle(&forwarded));
        assert_eq!(status, 503, "{path}: {message}");
        assert!(message.contains("before start()"), "{path}: {message}");
    }
}

#[test]
fn the_routes_answer_over_http_and_refuse_other_methods() {
    let running = server().serve("127.0.0.1:0".parse().unwrap()).unwrap();
    let host = HostInfo {
        host: "127.0.0.1".into(),
        port: running.local_addr().port(),
    };
    let status = |path: &str| {
        get(&host, path, Duration::from_secs(5), false)
            .unwrap()
            .status
    };
    // A key with spaces and slashes, percent-encoded.
    let key = streams_http::percent_encode("a b/c");
    assert_eq!(status(&format!("/state/windowed/clicks/{key}?from=x")), 400);
    assert_eq!(status(&format!("/state/session/visits/{key}")), 503);
    let mut post = Request::get("/state/windowed/clicks/a");
    post.method = "POST".into();
    assert_eq!(server().handle(&post).status, 405);
}

//! Interactive queries of window and session stores across two instances
//! on a real broker: the in-process views (`KafkaStreams::window_store`,
//! `session_store`) and the HTTP routes (`/state/windowed/...`,
//! `/state/session/...`) answering on either instance, for keys held by
//! the other.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{Value, json};
use streams_core::dsl::{Consumed, Grouped, Materialized};
use streams_core::serde::StringSerde;
use streams_core::window::{SessionWindows, TimeWindows, Window, Windowed};
use streams_core::{StreamsBuilder, Topology};
use streams_http::{QueryServer, RunningServer, get, percent_encode};
use streams_kafka::partitioner::partition_for_key;
use streams_kafka::{HostInfo, KafkaStreams, State};
use tests::{WAIT, apps, shared_broker, unique};

const WINDOWS: &str = "clicks-per-10s";
const SESSIONS: &str = "visits";
const PARTITIONS: i32 = 4;
const SIZE: i64 = 10_000;
const GAP: i64 = 5_000;

/// Clicks counted per key in tumbling windows of 10 s and in sessions with
/// a 5 s gap, both kept for an hour (longer than the test's times span,
/// so no window expires).
fn topology(input: &str) -> Topology {
    let builder = StreamsBuilder::new();
    let clicks = builder
        .stream_with([input], Consumed::with(StringSerde, StringSerde))
        .group_by_key_with(Grouped::default());
    let hour = Duration::from_secs(3600);
    clicks
        .windowed_by(
            TimeWindows::of_size_with_no_grace(Duration::from_millis(SIZE as u64)).unwrap(),
        )
        .count_with(Materialized::named(WINDOWS).with_retention(hour));
    clicks
        .windowed_by(
            SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_millis(GAP as u64))
                .unwrap(),
        )
        .count_with(Materialized::named(SESSIONS).with_retention(hour));
    builder.build().unwrap()
}

/// One instance with both stores queryable over HTTP.
struct Instance {
    streams: Arc<KafkaStreams>,
    _server: RunningServer,
    host: HostInfo,
    _dir: tempfile::TempDir,
}

fn start(app: &str, input: &str) -> Instance {
    let dir = tempfile::tempdir().unwrap();
    let port = apps::free_port();
    let config = apps::query_config(
        apps::config(
            app,
            shared_broker().bootstrap_servers(),
            dir.path().to_str().unwrap(),
        ),
        port,
    );
    let streams = Arc::new(KafkaStreams::new(topology(input), config).unwrap());
    streams.start().unwrap();
    let server = QueryServer::new(streams.clone())
        .window_store::<String, i64>(WINDOWS, StringSerde)
        .session_store::<String, i64>(SESSIONS, StringSerde)
        .serve(([127, 0, 0, 1], port).into())
        .unwrap();
    Instance {
        streams,
        _server: server,
        host: apps::loopback(port),
        _dir: dir,
    }
}

/// Two keys per partition, so that each instance holds some.
fn keys() -> Vec<String> {
    let mut per_partition = [0; PARTITIONS as usize];
    (0..)
        .map(|i| format!("user-{i}"))
        .filter(|key| {
            let partition = partition_for_key(key.as_bytes(), PARTITIONS) as usize;
            per_partition[partition] += 1;
            per_partition[partition] <= 2
        })
        .take(2 * PARTITIONS as usize)
        .collect()
}

/// The click times of the `i`th key, from `base` (a multiple of the window
/// size): two clicks in the first window and session, then one or two in
/// the second window, a new session.
fn clicks(base: i64, i: usize) -> Vec<i64> {
    let mut times = vec![base, base + 2_000 + 100 * i as i64, base + 12_000];
    if i.is_multiple_of(2) {
        times.push(base + 14_000);
    }
    times
}

/// (start, end, count) of the `i`th key's windows, and of its sessions.
fn expected(base: i64, i: usize) -> (Vec<(i64, i64, i64)>, Vec<(i64, i64, i64)>) {
    let times = clicks(base, i);
    let second = (times.len() - 2) as i64;
    let windows = vec![
        (base, base + SIZE, 2),
        (base + SIZE, base + 2 * SIZE, second),
    ];
    let sessions = vec![
        (base, times[1], 2),
        (base + 12_000, *times.last().unwrap(), second),
    ];
    (windows, sessions)
}

fn as_json(windows: &[(i64, i64, i64)]) -> Value {
    windows
        .iter()
        .map(|(start, end, value)| json!({ "start": start, "end": end, "value": value }))
        .collect()
}

fn http(host: &HostInfo, path: &str) -> (u16, Value) {
    let answer = get(host, path, Duration::from_secs(10), false).unwrap();
    let body = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    (answer.status, body)
}

/// Writes each (key, time) as a click at that time, partitioned by
/// murmur2 as the Java producer (and the key lookups) do.
fn produce(topic: &str, clicks: &[(String, i64)]) {
    let producer: BaseProducer = shared_broker()
        .client_config()
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    for (key, time) in clicks {
        let record = BaseRecord::to(topic)
            .key(key.as_str())
            .payload("/")
            .timestamp(*time);
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

#[test]
fn windows_and_sessions_are_answered_on_either_instance() {
    let [input] = shared_broker().unique_topics(["clicks"], PARTITIONS);
    let app = unique("iq-windowed");
    let one = start(&app, &input);
    let two = start(&app, &input);
    for instance in [&one, &two] {
        assert!(instance.streams.wait_for_state(State::Running, WAIT));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Aligned to the windows, a few minutes back.
    let base = now - now % SIZE - 300_000;
    let keys = keys();
    // In time order, so that no record is late in its task.
    let mut all: Vec<(String, i64)> = keys
        .iter()
        .enumerate()
        .flat_map(|(i, key)| clicks(base, i).into_iter().map(move |t| (key.clone(), t)))
        .collect();
    all.sort_by_key(|(_, time)| *time);
    produce(&input, &all);

    // Every key's windows and sessions, through either instance.
    let deadline = Instant::now() + WAIT;
    for instance in [&one, &two] {
        for (i, key) in keys.iter().enumerate() {
            let (windows, sessions) = expected(base, i);
            let want = [as_json(&windows), as_json(&sessions)];
            let key = percent_encode(key);
            loop {
                let seen = [
                    http(&instance.host, &format!("/state/windowed/{WINDOWS}/{key}")),
                    http(&instance.host, &format!("/state/session/{SESSIONS}/{key}")),
                ];
                if seen.iter().map(|(_, body)| body).eq(want.iter()) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{key} on {}: want {want:?}, saw {seen:?}",
                    instance.host
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    // Each instance holds some keys and answered for the other's too.
    let owner = |key: &String| {
        let found = one
            .streams
            .query_metadata_for_key(WINDOWS, key, &StringSerde)
            .unwrap()
            .expect("an owner")
            .active_host;
        let same = two
            .streams
            .query_metadata_for_key(SESSIONS, key, &StringSerde)
            .unwrap()
            .expect("an owner")
            .active_host;
        assert_eq!(found, same, "both stores of {key} on one instance");
        found
    };
    let owners: BTreeSet<HostInfo> = keys.iter().map(owner).collect();
    assert_eq!(owners, BTreeSet::from([one.host.clone(), two.host.clone()]));

    for (i, key) in keys.iter().enumerate() {
        let (windows, sessions) = expected(base, i);
        let (holder, other) = if owner(key) == one.host {
            (&one, &two)
        } else {
            (&two, &one)
        };
        // In process: the holder's local stores have the key, the other's not.
        let window_view = |i: &Instance| i.streams.window_store::<String, i64>(WINDOWS).unwrap();
        let session_view = |i: &Instance| i.streams.session_store::<String, i64>(SESSIONS).unwrap();
        let starts: Vec<(i64, i64)> = windows.iter().map(|(s, _, v)| (*s, *v)).collect();
        assert_eq!(
            window_view(holder).fetch(key, i64::MIN, i64::MAX).unwrap(),
            starts
        );
        assert_eq!(
            window_view(holder)
                .fetch(key, base + 1, base + SIZE)
                .unwrap(),
            starts[1..]
        );
        assert_eq!(
            window_view(holder).fetch_window(key, base).unwrap(),
            Some(2)
        );
        let whole: Vec<(Window, i64)> = windows
            .iter()
            .map(|(s, e, v)| (Window::new(*s, *e), *v))
            .collect();
        assert_eq!(
            window_view(holder).fetch_windows(key, base, base).unwrap(),
            whole[..1]
        );
        assert_eq!(
            window_view(other).fetch(key, i64::MIN, i64::MAX).unwrap(),
            []
        );
        let typed: Vec<(Windowed<String>, i64)> = sessions
            .iter()
            .map(|(s, e, v)| (Windowed::new(key.clone(), Window::new(*s, *e)), *v))
            .collect();
        assert_eq!(session_view(holder).fetch(key).unwrap(), typed);
        assert_eq!(
            session_view(holder)
                .find_sessions(key, base + 5_000, i64::MAX)
                .unwrap(),
            typed[1..]
        );
        let (start, end) = (sessions[0].0, sessions[0].1);
        assert_eq!(
            session_view(holder).fetch_session(key, start, end).unwrap(),
            Some(2)
        );
        assert_eq!(session_view(other).fetch(key).unwrap(), []);

        // Over HTTP from the instance that does not hold it: times go along.
        let encoded = percent_encode(key);
        let (status, body) = http(
            &other.host,
            &format!("/state/windowed/{WINDOWS}/{encoded}?from={}", base + 1),
        );
        assert_eq!((status, body), (200, as_json(&windows[1..])));
        let (status, body) = http(
            &other.host,
            &format!("/state/windowed/{WINDOWS}/{encoded}?from={base}&to={base}"),
        );
        assert_eq!((status, body), (200, as_json(&windows[..1])));
        let (status, body) = http(
            &other.host,
            &format!("/state/session/{SESSIONS}/{encoded}?from={}", base + 5_000),
        );
        assert_eq!((status, body), (200, as_json(&sessions[1..])));
    }

    // Every window once over both instances' local tasks.
    let mut every = Vec::new();
    for instance in [&one, &two] {
        every.extend(
            instance
                .streams
                .window_store::<String, i64>(WINDOWS)
                .unwrap()
                .all()
                .unwrap(),
        );
    }
    every.sort();
    let mut want: Vec<(Windowed<String>, i64)> = keys
        .iter()
        .enumerate()
        .flat_map(|(i, key)| {
            expected(base, i)
                .0
                .into_iter()
                .map(move |(s, e, v)| (Windowed::new(key.clone(), Window::new(s, e)), v))
        })
        .collect();
    want.sort();
    assert_eq!(every, want);

    // A key with no windows is an empty list; mistakes are clear errors.
    assert_eq!(
        http(&one.host, &format!("/state/windowed/{WINDOWS}/nobody")),
        (200, json!([]))
    );
    assert_eq!(
        http(&two.host, &format!("/state/session/{SESSIONS}/nobody")),
        (200, json!([]))
    );
    assert_eq!(
        http(&one.host, &format!("/state/windowed/{SESSIONS}/a")).0,
        404
    );
    assert_eq!(
        http(&one.host, &format!("/state/windowed/{WINDOWS}/a?to=soon")).0,
        400
    );
    let streams = &one.streams;
    assert!(
        streams.window_store::<String, String>(WINDOWS).is_err(),
        "wrong value type"
    );
    let error = streams.window_store::<String, i64>(SESSIONS).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("is a session store, not a window store"),
        "{error}"
    );
    let error = streams.session_store::<String, i64>(WINDOWS).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("is a window store, not a session store"),
        "{error}"
    );
    assert!(
        streams.store::<String, i64>(WINDOWS).is_err(),
        "not a key-value store"
    );
    assert!(
        streams.window_store::<String, i64>("nope").is_err(),
        "no such store"
    );
}

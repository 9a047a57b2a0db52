//! Windowed aggregations through the TopologyTestDriver: tumbling, hopping,
//! sliding and session windows, grace and late records, and the bytes of
//! their changelogs and output topics.

mod common;

use std::time::Duration;

use common::{driver, s, strings};
use streams_core::StreamsBuilder;
use streams_core::dsl::Materialized;
use streams_core::serde::{I64Serde, Nullable, StringSerde};
use streams_core::window::{
    SessionWindowedSerde, SessionWindows, SlidingWindows, TimeWindowedSerde, TimeWindows, Window,
    Windowed,
};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn at(key: &str, start: i64, end: i64) -> Windowed<String> {
    Windowed::new(s(key), Window::new(start, end))
}

/// Counts of `in` in `windows`, written to `out`; the driver and the
/// output's windowed key serde's window size.
fn time_counts(windows: TimeWindows) -> streams_core::testing::TopologyTestDriver {
    let builder = StreamsBuilder::new();
    builder
        .stream_with("in", strings())
        .group_by_key()
        .windowed_by(windows)
        .count_with(Materialized::named("counts").in_memory())
        .to_stream()
        .to("out");
    driver(builder)
}

fn read_windowed(
    driver: &streams_core::testing::TopologyTestDriver,
    size: i64,
) -> Vec<(Windowed<String>, Option<i64>)> {
    driver
        .create_output_topic(
            "out",
            TimeWindowedSerde::new(StringSerde, size),
            Nullable(I64Serde),
        )
        .read_key_values_to_list()
}

#[test]
fn tumbling_counts_take_out_of_order_records_within_grace_and_drop_later_ones() {
    let windows = TimeWindows::of_size_and_grace(secs(10), secs(2)).unwrap();
    let driver = time_counts(windows);
    let mut input = driver.create_input_topic("in", StringSerde, StringSerde);
    input.pipe_input_at(s("a"), s("x"), 1_000);
    input.pipe_input_at(s("a"), s("x"), 11_000);
    // Stream time 11 s: the first window [0, 10 s) closes at 12 s.
    input.pipe_input_at(s("a"), s("x"), 9_000);
    input.pipe_input_at(s("a"), s("x"), 13_000);
    // Stream time 13 s: [0, 10 s) has closed; this one is late.
    input.pipe_input_at(s("a"), s("x"), 5_000);
    assert_eq!(
        read_windowed(&driver, 10_000),
        [
            (at("a", 0, 10_000), Some(1)),
            (at("a", 10_000, 20_000), Some(1)),
            (at("a", 0, 10_000), Some(2)),
            (at("a", 10_000, 20_000), Some(2)),
        ]
    );
    assert_eq!(driver.dropped_records(), 1, "the late record is counted");
    let store = driver.window_store::<String, i64>("counts").unwrap();
    assert_eq!(store.fetch(&s("a"), 0).unwrap(), Some(2));
    assert_eq!(
        store.fetch_range(&s("a"), 0, 20_000).unwrap(),
        [(0, 2), (10_000, 2)]
    );
    assert_eq!(
        store.fetch_all(5_000, 20_000).unwrap(),
        [(at("a", 10_000, 20_000), 2)]
    );
}

#[test]
fn a_window_closes_exactly_when_stream_time_reaches_its_end_plus_grace() {
    let windows = TimeWindows::of_size_and_grace(secs(10), secs(2)).unwrap();
    let driver = time_counts(windows);
    let mut input = driver.create_input_topic("in", StringSerde, StringSerde);
    input.pipe_input_at(s("a"), s("x"), 11_999);
    input.pipe_input_at(s("a"), s("x"), 9_999); // [0, 10 s) still open
    input.pipe_input_at(s("b"), s("x"), 12_000);
    input.pipe_input_at(s("a"), s("x"), 9_999); // now closed
    assert_eq!(driver.dropped_records(), 1);
    assert_eq!(read_windowed(&driver, 10_000).len(), 3);
}

#[test]
fn hopping_windows_count_a_record_in_every_window_that_holds_it() {
    let windows = TimeWindows::of_size_with_no_grace(secs(10))
        .unwrap()
        .advance_by(secs(5))
        .unwrap();
    let driver = time_counts(windows);
    let mut input = driver.create_input_topic("in", StringSerde, StringSerde);
    input.pipe_input_at(s("a"), s("x"), 7_000);
    input.pipe_input_at(s("a"), s("x"), 12_000);
    assert_eq!(
        read_windowed(&driver, 10_000),
        [
            (at("a", 0, 10_000), Some(1)),
            (at("a", 5_000, 15_000), Some(1)),
            (at("a", 5_000, 15_000), Some(2)),
            (at("a", 10_000, 20_000), Some(1)),
        ]
    );
}

#[test]
fn sliding_windows_hold_each_distinct_set_of_records_close_enough_in_time() {
    let builder = StreamsBuilder::new();
    builder
        .stream_with("in", strings())
        .group_by_key()
        .windowed_by(SlidingWindows::of_time_difference_and_grace(secs(10), secs(30)).unwrap())
        .count_with(Materialized::named("sliding").in_memory())
        .to_stream()
        .to("out");
    let driver = driver(builder);
    let mut input = driver.create_input_topic("in", StringSerde, StringSerde);
    let w = |start, end| at("a", start, end);
    input.pipe_input_at(s("a"), s("A"), 10_000);
    assert_eq!(read_windowed(&driver, 10_000), [(w(0, 10_000), Some(1))]);
    input.pipe_input_at(s("a"), s("B"), 15_000);
    // B's left window holds A and B; A's right window now holds B.
    assert_eq!(
        read_windowed(&driver, 10_000),
        [(w(10_001, 20_001), Some(1)), (w(5_000, 15_000), Some(2))]
    );
    input.pipe_input_at(s("a"), s("C"), 30_000);
    assert_eq!(
        read_windowed(&driver, 10_000),
        [(w(20_000, 30_000), Some(1))]
    );
    // Out of order, within grace: D at 12 s joins the windows around it,
    // gets its own left window (A, D) and a right window (B).
    input.pipe_input_at(s("a"), s("D"), 12_000);
    assert_eq!(
        read_windowed(&driver, 10_000),
        [
            (w(5_000, 15_000), Some(3)),
            (w(10_001, 20_001), Some(2)),
            (w(2_000, 12_000), Some(2)),
            (w(12_001, 22_001), Some(1)),
        ]
    );
    // Too late even for its right window: stream time 30 s less 30 s grace
    // is 0, so move stream time on first.
    input.pipe_input_at(s("b"), s("E"), 100_000);
    read_windowed(&driver, 10_000);
    input.pipe_input_at(s("a"), s("F"), 50_000);
    assert_eq!(read_windowed(&driver, 10_000), []);
    assert_eq!(driver.dropped_records(), 1);
}

#[test]
fn sliding_windows_of_early_records_share_one_window_from_zero() {
    let builder = StreamsBuilder::new();
    builder
        .stream_with("in", strings())
        .group_by_key()
        .windowed_by(SlidingWindows::of_time_difference_with_no_grace(secs(10)).unwrap())
        .count_with(Materialized::named("sliding").in_memory())
        .to_stream()
        .to("out");
    let driver = driver(builder);
    let mut input = driver.create_input_topic("in", StringSerde, StringSerde);
    let w = |start, end| at("a", start, end);
    input.pipe_input_at(s("a"), s("A"), 2_000);
    input.pipe_input_at(s("a"), s("B"), 5_000);
    assert_eq!(
        read_windowed(&driver, 10_000),
        [
            (w(0, 10_000), Some(1)),
            // A's right window holds B; then the window from 0 holds both.
            (w(2_001, 12_001), Some(1)),
            (w(0, 10_000), Some(2)),
        ]
    );
}

fn session_output(
    driver: &streams_core::testing::TopologyTestDriver,
) -> Vec<(Windowed<String>, Option<i64>)> {
    driver
        .create_output_topic(
            "out",
            SessionWindowedSerde::new(StringSerde),
            Nullable(I64Serde),
        )
        .read_key_values_to_list()
}

#[test]
fn sessions_merge_when_a_record_bridges_them_and_late_records_are_dropped() {
    let builder = StreamsBuilder::new();
    builder
        .stream_with("in", strings())
        .group_by_key()
        .windowed_by(SessionWindows::of_inactivity_gap_and_grace(secs(5), secs(2)).unwrap())
        .count_with(Materialized::named("sessions").in_memory())
        .to_stream()
        .to("out");
    let driver = driver(builder);
    let mut input = driver.create_input_topic("in", StringSerde, StringSerde);
    input.pipe_input_at(s("a"), s("x"), 0);
    input.pipe_input_at(s("a"), s("x"), 4_000); // extends [0, 0]
    input.pipe_input_at(s("a"), s("x"), 2_000); // inside [0, 4 s]
    assert_eq!(
        session_output(&driver),
        [
            (at("a", 0, 0), Some(1)),
            (at("a", 0, 0), None),
            (at("a", 0, 4_000), Some(2)),
            (at("a", 0, 4_000), None),
            (at("a", 0, 4_000), Some(3)),
        ]
    );
    let store = driver.session_store::<String, i64>("sessions").unwrap();
    assert_eq!(store.fetch(&s("a")).unwrap(), [(at("a", 0, 4_000), 3)]);
    assert_eq!(store.fetch_session(&s("a"), 0, 4_000).unwrap(), Some(3));
    input.pipe_input_at(s("b"), s("x"), 20_000);
    input.pipe_input_at(s("a"), s("x"), 7_000);
    // [0, 7 s] would end before 20 s - 2 s: late.
    assert_eq!(
        session_output(&driver),
        [(at("b", 20_000, 20_000), Some(1))]
    );
    assert_eq!(driver.dropped_records(), 1);
    // The store keeps sessions for the gap plus grace after they end,
    // counted from the latest end it has seen (20 s).
    assert_eq!(store.fetch(&s("a")).unwrap(), []);
}

#[test]
fn session_aggregate_and_reduce_merge_with_the_merger() {
    let builder = StreamsBuilder::new();
    let grouped = builder
        .stream_with(
            "in",
            streams_core::dsl::Consumed::with(StringSerde, I64Serde),
        )
        .group_by_key();
    // Grace keeps the first session open when the bridging record comes.
    let sessions = SessionWindows::of_inactivity_gap_and_grace(ms(100), secs(1)).unwrap();
    grouped
        .windowed_by(sessions)
        .aggregate(
            || 1000,
            |_, v, agg| agg + v,
            |_, left, right| left + right,
            Materialized::named("sums").in_memory(),
        )
        .to_stream()
        .to("sums");
    grouped
        .windowed_by(sessions)
        .reduce(|a, b| b.max(*a), Materialized::named("maxima").in_memory())
        .to_stream()
        .to("maxima");
    let driver = driver(builder);
    let mut input = driver.create_input_topic("in", StringSerde, I64Serde);
    input.pipe_input_at(s("k"), 5, 0);
    input.pipe_input_at(s("k"), 7, 200);
    input.pipe_input_at(s("k"), 1, 100); // bridges both
    let sums = driver.session_store::<String, i64>("sums").unwrap();
    // The merger adds the initial aggregate to the two sessions' sums, then
    // the record is added: (1000 + 1005 + 1007) + 1.
    assert_eq!(sums.fetch(&s("k")).unwrap(), [(at("k", 0, 200), 3013)]);
    let maxima = driver.session_store::<String, i64>("maxima").unwrap();
    assert_eq!(maxima.fetch(&s("k")).unwrap(), [(at("k", 0, 200), 7)]);
}

#[test]
fn windowed_reduce_and_aggregate_fold_each_window() {
    let builder = StreamsBuilder::new();
    let grouped = builder
        .stream_with(
            "in",
            streams_core::dsl::Consumed::with(StringSerde, I64Serde),
        )
        .group_by_key();
    let windows = TimeWindows::of_size_with_no_grace(secs(1)).unwrap();
    grouped.windowed_by(windows).reduce(
        |a, b| a + b,
        Materialized::named("sums")
            .in_memory()
            .with_retention(secs(10)),
    );
    grouped.windowed_by(windows).aggregate(
        String::new,
        |_, v, agg| format!("{agg}{v}"),
        Materialized::named("joined")
            .with_value_serde(StringSerde)
            .in_memory()
            .with_retention(secs(10)),
    );
    let driver = driver(builder);
    let mut input = driver.create_input_topic("in", StringSerde, I64Serde);
    for (v, t) in [(1, 0), (2, 500), (3, 1_000)] {
        input.pipe_input_at(s("k"), v, t);
    }
    let sums = driver.window_store::<String, i64>("sums").unwrap();
    assert_eq!(
        sums.fetch_range(&s("k"), 0, 1_000).unwrap(),
        [(0, 3), (1_000, 3)]
    );
    let joined = driver.window_store::<String, String>("joined").unwrap();
    assert_eq!(
        joined.fetch_range(&s("k"), 0, 1_000).unwrap(),
        [(0, s("12")), (1_000, s("3"))]
    );
}

#[test]
fn changelogs_and_outputs_have_kafka_streams_bytes() {
    let builder = StreamsBuilder::new();
    builder
        .stream_with("in", strings())
        .group_by_key()
        .windowed_by(TimeWindows::of_size_with_no_grace(secs(60)).unwrap())
        .count_with(Materialized::named("counts").with_caching_disabled())
        .to_stream()
        .to_with(
            "out",
            streams_core::dsl::Produced::with(
                TimeWindowedSerde::new(StringSerde, 60_000),
                Nullable(I64Serde),
            ),
        );
    let driver = driver(builder);
    let mut input = driver.create_input_topic("in", StringSerde, StringSerde);
    input.pipe_input_at(s("ann"), s("x"), 61_000);
    let changelog = driver.read_raw("app-counts-changelog");
    assert_eq!(changelog.len(), 1);
    // Key: the key, the window start, a sequence number (0); value: the
    // timestamp of the latest record, then the count.
    let key = [b"ann".as_slice(), &60_000_i64.to_be_bytes(), &[0, 0, 0, 0]].concat();
    assert_eq!(changelog[0].key.as_deref(), Some(key.as_slice()));
    let value = [61_000_i64.to_be_bytes(), 1_i64.to_be_bytes()].concat();
    assert_eq!(changelog[0].value.as_deref(), Some(value.as_slice()));
    let out = driver.read_raw("out");
    let key = [b"ann".as_slice(), &60_000_i64.to_be_bytes()].concat();
    assert_eq!(out[0].key.as_deref(), Some(key.as_slice()));
    assert_eq!(
        out[0].value.as_deref(),
        Some(1_i64.to_be_bytes().as_slice())
    );
}

#[test]
fn a_retention_shorter_than_size_plus_grace_is_a_build_error() {
    let builder = StreamsBuilder::new();
    builder
        .stream_with("in", strings())
        .group_by_key()
        .windowed_by(TimeWindows::of_size_and_grace(secs(10), secs(5)).unwrap())
        .count_with(Materialized::named("counts").with_retention(secs(12)));
    let error = builder.build().unwrap_err().to_string();
    assert!(
        error.contains("at least") && error.contains("counts"),
        "{error}"
    );
}

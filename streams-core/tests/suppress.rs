//! `KTable::suppress` through the TopologyTestDriver: final results of
//! windows, time limits, and full buffers.

mod common;

use std::time::Duration;

use common::{driver, s, strings};
use streams_core::StreamsBuilder;
use streams_core::dsl::{BufferConfig, Consumed, Materialized, Suppressed};
use streams_core::serde::{I64Serde, Nullable, StringSerde};
use streams_core::testing::TopologyTestDriver;
use streams_core::window::{
    SessionWindowedSerde, SessionWindows, TimeWindowedSerde, TimeWindows, Window, Windowed,
};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn at(key: &str, start: i64, end: i64) -> Windowed<String> {
    Windowed::new(s(key), Window::new(start, end))
}

/// Final counts per 10 s window with 2 s grace.
fn final_counts(buffer: BufferConfig) -> TopologyTestDriver {
    let builder = StreamsBuilder::new();
    builder
        .stream_with("in", strings())
        .group_by_key()
        .windowed_by(TimeWindows::of_size_and_grace(secs(10), secs(2)).unwrap())
        .count_with(Materialized::named("counts").in_memory())
        .suppress(Suppressed::until_window_closes(buffer))
        .to_stream()
        .to("out");
    driver(builder)
}

fn read(driver: &TopologyTestDriver) -> Vec<(Windowed<String>, Option<i64>)> {
    driver
        .create_output_topic(
            "out",
            TimeWindowedSerde::new(StringSerde, 10_000),
            Nullable(I64Serde),
        )
        .read_key_values_to_list()
}

#[test]
fn final_results_come_once_per_window_after_it_closes_late_records_included_within_grace() {
    let driver = final_counts(BufferConfig::unbounded());
    let mut input = driver.create_input_topic("in", StringSerde, StringSerde);
    for t in [1_000, 2_000, 9_000] {
        input.pipe_input_at(s("a"), s("x"), t);
    }
    input.pipe_input_at(s("b"), s("x"), 5_000);
    input.pipe_input_at(s("a"), s("x"), 11_000);
    // Out of order, within grace: [0, 10 s) closes at 12 s.
    input.pipe_input_at(s("b"), s("x"), 8_000);
    assert_eq!(read(&driver), [], "nothing before the window closes");
    input.pipe_input_at(s("c"), s("x"), 12_000);
    assert_eq!(
        read(&driver),
        [(at("a", 0, 10_000), Some(3)), (at("b", 0, 10_000), Some(2))]
    );
    // Late: dropped by the aggregation, so nothing more for [0, 10 s).
    input.pipe_input_at(s("a"), s("x"), 3_000);
    input.pipe_input_at(s("c"), s("x"), 22_000);
    assert_eq!(
        read(&driver),
        [
            (at("a", 10_000, 20_000), Some(1)),
            (at("c", 10_000, 20_000), Some(1))
        ]
    );
    assert_eq!(driver.dropped_records(), 1);
}

#[test]
fn final_session_results_come_after_the_session_closes() {
    let builder = StreamsBuilder::new();
    builder
        .stream_with("in", strings())
        .group_by_key()
        .windowed_by(SessionWindows::of_inactivity_gap_and_grace(secs(5), secs(1)).unwrap())
        .count_with(Materialized::named("sessions").in_memory())
        .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()))
        .to_stream()
        .to("out");
    let driver = driver(builder);
    let mut input = driver.create_input_topic("in", StringSerde, StringSerde);
    input.pipe_input_at(s("a"), s("x"), 0);
    input.pipe_input_at(s("a"), s("x"), 3_000);
    // [0, 3 s] could still grow until 8 s, and take late records for 1 s
    // more: final at 9 s.
    input.pipe_input_at(s("b"), s("x"), 8_999);
    let output = driver.create_output_topic(
        "out",
        SessionWindowedSerde::new(StringSerde),
        Nullable(I64Serde),
    );
    assert!(output.is_empty(), "the merged-away [0, 0] is not a result");
    input.pipe_input_at(s("b"), s("x"), 9_000);
    assert_eq!(
        output.read_key_values_to_list(),
        [(at("a", 0, 3_000), Some(2))]
    );
}

#[test]
fn a_full_buffer_emits_early_or_shuts_down_as_configured() {
    // Emit early: final results are not allowed to.
    let builder = StreamsBuilder::new();
    builder
        .stream_with("in", strings())
        .group_by_key()
        .windowed_by(TimeWindows::of_size_with_no_grace(secs(10)).unwrap())
        .count_with(Materialized::named("counts").in_memory())
        .suppress(Suppressed::until_window_closes(BufferConfig::max_records(
            1,
        )));
    let error = builder.build().unwrap_err().to_string();
    assert!(error.contains("must not emit early"), "{error}");

    // Shut down: the task fails with the buffer named.
    let driver = final_counts(BufferConfig::max_records(1).shut_down_when_full());
    let mut input = driver.create_input_topic("in", StringSerde, StringSerde);
    input.pipe_input_at(s("a"), s("x"), 1_000);
    let error = input
        .try_pipe(&s("b"), Some(&s("x")), 2_000, streams_core::Headers::new())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("suppression buffer") && error.contains("full"),
        "{error}"
    );
}

#[test]
fn time_limits_emit_the_latest_value_a_limit_after_the_first_held_update() {
    let builder = StreamsBuilder::new();
    builder
        .table(
            "prices",
            Consumed::with(StringSerde, I64Serde),
            Materialized::named("prices").in_memory(),
        )
        .suppress(
            Suppressed::until_time_limit(secs(10), BufferConfig::max_records(2)).with_name("slow"),
        )
        .to_stream()
        .to("out");
    let driver = driver(builder);
    let mut input = driver.create_input_topic("prices", StringSerde, I64Serde);
    let output = driver.create_output_topic("out", StringSerde, Nullable(I64Serde));
    input.pipe_input_at(s("tea"), 3, 0);
    input.pipe_input_at(s("tea"), 4, 9_000);
    input.pipe_input_at(s("cake"), 1, 9_500);
    assert!(output.is_empty());
    // Ten seconds after tea's first held update (not its latest).
    input.pipe_input_at(s("cake"), 2, 10_000);
    assert_eq!(output.read_key_values_to_list(), [(s("tea"), Some(4))]);
    // A third key overflows two records: the oldest goes early.
    input.pipe_input_at(s("jam"), 5, 10_001);
    input.pipe_input_at(s("pie"), 6, 10_002);
    assert_eq!(output.read_key_values_to_list(), [(s("cake"), Some(2))]);
    // Tombstones pass a time limit.
    input.pipe_tombstone(s("jam"));
    let buffer = driver.state_store("slow-store").unwrap();
    let held = buffer
        .with(|b: &mut streams_core::dsl::SuppressionBuffer| b.len())
        .unwrap();
    assert_eq!(held, 2);
}

#[test]
fn until_window_closes_needs_a_windowed_aggregation_upstream() {
    let builder = StreamsBuilder::new();
    let windows: streams_core::dsl::KTable<Windowed<String>, i64> = builder.table(
        "windows",
        Consumed::with(TimeWindowedSerde::new(StringSerde, 10), I64Serde),
        Materialized::named("windows").in_memory(),
    );
    windows.suppress(Suppressed::until_window_closes(BufferConfig::unbounded()));
    let error = builder.build().unwrap_err().to_string();
    assert!(error.contains("no windowed aggregation"), "{error}");
}

#[test]
fn a_join_reads_what_downstream_last_saw_while_updates_are_held() {
    let builder = StreamsBuilder::new();
    let prices = builder
        .table(
            "prices",
            Consumed::with(StringSerde, I64Serde),
            Materialized::named("prices").in_memory(),
        )
        .suppress(Suppressed::until_time_limit(
            secs(10),
            BufferConfig::unbounded(),
        ));
    builder
        .stream_with("orders", strings())
        .join(&prices, |order, price| format!("{order} at {price}"))
        .to("priced");
    let driver = driver(builder);
    let mut prices_in = driver.create_input_topic("prices", StringSerde, I64Serde);
    let mut orders = driver.create_input_topic("orders", StringSerde, StringSerde);
    let priced = driver.create_output_topic("priced", StringSerde, StringSerde);
    prices_in.pipe_input_at(s("tea"), 3, 0);
    orders.pipe_input_at(s("tea"), s("cup"), 1);
    assert!(priced.is_empty(), "tea's first price is still held");
    prices_in.pipe_input_at(s("cake"), 9, 10_000); // releases tea = 3
    orders.pipe_input_at(s("tea"), s("pot"), 10_001);
    prices_in.pipe_input_at(s("tea"), 4, 10_002); // held: 3 is still the price
    orders.pipe_input_at(s("tea"), s("mug"), 10_003);
    assert_eq!(priced.read_values_to_list(), [s("pot at 3"), s("mug at 3")]);
}

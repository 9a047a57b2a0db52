//! KTable-KTable joins (inner, left, outer) through the TopologyTestDriver:
//! the Kafka Streams developer guide's table-table join semantics, record
//! by record, and what a join's old values mean downstream.

mod common;

use streams_core::dsl::{Consumed, Grouped, KStream, Materialized, Produced};
use streams_core::serde::{I64Serde, Nullable, StringSerde};
use streams_core::testing::{TestOutputTopic, TopologyTestDriver};
use streams_core::{Record, StreamsBuilder};

use common::{driver, numbers, s, strings};

/// Which table a step of the guide's sequence writes to.
#[derive(Clone, Copy, Debug)]
enum Side {
    Left,
    Right,
}

use Side::{Left, Right};

/// One row of the guide's table: at `ts`, `value` (`None`: a tombstone)
/// arrives on `side` for key A; then what the inner, left and outer joins
/// emit: "" nothing, "null" a tombstone, else the joined value, written as
/// the arguments the joiner got.
type Step = (i64, Side, Option<Cell>, Cell, Cell, Cell);
type Cell = &'static str;

/// The sequence of the developer guide's "Semantics of table-table joins"
/// table (Streams DSL > Joining > KTable-KTable Equi-Join).
const GUIDE: [Step; 15] = [
    (1, Left, None, "", "", ""),
    (2, Right, None, "", "", ""),
    (3, Left, Some("A"), "", "[A, null]", "[A, null]"),
    (4, Right, Some("a"), "[A, a]", "[A, a]", "[A, a]"),
    (5, Left, Some("B"), "[B, a]", "[B, a]", "[B, a]"),
    (6, Right, Some("b"), "[B, b]", "[B, b]", "[B, b]"),
    (7, Left, None, "null", "null", "[null, b]"),
    (8, Right, None, "", "", "null"),
    (9, Left, Some("C"), "", "[C, null]", "[C, null]"),
    (10, Right, Some("c"), "[C, c]", "[C, c]", "[C, c]"),
    (11, Right, None, "null", "[C, null]", "[C, null]"),
    (12, Left, None, "", "null", "null"),
    (13, Right, None, "", "", ""),
    (14, Right, Some("d"), "", "", "[null, d]"),
    (15, Left, Some("D"), "[D, d]", "[D, d]", "[D, d]"),
];

/// The joiner's arguments as the guide writes them.
fn shown(left: Option<&String>, right: Option<&String>) -> String {
    let show = |v: Option<&String>| v.map_or("null", String::as_str).to_owned();
    format!("[{}, {}]", show(left), show(right))
}

/// What a step expects on one join's output: no record, or one record
/// at the step's timestamp.
fn expected(ts: i64, cell: &str) -> Vec<Record<String, Option<String>>> {
    match cell {
        "" => vec![],
        "null" => vec![Record::new(s("A"), None, ts)],
        joined => vec![Record::new(s("A"), Some(s(joined)), ts)],
    }
}

fn records(topic: &TestOutputTopic<String, Option<String>>) -> Vec<Record<String, Option<String>>> {
    topic
        .read_records_to_list()
        .into_iter()
        .map(|r| Record::new(r.key, r.value, r.timestamp))
        .collect()
}

fn nullable_strings() -> Produced<String, Option<String>> {
    Produced::with(StringSerde, Nullable(StringSerde))
}

#[test]
fn the_developer_guides_table_table_join_semantics_step_by_step() {
    let builder = StreamsBuilder::new();
    let left = builder.table("left", strings(), Materialized::named("left").in_memory());
    let right = builder.table("right", strings(), Materialized::named("right").in_memory());
    left.join(&right, |l, r| shown(Some(l), Some(r)))
        .to_stream()
        .to_with("inner", nullable_strings());
    left.left_join(&right, |l, r| shown(Some(l), r))
        .to_stream()
        .to_with("left-join", nullable_strings());
    left.outer_join(&right, shown)
        .to_stream()
        .to_with("outer", nullable_strings());
    drop((left, right));
    let d = driver(builder);
    let mut left = d.create_input_topic("left", StringSerde, Nullable(StringSerde));
    let mut right = d.create_input_topic("right", StringSerde, Nullable(StringSerde));
    let output = |topic| d.create_output_topic(topic, StringSerde, Nullable(StringSerde));
    let (inner, left_join, outer) = (output("inner"), output("left-join"), output("outer"));
    for (ts, side, value, inner_cell, left_cell, outer_cell) in GUIDE {
        let input = match side {
            Left => &mut left,
            Right => &mut right,
        };
        input.pipe_input_at(s("A"), value.map(s), ts);
        let at = format!("timestamp {ts}: {value:?} on the {side:?} table");
        assert_eq!(
            records(&inner),
            expected(ts, inner_cell),
            "inner join, {at}"
        );
        assert_eq!(
            records(&left_join),
            expected(ts, left_cell),
            "left join, {at}"
        );
        assert_eq!(
            records(&outer),
            expected(ts, outer_cell),
            "outer join, {at}"
        );
    }
}

#[test]
fn an_outer_joins_old_values_keep_a_downstream_sum_right() {
    // Sum over all keys of (left or 0) + (right or 0): each update must
    // take the joined row it replaces out of the sum.
    let builder = StreamsBuilder::new();
    let a = builder.table("a", numbers(), Materialized::named("a").in_memory());
    let b = builder.table("b", numbers(), Materialized::named("b").in_memory());
    a.outer_join(&b, |x, y| x.copied().unwrap_or(0) + y.copied().unwrap_or(0))
        .group_by_with(|_, v| (s("all"), *v), Grouped::with(StringSerde, I64Serde))
        .reduce(
            |x, y| x + y,
            |x, y| x - y,
            Materialized::named("total").in_memory(),
        );
    drop((a, b));
    let d = driver(builder);
    let mut a = d.create_input_topic("a", StringSerde, I64Serde);
    let mut b = d.create_input_topic("b", StringSerde, I64Serde);
    let total = d.key_value_store::<String, i64>("total").unwrap();
    let sum = || total.get(&s("all")).unwrap();
    b.pipe_input(s("k1"), 10); // only on the right: 10
    assert_eq!(sum(), Some(10));
    a.pipe_input(s("k1"), 1); // 11
    a.pipe_input(s("k2"), 100); // only on the left: 111
    assert_eq!(sum(), Some(111));
    b.pipe_input(s("k1"), 20); // k1 now 21: 121
    assert_eq!(sum(), Some(121));
    a.pipe_tombstone(s("k1")); // k1 keeps its right row, 20: 120
    assert_eq!(sum(), Some(120));
    b.pipe_tombstone(s("k1")); // k1 gone from both: 100
    assert_eq!(sum(), Some(100));
    a.pipe_tombstone(s("k2")); // nothing left
    assert_eq!(sum(), Some(0));
}

#[test]
fn a_stream_looks_up_rows_of_an_outer_joined_table_from_either_side() {
    let builder = StreamsBuilder::new();
    let left = builder.table("left", strings(), Materialized::named("left").in_memory());
    let right = builder.table("right", strings(), Materialized::named("right").in_memory());
    let joined = left.outer_join(&right, shown);
    let lookups: KStream<String, String> =
        builder.stream_with(["lookups"], Consumed::with(StringSerde, StringSerde));
    lookups
        .left_join(&joined, |_, row| {
            row.cloned().unwrap_or_else(|| s("no row"))
        })
        .to_with("found", Produced::with(StringSerde, StringSerde));
    drop((left, right, joined));
    let d: TopologyTestDriver = driver(builder);
    let mut left = d.create_input_topic("left", StringSerde, StringSerde);
    let mut right = d.create_input_topic("right", StringSerde, StringSerde);
    let mut lookups = d.create_input_topic("lookups", StringSerde, StringSerde);
    left.pipe_input(s("only-left"), s("L"));
    right.pipe_input(s("only-right"), s("r"));
    left.pipe_input(s("both"), s("B"));
    right.pipe_input(s("both"), s("b"));
    for key in ["only-left", "only-right", "both", "neither"] {
        lookups.pipe_input(s(key), s("?"));
    }
    let found = d
        .create_output_topic("found", StringSerde, StringSerde)
        .read_key_values_to_list();
    assert_eq!(
        found,
        [
            (s("only-left"), s("[L, null]")),
            (s("only-right"), s("[null, r]")),
            (s("both"), s("[B, b]")),
            (s("neither"), s("no row")),
        ]
    );
}

//! KStream-KStream joins (inner, left, outer) in join windows, through the
//! TopologyTestDriver: the Kafka Streams developer guide's stream-stream
//! join semantics, record by record; late records and the grace period;
//! duplicates; asymmetric windows; RocksDB stores; left and outer results
//! emitted once, after their window closes; names, repartitioning, nulls.

mod common;

use std::time::Duration;

use streams_core::dsl::{KStream, Produced, StreamJoined};
use streams_core::serde::{Nullable, StringSerde};
use streams_core::state::Stores;
use streams_core::testing::{TestOutputTopic, TopologyTestDriver};
use streams_core::window::JoinWindows;
use streams_core::{Record, StreamsBuilder};

use common::{driver, s, strings};

const SECOND: i64 = 1_000;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Which stream a step of the guide's sequence writes to.
#[derive(Clone, Copy, Debug)]
enum Side {
    Left,
    Right,
}

use Side::{Left, Right};

/// What one join emits at a step: the joiner's arguments as the guide
/// writes them, and the result's timestamp in seconds.
type Cell = &'static [(&'static str, i64)];

/// One row of the guide's table: at `ts` seconds, `value` (`None`: null)
/// arrives on `side`, all with the same key; then what the inner, left
/// and outer joins emit.
type Step = (i64, Side, Option<&'static str>, Cell, Cell, Cell);

/// The developer guide's "Semantics of stream-stream joins" table (Streams
/// DSL > Joining > KStream-KStream Join), for a join window of 10 seconds
/// with a grace period of 5 seconds. Its left and outer columns are Kafka
/// Streams' current, non-eager ones: A at 3 waits for a match (older
/// editions of the guide showed an eager `[A, null]` there, the spurious
/// result Kafka Streams 3.1 removed), and E, F and f are emitted with null
/// once their window and grace have passed, when a later record advances
/// stream time: E (40) at 60, F (60) at 80, f (80) at 100.
const GUIDE: [Step; 19] = [
    (1, Left, None, &[], &[], &[]),
    (2, Right, None, &[], &[], &[]),
    (3, Left, Some("A"), &[], &[], &[]),
    (
        4,
        Right,
        Some("a"),
        &[("[A, a]", 4)],
        &[("[A, a]", 4)],
        &[("[A, a]", 4)],
    ),
    (
        5,
        Left,
        Some("B"),
        &[("[B, a]", 5)],
        &[("[B, a]", 5)],
        &[("[B, a]", 5)],
    ),
    (6, Right, Some("b"), AB_B, AB_B, AB_B),
    (7, Left, None, &[], &[], &[]),
    (8, Right, None, &[], &[], &[]),
    (9, Left, Some("C"), CA_CB, CA_CB, CA_CB),
    (10, Right, Some("c"), ABC_C, ABC_C, ABC_C),
    (11, Right, None, &[], &[], &[]),
    (12, Left, None, &[], &[], &[]),
    (13, Right, None, &[], &[], &[]),
    (14, Right, Some("d"), ABC_D, ABC_D, ABC_D),
    (15, Left, Some("D"), D_ABCD, D_ABCD, D_ABCD),
    (40, Left, Some("E"), &[], &[], &[]),
    (
        60,
        Left,
        Some("F"),
        &[],
        &[("[E, null]", 40)],
        &[("[E, null]", 40)],
    ),
    (
        80,
        Right,
        Some("f"),
        &[],
        &[("[F, null]", 60)],
        &[("[F, null]", 60)],
    ),
    (100, Left, Some("G"), &[], &[], &[("[null, f]", 80)]),
];

const AB_B: Cell = &[("[A, b]", 6), ("[B, b]", 6)];
const CA_CB: Cell = &[("[C, a]", 9), ("[C, b]", 9)];
const ABC_C: Cell = &[("[A, c]", 10), ("[B, c]", 10), ("[C, c]", 10)];
const ABC_D: Cell = &[("[A, d]", 14), ("[B, d]", 14), ("[C, d]", 14)];
const D_ABCD: Cell = &[
    ("[D, a]", 15),
    ("[D, b]", 15),
    ("[D, c]", 15),
    ("[D, d]", 15),
];

/// The joiner's arguments as the guide writes them.
fn shown(left: Option<&String>, right: Option<&String>) -> String {
    let show = |v: Option<&String>| v.map_or("null", String::as_str).to_owned();
    format!("[{}, {}]", show(left), show(right))
}

/// Key, value and timestamp of what `topic` received since the last read.
fn records(topic: &TestOutputTopic<String, String>) -> Vec<(String, String, i64)> {
    topic
        .read_records_to_list()
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect()
}

fn expected(key: &str, cell: Cell) -> Vec<(String, String, i64)> {
    cell.iter()
        .map(|(joined, ts)| (s(key), s(joined), ts * SECOND))
        .collect()
}

/// Runs the guide's sequence through an inner, a left and an outer join
/// of `windows`, checking each join's output after every record. `adjust`
/// may change a step's expected cells.
fn run_guide(windows: JoinWindows, adjust: impl Fn(Step) -> Step) {
    let builder = StreamsBuilder::new();
    // Nullable values: the guide's null records, which joins drop.
    let left: KStream<String, Option<String>> = builder.stream("left");
    let right: KStream<String, Option<String>> = builder.stream("right");
    let out = || Produced::with(StringSerde, StringSerde);
    left.join_stream(&right, |l, r| shown(l.as_ref(), r.as_ref()), windows)
        .to_with("inner", out());
    left.left_join_stream(
        &right,
        |l, r| shown(l.as_ref(), r.and_then(Option::as_ref)),
        windows,
    )
    .to_with("left-join", out());
    left.outer_join_stream(
        &right,
        |l, r| shown(l.and_then(Option::as_ref), r.and_then(Option::as_ref)),
        windows,
    )
    .to_with("outer", out());
    drop((left, right));
    let d = driver(builder);
    let mut left = d.create_input_topic("left", StringSerde, Nullable(StringSerde));
    let mut right = d.create_input_topic("right", StringSerde, Nullable(StringSerde));
    let output = |topic| d.create_output_topic(topic, StringSerde, StringSerde);
    let (inner, left_join, outer) = (output("inner"), output("left-join"), output("outer"));
    for step in GUIDE {
        let (ts, side, value, inner_cell, left_cell, outer_cell) = adjust(step);
        let input = match side {
            Left => &mut left,
            Right => &mut right,
        };
        input.pipe_input_at(s("k"), value.map(s), ts * SECOND);
        let at = format!("at {ts} s: {value:?} on the {side:?} stream");
        assert_eq!(
            records(&inner),
            expected("k", inner_cell),
            "inner join, {at}"
        );
        assert_eq!(
            records(&left_join),
            expected("k", left_cell),
            "left join, {at}"
        );
        assert_eq!(
            records(&outer),
            expected("k", outer_cell),
            "outer join, {at}"
        );
    }
    assert_eq!(d.dropped_records(), 0, "no record of the guide is late");
}

#[test]
fn the_developer_guides_stream_stream_join_table_as_printed() {
    // The guide's rows up to 15 assume every record falls in one window:
    // its `[A, d]` (3 and 14) and `[D, a]` (15 and 4) are 11 s apart. A
    // window of 11 s holds them, and the rows from 40 on come out the same
    // as with the 10 s the guide states.
    let windows = JoinWindows::of_time_difference_and_grace(secs(11), secs(5)).unwrap();
    run_guide(windows, |step| step);
}

#[test]
fn the_developer_guides_table_with_its_stated_ten_second_window() {
    // With 10 s, d (14) no longer reaches A (3), nor D (15) a (4).
    let windows = JoinWindows::of_time_difference_and_grace(secs(10), secs(5)).unwrap();
    const BC_D: Cell = &[("[B, d]", 14), ("[C, d]", 14)];
    const D_BCD: Cell = &[("[D, b]", 15), ("[D, c]", 15), ("[D, d]", 15)];
    run_guide(windows, |step| match step.0 {
        14 => (14, Right, Some("d"), BC_D, BC_D, BC_D),
        15 => (15, Left, Some("D"), D_BCD, D_BCD, D_BCD),
        _ => step,
    });
}

/// Two String streams `left` and `right` joined into `out` ("l+r"), with
/// in-memory stores unless `persistent`.
fn inner_join(windows: JoinWindows, persistent: bool) -> TopologyTestDriver {
    let builder = StreamsBuilder::new();
    let left = builder.stream_with("left", strings());
    let right = builder.stream_with("right", strings());
    let joined = if persistent {
        StreamJoined::named("j").persistent()
    } else {
        StreamJoined::named("j").in_memory()
    };
    left.join_stream_with(&right, |l, r| format!("{l}+{r}"), windows, joined)
        .to_with("out", Produced::with(StringSerde, StringSerde));
    driver(builder)
}

fn out(d: &TopologyTestDriver) -> Vec<(String, String, i64)> {
    records(&d.create_output_topic("out", StringSerde, StringSerde))
}

#[test]
fn records_later_than_their_window_and_grace_are_dropped_and_counted() {
    let windows = JoinWindows::of_time_difference_and_grace(secs(10), secs(5)).unwrap();
    let d = inner_join(windows, false);
    let mut left = d.create_input_topic("left", StringSerde, StringSerde);
    let mut right = d.create_input_topic("right", StringSerde, StringSerde);
    right.pipe_input_at(s("k"), s("r20"), 20 * SECOND);
    left.pipe_input_at(s("k"), s("l12"), 12 * SECOND);
    assert_eq!(out(&d), [(s("k"), s("l12+r20"), 20 * SECOND)]);
    right.pipe_input_at(s("k"), s("r40"), 40 * SECOND); // stream time 40 s
    assert!(out(&d).is_empty());

    // A left record's window ends `after` (10 s) past it; with the grace
    // period (5 s) it is late once stream time is more than 15 s ahead. At
    // 24 s it would have joined r20.
    left.pipe_input_at(s("k"), s("l24"), 24 * SECOND);
    assert!(out(&d).is_empty());
    assert_eq!(d.dropped_records(), 1, "the late record is counted");
    // At 25 s it is just in time: 25 + 10 + 5 is not before 40.
    left.pipe_input_at(s("k"), s("l25"), 25 * SECOND);
    assert_eq!(out(&d), [(s("k"), s("l25+r20"), 25 * SECOND)]);

    // The right side's window is the mirror: `before` (10 s) past it.
    right.pipe_input_at(s("k"), s("r24"), 24 * SECOND);
    assert!(out(&d).is_empty(), "late: 24 + 10 + 5 < 40");
    assert_eq!(d.dropped_records(), 2);
    right.pipe_input_at(s("k"), s("r26"), 26 * SECOND);
    assert_eq!(out(&d), [(s("k"), s("l25+r26"), 26 * SECOND)]);
    assert_eq!(d.dropped_records(), 2);
}

#[test]
fn a_late_record_of_a_left_join_is_neither_joined_nor_emitted_alone() {
    let windows = JoinWindows::of_time_difference_and_grace(secs(10), secs(5)).unwrap();
    let builder = StreamsBuilder::new();
    let left = builder.stream_with("left", strings());
    let right = builder.stream_with("right", strings());
    left.left_join_stream_with(
        &right,
        |l, r| format!("{l}+{}", r.map_or("null", String::as_str)),
        windows,
        StreamJoined::default().in_memory(),
    )
    .to_with("out", Produced::with(StringSerde, StringSerde));
    let d = driver(builder);
    let mut left = d.create_input_topic("left", StringSerde, StringSerde);
    left.pipe_input_at(s("k"), s("l100"), 100 * SECOND);
    left.pipe_input_at(s("k"), s("l50"), 50 * SECOND); // late
    left.pipe_input_at(s("k"), s("l200"), 200 * SECOND); // closes l100's window
    assert_eq!(out(&d), [(s("k"), s("l100+null"), 100 * SECOND)]);
    assert_eq!(d.dropped_records(), 1);
}

/// Pipes two records with the same key and timestamp on each side.
fn duplicates_on_both_sides(d: &TopologyTestDriver) {
    let mut left = d.create_input_topic("left", StringSerde, StringSerde);
    let mut right = d.create_input_topic("right", StringSerde, StringSerde);
    left.pipe_input_at(s("k"), s("x1"), 1_000);
    left.pipe_input_at(s("k"), s("x1"), 1_000); // the same again: kept too
    right.pipe_input_at(s("k"), s("y1"), 1_000);
    right.pipe_input_at(s("k"), s("y2"), 1_000);
    left.pipe_input_at(s("k"), s("x2"), 1_000);
}

#[test]
fn every_pair_of_duplicates_joins_in_memory_and_in_rocksdb() {
    for persistent in [false, true] {
        let windows = JoinWindows::of_time_difference_with_no_grace(secs(5)).unwrap();
        let d = inner_join(windows, persistent);
        duplicates_on_both_sides(&d);
        let joined: Vec<String> = out(&d).into_iter().map(|(_, v, _)| v).collect();
        assert_eq!(
            joined,
            ["x1+y1", "x1+y1", "x1+y2", "x1+y2", "x2+y1", "x2+y2"],
            "persistent: {persistent}"
        );
        let store = d
            .window_store::<String, String>("j-this-join-store")
            .unwrap();
        let kept = store.fetch_range(&s("k"), 0, 10_000).unwrap();
        assert_eq!(
            kept,
            [(1_000, s("x1")), (1_000, s("x1")), (1_000, s("x2"))],
            "persistent: {persistent}"
        );
    }
}

#[test]
fn duplicates_without_a_match_are_each_emitted_once_by_a_left_join() {
    let windows = JoinWindows::of_time_difference_with_no_grace(secs(5)).unwrap();
    let builder = StreamsBuilder::new();
    let left = builder.stream_with("left", strings());
    let right = builder.stream_with("right", strings());
    left.left_join_stream(&right, |l, r| format!("{l}+{r:?}"), windows)
        .to_with("out", Produced::with(StringSerde, StringSerde));
    let d = driver(builder);
    let mut left = d.create_input_topic("left", StringSerde, StringSerde);
    left.pipe_input_at(s("k"), s("a"), 1_000);
    left.pipe_input_at(s("k"), s("b"), 1_000);
    left.pipe_input_at(s("k"), s("a"), 1_000);
    left.pipe_input_at(s("other"), s("c"), 7_000); // closes the window of those at 1 s
    let emitted: Vec<String> = out(&d).into_iter().map(|(_, v, _)| v).collect();
    assert_eq!(emitted, ["a+None", "b+None", "a+None"]);
    left.pipe_input_at(s("other"), s("d"), 60_000);
    let emitted: Vec<String> = out(&d).into_iter().map(|(_, v, _)| v).collect();
    assert_eq!(emitted, ["c+None"], "nothing twice");
}

/// The values a record of the left stream at 10 s joins, of right records
/// at 4, 7, 10, 11 and 15 s (all before it or all after it).
fn joined_with_left_at_ten(windows: JoinWindows, left_first: bool) -> Vec<String> {
    let d = inner_join(windows, false);
    let mut left = d.create_input_topic("left", StringSerde, StringSerde);
    let mut right = d.create_input_topic("right", StringSerde, StringSerde);
    if left_first {
        left.pipe_input_at(s("k"), s("l10"), 10 * SECOND);
    }
    for t in [4, 7, 10, 11, 15] {
        right.pipe_input_at(s("k"), format!("r{t}"), t * SECOND);
    }
    if !left_first {
        left.pipe_input_at(s("k"), s("l10"), 10 * SECOND);
    }
    out(&d).into_iter().map(|(_, v, _)| v).collect()
}

#[test]
fn before_and_after_bound_the_window_on_each_side_whichever_comes_first() {
    // A long grace period: no record is late here.
    let grace = secs(100);
    let earlier = JoinWindows::of_time_difference_and_grace(secs(3), grace)
        .unwrap()
        .after(Duration::ZERO)
        .unwrap();
    for left_first in [true, false] {
        assert_eq!(
            joined_with_left_at_ten(earlier, left_first),
            ["l10+r7", "l10+r10"],
            "right records up to 3 s before, left first: {left_first}"
        );
    }
    let later = JoinWindows::of_time_difference_and_grace(secs(5), grace)
        .unwrap()
        .before(Duration::ZERO)
        .unwrap();
    for left_first in [true, false] {
        assert_eq!(
            joined_with_left_at_ten(later, left_first),
            ["l10+r10", "l10+r11", "l10+r15"],
            "right records up to 5 s after, left first: {left_first}"
        );
    }
}

#[test]
fn an_asymmetric_left_join_waits_for_its_after_only() {
    // Left records join right ones up to 10 s before and 2 s after them:
    // a left record without a match is emitted once stream time passes it
    // by more than 2 s.
    let windows = JoinWindows::of_time_difference_with_no_grace(secs(10))
        .unwrap()
        .after(secs(2))
        .unwrap();
    let builder = StreamsBuilder::new();
    let left = builder.stream_with("left", strings());
    let right = builder.stream_with("right", strings());
    left.left_join_stream(&right, |l, r| format!("{l}+{r:?}"), windows)
        .to_with("out", Produced::with(StringSerde, StringSerde));
    let d = driver(builder);
    let mut left = d.create_input_topic("left", StringSerde, StringSerde);
    let mut right = d.create_input_topic("right", StringSerde, StringSerde);
    left.pipe_input_at(s("k"), s("l0"), 0);
    right.pipe_input_at(s("x"), s("r2"), 2 * SECOND);
    assert!(out(&d).is_empty(), "l0's window is open up to 2 s");
    right.pipe_input_at(s("x"), s("r3"), 3 * SECOND);
    assert_eq!(out(&d), [(s("k"), s("l0+None"), 0)]);
}

#[test]
fn a_left_record_without_a_match_is_emitted_once_after_its_window_closes() {
    let windows = JoinWindows::of_time_difference_with_no_grace(secs(10)).unwrap();
    let builder = StreamsBuilder::new();
    let left = builder.stream_with("left", strings());
    let right = builder.stream_with("right", strings());
    left.left_join_stream(
        &right,
        |l, r| format!("{l}+{}", r.map_or("null", String::as_str)),
        windows,
    )
    .to_with("out", Produced::with(StringSerde, StringSerde));
    let d = driver(builder);
    let mut left = d.create_input_topic("left", StringSerde, StringSerde);
    let mut right = d.create_input_topic("right", StringSerde, StringSerde);
    let joined = |v: &str, ts: i64| (s("k"), s(v), ts);
    left.pipe_input_at(s("k"), s("A"), 0);
    left.pipe_input_at(s("k"), s("B"), 5 * SECOND);
    left.pipe_input_at(s("k"), s("C"), 10 * SECOND);
    right.pipe_input_at(s("other"), s("x"), 10 * SECOND);
    assert!(out(&d).is_empty(), "A's window holds 10 s");
    right.pipe_input_at(s("other"), s("y"), 11 * SECOND);
    assert_eq!(out(&d), [joined("A+null", 0)], "A's window closed at 11 s");
    right.pipe_input_at(s("k"), s("b"), 16 * SECOND); // joins C, 6 s away
    assert_eq!(
        out(&d),
        [joined("B+null", 5 * SECOND), joined("C+b", 16 * SECOND)],
        "B's window closed at 16 s, then b joined C"
    );
    left.pipe_input_at(s("k"), s("D"), 16 * SECOND); // joins b
    assert_eq!(out(&d), [joined("D+b", 16 * SECOND)]);
    // Later records close the others' windows: C and D found matches.
    left.pipe_input_at(s("k"), s("E"), 40 * SECOND);
    left.pipe_input_at(s("k"), s("F"), 60 * SECOND);
    left.pipe_input_at(s("k"), s("G"), 80 * SECOND);
    assert_eq!(
        out(&d),
        [joined("E+null", 40 * SECOND), joined("F+null", 60 * SECOND)],
        "each once, in time order"
    );
    assert_eq!(d.dropped_records(), 0);
}

#[test]
fn an_outer_join_emits_both_sides_unmatched_records_in_time_order() {
    let windows = JoinWindows::of_time_difference_with_no_grace(secs(10)).unwrap();
    let builder = StreamsBuilder::new();
    let left = builder.stream_with("left", strings());
    let right = builder.stream_with("right", strings());
    left.outer_join_stream(&right, shown, windows)
        .to_with("out", Produced::with(StringSerde, StringSerde));
    let d = driver(builder);
    let mut left = d.create_input_topic("left", StringSerde, StringSerde);
    let mut right = d.create_input_topic("right", StringSerde, StringSerde);
    right.pipe_input_at(s("b"), s("r1"), 1_000);
    left.pipe_input_at(s("a"), s("l2"), 2_000);
    right.pipe_input_at(s("a"), s("r3"), 3_000); // joins l2
    left.pipe_input_at(s("c"), s("l4"), 4_000);
    right.pipe_input_at(s("z"), s("r30"), 30_000);
    assert_eq!(
        out(&d),
        [
            (s("a"), s("[l2, r3]"), 3_000),
            (s("b"), s("[null, r1]"), 1_000),
            (s("c"), s("[l4, null]"), 4_000),
        ]
    );
}

#[test]
fn the_stores_and_processors_are_named_as_in_kafka_streams() {
    let windows = JoinWindows::of_time_difference_with_no_grace(secs(1)).unwrap();
    let cases: [(&str, [&str; 3], bool); 3] = [
        (
            "inner",
            [
                "KSTREAM-JOINTHIS-0000000004",
                "KSTREAM-JOINOTHER-0000000005",
                "KSTREAM-MERGE-0000000006",
            ],
            false,
        ),
        (
            "left",
            [
                "KSTREAM-JOINTHIS-0000000004",
                "KSTREAM-OUTEROTHER-0000000005",
                "KSTREAM-MERGE-0000000006",
            ],
            true,
        ),
        (
            "outer",
            [
                "KSTREAM-OUTERTHIS-0000000004",
                "KSTREAM-OUTEROTHER-0000000005",
                "KSTREAM-MERGE-0000000006",
            ],
            true,
        ),
    ];
    for (kind, [this, other, merge], shared) in cases {
        let builder = StreamsBuilder::new();
        let left = builder.stream_with("left", strings());
        let right = builder.stream_with("right", strings());
        let joined = match kind {
            "inner" => left.join_stream(&right, |l, r| format!("{l}{r}"), windows),
            "left" => left.left_join_stream(&right, |l, _| l.clone(), windows),
            _ => left.outer_join_stream(&right, |l, _| format!("{l:?}"), windows),
        };
        joined.to_with("out", Produced::with(StringSerde, StringSerde));
        let topology = builder.build().unwrap();
        let description = topology.describe();
        let nodes: Vec<&str> = description.subtopologies[0]
            .nodes
            .iter()
            .map(|node| node.name.as_str())
            .collect();
        for node in [
            "KSTREAM-WINDOWED-0000000002",
            "KSTREAM-WINDOWED-0000000003",
            this,
            other,
            merge,
        ] {
            assert!(nodes.contains(&node), "{kind}: {node} in {nodes:?}");
        }
        for store in [format!("{this}-store"), format!("{other}-store")] {
            let builder = topology.store_builder(&store);
            let builder = builder.unwrap_or_else(|| panic!("{kind}: no store {store}"));
            assert!(
                builder.persistent() && builder.logging_enabled(),
                "{kind}: {store}"
            );
        }
        let shared_store = topology.store_builder("KSTREAM-OUTERSHARED-0000000004-store");
        assert_eq!(shared_store.is_some(), shared, "{kind}: the shared store");
    }
}

#[test]
fn rocksdb_stores_keep_a_left_joins_waiting_records() {
    let windows = JoinWindows::of_time_difference_with_no_grace(secs(10)).unwrap();
    let builder = StreamsBuilder::new();
    let left = builder.stream_with("left", strings());
    let right = builder.stream_with("right", strings());
    left.left_join_stream_with(
        &right,
        |l, r| format!("{l}+{r:?}"),
        windows,
        StreamJoined::named("pay"),
    )
    .to_with("out", Produced::with(StringSerde, StringSerde));
    let topology = builder.build().unwrap();
    for store in [
        "pay-this-join-store",
        "pay-outer-other-join-store",
        "pay-left-shared-join-store",
    ] {
        assert!(
            topology.store_builder(store).unwrap().persistent(),
            "{store}"
        );
    }
    let d =
        TopologyTestDriver::with_wall_clock(topology, streams_core::StreamsConfig::new("app"), 0)
            .unwrap();
    let mut left = d.create_input_topic("left", StringSerde, StringSerde);
    let mut right = d.create_input_topic("right", StringSerde, StringSerde);
    left.pipe_input_at(s("k1"), s("a"), 0);
    left.pipe_input_at(s("k2"), s("b"), 1_000);
    right.pipe_input_at(s("k2"), s("x"), 2_000);
    left.pipe_input_at(s("k3"), s("c"), 30_000);
    assert_eq!(
        out(&d),
        [
            (s("k2"), s("b+Some(\"x\")"), 2_000),
            (s("k1"), s("a+None"), 0),
        ]
    );
    // Changes reach each store's changelog.
    let topics = d.produced_topic_names();
    for store in [
        "pay-this-join-store",
        "pay-outer-other-join-store",
        "pay-left-shared-join-store",
    ] {
        let changelog = format!("app-{store}-changelog");
        assert!(topics.contains(&changelog), "{changelog} in {topics:?}");
    }
}

#[test]
fn a_stream_whose_key_changed_is_repartitioned_before_the_join() {
    let windows = JoinWindows::of_time_difference_with_no_grace(secs(10)).unwrap();
    for named in [false, true] {
        let builder = StreamsBuilder::new();
        // Orders keyed by id with the customer as value; visits by customer.
        let orders = builder.stream_with("orders", strings());
        let visits = builder.stream_with("visits", strings());
        let by_customer = orders.select_key(|_, customer| customer.clone());
        let joined = if named {
            StreamJoined::default().with_name("shop")
        } else {
            StreamJoined::default()
        };
        by_customer
            .join_stream_with(&visits, |_, page| page.clone(), windows, joined)
            .to_with("out", Produced::with(StringSerde, StringSerde));
        let topology = builder.build().unwrap();
        let base = if named {
            "shop-left"
        } else {
            "KSTREAM-KEY-SELECT-0000000002"
        };
        assert_eq!(
            topology.repartition_topics(),
            [(format!("{base}-repartition"), None)],
            "named: {named}"
        );
        let d = TopologyTestDriver::with_wall_clock(
            topology,
            streams_core::StreamsConfig::new("app"),
            0,
        )
        .unwrap();
        let mut orders = d.create_input_topic("orders", StringSerde, StringSerde);
        let mut visits = d.create_input_topic("visits", StringSerde, StringSerde);
        visits.pipe_input_at(s("ann"), s("/cart"), 1_000);
        orders.pipe_input_at(s("o1"), s("ann"), 2_000);
        assert_eq!(out(&d), [(s("ann"), s("/cart"), 2_000)], "named: {named}");
    }
}

#[test]
fn null_keys_and_values_never_join_and_a_left_join_emits_a_null_keyed_record_at_once() {
    let windows = JoinWindows::of_time_difference_with_no_grace(secs(10)).unwrap();
    let builder = StreamsBuilder::new();
    let left: KStream<Option<String>, Option<String>> = builder.stream("left");
    let right: KStream<Option<String>, Option<String>> = builder.stream("right");
    let text = |v: Option<&Option<String>>| format!("{:?}", v.and_then(Option::as_ref));
    let produced = || Produced::with(Nullable(StringSerde), StringSerde);
    left.join_stream(&right, move |l, r| text(Some(l)) + &text(Some(r)), windows)
        .to_with("inner", produced());
    left.left_join_stream(&right, move |l, r| text(Some(l)) + &text(r), windows)
        .to_with("left-join", produced());
    drop((left, right));
    let d = driver(builder);
    let mut left = d.create_input_topic("left", Nullable(StringSerde), Nullable(StringSerde));
    let mut right = d.create_input_topic("right", Nullable(StringSerde), Nullable(StringSerde));
    let read = |topic: &str| {
        d.create_output_topic(topic, Nullable(StringSerde), StringSerde)
            .read_key_values_to_list()
    };
    left.pipe_input_at(None, Some(s("no key")), 1_000);
    right.pipe_input_at(None, Some(s("no key either")), 1_000);
    left.pipe_input_at(Some(s("k")), None, 1_000);
    right.pipe_input_at(Some(s("k")), None, 1_000);
    assert!(read("inner").is_empty());
    assert_eq!(read("left-join"), [(None, s("Some(\"no key\")None"))]);
    left.pipe_input_at(Some(s("k")), Some(s("v")), 2_000);
    right.pipe_input_at(Some(s("k")), Some(s("w")), 3_000);
    assert_eq!(read("inner"), [(Some(s("k")), s("Some(\"v\")Some(\"w\")"))]);
    assert_eq!(
        read("left-join"),
        [(Some(s("k")), s("Some(\"v\")Some(\"w\")"))]
    );
}

#[test]
fn a_store_supplier_that_does_not_fit_the_windows_is_refused() {
    let windows = JoinWindows::of_time_difference_with_no_grace(secs(10)).unwrap();
    let attempt = |retain_duplicates: bool, size: u64| {
        let builder = StreamsBuilder::new();
        let left = builder.stream_with("left", strings());
        let right = builder.stream_with("right", strings());
        let supplier =
            Stores::in_memory_window_store("mine", secs(20), secs(size), retain_duplicates)
                .unwrap();
        let joined = StreamJoined::default().with_this_store_supplier(supplier);
        left.join_stream_with(&right, |l, r| format!("{l}{r}"), windows, joined)
            .to("out");
        builder.build().map(|_| ()).map_err(|e| e.to_string())
    };
    assert!(attempt(true, 20).is_ok());
    let error = attempt(false, 20).unwrap_err();
    assert!(error.contains("must keep duplicates"), "{error}");
    let error = attempt(true, 10).unwrap_err();
    assert!(error.contains("must hold windows of 20000 ms"), "{error}");
}

#[test]
fn a_joined_record_keeps_the_later_timestamp_and_its_own_headers() {
    let windows = JoinWindows::of_time_difference_with_no_grace(secs(10)).unwrap();
    let d = inner_join(windows, false);
    let mut left = d.create_input_topic("left", StringSerde, StringSerde);
    let mut right = d.create_input_topic("right", StringSerde, StringSerde);
    right.pipe_input_at(s("k"), s("r"), 9_000);
    let headers = streams_core::Headers::new().with("trace", "t1");
    left.pipe_record(Record::new(s("k"), s("l"), 5_000).with_headers(headers));
    let joined = d
        .create_output_topic("out", StringSerde, StringSerde)
        .read_record();
    assert_eq!((joined.value.as_str(), joined.timestamp), ("l+r", 9_000));
    assert_eq!(joined.headers.last("trace"), Some(Some(&b"t1"[..])));
}

#[test]
fn a_zero_difference_joins_records_with_equal_timestamps_only() {
    let windows = JoinWindows::of_time_difference_with_no_grace(Duration::ZERO).unwrap();
    let d = inner_join(windows, false);
    let mut left = d.create_input_topic("left", StringSerde, StringSerde);
    let mut right = d.create_input_topic("right", StringSerde, StringSerde);
    left.pipe_input_at(s("k"), s("l5"), 5_000);
    right.pipe_input_at(s("k"), s("r5"), 5_000);
    right.pipe_input_at(s("k"), s("r6"), 5_001);
    left.pipe_input_at(s("k"), s("l6"), 5_001);
    let joined: Vec<String> = out(&d).into_iter().map(|(_, v, _)| v).collect();
    assert_eq!(joined, ["l5+r5", "l6+r6"]);
}

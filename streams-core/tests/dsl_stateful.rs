//! Aggregations, tables and joins through the TopologyTestDriver,
//! including the cases users trip on: tombstones, re-keying before a
//! count, left joins with no table value yet.

mod common;

use std::collections::HashMap;

use streams_core::dsl::{Consumed, Grouped, Materialized, Produced};
use streams_core::serde::{I64Serde, Nullable, StringSerde, UnitSerde};
use streams_core::testing::{TestInputTopic, TopologyTestDriver};
use streams_core::{StreamsBuilder, StreamsConfig};

use common::{driver, numbers, s, strings};

fn nullable_counts() -> Produced<String, Option<i64>> {
    Produced::with(StringSerde, Nullable(I64Serde))
}

#[test]
fn word_count_rekeys_before_counting_through_a_repartition_topic() {
    for store in [
        Materialized::named("counts").in_memory(),
        Materialized::named("counts").persistent(),
    ] {
        let builder = StreamsBuilder::new();
        builder
            .stream_with(["lines"], Consumed::with(UnitSerde, StringSerde))
            .flat_map_values(|l: String| {
                l.split_whitespace().map(str::to_owned).collect::<Vec<_>>()
            })
            .group_by_with(|_, w| w.clone(), Grouped::with(StringSerde, StringSerde))
            .count_with(store)
            .to_stream()
            .to_with("counts-out", nullable_counts());
        let topology = builder.build().unwrap();
        let description = topology.describe();
        assert_eq!(description.subtopologies.len(), 2, "{description}");
        assert!(
            description.to_string().contains("counts-repartition"),
            "{description}"
        );

        let d = TopologyTestDriver::new(topology, StreamsConfig::new("app")).unwrap();
        let mut lines = d.create_input_topic("lines", UnitSerde, StringSerde);
        lines.pipe_value_list([s("a b a"), s("b c")]);
        let out = d.create_output_topic("counts-out", StringSerde, Nullable(I64Serde));
        let updates = out.read_key_values_to_list();
        assert_eq!(
            updates,
            [
                (s("a"), Some(1)),
                (s("b"), Some(1)),
                (s("a"), Some(2)),
                (s("b"), Some(2)),
                (s("c"), Some(1))
            ]
        );
        let counts = d.key_value_store::<String, i64>("counts").unwrap();
        assert_eq!(
            counts.all().unwrap(),
            [(s("a"), 2), (s("b"), 2), (s("c"), 1)]
        );
        // Every count also went to the store's changelog.
        let changelog = d.read_raw("app-counts-changelog");
        assert_eq!(changelog.len(), 5);
        assert_eq!(changelog[4].key.as_deref(), Some(&b"c"[..]));
        assert_eq!(changelog[4].value.as_deref(), Some(&1i64.to_be_bytes()[..]));
    }
}

#[test]
fn group_by_key_without_rekey_needs_no_repartition() {
    let builder = StreamsBuilder::new();
    builder
        .stream_with(["in"], numbers())
        .group_by_key_with(Grouped::default())
        .reduce(|a, b| a + b, Materialized::named("sums").in_memory())
        .to_stream()
        .to_with("sums", nullable_counts());
    let topology = builder.build().unwrap();
    assert_eq!(topology.describe().subtopologies.len(), 1);
    let d = TopologyTestDriver::new(topology, StreamsConfig::new("app")).unwrap();
    let mut input = d.create_input_topic("in", StringSerde, I64Serde);
    input.pipe_key_value_list([(s("x"), 5), (s("y"), 1), (s("x"), 7)]);
    let sums = d
        .create_output_topic("sums", StringSerde, Nullable(I64Serde))
        .read_key_values_to_list();
    assert_eq!(
        sums,
        [(s("x"), Some(5)), (s("y"), Some(1)), (s("x"), Some(12))]
    );
}

#[test]
fn aggregate_folds_with_initializer() {
    let builder = StreamsBuilder::new();
    builder
        .stream_with(["in"], strings())
        .group_by_key_with(Grouped::default())
        .aggregate(
            String::new,
            |_, v, agg| {
                if agg.is_empty() {
                    v
                } else {
                    format!("{agg},{v}")
                }
            },
            Materialized::with(StringSerde, StringSerde),
        )
        .to_stream()
        .to_with("out", Produced::with(StringSerde, Nullable(StringSerde)));
    let d = driver(builder);
    d.create_input_topic("in", StringSerde, StringSerde)
        .pipe_key_value_list([(s("k"), s("a")), (s("k"), s("b"))]);
    let out = d
        .create_output_topic("out", StringSerde, Nullable(StringSerde))
        .read_values_to_list();
    assert_eq!(out, [Some(s("a")), Some(s("a,b"))]);
}

#[test]
fn a_rekeyed_aggregation_without_serdes_is_a_build_error() {
    // Values of a type with no default serde (common types have one).
    let builder = StreamsBuilder::new();
    let table = builder
        .stream_with(["in"], strings())
        .map_values(|v| vec![v])
        .group_by_with(|_, v| v.join(","), Grouped::default())
        .count_with(Materialized::named("c"));
    drop(table);
    let error = builder.build().unwrap_err().to_string();
    assert!(
        error.contains("needs a key serde and a value serde"),
        "{error}"
    );
    assert!(error.contains("Grouped::with"), "{error}");
}

#[test]
fn table_keeps_latest_value_and_tombstones_delete() {
    let builder = StreamsBuilder::new();
    let table = builder.table("users", strings(), Materialized::named("users").in_memory());
    table.to_stream().to_with(
        "changes",
        Produced::with(StringSerde, Nullable(StringSerde)),
    );
    drop(table);
    let d = driver(builder);
    let mut users = d.create_input_topic("users", StringSerde, StringSerde);
    users.pipe_input(s("1"), s("ann"));
    users.pipe_input(s("1"), s("anne"));
    users.pipe_input(s("2"), s("bob"));
    users.pipe_tombstone(s("2"));
    users.pipe_tombstone(s("never-seen"));
    let store = d.key_value_store::<String, String>("users").unwrap();
    assert_eq!(store.all().unwrap(), [(s("1"), s("anne"))]);
    let changes = d
        .create_output_topic("changes", StringSerde, Nullable(StringSerde))
        .read_key_values_to_list();
    assert_eq!(
        changes,
        [
            (s("1"), Some(s("ann"))),
            (s("1"), Some(s("anne"))),
            (s("2"), Some(s("bob"))),
            (s("2"), None)
        ],
        "deleting an absent key changes nothing and emits nothing"
    );
}

#[test]
fn table_filter_turns_updates_that_stop_matching_into_deletes() {
    let builder = StreamsBuilder::new();
    let table = builder.table("scores", numbers(), Materialized::default());
    table
        .filter(|_, v| *v >= 10)
        .to_stream()
        .to_with("high", nullable_counts());
    table
        .filter_not(|_, v| *v >= 10)
        .map_values(|v| v * 100)
        .to_stream()
        .to_with("low-x100", nullable_counts());
    drop(table);
    let d = driver(builder);
    let mut scores = d.create_input_topic("scores", StringSerde, I64Serde);
    scores.pipe_input(s("a"), 5);
    scores.pipe_input(s("a"), 15);
    scores.pipe_input(s("a"), 20);
    scores.pipe_input(s("a"), 1);
    let high = d
        .create_output_topic("high", StringSerde, Nullable(I64Serde))
        .read_values_to_list();
    assert_eq!(high, [Some(15), Some(20), None]);
    let low = d
        .create_output_topic("low-x100", StringSerde, Nullable(I64Serde))
        .read_values_to_list();
    assert_eq!(low, [Some(500), None, Some(100)]);
}

fn pipe(input: &mut TestInputTopic<String, String>, pairs: &[(&str, Option<&str>)]) {
    for (k, v) in pairs {
        match v {
            Some(v) => input.pipe_input(s(k), s(v)),
            None => input.pipe_tombstone(s(k)),
        }
    }
}

#[test]
fn table_group_by_count_subtracts_rows_that_move_or_leave() {
    // Users by city: a user moving city leaves the old count.
    let builder = StreamsBuilder::new();
    builder
        .table(
            "user-city",
            strings(),
            Materialized::named("user-city").in_memory(),
        )
        .group_by_with(
            |_, city| (city.clone(), city.clone()),
            Grouped::with(StringSerde, StringSerde),
        )
        .count_with(Materialized::named("city-counts").in_memory())
        .to_stream()
        .to_with("city-counts", nullable_counts());
    let d = driver(builder);
    let mut input = d.create_input_topic("user-city", StringSerde, StringSerde);
    pipe(
        &mut input,
        &[
            ("ann", Some("oslo")),
            ("bob", Some("oslo")),
            ("ann", Some("rome")),
            ("bob", None),
        ],
    );
    let counts = d.key_value_store::<String, i64>("city-counts").unwrap();
    assert_eq!(counts.all().unwrap(), [(s("oslo"), 0), (s("rome"), 1)]);
    let updates = d
        .create_output_topic("city-counts", StringSerde, Nullable(I64Serde))
        .read_key_values_to_list();
    assert_eq!(
        updates,
        [
            (s("oslo"), Some(1)),
            (s("oslo"), Some(2)),
            (s("oslo"), Some(1)),
            (s("rome"), Some(1)),
            (s("oslo"), Some(0))
        ]
    );
}

#[test]
fn table_group_by_reduce_and_aggregate_subtract() {
    let builder = StreamsBuilder::new();
    let table = builder.table("balances", numbers(), Materialized::default().in_memory());
    let by_bank = table.group_by_with(
        |acct, v| (acct[..1].to_owned(), *v),
        Grouped::with(StringSerde, I64Serde),
    );
    by_bank.reduce(
        |a, b| a + b,
        |a, b| a - b,
        Materialized::named("bank-total").in_memory(),
    );
    by_bank.aggregate(
        || 0i64,
        |_, v, agg| agg.max(*v),
        |_, _, agg| agg,
        Materialized::named("bank-max").with_value_serde(I64Serde),
    );
    drop((table, by_bank));
    let d = driver(builder);
    let mut input = d.create_input_topic("balances", StringSerde, I64Serde);
    input.pipe_input(s("a1"), 100);
    input.pipe_input(s("a2"), 50);
    input.pipe_input(s("a1"), 30);
    input.pipe_input(s("b1"), 7);
    let totals = d
        .key_value_store::<String, i64>("bank-total")
        .unwrap()
        .all()
        .unwrap();
    assert_eq!(totals, [(s("a"), 80), (s("b"), 7)]);
    let max = d
        .key_value_store::<String, i64>("bank-max")
        .unwrap()
        .get(&s("a"))
        .unwrap();
    assert_eq!(max, Some(100));
}

#[test]
fn stream_table_join_and_left_join() {
    let builder = StreamsBuilder::new();
    let users = builder.table("users", strings(), Materialized::named("users").in_memory());
    let clicks = builder.stream_with(["clicks"], strings());
    clicks
        .join(&users, |page, user| format!("{user} viewed {page}"))
        .to_with("joined", Produced::with(StringSerde, StringSerde));
    clicks
        .left_join(&users, |page, user| {
            format!("{} viewed {page}", user.map_or("anonymous", String::as_str))
        })
        .to_with("left-joined", Produced::with(StringSerde, StringSerde));
    drop((users, clicks));
    let d = driver(builder);
    let mut users = d.create_input_topic("users", StringSerde, StringSerde);
    let mut clicks = d.create_input_topic("clicks", StringSerde, StringSerde);
    clicks.pipe_input(s("u1"), s("/home")); // no user yet
    users.pipe_input(s("u1"), s("ann"));
    clicks.pipe_input(s("u1"), s("/cart"));
    users.pipe_tombstone(s("u1"));
    clicks.pipe_input(s("u1"), s("/bye")); // user deleted
    let joined = d
        .create_output_topic("joined", StringSerde, StringSerde)
        .read_values_to_list();
    assert_eq!(joined, ["ann viewed /cart"]);
    let left = d
        .create_output_topic("left-joined", StringSerde, StringSerde)
        .read_values_to_list();
    assert_eq!(
        left,
        [
            "anonymous viewed /home",
            "ann viewed /cart",
            "anonymous viewed /bye"
        ]
    );
}

#[test]
fn stream_table_join_after_rekey_repartitions_the_stream() {
    let builder = StreamsBuilder::new();
    let users = builder.table("users", strings(), Materialized::named("users").in_memory());
    builder
        .stream_with(["orders"], strings())
        .select_key(|_, v| v.split(':').next().unwrap_or_default().to_owned())
        .join(&users, |order, user| format!("{order} by {user}"))
        .to_with("out", Produced::with(StringSerde, StringSerde));
    drop(users);
    let topology = builder.build().unwrap();
    assert!(topology.describe().to_string().contains("-repartition"));
    let d = TopologyTestDriver::new(topology, StreamsConfig::new("app")).unwrap();
    d.create_input_topic("users", StringSerde, StringSerde)
        .pipe_input(s("u7"), s("zoe"));
    d.create_input_topic("orders", StringSerde, StringSerde)
        .pipe_input(s("o1"), s("u7:book"));
    assert_eq!(
        d.create_output_topic("out", StringSerde, StringSerde)
            .read_key_value(),
        (s("u7"), s("u7:book by zoe"))
    );
}

#[test]
fn table_table_join_and_left_join_track_both_sides() {
    let builder = StreamsBuilder::new();
    let names = builder.table("names", strings(), Materialized::named("names").in_memory());
    let emails = builder.table(
        "emails",
        strings(),
        Materialized::named("emails").in_memory(),
    );
    names
        .join(&emails, |n, e| format!("{n} <{e}>"))
        .to_stream()
        .to_with("inner", Produced::with(StringSerde, Nullable(StringSerde)));
    names
        .left_join(&emails, |n, e| {
            format!("{n} <{}>", e.map_or("?", String::as_str))
        })
        .to_stream()
        .to_with("left", Produced::with(StringSerde, Nullable(StringSerde)));
    drop((names, emails));
    let d = driver(builder);
    let mut names = d.create_input_topic("names", StringSerde, StringSerde);
    let mut emails = d.create_input_topic("emails", StringSerde, StringSerde);
    names.pipe_input(s("1"), s("ann"));
    emails.pipe_input(s("1"), s("a@x"));
    emails.pipe_input(s("1"), s("ann@x"));
    names.pipe_tombstone(s("1"));
    emails.pipe_input(s("2"), s("orphan@x"));
    let inner = d
        .create_output_topic("inner", StringSerde, Nullable(StringSerde))
        .read_values_to_list();
    assert_eq!(inner, [Some(s("ann <a@x>")), Some(s("ann <ann@x>")), None]);
    let left = d
        .create_output_topic("left", StringSerde, Nullable(StringSerde))
        .read_values_to_list();
    assert_eq!(
        left,
        [
            Some(s("ann <?>")),
            Some(s("ann <a@x>")),
            Some(s("ann <ann@x>")),
            None
        ]
    );
}

#[test]
fn global_table_join_by_mapped_key() {
    let builder = StreamsBuilder::new();
    let products = builder.global_table(
        "products",
        strings(),
        Materialized::named("products").in_memory(),
    );
    let orders = builder.stream_with(["orders"], strings());
    orders
        .join_global(
            &products,
            |_, v| v.clone(),
            |pid, name| format!("{pid}={name}"),
        )
        .to_with("inner", Produced::with(StringSerde, StringSerde));
    orders
        .left_join_global(
            &products,
            |_, v| v.clone(),
            |pid, name| format!("{pid}={}", name.map_or("unknown", String::as_str)),
        )
        .to_with("left", Produced::with(StringSerde, StringSerde));
    drop((products, orders));
    let topology = builder.build().unwrap();
    let description = topology.describe();
    assert_eq!(description.global_stores.len(), 1);
    assert!(
        description.to_string().contains("for global store"),
        "{description}"
    );
    let d = TopologyTestDriver::new(topology, StreamsConfig::new("app")).unwrap();
    d.create_input_topic("products", StringSerde, StringSerde)
        .pipe_input(s("p1"), s("pen"));
    let mut orders = d.create_input_topic("orders", StringSerde, StringSerde);
    orders.pipe_input(s("o1"), s("p1"));
    orders.pipe_input(s("o2"), s("p9"));
    assert_eq!(
        d.create_output_topic("inner", StringSerde, StringSerde)
            .read_values_to_list(),
        ["p1=pen"]
    );
    assert_eq!(
        d.create_output_topic("left", StringSerde, StringSerde)
            .read_values_to_list(),
        ["p1=pen", "p9=unknown"]
    );
    let products = d.key_value_store::<String, String>("products").unwrap();
    assert_eq!(products.get(&s("p1")).unwrap(), Some(s("pen")));
    assert!(
        d.read_raw("app-products-changelog").is_empty(),
        "a global store has no changelog of its own"
    );
}

#[test]
fn tombstone_in_table_aggregation_input_and_joined_table() {
    // A table joined with another, then aggregated: deletes flow through.
    let builder = StreamsBuilder::new();
    let a = builder.table("a", numbers(), Materialized::default().in_memory());
    let b = builder.table("b", numbers(), Materialized::default().in_memory());
    a.join(&b, |x, y| x * y)
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
    a.pipe_input(s("k1"), 2);
    b.pipe_input(s("k1"), 10); // 20
    a.pipe_input(s("k2"), 3);
    b.pipe_input(s("k2"), 1); // 20 + 3
    let total = d.key_value_store::<String, i64>("total").unwrap();
    assert_eq!(total.get(&s("all")).unwrap(), Some(23));
    a.pipe_tombstone(s("k1"));
    assert_eq!(total.get(&s("all")).unwrap(), Some(3));
    b.pipe_input(s("k2"), 5);
    assert_eq!(total.get(&s("all")).unwrap(), Some(15));
}

#[test]
fn counts_survive_in_rocksdb_across_many_keys() {
    let builder = StreamsBuilder::new();
    builder
        .stream_with(["in"], Consumed::with(StringSerde, UnitSerde))
        .group_by_key_with(Grouped::default())
        .count_with(Materialized::named("c"));
    let d = driver(builder);
    let mut input = d.create_input_topic("in", StringSerde, UnitSerde);
    for i in 0..1000 {
        input.pipe_input(format!("k{}", i % 37), ());
    }
    let all: HashMap<String, i64> = d
        .key_value_store::<String, i64>("c")
        .unwrap()
        .all()
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(all.len(), 37);
    assert_eq!(all.values().sum::<i64>(), 1000);
}

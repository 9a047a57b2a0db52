//! Stateless DSL operators through the TopologyTestDriver.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use streams_core::dsl::{Consumed, Named, Produced, Repartitioned};
use streams_core::serde::{I64Serde, JsonSerde, StringSerde, UnitSerde};
use streams_core::testing::TopologyTestDriver;
use streams_core::{Headers, Record, StreamsBuilder, StreamsConfig};

use common::{driver, numbers, s, strings};

fn out() -> Produced<String, String> {
    Produced::with(StringSerde, StringSerde)
}

#[test]
fn filter_and_filter_not() {
    let builder = StreamsBuilder::new();
    let stream = builder.stream_with(["in"], strings());
    stream.filter(|_, v| v.starts_with('a')).to_with("a", out());
    stream
        .filter_not(|_, v| v.starts_with('a'))
        .to_with("not-a", out());
    let d = driver(builder);
    let mut input = d.create_input_topic("in", StringSerde, StringSerde);
    input.pipe_key_value_list([
        (s("1"), s("apple")),
        (s("2"), s("banana")),
        (s("3"), s("avocado")),
    ]);
    let a = d.create_output_topic("a", StringSerde, StringSerde);
    let not_a = d.create_output_topic("not-a", StringSerde, StringSerde);
    assert_eq!(a.read_values_to_list(), ["apple", "avocado"]);
    assert_eq!(not_a.read_key_values_to_list(), [(s("2"), s("banana"))]);
}

#[test]
fn map_map_values_and_select_key() {
    let builder = StreamsBuilder::new();
    let stream = builder.stream_with(["in"], strings());
    stream.map(|k, v| (v, k)).to_with("swapped", out());
    stream
        .map_values(|v| v.len() as i64)
        .to_with("lengths", Produced::with(StringSerde, I64Serde));
    stream
        .map_values_with_key(|k, v| format!("{k}={v}"))
        .to_with("pairs", out());
    stream
        .select_key(|_, v| v.to_uppercase())
        .to_with("rekeyed", out());
    let d = driver(builder);
    d.create_input_topic("in", StringSerde, StringSerde)
        .pipe_input(s("k"), s("value"));
    assert_eq!(
        d.create_output_topic("swapped", StringSerde, StringSerde)
            .read_key_value(),
        (s("value"), s("k"))
    );
    assert_eq!(
        d.create_output_topic("lengths", StringSerde, I64Serde)
            .read_key_value(),
        (s("k"), 5)
    );
    assert_eq!(
        d.create_output_topic("pairs", StringSerde, StringSerde)
            .read_value(),
        "k=value"
    );
    assert_eq!(
        d.create_output_topic("rekeyed", StringSerde, StringSerde)
            .read_key_value(),
        (s("VALUE"), s("value"))
    );
}

#[test]
fn flat_map_and_flat_map_values_keep_timestamp_and_headers() {
    let builder = StreamsBuilder::new();
    let stream = builder.stream_with(["in"], strings());
    stream
        .flat_map_values(|v: String| v.split(',').map(str::to_owned).collect::<Vec<_>>())
        .to_with("parts", out());
    stream
        .flat_map(|k: String, v: String| {
            v.split(',')
                .map(|p| (format!("{k}-{p}"), p.to_owned()))
                .collect::<Vec<_>>()
        })
        .to_with("keyed-parts", out());
    let d = driver(builder);
    let mut input = d.create_input_topic("in", StringSerde, StringSerde);
    input.pipe_record(
        Record::new(s("k"), s("x,y,z"), 42).with_headers(Headers::new().with("trace", "t1")),
    );
    input.pipe_input_at(s("e"), s(""), 43);
    let parts = d
        .create_output_topic("parts", StringSerde, StringSerde)
        .read_records_to_list();
    assert_eq!(
        parts.iter().map(|r| r.value.as_str()).collect::<Vec<_>>(),
        ["x", "y", "z", ""]
    );
    assert!(parts[..3].iter().all(|r| r.timestamp == 42 && r.key == "k"));
    assert_eq!(parts[0].headers.last("trace"), Some(Some(&b"t1"[..])));
    let keyed = d
        .create_output_topic("keyed-parts", StringSerde, StringSerde)
        .read_key_values_to_list();
    assert_eq!(
        keyed[..3],
        [(s("k-x"), s("x")), (s("k-y"), s("y")), (s("k-z"), s("z"))]
    );
}

#[test]
fn peek_and_foreach_see_every_record() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let each = Arc::new(Mutex::new(Vec::new()));
    let builder = StreamsBuilder::new();
    let (p, e) = (seen.clone(), each.clone());
    let stream = builder
        .stream_with(["in"], strings())
        .peek(move |k, v| p.lock().unwrap().push(format!("{k}:{v}")));
    stream.foreach(move |k, _| e.lock().unwrap().push(k.clone()));
    stream.to_with("out", out());
    let d = driver(builder);
    d.create_input_topic("in", StringSerde, StringSerde)
        .pipe_key_value_list([(s("a"), s("1")), (s("b"), s("2"))]);
    assert_eq!(*seen.lock().unwrap(), ["a:1", "b:2"]);
    assert_eq!(*each.lock().unwrap(), ["a", "b"]);
    assert_eq!(
        d.create_output_topic("out", StringSerde, StringSerde)
            .queue_size(),
        2
    );
}

#[test]
fn split_sends_each_record_to_its_first_matching_branch() {
    let builder = StreamsBuilder::new();
    let branches = builder
        .stream_with(["in"], numbers())
        .split(Some(Named::new("n-")))
        .branch(|_, v| *v < 0, "negative")
        .branch(|_, v| *v < 10, "small")
        .default_branch("large");
    let mut names: Vec<_> = branches.keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["n-large", "n-negative", "n-small"]);
    for (name, branch) in &branches {
        branch.to_with(name, Produced::with(StringSerde, I64Serde));
    }
    drop(branches);
    let d = driver(builder);
    let mut input = d.create_input_topic("in", StringSerde, I64Serde);
    for (k, v) in [("a", -5), ("b", 3), ("c", 30), ("d", -1), ("e", 9)] {
        input.pipe_input(s(k), v);
    }
    let read = |t: &str| {
        d.create_output_topic(t, StringSerde, I64Serde)
            .read_values_to_list()
    };
    assert_eq!(read("n-negative"), [-5, -1]);
    assert_eq!(read("n-small"), [3, 9], "-5 matched negative first");
    assert_eq!(read("n-large"), [30]);
}

#[test]
fn split_without_default_drops_unmatched() {
    let builder = StreamsBuilder::new();
    let branches = builder
        .stream_with(["in"], strings())
        .split(None)
        .branch(|_, v| v == "keep", "keep")
        .no_default_branch();
    assert_eq!(branches.len(), 1);
    branches.values().next().unwrap().to_with("kept", out());
    drop(branches);
    let d = driver(builder);
    d.create_input_topic("in", StringSerde, StringSerde)
        .pipe_key_value_list([(s("1"), s("keep")), (s("2"), s("drop"))]);
    assert_eq!(
        d.create_output_topic("kept", StringSerde, StringSerde)
            .read_values_to_list(),
        ["keep"]
    );
}

#[test]
fn merge_combines_streams_in_arrival_order() {
    let builder = StreamsBuilder::new();
    let a = builder.stream_with(["a"], strings());
    let b = builder.stream_with(["b"], strings());
    a.merge(&b).to_with("merged", out());
    let d = driver(builder);
    let mut ia = d.create_input_topic("a", StringSerde, StringSerde);
    let mut ib = d.create_input_topic("b", StringSerde, StringSerde);
    ia.pipe_input(s("1"), s("a1"));
    ib.pipe_input(s("2"), s("b1"));
    ia.pipe_input(s("3"), s("a2"));
    assert_eq!(
        d.create_output_topic("merged", StringSerde, StringSerde)
            .read_values_to_list(),
        ["a1", "b1", "a2"]
    );
}

#[test]
fn to_dynamic_picks_a_topic_per_record_and_partitioner_is_consulted() {
    let builder = StreamsBuilder::new();
    let stream = builder.stream_with(["in"], strings());
    stream.to_dynamic(|k, _| format!("topic-{k}"), out());
    let asked = Arc::new(Mutex::new(Vec::new()));
    let a = asked.clone();
    stream.to_with(
        "partitioned",
        out().with_partitioner(move |topic, key, _, count| {
            a.lock()
                .unwrap()
                .push((topic.to_owned(), key.clone(), count));
            Some(0)
        }),
    );
    let d = driver(builder);
    d.create_input_topic("in", StringSerde, StringSerde)
        .pipe_key_value_list([(s("x"), s("1")), (s("y"), s("2"))]);
    assert_eq!(
        d.create_output_topic("topic-x", StringSerde, StringSerde)
            .read_values_to_list(),
        ["1"]
    );
    assert_eq!(
        d.create_output_topic("topic-y", StringSerde, StringSerde)
            .read_values_to_list(),
        ["2"]
    );
    assert_eq!(asked.lock().unwrap()[0], (s("partitioned"), s("x"), 1));
}

#[test]
fn explicit_repartition_goes_through_an_internal_topic() {
    let builder = StreamsBuilder::new();
    builder
        .stream_with(["in"], strings())
        .select_key(|_, v| v.clone())
        .repartition(Repartitioned::with(StringSerde, StringSerde).with_name("by-value"))
        .to_with("out", out());
    let topology = builder.build().unwrap();
    let description = topology.describe().to_string();
    assert!(
        description.contains("by-value-repartition"),
        "{description}"
    );
    assert_eq!(topology.describe().subtopologies.len(), 2);
    let d = TopologyTestDriver::new(topology, StreamsConfig::new("app")).unwrap();
    d.create_input_topic("in", StringSerde, StringSerde)
        .pipe_input(s("k"), s("v"));
    assert_eq!(
        d.create_output_topic("out", StringSerde, StringSerde)
            .read_key_value(),
        (s("v"), s("v"))
    );
    let internal = d.read_raw("app-by-value-repartition");
    assert_eq!(internal.len(), 1);
    assert_eq!(internal[0].key.as_deref(), Some(&b"v"[..]));
}

#[test]
fn keyless_topics_read_as_unit_keys_and_json_values() {
    #[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
    struct Reading {
        sensor: String,
        celsius: f64,
    }
    let builder = StreamsBuilder::new();
    builder
        .stream_with(
            ["readings"],
            Consumed::with(UnitSerde, JsonSerde::<Reading>::new()),
        )
        .map(|(), r: Reading| (r.sensor.clone(), (r.celsius * 9.0 / 5.0 + 32.0) as i64))
        .to_with("fahrenheit", Produced::with(StringSerde, I64Serde));
    let d = driver(builder);
    let mut input = d.create_input_topic("readings", UnitSerde, JsonSerde::<Reading>::new());
    input.pipe_value(Reading {
        sensor: s("s1"),
        celsius: 100.0,
    });
    input
        .pipe_raw(None, Some(br#"{"sensor":"s2","celsius":0.0}"#))
        .unwrap();
    let out: HashMap<_, _> = d
        .create_output_topic("fahrenheit", StringSerde, I64Serde)
        .read_key_values_to_map();
    assert_eq!(out, HashMap::from([(s("s1"), 212), (s("s2"), 32)]));
}

//! The serving topology through the TopologyTestDriver, for each store
//! variant: no model yet, a first model, a swap, two data types, a model
//! republished, descriptors without a key or with a key that disagrees, a
//! score that is not finite, a corrupt model and a malformed record.

mod common;

use model_server::model::{ModelLimits, build};
use model_server::serving::{
    DATA_TOPIC, MODELS_STORE, MODELS_TOPIC, ModelStore, SCORES_TOPIC, STATS_STORE, StatsStore,
    StoreVariant, topology,
};
use model_server::stats::{ModelToServeStats, StatsSerde};
use proto::{MessageContent, ModelDescriptor, ModelType, ServingResult, WineRecord};
use streams_core::StreamsConfig;
use streams_core::serde::{BytesSerde, Nullable, ProtobufSerde, Serde, StringSerde, UnitSerde};
use streams_core::testing::TopologyTestDriver;

use common::pmml_file;

fn pmml(stem: &str) -> Vec<u8> {
    std::fs::read(pmml_file(stem)).unwrap()
}

fn descriptor(name: &str, data_type: &str, data: Vec<u8>) -> ModelDescriptor {
    ModelDescriptor {
        name: name.into(),
        description: format!("{name} for {data_type}"),
        data_type: data_type.into(),
        modeltype: ModelType::Pmml as i32,
        message_content: Some(MessageContent::Data(data)),
    }
}

const ROW: [f64; 11] = [
    7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4,
];

fn record(data_type: &str) -> WineRecord {
    WineRecord::from_features(ROW, data_type, 0)
}

/// What `stem` predicts for `ROW`, computed outside the topology.
fn expected(stem: &str) -> f64 {
    let served = build(
        &descriptor("x", "wine", pmml(stem)),
        &ModelLimits::default(),
    )
    .unwrap();
    served.model.score(&record("wine")).unwrap()
}

fn check_variant(variant: StoreVariant) {
    let driver = TopologyTestDriver::new(
        topology(variant).unwrap(),
        StreamsConfig::new("serving-test"),
    )
    .unwrap();
    let mut data =
        driver.create_input_topic(DATA_TOPIC, UnitSerde, ProtobufSerde::<WineRecord>::new());
    let mut raw = driver.create_input_topic(DATA_TOPIC, UnitSerde, BytesSerde);
    let mut models = driver.create_input_topic(
        MODELS_TOPIC,
        StringSerde,
        ProtobufSerde::<ModelDescriptor>::new(),
    );
    // As the original client writes them: no key at all.
    let mut keyless = driver.create_input_topic(MODELS_TOPIC, Nullable(BytesSerde), BytesSerde);
    let scores = driver.create_output_topic(
        SCORES_TOPIC,
        UnitSerde,
        ProtobufSerde::<ServingResult>::new(),
    );
    // Each variant's store, read the way an interactive query would.
    let stats = |data_type: &str| -> Option<ModelToServeStats> {
        match variant {
            StoreVariant::Custom => driver
                .state_store(STATS_STORE)
                .unwrap()
                .with(|s: &mut StatsStore| s.get(data_type).cloned())
                .unwrap(),
            _ => driver
                .key_value_store::<String, ModelToServeStats>(STATS_STORE)
                .unwrap()
                .get(&data_type.to_owned())
                .unwrap(),
        }
    };
    let rejected = || {
        driver
            .state_store(MODELS_STORE)
            .unwrap()
            .with(|s: &mut ModelStore| s.rejected())
            .unwrap()
    };

    // No model yet: reported as not served, with the reason, not lost.
    data.pipe_input((), record("wine"));
    let result = scores.read_value();
    assert!(!result.served, "{result:?}");
    assert_eq!(
        (result.data_type.as_str(), result.model.as_str()),
        ("wine", "")
    );
    assert_eq!(result.offset, 0);
    assert_eq!(result.reason, "no model for data type `wine`");

    // A first model serves.
    let linear = "winequalityLinearRegression";
    models.pipe_input("wine".into(), descriptor("linear", "wine", pmml(linear)));
    data.pipe_input((), record("wine"));
    let result = scores.read_value();
    assert!(result.served);
    assert_eq!(result.model, "linear");
    assert_eq!(result.result, expected(linear));
    assert_eq!(result.offset, 1);
    let s = stats("wine").unwrap();
    assert_eq!((s.name.as_str(), s.usage), ("linear", 1));

    // A swap: the next record uses the new model; its statistics start over.
    let tree = "winequalityDesisionTreeRegression";
    models.pipe_input("wine".into(), descriptor("tree", "wine", pmml(tree)));
    data.pipe_input((), record("wine"));
    data.pipe_input((), record("wine"));
    let results = scores.read_values_to_list();
    assert!(
        results
            .iter()
            .all(|r| r.model == "tree" && r.result == expected(tree))
    );
    let s = stats("wine").unwrap();
    assert_eq!((s.name.as_str(), s.usage), ("tree", 2));
    assert!(s.min > 0.0 && s.min <= s.max && s.duration >= s.max);

    // Two data types, each with its own model.
    let forest = "winequalityRandonForrestClassification";
    models.pipe_input("red".into(), descriptor("forest", "red", pmml(forest)));
    data.pipe_input((), record("red"));
    data.pipe_input((), record("wine"));
    let results = scores.read_values_to_list();
    assert_eq!(results[0].model, "forest");
    assert_eq!(results[0].result, expected(forest));
    assert_eq!(results[1].model, "tree");
    assert_eq!(stats("red").unwrap().usage, 1);

    // Republished under the same name: its statistics start over.
    models.pipe_input("wine".into(), descriptor("tree", "wine", pmml(tree)));
    data.pipe_input((), record("wine"));
    assert_eq!(scores.read_value().model, "tree");
    let s = stats("wine").unwrap();
    assert_eq!((s.name.as_str(), s.usage), ("tree", 1));

    // A descriptor with no key, or with a key that is not UTF-8, or one
    // that names another data type: its `dataType` decides.
    let gaussian = "winequalityGeneralizedLinearRegressionGaussian";
    let encoded = |d: ModelDescriptor| proto::Message::encode_to_vec(&d);
    keyless.pipe_input(None, encoded(descriptor("keyless", "wine", pmml(gaussian))));
    data.pipe_input((), record("wine"));
    assert_eq!(scores.read_value().model, "keyless");
    models.pipe_input("red".into(), descriptor("misfiled", "wine", pmml(tree)));
    data.pipe_input((), record("wine"));
    data.pipe_input((), record("red"));
    let results = scores.read_values_to_list();
    assert_eq!(
        (results[0].model.as_str(), results[0].result),
        ("misfiled", expected(tree))
    );
    assert_eq!(results[1].model, "forest");
    keyless.pipe_input(
        Some(vec![0xff, 0xfe]),
        encoded(descriptor("binary-key", "wine", pmml(linear))),
    );
    data.pipe_input((), record("wine"));
    assert_eq!(scores.read_value().model, "binary-key");
    assert_eq!(rejected(), 0);

    // A score that is not a finite number is reported as not served, with
    // the reason, and left out of the statistics.
    let usage = stats("wine").unwrap().usage;
    data.pipe_input((), WineRecord::from_features([f64::MAX; 11], "wine", 0));
    let result = scores.read_value();
    assert!(!result.served, "{result:?}");
    assert!(result.reason.contains("not finite"), "{result:?}");
    assert_eq!(stats("wine").unwrap().usage, usage);

    // A corrupt model is rejected and counted; the previous one serves on.
    models.pipe_input(
        "wine".into(),
        descriptor("broken", "wine", b"<PMML><DataDictionary>".to_vec()),
    );
    assert_eq!(rejected(), 1);
    data.pipe_input((), record("wine"));
    assert_eq!(scores.read_value().model, "binary-key");
    // So is a value that is no descriptor at all.
    keyless.pipe_input(None, vec![0xff, 0xff, 0xff]);
    assert_eq!(rejected(), 2);

    // A record that is not a WineRecord is skipped (and logged); the next
    // one is served.
    raw.pipe_input((), vec![0xff, 0xff, 0xff]);
    data.pipe_input((), record("wine"));
    let results = scores.read_values_to_list();
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(results[0].served);

    // What each variant logs: nothing (memory), every update (standard's
    // store is cached but the driver commits after each record), one
    // snapshot per data type and commit (custom).
    let changelog = driver.read_raw("serving-test-model-stats-changelog");
    let last: Option<ModelToServeStats> = changelog
        .iter()
        .rev()
        .find(|r| r.key.as_deref() == Some(b"wine".as_slice()))
        .and_then(|r| {
            let bytes = r.value.as_deref()?;
            // The custom store logs JSON snapshots; the standard one its
            // store encoding.
            match variant {
                StoreVariant::Custom => serde_json::from_slice(bytes).ok(),
                _ => StatsSerde.deserialize(bytes).ok(),
            }
        });
    match variant {
        StoreVariant::Memory => assert!(changelog.is_empty()),
        _ => {
            // JSON keeps the figures to within a rounding of the last digit.
            let (logged, live) = (last.unwrap(), stats("wine").unwrap());
            assert_eq!((&logged.name, logged.usage), (&live.name, live.usage));
            assert!((logged.duration - live.duration).abs() < 1e-12);
            assert!((logged.min - live.min).abs() < 1e-12);
        }
    }
}

#[test]
fn custom_variant_restores_its_statistics_from_the_changelog() {
    let config = StreamsConfig::new("serving-test");
    let driver =
        TopologyTestDriver::new(topology(StoreVariant::Custom).unwrap(), config.clone()).unwrap();
    let mut data =
        driver.create_input_topic(DATA_TOPIC, UnitSerde, ProtobufSerde::<WineRecord>::new());
    let mut models = driver.create_input_topic(
        MODELS_TOPIC,
        StringSerde,
        ProtobufSerde::<ModelDescriptor>::new(),
    );
    let linear = "winequalityLinearRegression";
    models.pipe_input("wine".into(), descriptor("linear", "wine", pmml(linear)));
    for _ in 0..5 {
        data.pipe_input((), record("wine"));
    }
    let changelog = driver.read_raw("serving-test-model-stats-changelog");
    // One snapshot per commit, the last one complete.
    assert_eq!(changelog.len(), 5);
    let writes: Vec<(&[u8], Option<&[u8]>)> = changelog
        .iter()
        .map(|r| (r.key.as_deref().unwrap(), r.value.as_deref()))
        .collect();
    driver.close().unwrap();

    // A new instance of the store, restored from those records.
    let restored =
        TopologyTestDriver::new(topology(StoreVariant::Custom).unwrap(), config).unwrap();
    let stats = restored
        .state_store(STATS_STORE)
        .unwrap()
        .with(|s: &mut StatsStore| {
            use streams_core::state::StateRestoreCallback;
            s.restore_batch(&writes).unwrap();
            s.get("wine").cloned()
        })
        .unwrap()
        .unwrap();
    assert_eq!((stats.name.as_str(), stats.usage), ("linear", 5));
}

#[test]
fn memory_variant_serves_swaps_and_rejects() {
    check_variant(StoreVariant::Memory);
}

#[test]
fn standard_variant_serves_swaps_and_rejects() {
    check_variant(StoreVariant::Standard);
}

#[test]
fn custom_variant_serves_swaps_and_rejects() {
    check_variant(StoreVariant::Custom);
}

#[test]
fn store_variants_parse_from_their_names() {
    for (name, variant) in [
        ("memory", StoreVariant::Memory),
        ("standard", StoreVariant::Standard),
        ("custom", StoreVariant::Custom),
        ("m", StoreVariant::Memory),
        ("s", StoreVariant::Standard),
        ("c", StoreVariant::Custom),
    ] {
        assert_eq!(name.parse::<StoreVariant>(), Ok(variant));
    }
    let err = "rocks".parse::<StoreVariant>().unwrap_err();
    assert!(err.contains("memory, standard or custom"), "{err}");
}

#[test]
fn the_model_store_cannot_be_queried_before_start() {
    let streams = streams_kafka::KafkaStreams::new(
        topology(StoreVariant::Standard).unwrap(),
        StreamsConfig::new("serving-test").set("bootstrap.servers", "127.0.0.1:9"),
    )
    .unwrap();
    let error = streams
        .query_custom_store(MODELS_STORE, |s: &mut ModelStore| s.rejected())
        .unwrap_err();
    assert!(error.to_string().contains("before start()"), "{error}");
    assert!(model_server::serving::current_models(&streams).is_err());
}

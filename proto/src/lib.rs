//! Protobuf messages of the model-serving application.
//!
//! The messages are wire-compatible with the original tutorial
//! ("Kafka-based microservices with Akka Streams and Kafka Streams",
//! Lightbend): [`WineRecord`] and [`ModelDescriptor`] keep its field numbers
//! and enum values, so bytes written by its client decode here.
//! [`ServingResult`] is ours. The types are generated at build time by
//! `prost-build` from the `.proto` files in `proto/`, compiled by `protox`.
//!
//! ```
//! use prost::Message;
//! use proto::WineRecord;
//!
//! let record = WineRecord::from_features([7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4], "wine", 0);
//! let bytes = record.encode_to_vec();
//! assert_eq!(WineRecord::decode(bytes.as_slice()).unwrap(), record);
//! ```

#[allow(missing_docs, unreachable_pub, clippy::all)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/wine.rs"));
}

pub use generated::model_descriptor::{MessageContent, ModelType};
pub use generated::{ModelDescriptor, ServingResult, WineRecord};
pub use prost::Message;

pub mod wire;

/// The names of the 11 wine features, in field order, as the UCI data set
/// and the original PMML models spell them.
pub const FEATURE_NAMES: [&str; 11] = [
    "fixed acidity",
    "volatile acidity",
    "citric acid",
    "residual sugar",
    "chlorides",
    "free sulfur dioxide",
    "total sulfur dioxide",
    "density",
    "pH",
    "sulphates",
    "alcohol",
];

impl WineRecord {
    /// Builds a record from its 11 features in [`FEATURE_NAMES`] order.
    pub fn from_features(features: [f64; 11], data_type: impl Into<String>, ts: i64) -> Self {
        let [
            fixed_acidity,
            volatile_acidity,
            citric_acid,
            residual_sugar,
            chlorides,
            free_sulfur_dioxide,
            total_sulfur_dioxide,
            density,
            p_h,
            sulphates,
            alcohol,
        ] = features;
        WineRecord {
            fixed_acidity,
            volatile_acidity,
            citric_acid,
            residual_sugar,
            chlorides,
            free_sulfur_dioxide,
            total_sulfur_dioxide,
            density,
            p_h,
            sulphates,
            alcohol,
            data_type: data_type.into(),
            ts,
        }
    }

    /// The features of one line of the UCI wine data
    /// (`data/winequality_red.csv`): 11 `;`-separated numbers in
    /// [`FEATURE_NAMES`] order, optionally followed by the quality, which
    /// is ignored. A header line, a missing or extra field or a field that
    /// is not a finite number is an error naming it.
    pub fn parse_csv(line: &str) -> Result<[f64; 11], String> {
        let mut features = [0.0; 11];
        let mut fields = line.trim().split(';');
        for (i, slot) in features.iter_mut().enumerate() {
            let Some(field) = fields.next().map(str::trim) else {
                return Err(format!("{i} fields, expected 11 or 12"));
            };
            *slot = match field.parse::<f64>() {
                Ok(v) if v.is_finite() => v,
                _ => return Err(format!("{}: {field:?} is not a number", FEATURE_NAMES[i])),
            };
        }
        let rest = fields.count();
        if rest > 1 {
            return Err(format!("{} fields, expected 11 or 12", 11 + rest));
        }
        Ok(features)
    }

    /// The 11 features in [`FEATURE_NAMES`] order, as models take them.
    pub fn features(&self) -> [f64; 11] {
        [
            self.fixed_acidity,
            self.volatile_acidity,
            self.citric_acid,
            self.residual_sugar,
            self.chlorides,
            self.free_sulfur_dioxide,
            self.total_sulfur_dioxide,
            self.density,
            self.p_h,
            self.sulphates,
            self.alcohol,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn csv_lines_parse_with_or_without_quality_and_bad_ones_say_why() {
        let row = [
            7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4,
        ];
        assert_eq!(
            WineRecord::parse_csv("7.4;0.7;0;1.9;0.076;11;34;0.9978;3.51;0.56;9.4;5"),
            Ok(row)
        );
        assert_eq!(
            WineRecord::parse_csv(" 7.4;0.7;0;1.9;0.076;11;34;0.9978;3.51;0.56;9.4\r\n"),
            Ok(row)
        );
        let header = WineRecord::parse_csv("\"fixed acidity\";\"volatile acidity\"").unwrap_err();
        assert!(header.contains("fixed acidity"), "{header}");
        assert_eq!(
            WineRecord::parse_csv("7.4;0.7;0"),
            Err("3 fields, expected 11 or 12".into())
        );
        assert_eq!(
            WineRecord::parse_csv("1;2;3;4;5;6;7;8;9;10;11;12;13"),
            Err("13 fields, expected 11 or 12".into())
        );
        let nan = WineRecord::parse_csv("1;2;3;4;5;6;7;8;NaN;10;11").unwrap_err();
        assert!(nan.starts_with("pH"), "{nan}");
        assert!(WineRecord::parse_csv("").is_err());
    }

    /// Appends a protobuf key (field number, wire type) as a one-byte varint.
    fn key(out: &mut Vec<u8>, field: u8, wire_type: u8) {
        assert!(field < 16);
        out.push((field << 3) | wire_type);
    }

    /// Encodes a record by hand, field by field, the way any proto3 encoder
    /// (the original's ScalaPB client among them) lays it out: fields in
    /// number order, zero values left out.
    fn hand_encoded_wine(features: [f64; 11], data_type: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, value) in features.iter().enumerate() {
            if *value != 0.0 {
                key(&mut out, i as u8 + 1, 1); // wire type 1: 64-bit
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
        key(&mut out, 12, 2); // wire type 2: length-delimited
        out.push(data_type.len() as u8);
        out.extend_from_slice(data_type.as_bytes());
        out
    }

    // Third row of winequality_red.csv: every feature non-zero.
    const ROW3: [f64; 11] = [
        7.8, 0.76, 0.04, 2.3, 0.092, 15.0, 54.0, 0.997, 3.26, 0.65, 9.8,
    ];

    #[test]
    fn original_wine_record_bytes_decode() {
        let bytes = hand_encoded_wine(ROW3, "wine");
        assert_eq!(
            bytes.len(),
            105,
            "11 doubles of 9 bytes and a 6-byte dataType"
        );
        let record = WineRecord::decode(bytes.as_slice()).unwrap();
        assert_eq!(record.features(), ROW3);
        assert_eq!(record.fixed_acidity, 7.8);
        assert_eq!(record.p_h, 3.26);
        assert_eq!(record.alcohol, 9.8);
        assert_eq!(record.data_type, "wine");
        assert_eq!(record.ts, 0);
        // And we write exactly those bytes back.
        assert_eq!(record.encode_to_vec(), bytes);
    }

    #[test]
    fn zero_features_are_left_out_and_decode_as_zero() {
        // First row: citric acid is 0, so it is not on the wire.
        let row1 = [
            7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4,
        ];
        let bytes = hand_encoded_wine(row1, "wine");
        assert_eq!(bytes.len(), 96);
        let record = WineRecord::decode(bytes.as_slice()).unwrap();
        assert_eq!(record.citric_acid, 0.0);
        assert_eq!(record.features(), row1);
    }

    #[test]
    fn original_pmml_descriptor_bytes_decode() {
        let pmml = b"<PMML version=\"4.3\"/>";
        let mut bytes = Vec::new();
        for (field, text) in [
            (1u8, "winequalityLinearRegression"),
            (2, "generated from SparkML"),
            (3, "wine"),
        ] {
            key(&mut bytes, field, 2);
            bytes.push(text.len() as u8);
            bytes.extend_from_slice(text.as_bytes());
        }
        key(&mut bytes, 4, 0); // varint: the enum value
        bytes.push(1); // PMML
        key(&mut bytes, 5, 2);
        bytes.push(pmml.len() as u8);
        bytes.extend_from_slice(pmml);

        let descriptor = ModelDescriptor::decode(bytes.as_slice()).unwrap();
        assert_eq!(descriptor.name, "winequalityLinearRegression");
        assert_eq!(descriptor.description, "generated from SparkML");
        assert_eq!(descriptor.data_type, "wine");
        assert_eq!(descriptor.modeltype(), ModelType::Pmml);
        assert_eq!(
            descriptor.message_content,
            Some(MessageContent::Data(pmml.to_vec()))
        );
        assert_eq!(descriptor.encode_to_vec(), bytes);
    }

    #[test]
    fn a_tensorflow_descriptor_carries_no_model_type_on_the_wire() {
        // TENSORFLOW is 0, proto3's default: ScalaPB leaves field 4 out.
        let graph = [0x0a, 0x03, b'a', b'b', b'c'];
        let mut bytes = Vec::new();
        key(&mut bytes, 1, 2);
        bytes.push(2);
        bytes.extend_from_slice(b"tf");
        key(&mut bytes, 3, 2);
        bytes.push(4);
        bytes.extend_from_slice(b"wine");
        key(&mut bytes, 5, 2);
        bytes.push(graph.len() as u8);
        bytes.extend_from_slice(&graph);
        let descriptor = ModelDescriptor::decode(bytes.as_slice()).unwrap();
        assert_eq!(descriptor.modeltype(), ModelType::Tensorflow);
        assert_eq!(descriptor.description, "");
        assert_eq!(
            descriptor.message_content,
            Some(MessageContent::Data(graph.to_vec()))
        );
        assert_eq!(descriptor.encode_to_vec(), bytes);
    }

    #[test]
    fn model_type_numbers_match_the_original() {
        assert_eq!(ModelType::Tensorflow as i32, 0);
        assert_eq!(ModelType::Pmml as i32, 1);
        assert_eq!(ModelType::Tensorflowsaved as i32, 2);
        assert_eq!(ModelType::Onnx as i32, 3);
        // An unknown number decodes without error and reads as the default,
        // so a newer publisher cannot crash an older server.
        let descriptor = ModelDescriptor {
            modeltype: 42,
            ..Default::default()
        };
        let decoded = ModelDescriptor::decode(descriptor.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded.modeltype, 42);
        assert!(ModelType::try_from(decoded.modeltype).is_err());
    }

    #[test]
    fn location_descriptor_round_trips() {
        let descriptor = ModelDescriptor {
            name: "tree".into(),
            description: String::new(),
            data_type: "wine".into(),
            modeltype: ModelType::Onnx as i32,
            message_content: Some(MessageContent::Location("/models/tree.onnx".into())),
        };
        let decoded = ModelDescriptor::decode(descriptor.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, descriptor);
    }

    #[test]
    fn truncated_bytes_are_an_error_not_a_panic() {
        let bytes = hand_encoded_wine(ROW3, "wine");
        assert!(WineRecord::decode(&bytes[..50]).is_err());
    }

    proptest! {
        #[test]
        fn wine_record_round_trips(
            features in proptest::array::uniform11(proptest::num::f64::ANY),
            data_type in ".{0,20}",
            ts in any::<i64>(),
        ) {
            let record = WineRecord::from_features(features, data_type, ts);
            let decoded = WineRecord::decode(record.encode_to_vec().as_slice()).unwrap();
            // NaN must survive as NaN; -0.0 is proto3's default and comes
            // back as 0.0, which compares equal.
            for (a, b) in decoded.features().iter().zip(record.features()) {
                prop_assert!(a == &b || (a.is_nan() && b.is_nan()), "{a} != {b}");
            }
            prop_assert_eq!(decoded.data_type, record.data_type);
            prop_assert_eq!(decoded.ts, record.ts);
        }

        #[test]
        fn serving_result_round_trips(
            data_type in ".{0,20}", model in ".{0,20}", result in -1e9f64..1e9,
            duration_ns in any::<i64>(), served in any::<bool>(),
            partition in any::<i32>(), offset in any::<i64>(), ts in any::<i64>(),
        ) {
            let value = ServingResult { data_type, model, result, duration_ns, served, partition, offset, ts, reason: String::new() };
            let decoded = ServingResult::decode(value.encode_to_vec().as_slice()).unwrap();
            prop_assert_eq!(decoded, value);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = WineRecord::decode(bytes.as_slice());
            let _ = ModelDescriptor::decode(bytes.as_slice());
        }
    }
}

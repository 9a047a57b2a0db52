//! Serving statistics per model, as the original's `ModelToServeStats`:
//! name, description, model type, data type, since, usage, total
//! duration, min and max (milliseconds, fractions allowed). The original's
//! `min` never moved below its initial 0; here it starts at the first
//! observation.

use serde::{Deserialize, Serialize};
use streams_core::serde::{Serde, SerdeError};

use crate::model::ServedModel;

/// How one model has served so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelToServeStats {
    /// The model's name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Its type (`PMML`, `ONNX`, ...).
    #[serde(rename = "modelType")]
    pub model_type: String,
    /// The data type it serves.
    #[serde(rename = "dataType")]
    pub data_type: String,
    /// When it started serving (ms since the epoch).
    pub since: i64,
    /// Records scored.
    pub usage: u64,
    /// Total scoring time, in milliseconds.
    pub duration: f64,
    /// Shortest scoring time, in milliseconds (0 before any).
    pub min: f64,
    /// Longest scoring time, in milliseconds.
    pub max: f64,
    /// Which publication of the model: its descriptor's offset on the
    /// models topic (the same on every instance), -1 when unknown.
    /// Statistics of one publication merge across instances.
    #[serde(default = "unknown_version")]
    pub version: i64,
}

fn unknown_version() -> i64 {
    -1
}

impl ModelToServeStats {
    /// Fresh statistics for `model`, publication `version`, serving since
    /// `since`.
    pub fn new(model: &ServedModel, since: i64, version: i64) -> Self {
        ModelToServeStats {
            name: model.name.clone(),
            description: model.description.clone(),
            model_type: model.kind.as_str_name().to_owned(),
            data_type: model.data_type.clone(),
            since,
            usage: 0,
            duration: 0.0,
            min: 0.0,
            max: 0.0,
            version,
        }
    }

    /// Counts one scoring that took `millis`.
    pub fn record(&mut self, millis: f64) {
        self.min = if self.usage == 0 {
            millis
        } else {
            self.min.min(millis)
        };
        self.max = self.max.max(millis);
        self.usage += 1;
        self.duration += millis;
    }

    /// Starts afresh when `model` (publication `version`, serving since
    /// `since`) is not the model these statistics are about: a new model,
    /// or the same one published again, counts from zero. Statistics a
    /// task took over from another instance continue (same publication).
    pub fn continue_or_restart(&mut self, model: &ServedModel, since: i64, version: i64) {
        let unknown = version < 0 && self.since != since;
        if self.name != model.name || self.version != version || unknown {
            *self = ModelToServeStats::new(model, since, version);
        }
    }

    /// Combines the statistics of the same model from another instance:
    /// usage and duration add up, min of mins, max of maxes, the earliest
    /// `since`.
    pub fn merge(&mut self, other: &ModelToServeStats) {
        if other.usage > 0 {
            self.min = if self.usage == 0 {
                other.min
            } else {
                self.min.min(other.min)
            };
        }
        self.max = self.max.max(other.max);
        self.usage += other.usage;
        self.duration += other.duration;
        self.since = self.since.min(other.since);
    }
}

/// Merges statistics from several tasks and instances into one entry per
/// data type, sorted by data type. Each data type's entry is its current
/// model's: the one that started serving last (instances install a model
/// at slightly different times, so entries match by name and
/// publication); entries of a model it replaced, or of an earlier
/// publication of the same name, are left out.
pub fn merge_all(entries: impl IntoIterator<Item = ModelToServeStats>) -> Vec<ModelToServeStats> {
    let mut by_type: std::collections::BTreeMap<String, Vec<ModelToServeStats>> =
        std::collections::BTreeMap::new();
    for entry in entries {
        by_type
            .entry(entry.data_type.clone())
            .or_default()
            .push(entry);
    }
    by_type
        .into_values()
        .filter_map(|entries| {
            let newest = entries.iter().max_by_key(|e| e.since)?;
            let (name, version) = (newest.name.clone(), newest.version);
            entries
                .into_iter()
                .filter(|e| e.name == name && e.version == version)
                .reduce(|mut a, b| {
                    a.merge(&b);
                    a
                })
        })
        .collect()
}

/// The stores' encoding of [`ModelToServeStats`]: every record served
/// rewrites its entry, and JSON cost a third of the scoring thread's time.
/// Four strings, each a little-endian `u32` length and its UTF-8 bytes
/// (name, description, model type, data type), then `since`, `usage`,
/// `duration`, `min`, `max` and `version`, eight little-endian bytes each
/// (entries written before `version` existed end at `max`: version -1).
/// The HTTP answers stay JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatsSerde;

impl Serde<ModelToServeStats> for StatsSerde {
    fn serialize_into(
        &self,
        stats: &ModelToServeStats,
        out: &mut Vec<u8>,
    ) -> Result<(), SerdeError> {
        for text in [
            &stats.name,
            &stats.description,
            &stats.model_type,
            &stats.data_type,
        ] {
            let len = u32::try_from(text.len())
                .map_err(|_| SerdeError::new("statistics: a string over 4 GiB"))?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        out.extend_from_slice(&stats.since.to_le_bytes());
        out.extend_from_slice(&stats.usage.to_le_bytes());
        for number in [stats.duration, stats.min, stats.max] {
            out.extend_from_slice(&number.to_le_bytes());
        }
        out.extend_from_slice(&stats.version.to_le_bytes());
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<ModelToServeStats, SerdeError> {
        let mut rest = bytes;
        let mut take = |n: usize| -> Result<&[u8], SerdeError> {
            if rest.len() < n {
                return Err(SerdeError::new(format!(
                    "statistics: {} bytes end too early",
                    bytes.len()
                )));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let mut text = || -> Result<String, SerdeError> {
            let len = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes"));
            String::from_utf8(take(len as usize)?.to_vec())
                .map_err(|_| SerdeError::new("statistics: a string is not UTF-8"))
        };
        let (name, description, model_type, data_type) = (text()?, text()?, text()?, text()?);
        let mut eight =
            || -> Result<[u8; 8], SerdeError> { Ok(take(8)?.try_into().expect("8 bytes")) };
        let mut stats = ModelToServeStats {
            name,
            description,
            model_type,
            data_type,
            since: i64::from_le_bytes(eight()?),
            usage: u64::from_le_bytes(eight()?),
            duration: f64::from_le_bytes(eight()?),
            min: f64::from_le_bytes(eight()?),
            max: f64::from_le_bytes(eight()?),
            version: -1,
        };
        // Written before `version` existed: the entry ends here.
        if !rest.is_empty() {
            let (version, left) = rest.split_at_checked(8).ok_or_else(|| {
                SerdeError::new(format!("statistics: {} bytes end too early", bytes.len()))
            })?;
            stats.version = i64::from_le_bytes(version.try_into().expect("8 bytes"));
            rest = left;
        }
        if !rest.is_empty() {
            return Err(SerdeError::new(format!(
                "statistics: {} bytes left over",
                rest.len()
            )));
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_encoding_round_trips_and_refuses_damaged_bytes() {
        let mut s = stats();
        s.description = "naïve – ünïcode".into();
        s.record(0.125);
        s.record(3.5);
        let bytes = StatsSerde.serialize(&s).unwrap();
        assert_eq!(StatsSerde.deserialize(&bytes).unwrap(), s);
        let short = StatsSerde
            .deserialize(&bytes[..bytes.len() - 1])
            .unwrap_err();
        assert!(short.to_string().contains("end too early"), "{short}");
        let mut long = bytes.clone();
        long.push(0);
        let extra = StatsSerde.deserialize(&long).unwrap_err();
        assert!(extra.to_string().contains("1 bytes left over"), "{extra}");
        let mut not_utf8 = bytes;
        not_utf8[4] = 0xff; // the first byte of the name
        let bad = StatsSerde.deserialize(&not_utf8).unwrap_err();
        assert!(bad.to_string().contains("not UTF-8"), "{bad}");
        // Entries written before the version was kept still read.
        let mut old = StatsSerde.serialize(&s).unwrap();
        old.truncate(old.len() - 8);
        assert_eq!(StatsSerde.deserialize(&old).unwrap().version, -1);
        assert!(StatsSerde.deserialize(b"").is_err());
    }

    fn stats() -> ModelToServeStats {
        ModelToServeStats {
            name: "m".into(),
            description: "d".into(),
            model_type: "PMML".into(),
            data_type: "wine".into(),
            since: 100,
            usage: 0,
            duration: 0.0,
            min: 0.0,
            max: 0.0,
            version: 7,
        }
    }

    #[test]
    fn min_starts_at_the_first_observation() {
        let mut s = stats();
        s.record(2.0);
        s.record(0.5);
        s.record(3.0);
        assert_eq!((s.usage, s.duration, s.min, s.max), (3, 5.5, 0.5, 3.0));
    }

    #[test]
    fn merging_adds_usage_and_keeps_extremes() {
        let mut a = stats();
        a.record(1.0);
        let mut b = stats();
        b.since = 50;
        b.record(0.25);
        b.record(4.0);
        let empty = stats();
        a.merge(&b);
        a.merge(&empty);
        assert_eq!(
            (a.usage, a.duration, a.min, a.max, a.since),
            (3, 5.25, 0.25, 4.0, 50)
        );
    }

    #[test]
    fn merge_all_keeps_each_data_types_current_model() {
        let mut old = stats();
        old.record(1.0);
        let mut new_a = stats();
        new_a.name = "n".into();
        new_a.since = 200;
        new_a.record(2.0);
        let mut new_b = new_a.clone();
        new_b.since = 201; // installed a moment later on another instance
        new_b.record(4.0);
        let mut other = stats();
        other.data_type = "beer".into();
        other.record(3.0);
        let merged = merge_all([old, new_a, other.clone(), new_b]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0], other);
        let wine = &merged[1];
        assert_eq!(
            (
                wine.name.as_str(),
                wine.usage,
                wine.duration,
                wine.min,
                wine.max,
                wine.since
            ),
            ("n", 3, 8.0, 2.0, 4.0, 200)
        );
        assert!(merge_all([]).is_empty());
    }

    #[test]
    fn a_republished_model_does_not_merge_with_its_earlier_publication() {
        // Instance A served publication 7 and has not seen a record since
        // the republication; instance B serves publication 9.
        let mut earlier = stats();
        earlier.record(1.0);
        let mut later = stats();
        later.version = 9;
        later.since = 300;
        later.record(2.0);
        let merged = merge_all([earlier.clone(), later.clone()]);
        assert_eq!(merged, vec![later.clone()]);
        // A scorer's statistics restart on the republication, but continue
        // on the same one (a task taken over from another instance).
        let model = crate::model::ServedModel {
            name: "m".into(),
            description: "d".into(),
            data_type: "wine".into(),
            kind: proto::ModelType::Pmml,
            model: std::sync::Arc::new(Zero),
        };
        let mut continued = earlier.clone();
        continued.continue_or_restart(&model, 999, 7);
        assert_eq!(continued, earlier);
        continued.continue_or_restart(&model, 999, 9);
        assert_eq!(
            (continued.usage, continued.since, continued.version),
            (0, 999, 9)
        );
    }

    struct Zero;
    impl crate::model::Model for Zero {
        fn score(&self, _: &proto::WineRecord) -> Option<f64> {
            Some(0.0)
        }
    }

    #[test]
    fn json_uses_the_original_field_names() {
        let json = serde_json::to_value(stats()).unwrap();
        for key in [
            "name",
            "description",
            "modelType",
            "dataType",
            "since",
            "usage",
            "duration",
            "min",
            "max",
        ] {
            assert!(json.get(key).is_some(), "{key} in {json}");
        }
    }
}

//! The core of the `stage` engine, the tutorial's Akka Streams custom
//! stage: one piece of state that takes the merged stream of wine records
//! and model descriptors, keeps the current model and its statistics per
//! data type, and answers each record with a [`ServingResult`]. It knows
//! nothing of Kafka or of threads: the engine feeds it, and builds models
//! (with [`build`](crate::model::build)'s checks and limits) before
//! handing them over, so scoring never waits on a build.

use std::collections::BTreeMap;

use proto::{Message, ServingResult, WineRecord};

use crate::model::ServedModel;
use crate::serving::score_into;
use crate::stats::ModelToServeStats;

/// The current model of one data type, and how it has served.
struct Current {
    model: ServedModel,
    stats: ModelToServeStats,
}

/// The merged record and model streams' state.
pub struct Stage {
    current: BTreeMap<String, Current>,
    clock: quanta::Clock,
}

impl Default for Stage {
    fn default() -> Self {
        Stage {
            current: BTreeMap::new(),
            clock: quanta::Clock::new(),
        }
    }
}

impl Stage {
    /// Makes `model` (publication `version`: its descriptor's offset on
    /// the models topic) the current model of its data type from `now_ms`
    /// on, with fresh statistics.
    pub fn install(&mut self, model: ServedModel, version: i64, now_ms: i64) {
        log::info!(
            "New model - {} ({}) for data type `{}`",
            model.name,
            model.kind.as_str_name(),
            model.data_type
        );
        let stats = ModelToServeStats::new(&model, now_ms, version);
        self.current
            .insert(model.data_type.clone(), Current { model, stats });
    }

    /// Scores the wine record `value` read at `partition`/`offset` (record
    /// time `ts`): the result to write, served or not. A value that is not
    /// a wine record is an error with the reason, for the dead-letter topic.
    pub fn serve(
        &mut self,
        partition: i32,
        offset: i64,
        ts: i64,
        value: Option<&[u8]>,
    ) -> Result<ServingResult, String> {
        let wine = WineRecord::decode(value.unwrap_or_default())
            .map_err(|e| format!("not a wine record: {e}"))?;
        let mut result = ServingResult {
            partition,
            offset,
            ts,
            ..ServingResult::default()
        };
        let current = self.current.get_mut(&wine.data_type);
        let model = current.as_ref().map(|c| &c.model);
        match score_into(model, &wine, &self.clock, &mut result) {
            Some(millis) => {
                log::debug!(
                    "Calculated quality - {} calculated in {millis:.3} ms",
                    result.result
                );
                if let Some(current) = current {
                    current.stats.record(millis);
                }
            }
            None if model.is_none() => log::debug!("No model available - skipping"),
            None => log::debug!("Not served - {}", result.reason),
        }
        result.data_type = wine.data_type;
        Ok(result)
    }

    /// Every data type's statistics, by data type.
    pub fn stats(&self) -> Vec<ModelToServeStats> {
        self.current.values().map(|c| c.stats.clone()).collect()
    }

    /// The statistics of `data_type`'s current model.
    pub fn stats_of(&self, data_type: &str) -> Option<ModelToServeStats> {
        self.current.get(data_type).map(|c| c.stats.clone())
    }

    /// The models serving now, by data type.
    pub fn models(&self) -> Vec<&ServedModel> {
        self.current.values().map(|c| &c.model).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use proto::{MessageContent, ModelDescriptor, ModelType};

    use super::*;
    use crate::model::{ModelLimits, build};

    fn model(stem: &str, data_type: &str) -> ServedModel {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../data/models/pmml")
            .join(format!("{stem}.pmml"));
        let descriptor = ModelDescriptor {
            name: stem.into(),
            description: "a test model".into(),
            data_type: data_type.into(),
            modeltype: ModelType::Pmml as i32,
            message_content: Some(MessageContent::Data(std::fs::read(path).unwrap())),
        };
        build(&descriptor, &ModelLimits::default()).unwrap()
    }

    fn wine(data_type: &str) -> Vec<u8> {
        WineRecord::from_features(
            [
                7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4,
            ],
            data_type,
            0,
        )
        .encode_to_vec()
    }

    #[test]
    fn no_model_then_a_model_then_a_swap() {
        let mut stage = Stage::default();
        let result = stage.serve(0, 1, 5, Some(&wine("wine"))).unwrap();
        assert!(!result.served);
        assert_eq!(result.reason, "no model for data type `wine`");
        assert_eq!((result.partition, result.offset, result.ts), (0, 1, 5));

        stage.install(model("winequalityLinearRegression", "wine"), 7, 1_000);
        for offset in 2..5 {
            let result = stage.serve(0, offset, 5, Some(&wine("wine"))).unwrap();
            assert!(result.served, "{result:?}");
            assert_eq!(result.model, "winequalityLinearRegression");
            assert_eq!(result.data_type, "wine");
        }
        let stats = stage.stats_of("wine").unwrap();
        assert_eq!((stats.usage, stats.since, stats.version), (3, 1_000, 7));

        // A swap starts new statistics; the new model serves at once.
        stage.install(model("winequalityDesisionTreeRegression", "wine"), 9, 2_000);
        let result = stage.serve(1, 0, 5, Some(&wine("wine"))).unwrap();
        assert_eq!(result.model, "winequalityDesisionTreeRegression");
        let stats = stage.stats_of("wine").unwrap();
        assert_eq!((stats.usage, stats.since, stats.version), (1, 2_000, 9));
    }

    #[test]
    fn two_data_types_are_served_each_by_its_own_model() {
        let mut stage = Stage::default();
        stage.install(model("winequalityLinearRegression", "red"), 1, 10);
        stage.install(model("winequalityDesisionTreeRegression", "white"), 2, 20);
        let red = stage.serve(0, 0, 0, Some(&wine("red"))).unwrap();
        let white = stage.serve(0, 1, 0, Some(&wine("white"))).unwrap();
        let other = stage.serve(0, 2, 0, Some(&wine("rose"))).unwrap();
        assert_eq!(red.model, "winequalityLinearRegression");
        assert_eq!(white.model, "winequalityDesisionTreeRegression");
        assert!(!other.served);
        let names: Vec<String> = stage.models().iter().map(|m| m.name.clone()).collect();
        assert_eq!(names.len(), 2);
        assert_eq!(stage.stats().len(), 2);
    }

    #[test]
    fn a_malformed_record_is_an_error_and_changes_nothing() {
        let mut stage = Stage::default();
        stage.install(model("winequalityLinearRegression", "wine"), 1, 10);
        // Field 1 as a length-delimited field whose length never ends.
        let error = stage.serve(0, 0, 0, Some(&[0x0a, 0xff])).unwrap_err();
        assert!(error.starts_with("not a wine record"), "{error}");
        assert_eq!(stage.stats_of("wine").unwrap().usage, 0);
        assert!(stage.serve(0, 1, 0, Some(&wine("wine"))).unwrap().served);
    }
}

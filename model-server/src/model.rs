//! Models as the server runs them: built from a [`ModelDescriptor`] (inline
//! bytes or a file path), checked by scoring one record before they count
//! as loaded, then shared behind an `Arc` so a swap never waits on a build.

use std::sync::Arc;

use proto::{FEATURE_NAMES, MessageContent, ModelDescriptor, ModelType, WineRecord};

/// A model that scores wine records.
pub trait Model: Send + Sync {
    /// The predicted quality (a value for regression, the class as a
    /// number for classification); `None` when the model gives none.
    fn score(&self, record: &WineRecord) -> Option<f64>;
}

/// Why a descriptor did not become a model. The server logs it, counts
/// it, and keeps serving the previous model.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelError {
    /// The descriptor carries no model (neither data nor location).
    #[error("model {name}: the descriptor carries neither data nor a location")]
    Empty {
        /// The model's name.
        name: String,
    },
    /// The file at `location` could not be read.
    #[error("model {name}: cannot read {location}: {reason}")]
    Unreadable {
        /// The model's name.
        name: String,
        /// The path.
        location: String,
        /// Why.
        reason: String,
    },
    /// The bytes are not a valid model of the declared type.
    #[error("model {name}: not a valid {kind} model: {reason}")]
    Corrupt {
        /// The model's name.
        name: String,
        /// The declared type.
        kind: String,
        /// What is wrong.
        reason: String,
    },
    /// The model type number is not one the protocol defines.
    #[error("model {name}: unknown model type {number}")]
    UnknownType {
        /// The model's name.
        name: String,
        /// The number received.
        number: i32,
    },
    /// The type is defined but this build cannot run it.
    #[error("model {name}: {kind} models are not supported by this server yet")]
    Unsupported {
        /// The model's name.
        name: String,
        /// The type.
        kind: String,
    },
}

/// A built model with what the server reports about it.
#[derive(Clone)]
pub struct ServedModel {
    /// The descriptor's name.
    pub name: String,
    /// The descriptor's description.
    pub description: String,
    /// The data type it serves.
    pub data_type: String,
    /// Its type.
    pub kind: ModelType,
    /// The model.
    pub model: Arc<dyn Model>,
}

impl std::fmt::Debug for ServedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedModel")
            .field("name", &self.name)
            .field("data_type", &self.data_type)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A PMML document bound to the wine record's fields.
struct PmmlModel(pmml::Scorer);

impl Model for PmmlModel {
    fn score(&self, record: &WineRecord) -> Option<f64> {
        self.0.score(&record.features())?.value()
    }
}

/// A record every model must score before it counts as loaded: the first
/// row of the wine data.
fn probe() -> WineRecord {
    WineRecord::from_features(
        [
            7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4,
        ],
        "probe",
        0,
    )
}

/// Builds the model a descriptor carries. Slow work (reading, parsing,
/// a first scoring) happens here, off the scoring path.
pub fn build(descriptor: &ModelDescriptor) -> Result<ServedModel, ModelError> {
    let name = descriptor.name.clone();
    let kind = ModelType::try_from(descriptor.modeltype).map_err(|_| ModelError::UnknownType {
        name: name.clone(),
        number: descriptor.modeltype,
    })?;
    let bytes = match &descriptor.message_content {
        Some(MessageContent::Data(bytes)) => bytes.clone(),
        Some(MessageContent::Location(location)) => {
            std::fs::read(location).map_err(|e| ModelError::Unreadable {
                name: name.clone(),
                location: location.clone(),
                reason: e.to_string(),
            })?
        }
        None => return Err(ModelError::Empty { name }),
    };
    let corrupt = |reason: String| ModelError::Corrupt {
        name: name.clone(),
        kind: kind.as_str_name().to_owned(),
        reason,
    };
    let model: Arc<dyn Model> = match kind {
        ModelType::Pmml => {
            let text = std::str::from_utf8(&bytes).map_err(|e| corrupt(e.to_string()))?;
            let scorer = pmml::Pmml::parse(text)
                .and_then(|m| m.bind(&FEATURE_NAMES))
                .map_err(|e| corrupt(e.to_string()))?;
            Arc::new(PmmlModel(scorer))
        }
        ModelType::Onnx => Arc::new(crate::tract_model::onnx(&bytes).map_err(corrupt)?),
        ModelType::Tensorflow => Arc::new(crate::tract_model::tensorflow(&bytes).map_err(corrupt)?),
        // A SavedModel is a directory with variables beside the graph;
        // tract loads frozen graphs only.
        ModelType::Tensorflowsaved => {
            return Err(ModelError::Unsupported {
                name,
                kind: kind.as_str_name().to_owned(),
            });
        }
    };
    if model.score(&probe()).is_none() {
        return Err(corrupt("it gives no prediction for a valid record".into()));
    }
    Ok(ServedModel {
        name: descriptor.name.clone(),
        description: descriptor.description.clone(),
        data_type: descriptor.data_type.clone(),
        kind,
        model,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pmml_file(stem: &str) -> String {
        format!(
            "{}/../data/models/pmml/{stem}.pmml",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    fn descriptor(kind: ModelType, content: Option<MessageContent>) -> ModelDescriptor {
        ModelDescriptor {
            name: "m".into(),
            description: "d".into(),
            data_type: "wine".into(),
            modeltype: kind as i32,
            message_content: content,
        }
    }

    #[test]
    fn every_pmml_file_builds_inline_and_from_a_location() {
        for stem in [
            "winequalityLinearRegression",
            "winequalityGeneralizedLinearRegressionGaussian",
            "winequalityGeneralizedLinearRegressionGamma",
            "winequalityDesisionTreeRegression",
            "winequalityDecisionTreeClassification",
            "winequalityMultilayerPerceptron",
            "winequalityRandonForrestClassification",
        ] {
            let path = pmml_file(stem);
            let inline = build(&descriptor(
                ModelType::Pmml,
                Some(MessageContent::Data(std::fs::read(&path).unwrap())),
            ))
            .unwrap();
            let located = build(&descriptor(
                ModelType::Pmml,
                Some(MessageContent::Location(path)),
            ))
            .unwrap();
            let q = inline.model.score(&probe()).unwrap();
            assert_eq!(located.model.score(&probe()), Some(q));
            assert!((3.0..=8.0).contains(&q), "{stem}: {q}");
        }
    }

    #[test]
    fn bad_descriptors_are_clear_errors() {
        let corrupt = build(&descriptor(
            ModelType::Pmml,
            Some(MessageContent::Data(b"<PMML><oops".to_vec())),
        ))
        .unwrap_err();
        assert!(matches!(corrupt, ModelError::Corrupt { .. }), "{corrupt}");
        let missing = build(&descriptor(
            ModelType::Pmml,
            Some(MessageContent::Location("/no/such/model.pmml".into())),
        ))
        .unwrap_err();
        assert!(
            missing.to_string().contains("/no/such/model.pmml"),
            "{missing}"
        );
        assert_eq!(
            build(&descriptor(ModelType::Pmml, None)).unwrap_err(),
            ModelError::Empty { name: "m".into() }
        );
        let mut unknown = descriptor(ModelType::Pmml, Some(MessageContent::Data(vec![])));
        unknown.modeltype = 42;
        assert_eq!(
            build(&unknown).unwrap_err(),
            ModelError::UnknownType {
                name: "m".into(),
                number: 42
            }
        );
        for kind in [ModelType::Onnx, ModelType::Tensorflow] {
            let garbage = build(&descriptor(
                kind,
                Some(MessageContent::Data(b"not a model".to_vec())),
            ))
            .unwrap_err();
            assert!(matches!(garbage, ModelError::Corrupt { .. }), "{garbage}");
        }
        let saved = build(&descriptor(
            ModelType::Tensorflowsaved,
            Some(MessageContent::Data(vec![1])),
        ))
        .unwrap_err();
        assert!(matches!(saved, ModelError::Unsupported { .. }), "{saved}");
    }
}

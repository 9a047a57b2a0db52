//! A PMML 4.x evaluator for the model kinds the wine-quality tutorial's
//! Spark exports use, written so more kinds can be added:
//! `TreeModel`, `RegressionModel`, `GeneralRegressionModel`
//! (generalized linear), `NeuralNetwork` and `MiningModel` segmentation.
//! Anything else is refused at load with an error that names the element.
//!
//! A model is parsed once, bound once to the caller's input layout (field
//! names to positions), then scores rows of `f64` (NaN is a missing value)
//! without allocating per field lookup.
//!
//! ```
//! let xml = r#"<PMML xmlns="http://www.dmg.org/PMML-4_3" version="4.3">
//!   <DataDictionary>
//!     <DataField name="y" optype="continuous" dataType="double"/>
//!     <DataField name="x" optype="continuous" dataType="double"/>
//!   </DataDictionary>
//!   <RegressionModel functionName="regression">
//!     <MiningSchema>
//!       <MiningField name="y" usageType="target"/>
//!       <MiningField name="x"/>
//!     </MiningSchema>
//!     <RegressionTable intercept="1.0">
//!       <NumericPredictor name="x" coefficient="2.0"/>
//!     </RegressionTable>
//!   </RegressionModel>
//! </PMML>"#;
//! let model = pmml::Pmml::parse(xml)?;
//! let scorer = model.bind(&["x"])?;
//! assert_eq!(scorer.score(&[3.0]).and_then(|p| p.value()), Some(7.0));
//! # Ok::<(), pmml::PmmlError>(())
//! ```

mod model;
mod parse;

use std::collections::HashMap;
use std::sync::Arc;

use model::Model;
pub use model::Prediction;

/// Why a document cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PmmlError {
    /// Not well-formed XML.
    #[error("not a PMML document: {0}")]
    Xml(String),
    /// A PMML element or attribute value this evaluator does not implement.
    #[error("unsupported PMML: {element} ({detail})")]
    Unsupported {
        /// The element, as `Element` or `Element@attribute=value`.
        element: String,
        /// Where, or what would be needed.
        detail: String,
    },
    /// The document is PMML but inconsistent or incomplete.
    #[error("invalid PMML: {0}")]
    Invalid(String),
    /// A field the model reads is not among the caller's inputs.
    #[error("the model reads field `{0}`, which the input does not have")]
    MissingField(String),
}

/// A parsed PMML model.
#[derive(Debug, Clone)]
pub struct Pmml {
    model: Arc<Model>,
    /// Field names by id, as the model refers to them.
    fields: Vec<String>,
    /// Fields the model reads (MiningSchema active fields).
    active: Vec<String>,
    /// Values that stand in for missing inputs (field id, value).
    replacements: Vec<(usize, f64)>,
    classification: bool,
}

impl Pmml {
    /// Parses a PMML document.
    pub fn parse(text: &str) -> Result<Pmml, PmmlError> {
        parse::document(text)
    }

    /// The input fields the model reads, by name.
    pub fn active_fields(&self) -> &[String] {
        &self.active
    }

    /// Whether the model predicts a class (else a number).
    pub fn is_classification(&self) -> bool {
        self.classification
    }

    /// Binds the model to rows whose values come in the order of `inputs`
    /// (names as in the model's DataDictionary). Every active field must be
    /// there.
    pub fn bind(&self, inputs: &[&str]) -> Result<Scorer, PmmlError> {
        let position: HashMap<&str, usize> =
            inputs.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        for name in &self.active {
            if !position.contains_key(name.as_str()) {
                return Err(PmmlError::MissingField(name.clone()));
            }
        }
        let map = self
            .fields
            .iter()
            .map(|name| position.get(name.as_str()).copied())
            .collect();
        Ok(Scorer {
            model: self.model.clone(),
            map,
            replacements: self.replacements.clone(),
        })
    }
}

/// A model bound to an input layout; cheap to clone and share.
#[derive(Debug, Clone)]
pub struct Scorer {
    model: Arc<Model>,
    /// Field id -> position in the input row.
    map: Vec<Option<usize>>,
    replacements: Vec<(usize, f64)>,
}

impl Scorer {
    /// Scores one row; `None` when the model gives no prediction (a tree
    /// with no matching branch, for instance).
    pub fn score(&self, row: &[f64]) -> Option<Prediction> {
        let mut values: Vec<f64> = self
            .map
            .iter()
            .map(|p| p.and_then(|i| row.get(i).copied()).unwrap_or(f64::NAN))
            .collect();
        for &(field, value) in &self.replacements {
            if values[field].is_nan() {
                values[field] = value;
            }
        }
        self.model.evaluate(&values)
    }
}

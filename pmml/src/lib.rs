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
//! No document can exhaust a thread's stack, memory or time: element
//! nesting, attributes per element and namespace declarations are bounded
//! before the XML is parsed ([`MAX_ELEMENT_DEPTH`], [`MAX_ATTRIBUTES`],
//! [`MAX_NAMESPACES`]), the nesting of the elements the evaluator recurses
//! over is bounded as they are read ([`MAX_NESTING`]), and the parse runs
//! on a thread of its own whose stack is sized for those bounds.
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

/// How deep each recursive PMML element may nest: `Node` in `Node`,
/// `CompoundPredicate` in `CompoundPredicate`, and `Segment` in a
/// `Segment`'s model. Each kind is counted on its own, and a deeper
/// document is refused ([`PmmlError::OverLimit`]). Parsing and scoring
/// recurse once per such level, so this is what bounds their stack use.
pub const MAX_NESTING: usize = 256;

/// How deep XML elements of any kind may nest. The XML parser recurses
/// once per element level; this leaves room for every modelled kind at
/// [`MAX_NESTING`] at once (a nested `Segment` takes three levels).
pub const MAX_ELEMENT_DEPTH: usize = 8 * MAX_NESTING;

/// How many attributes one element may have. The XML parser's check for
/// duplicate attributes takes time quadratic in this; PMML elements have
/// about ten at most.
pub const MAX_ATTRIBUTES: usize = 64;

/// How many namespace declarations (`xmlns`, `xmlns:*`) a document may
/// make. The XML parser's work per declaring element grows with all the
/// declarations in scope; PMML needs one.
pub const MAX_NAMESPACES: usize = 64;

/// The stack of the thread a document is parsed on: the XML parser's
/// frames for [`MAX_ELEMENT_DEPTH`] levels, unoptimized, take about 12 MiB,
/// and the conversion's for [`MAX_NESTING`] levels of each kind much less.
const PARSE_STACK_BYTES: usize = 32 << 20;

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
    /// The document is over one of the limits that keep a hostile one from
    /// exhausting a thread's stack, memory or time ([`MAX_NESTING`],
    /// [`MAX_ELEMENT_DEPTH`], [`MAX_ATTRIBUTES`], [`MAX_NAMESPACES`]).
    #[error("over a limit: {what} exceeds {limit}")]
    OverLimit {
        /// What was counted, and where.
        what: String,
        /// The largest number allowed.
        limit: usize,
    },
    /// The thread to parse on could not be started.
    #[error("cannot parse PMML now: {0}")]
    Resources(String),
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
    /// Parses a PMML document, on a thread of its own whose stack fits the
    /// nesting limits, so that the caller's stack size does not matter.
    pub fn parse(text: &str) -> Result<Pmml, PmmlError> {
        std::thread::scope(|scope| {
            let parser = std::thread::Builder::new()
                .name("pmml-parse".into())
                .stack_size(PARSE_STACK_BYTES)
                .spawn_scoped(scope, || parse::document(text))
                .map_err(|e| PmmlError::Resources(format!("no parsing thread: {e}")))?;
            // A panic is a bug to see, not an error to report.
            parser
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
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
            if let Some(v) = values.get_mut(field)
                && v.is_nan()
            {
                *v = value;
            }
        }
        self.model.predict(&values)
    }
}

//! What the pmml crate's tests share: small documents written in a test,
//! scoring them, and the data folder's helpers (the model server's tests').

#![allow(dead_code)] // each test file uses what it needs

use pmml::{Pmml, Prediction};

/// The data folder's helpers: the model server's tests'.
#[path = "../../../model-server/tests/common/mod.rs"]
pub(crate) mod data_folder;

/// A PMML 4.4 document: continuous doubles `y` (the target) and `x1`, the
/// `dictionary`'s fields, and `model`.
pub(crate) fn doc(dictionary: &str, model: &str) -> String {
    format!(
        r#"<?xml version="1.0"?>
<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4">
  <DataDictionary>
    <DataField name="y" optype="continuous" dataType="double"/>
    <DataField name="x1" optype="continuous" dataType="double"/>
    {dictionary}
  </DataDictionary>
  {model}
</PMML>"#
    )
}

/// The prediction of the document `text`, bound to `inputs`, for `row`.
pub(crate) fn score(text: &str, inputs: &[&str], row: &[f64]) -> Option<Prediction> {
    Pmml::parse(text).unwrap().bind(inputs).unwrap().score(row)
}

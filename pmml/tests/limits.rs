//! Hostile documents: nesting at and beyond the limits, far beyond them
//! (which must be refused before anything recurses that deep), and
//! documents whose size would otherwise multiply into the time or memory
//! a model takes. Every test runs on the test harness's own thread (2 MiB
//! of stack), where scoring recursion happens too.

mod common;

use pmml::{
    MAX_ATTRIBUTES, MAX_ELEMENT_DEPTH, MAX_NAMESPACES, MAX_NESTING, Pmml, PmmlError, Prediction,
};

use common::{doc, score};

const SCHEMA: &str = r#"<MiningSchema><MiningField name="y" usageType="target"/><MiningField name="x1"/></MiningSchema>"#;

/// `levels` Nodes, each deeper one taken when x1 exceeds its level; the
/// innermost Node's predicate is `predicate`.
fn nodes(levels: usize, predicate: &str) -> String {
    let mut text = String::new();
    for level in 1..=levels {
        let test = if level == 1 {
            "<True/>".to_owned()
        } else if level == levels {
            predicate.to_owned()
        } else {
            format!(r#"<SimplePredicate field="x1" operator="greaterThan" value="{level}"/>"#)
        };
        text.push_str(&format!(r#"<Node score="{level}">{test}"#));
    }
    text.push_str(&"</Node>".repeat(levels));
    text
}

/// `levels` CompoundPredicates in one another, true when x1 > 0.
fn compounds(levels: usize) -> String {
    let simple = r#"<SimplePredicate field="x1" operator="greaterThan" value="0"/>"#;
    format!(
        "{}<True/>{}",
        format!(r#"<CompoundPredicate booleanOperator="and">{simple}"#).repeat(levels),
        "</CompoundPredicate>".repeat(levels)
    )
}

fn tree(body: &str) -> String {
    format!(
        r#"<TreeModel functionName="regression" noTrueChildStrategy="returnLastPrediction">{SCHEMA}{body}</TreeModel>"#
    )
}

/// `levels` Segments, each holding a MiningModel but the innermost, which
/// holds `inner`.
fn segments(levels: usize, inner: &str) -> String {
    let open = format!(
        r#"<MiningModel functionName="regression">{SCHEMA}<Segmentation multipleModelMethod="average"><Segment><True/>"#
    );
    let mut text = open.repeat(levels);
    text.push_str(inner);
    text.push_str(&"</Segment></Segmentation></MiningModel>".repeat(levels));
    text
}

const REGRESSION: &str = r#"<RegressionModel functionName="regression"><MiningSchema><MiningField name="x1"/></MiningSchema>
    <RegressionTable intercept="0"><NumericPredictor name="x1" coefficient="2"/></RegressionTable></RegressionModel>"#;

fn node_document(levels: usize) -> String {
    let last = r#"<SimplePredicate field="x1" operator="greaterThan" value="0"/>"#;
    doc("", &tree(&nodes(levels, last)))
}

fn compound_document(levels: usize) -> String {
    let inner = format!(r#"<Node score="2">{}</Node>"#, compounds(levels));
    doc(
        "",
        &tree(&format!(r#"<Node score="1"><True/>{inner}</Node>"#)),
    )
}

fn segment_document(levels: usize) -> String {
    doc("", &segments(levels, REGRESSION))
}

fn value(text: &str, x1: f64) -> Option<f64> {
    score(text, &["x1"], &[x1]).and_then(|p| p.value())
}

fn refusal(text: &str) -> (String, usize) {
    match Pmml::parse(text) {
        Err(PmmlError::OverLimit { what, limit }) => (what, limit),
        other => panic!("not refused for a limit: {other:?}"),
    }
}

#[test]
fn each_kind_nests_to_the_limit_and_scores() {
    let deepest = MAX_NESTING as f64;
    let nodes = node_document(MAX_NESTING);
    assert_eq!(value(&nodes, 1e9), Some(deepest));
    assert_eq!(value(&nodes, 2.5), Some(2.0), "stops where x1 stops");
    let compound = compound_document(MAX_NESTING);
    assert_eq!(value(&compound, 1.0), Some(2.0));
    // False, or unknown all the way up: the root's score.
    assert_eq!(value(&compound, -1.0), Some(1.0));
    assert_eq!(value(&compound, f64::NAN), Some(1.0));
    let segments = segment_document(MAX_NESTING);
    assert_eq!(value(&segments, 1.5), Some(3.0));
}

#[test]
fn every_kind_at_the_limit_at_once_parses_and_scores() {
    // Segments around a tree whose deepest Node holds the deepest
    // predicate: the most recursion a document may ask for.
    let inner = tree(&nodes(MAX_NESTING, &compounds(MAX_NESTING)));
    let text = doc("", &segments(MAX_NESTING, &inner));
    assert_eq!(value(&text, 1e9), Some(MAX_NESTING as f64));
    assert_eq!(value(&text, -1.0), Some(1.0));
}

#[test]
fn one_level_more_is_refused_naming_the_element() {
    for (kind, text) in [
        ("Node", node_document(MAX_NESTING + 1)),
        ("CompoundPredicate", compound_document(MAX_NESTING + 1)),
        ("Segment", segment_document(MAX_NESTING + 1)),
    ] {
        let (what, limit) = refusal(&text);
        assert!(what.contains(kind), "{kind}: {what}");
        assert_eq!(limit, MAX_NESTING);
        let message = Pmml::parse(&text).unwrap_err().to_string();
        assert!(
            message.contains(kind) && message.contains(&MAX_NESTING.to_string()),
            "{message}"
        );
    }
}

#[test]
fn a_hundred_thousand_levels_are_refused_without_overflowing_the_stack() {
    const DEEP: usize = 100_000;
    for (kind, text) in [
        ("Node", node_document(DEEP)),
        ("CompoundPredicate", compound_document(DEEP)),
        ("Segment", segment_document(DEEP)),
        (
            "a",
            format!("<PMML>{}{}</PMML>", "<a>".repeat(DEEP), "</a>".repeat(DEEP)),
        ),
    ] {
        // Refused as XML, before anything recursed that deep.
        let (what, limit) = refusal(&text);
        assert_eq!(limit, MAX_ELEMENT_DEPTH, "{kind}: {what}");
        assert!(what.contains("XML elements"), "{kind}: {what}");
    }
    let (what, _) = refusal(&format!("<PMML>{}", "<a>".repeat(DEEP)));
    assert!(what.contains("`a`"), "{what}");
    // Unclosed, and deep elements that are no PMML at all.
    assert!(Pmml::parse(&"<a>".repeat(DEEP)).is_err());
    assert!(Pmml::parse(&"<a/>".repeat(DEEP)).is_err());
}

#[test]
fn markup_that_is_not_elements_does_not_count_as_nesting() {
    let deep = "<Node>".repeat(2 * MAX_ELEMENT_DEPTH);
    let text = doc(
        &format!(
            r#"<!-- {deep} --><Extension><![CDATA[{deep}]]></Extension><?pi {deep}?>
            <Extension value="{}"/>"#,
            ">".repeat(100)
        ),
        &format!(
            r#"<RegressionModel functionName="regression">{SCHEMA}
            <RegressionTable intercept="1"><NumericPredictor name="x1" coefficient="1"/></RegressionTable></RegressionModel>"#
        ),
    );
    assert_eq!(value(&text, 2.0), Some(3.0));
}

fn regression_with(extension: &str) -> String {
    doc(
        extension,
        &format!(
            r#"<RegressionModel functionName="regression">{SCHEMA}
            <RegressionTable intercept="1"/></RegressionModel>"#
        ),
    )
}

#[test]
fn attributes_per_element_are_bounded() {
    let attributes = |n: usize| -> String { (0..n).map(|i| format!(r#" a{i} = "v""#)).collect() };
    let fits = regression_with(&format!("<Extension{}/>", attributes(MAX_ATTRIBUTES)));
    assert_eq!(value(&fits, 0.0), Some(1.0));
    let over = regression_with(&format!("<Extension{}/>", attributes(MAX_ATTRIBUTES + 1)));
    let (what, limit) = refusal(&over);
    assert!(what.contains("`Extension`"), "{what}");
    assert_eq!(limit, MAX_ATTRIBUTES);
    // `=` inside values is no attribute.
    let equals = regression_with(&format!(r#"<Extension a="{}"/>"#, "=".repeat(1000)));
    assert_eq!(value(&equals, 0.0), Some(1.0));
}

#[test]
fn namespace_declarations_are_bounded() {
    let declarations = |n: usize| -> String {
        (1..n)
            .map(|i| format!(r#"<Extension xmlns:p{i}="urn:{i}"/>"#))
            .collect()
    };
    // The PMML element declares one.
    let fits = regression_with(&declarations(MAX_NAMESPACES));
    assert_eq!(value(&fits, 0.0), Some(1.0));
    let over = regression_with(&declarations(MAX_NAMESPACES + 1));
    let (what, limit) = refusal(&over);
    assert!(what.contains("namespace"), "{what}");
    assert_eq!(limit, MAX_NAMESPACES);
}

#[test]
fn document_type_definitions_are_refused() {
    let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE PMML [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
<PMML><DataDictionary/>&b;</PMML>"#;
    assert!(matches!(Pmml::parse(laughs), Err(PmmlError::Xml(_))));
}

/// Many classes and many trees: scoring (and parsing) must cost about what
/// the document holds, not trees times classes, and classes are shared.
#[test]
fn ensembles_over_many_classes_cost_what_the_document_holds() {
    const CLASSES: usize = 5_000;
    const TREES: usize = 2_000;
    let values: String = (0..CLASSES)
        .map(|i| format!(r#"<Value value="c{i}"/>"#))
        .collect();
    let dictionary = format!(
        r#"<DataField name="c" optype="categorical" dataType="string">{values}</DataField>"#
    );
    let segments: String = (0..TREES)
        .map(|i| {
            let class = i % 3;
            format!(
                r#"<Segment><True/><TreeModel functionName="classification">
                  <MiningSchema><MiningField name="x1"/></MiningSchema>
                  <Node score="c{class}" recordCount="2"><True/>
                    <ScoreDistribution value="c{class}" recordCount="2"/>
                  </Node></TreeModel></Segment>"#
            )
        })
        .collect();
    let text = doc(
        &dictionary,
        &format!(
            r#"<MiningModel functionName="classification">
              <MiningSchema><MiningField name="c" usageType="target"/><MiningField name="x1"/></MiningSchema>
              <Segmentation multipleModelMethod="average">{segments}</Segmentation></MiningModel>"#
        ),
    );
    let scorer = Pmml::parse(&text).unwrap().bind(&["x1"]).unwrap();
    for _ in 0..100 {
        let Some(Prediction::Classification {
            label,
            probabilities,
            ..
        }) = scorer.score(&[0.0])
        else {
            panic!("no class");
        };
        // Trees 0, 3, 6, ... say c0: 667 of 2000.
        assert_eq!(label, "c0");
        assert_eq!(probabilities.len(), CLASSES);
        assert!((probabilities[0] - 667.0 / 2000.0).abs() < 1e-12);
        assert_eq!(probabilities[3..].iter().sum::<f64>(), 0.0);
    }
}

#[test]
fn inconsistent_repetitions_are_refused() {
    // A class declared twice would make "which one" ambiguous.
    let twice = doc(
        r#"<DataField name="c" optype="categorical" dataType="string"><Value value="a"/><Value value="a"/></DataField>"#,
        r#"<TreeModel functionName="classification"><MiningSchema><MiningField name="c" usageType="target"/></MiningSchema>
          <Node score="a"><True/></Node></TreeModel>"#,
    );
    let error = Pmml::parse(&twice).unwrap_err().to_string();
    assert!(error.contains("class `a` twice"), "{error}");
    // Two betas for one parameter.
    let pcells = doc(
        "",
        &format!(
            r#"<GeneralRegressionModel modelType="regression" functionName="regression">{SCHEMA}
              <ParameterList><Parameter name="p0"/></ParameterList>
              <ParamMatrix><PCell parameterName="p0" beta="1"/><PCell parameterName="p0" beta="2"/></ParamMatrix>
            </GeneralRegressionModel>"#
        ),
    );
    let error = Pmml::parse(&pcells).unwrap_err().to_string();
    assert!(error.contains("p0"), "{error}");
    // A weight that cannot be added up.
    let weight = doc(
        "",
        &format!(
            r#"<MiningModel functionName="regression">{SCHEMA}<Segmentation multipleModelMethod="weightedAverage">
              <Segment weight="NaN"><True/>{REGRESSION}</Segment></Segmentation></MiningModel>"#
        ),
    );
    let error = Pmml::parse(&weight).unwrap_err().to_string();
    assert!(error.contains("weight"), "{error}");
}

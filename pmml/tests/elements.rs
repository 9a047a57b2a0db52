//! Elements the tutorial's files do not use, on small hand-written
//! documents with answers worked out by hand: Targets, compound
//! predicates and three-valued logic, no-true-child strategies, missing
//! value replacement, the log link, tanh and normalized neural inputs and
//! outputs, weighted averages and majority votes.

mod common;

use pmml::Prediction;

/// A document with the target `y`, the class `c` (`a` or `b`), the inputs
/// `x1` and `x2`, and the `dictionary`'s fields.
fn doc(dictionary: &str, model: &str) -> String {
    common::doc(
        &format!(
            r#"<DataField name="c" optype="categorical" dataType="string"><Value value="a"/><Value value="b"/></DataField>
    <DataField name="x2" optype="continuous" dataType="double"/>
    {dictionary}"#
        ),
        model,
    )
}

fn score(text: &str, row: &[f64]) -> Option<Prediction> {
    common::score(text, &["x1", "x2"], row)
}

fn value(text: &str, row: &[f64]) -> Option<f64> {
    score(text, row).and_then(|p| p.value())
}

const SCHEMA: &str = r#"<MiningSchema><MiningField name="y" usageType="target"/><MiningField name="x1"/><MiningField name="x2"/></MiningSchema>"#;
const CLASS_SCHEMA: &str = r#"<MiningSchema><MiningField name="c" usageType="target"/><MiningField name="x1"/><MiningField name="x2"/></MiningSchema>"#;

#[test]
fn targets_rescale_and_cast_regression_results() {
    let text = doc(
        "",
        &format!(
            r#"<RegressionModel functionName="regression">{SCHEMA}
              <Targets><Target field="y" rescaleFactor="2" rescaleConstant="0.5" castInteger="floor"/></Targets>
              <RegressionTable intercept="1"><NumericPredictor name="x1" coefficient="1" exponent="2"/></RegressionTable>
            </RegressionModel>"#
        ),
    );
    // (1 + 1.5^2) * 2 + 0.5 = 7.0, floored
    assert_eq!(value(&text, &[1.5, 0.0]), Some(7.0));
    // A missing input gives no prediction.
    assert_eq!(value(&text, &[f64::NAN, 0.0]), None);
}

#[test]
fn compound_predicates_and_no_true_child_strategies() {
    let tree = |strategy: &str| {
        doc(
            "",
            &format!(
                r#"<TreeModel functionName="regression" noTrueChildStrategy="{strategy}">{SCHEMA}
                  <Node score="1"><True/>
                    <Node score="2">
                      <CompoundPredicate booleanOperator="and">
                        <SimplePredicate field="x1" operator="greaterThan" value="0"/>
                        <SimplePredicate field="x2" operator="lessThan" value="5"/>
                      </CompoundPredicate>
                    </Node>
                    <Node score="3">
                      <CompoundPredicate booleanOperator="surrogate">
                        <SimplePredicate field="x2" operator="greaterOrEqual" value="5"/>
                        <False/>
                      </CompoundPredicate>
                    </Node>
                  </Node>
                </TreeModel>"#
            ),
        )
    };
    let null = tree("returnNullPrediction");
    let last = tree("returnLastPrediction");
    assert_eq!(value(&null, &[1.0, 1.0]), Some(2.0));
    assert_eq!(value(&null, &[-1.0, 7.0]), Some(3.0));
    // x2 missing: `and` is unknown, the surrogate falls back to False: no
    // child holds.
    assert_eq!(value(&null, &[1.0, f64::NAN]), None);
    assert_eq!(value(&last, &[1.0, f64::NAN]), Some(1.0));
}

#[test]
fn missing_value_replacement_stands_in_for_missing_inputs() {
    let text = doc(
        "",
        r#"<RegressionModel functionName="regression">
            <MiningSchema><MiningField name="y" usageType="target"/>
              <MiningField name="x1" missingValueReplacement="10"/><MiningField name="x2"/></MiningSchema>
            <RegressionTable intercept="0"><NumericPredictor name="x1" coefficient="1"/><NumericPredictor name="x2" coefficient="1"/></RegressionTable>
          </RegressionModel>"#,
    );
    assert_eq!(value(&text, &[f64::NAN, 1.0]), Some(11.0));
    assert_eq!(value(&text, &[2.0, 1.0]), Some(3.0));
}

#[test]
fn a_log_link_exponentiates_the_linear_predictor() {
    let text = doc(
        "",
        &format!(
            r#"<GeneralRegressionModel modelType="generalizedLinear" functionName="regression" linkFunction="log" distribution="gamma">{SCHEMA}
              <ParameterList><Parameter name="p0"/><Parameter name="p1"/><Parameter name="p2"/></ParameterList>
              <CovariateList><Predictor name="x1"/><Predictor name="x2"/></CovariateList>
              <PPMatrix><PPCell value="1" predictorName="x1" parameterName="p1"/><PPCell value="2" predictorName="x2" parameterName="p2"/></PPMatrix>
              <ParamMatrix><PCell parameterName="p0" beta="0.5"/><PCell parameterName="p1" beta="0.25"/><PCell parameterName="p2" beta="-0.125"/></ParamMatrix>
            </GeneralRegressionModel>"#
        ),
    );
    // exp(0.5 + 0.25 * 2 - 0.125 * 2^2) = exp(0.5)
    let got = value(&text, &[2.0, 2.0]).unwrap();
    assert!((got - 0.5f64.exp()).abs() < 1e-12, "{got}");
}

#[test]
fn tanh_layers_with_normalized_inputs_and_outputs() {
    let text = doc(
        "",
        &format!(
            r#"<NeuralNetwork functionName="regression" activationFunction="tanh">{SCHEMA}
              <NeuralInputs>
                <NeuralInput id="i1"><DerivedField optype="continuous" dataType="double">
                  <NormContinuous field="x1"><LinearNorm orig="0" norm="0"/><LinearNorm orig="10" norm="1"/></NormContinuous>
                </DerivedField></NeuralInput>
              </NeuralInputs>
              <NeuralLayer><Neuron id="h" bias="0.1"><Con from="i1" weight="2"/></Neuron></NeuralLayer>
              <NeuralLayer activationFunction="identity"><Neuron id="o" bias="0"><Con from="h" weight="1"/></Neuron></NeuralLayer>
              <NeuralOutputs><NeuralOutput outputNeuron="o"><DerivedField optype="continuous" dataType="double">
                <NormContinuous field="y"><LinearNorm orig="0" norm="0"/><LinearNorm orig="100" norm="1"/></NormContinuous>
              </DerivedField></NeuralOutput></NeuralOutputs>
            </NeuralNetwork>"#
        ),
    );
    // input 5 -> 0.5; tanh(0.1 + 2 * 0.5) = tanh(1.1); back to 0..100.
    let got = value(&text, &[5.0, 0.0]).unwrap();
    assert!((got - 100.0 * 1.1f64.tanh()).abs() < 1e-9, "{got}");
}

fn leaf_tree(class: &str, p_a: f64) -> String {
    format!(
        r#"<TreeModel functionName="classification">{CLASS_SCHEMA}
          <Node score="{class}"><True/>
            <ScoreDistribution value="a" recordCount="{}"/><ScoreDistribution value="b" recordCount="{}"/>
          </Node></TreeModel>"#,
        p_a * 10.0,
        (1.0 - p_a) * 10.0
    )
}

fn ensemble(method: &str, weights: [f64; 3]) -> String {
    let trees = [
        leaf_tree("a", 0.6),
        leaf_tree("a", 0.6),
        leaf_tree("b", 0.0),
    ];
    let segments: String = trees
        .iter()
        .zip(weights)
        .enumerate()
        .map(|(i, (t, w))| format!(r#"<Segment id="{i}" weight="{w}"><True/>{t}</Segment>"#))
        .collect();
    doc(
        "",
        &format!(
            r#"<MiningModel functionName="classification">{CLASS_SCHEMA}
              <Segmentation multipleModelMethod="{method}">{segments}</Segmentation></MiningModel>"#
        ),
    )
}

fn label(text: &str) -> String {
    match score(text, &[0.0, 0.0]) {
        Some(Prediction::Classification { label, .. }) => label,
        other => panic!("{other:?}"),
    }
}

#[test]
fn ensembles_average_and_vote_with_and_without_weights() {
    // Average: p(a) = (0.6 + 0.6 + 0) / 3 = 0.4 -> b.
    assert_eq!(label(&ensemble("average", [1.0, 1.0, 1.0])), "b");
    // Weighted: (0.6 + 0.6 + 0 * 4) / 6 = 0.2 -> b; with the third light,
    // (0.6 * 3 + 0.6 * 3 + 0) / 7 > 0.5 -> a.
    assert_eq!(label(&ensemble("weightedAverage", [1.0, 1.0, 4.0])), "b");
    assert_eq!(label(&ensemble("weightedAverage", [3.0, 3.0, 1.0])), "a");
    // Votes: two trees say a.
    assert_eq!(label(&ensemble("majorityVote", [1.0, 1.0, 1.0])), "a");
    assert_eq!(
        label(&ensemble("weightedMajorityVote", [1.0, 1.0, 5.0])),
        "b"
    );
}

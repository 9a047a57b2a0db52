//! The model kinds and how they evaluate. Field references are ids into
//! the value slice built for each row; NaN is a missing value.

use std::collections::HashMap;
use std::sync::Arc;

/// What a model predicts for one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Prediction {
    /// A number (regression).
    Regression(f64),
    /// A class, with the probability of every class (same order as
    /// `classes`).
    Classification {
        /// The predicted class.
        label: String,
        /// The classes (shared with the model: no copy per prediction).
        classes: Arc<[String]>,
        /// Their probabilities.
        probabilities: Vec<f64>,
    },
}

impl Prediction {
    /// The prediction as a number: the value, or the class label read as a
    /// number (the wine classes are qualities 3 to 8).
    pub fn value(&self) -> Option<f64> {
        match self {
            Prediction::Regression(v) => Some(*v),
            Prediction::Classification { label, .. } => label.trim().parse().ok(),
        }
    }
}

/// A classification's classes, in the model's order, with each one's
/// position so that looking a class up does not scan them all.
#[derive(Debug)]
pub(crate) struct Classes {
    pub(crate) names: Arc<[String]>,
    index: HashMap<String, usize>,
}

impl Classes {
    /// The classes named; the error is a name given twice.
    pub(crate) fn new(names: Vec<String>) -> Result<Classes, String> {
        let mut index = HashMap::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            if index.insert(name.clone(), i).is_some() {
                return Err(name.clone());
            }
        }
        Ok(Classes {
            names: names.into(),
            index,
        })
    }

    pub(crate) fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}

/// A model's answer inside the evaluator. Class probabilities are sparse,
/// every class not listed having 0, so that an ensemble of many small
/// models over many classes costs what its models hold rather than models
/// times classes; they become a [`Prediction`] once, at the top.
#[derive(Debug)]
pub(crate) enum Outcome<'m> {
    Value(f64),
    Class {
        label: &'m str,
        classes: &'m Arc<Classes>,
        /// (class position, probability), by increasing position, each
        /// class at most once.
        probabilities: Vec<(usize, f64)>,
    },
}

impl Outcome<'_> {
    /// As [`Prediction::value`].
    fn value(&self) -> Option<f64> {
        match self {
            Outcome::Value(v) => Some(*v),
            Outcome::Class { label, .. } => label.trim().parse().ok(),
        }
    }

    fn into_prediction(self) -> Prediction {
        match self {
            Outcome::Value(v) => Prediction::Regression(v),
            Outcome::Class {
                label,
                classes,
                probabilities: sparse,
            } => {
                let mut probabilities = vec![0.0; classes.names.len()];
                for (i, p) in sparse {
                    if let Some(slot) = probabilities.get_mut(i) {
                        *slot = p;
                    }
                }
                Prediction::Classification {
                    label: label.to_owned(),
                    classes: classes.names.clone(),
                    probabilities,
                }
            }
        }
    }
}

/// Targets: `rescaleFactor`, `rescaleConstant`, `castInteger`, min/max.
#[derive(Debug, Clone, Default)]
pub(crate) struct Target {
    pub(crate) factor: f64,
    pub(crate) constant: f64,
    pub(crate) min: Option<f64>,
    pub(crate) max: Option<f64>,
    pub(crate) cast: Option<Cast>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Cast {
    Round,
    Ceiling,
    Floor,
}

impl Target {
    pub(crate) fn identity() -> Target {
        Target {
            factor: 1.0,
            ..Target::default()
        }
    }

    fn apply(&self, value: f64) -> f64 {
        let mut v = value;
        if let Some(min) = self.min {
            v = v.max(min);
        }
        if let Some(max) = self.max {
            v = v.min(max);
        }
        v = v * self.factor + self.constant;
        match self.cast {
            None => v,
            Some(Cast::Round) => v.round(),
            Some(Cast::Ceiling) => v.ceil(),
            Some(Cast::Floor) => v.floor(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operator {
    Equal,
    NotEqual,
    LessThan,
    LessOrEqual,
    GreaterThan,
    GreaterOrEqual,
    IsMissing,
    IsNotMissing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BoolOp {
    And,
    Or,
    Xor,
    Surrogate,
}

/// A tree predicate. Evaluates to true, false or unknown (`None`), as the
/// PMML specification's three-valued logic has it.
#[derive(Debug, Clone)]
pub(crate) enum Predicate {
    True,
    False,
    Simple {
        field: usize,
        op: Operator,
        value: f64,
    },
    Compound {
        op: BoolOp,
        parts: Vec<Predicate>,
    },
}

impl Predicate {
    fn eval(&self, x: &[f64]) -> Option<bool> {
        match self {
            Predicate::True => Some(true),
            Predicate::False => Some(false),
            Predicate::Simple { field, op, value } => {
                let v = x[*field];
                match op {
                    Operator::IsMissing => return Some(v.is_nan()),
                    Operator::IsNotMissing => return Some(!v.is_nan()),
                    _ if v.is_nan() => return None,
                    _ => {}
                }
                Some(match op {
                    Operator::Equal => v == *value,
                    Operator::NotEqual => v != *value,
                    Operator::LessThan => v < *value,
                    Operator::LessOrEqual => v <= *value,
                    Operator::GreaterThan => v > *value,
                    Operator::GreaterOrEqual => v >= *value,
                    Operator::IsMissing | Operator::IsNotMissing => unreachable!(),
                })
            }
            Predicate::Compound { op, parts } => {
                let mut results = parts.iter().map(|p| p.eval(x));
                match op {
                    BoolOp::And => {
                        let mut unknown = false;
                        for r in results {
                            match r {
                                Some(false) => return Some(false),
                                None => unknown = true,
                                Some(true) => {}
                            }
                        }
                        if unknown { None } else { Some(true) }
                    }
                    BoolOp::Or => {
                        let mut unknown = false;
                        for r in results {
                            match r {
                                Some(true) => return Some(true),
                                None => unknown = true,
                                Some(false) => {}
                            }
                        }
                        if unknown { None } else { Some(false) }
                    }
                    BoolOp::Xor => {
                        let mut acc = false;
                        for r in results {
                            acc ^= r?;
                        }
                        Some(acc)
                    }
                    // The first part that is not unknown decides.
                    BoolOp::Surrogate => results.find_map(|r| r),
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) predicate: Predicate,
    pub(crate) score: Option<String>,
    /// The node's `recordCount`: what class counts are divided by.
    pub(crate) record_count: Option<f64>,
    /// Class counts or probabilities: (class position, value) by
    /// increasing position, each class at most once, absent ones 0.
    pub(crate) distribution: Vec<(usize, f64)>,
    /// The position of `score` among the tree's classes.
    pub(crate) score_class: Option<usize>,
    pub(crate) children: Vec<Node>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoTrueChild {
    ReturnNullPrediction,
    ReturnLastPrediction,
}

#[derive(Debug, Clone)]
pub(crate) struct Tree {
    pub(crate) root: Node,
    pub(crate) classes: Option<Arc<Classes>>,
    pub(crate) no_true_child: NoTrueChild,
    pub(crate) target: Target,
}

impl Tree {
    fn evaluate(&self, x: &[f64]) -> Option<Outcome<'_>> {
        if self.root.predicate.eval(x) != Some(true) {
            return None;
        }
        let mut node = &self.root;
        // Missing values make predicates unknown, which counts as false
        // (missingValueStrategy "none", the default).
        while !node.children.is_empty() {
            match node
                .children
                .iter()
                .find(|c| c.predicate.eval(x) == Some(true))
            {
                Some(child) => node = child,
                None => match self.no_true_child {
                    NoTrueChild::ReturnNullPrediction => return None,
                    NoTrueChild::ReturnLastPrediction => break,
                },
            }
        }
        let score = node.score.as_deref()?;
        match &self.classes {
            None => score
                .trim()
                .parse::<f64>()
                .ok()
                .map(|v| Outcome::Value(self.target.apply(v))),
            Some(classes) => {
                // Counts over the node's record count (a class missing
                // from the distribution is 0); probabilities as given.
                let total = node
                    .record_count
                    .filter(|n| *n > 0.0)
                    .unwrap_or_else(|| node.distribution.iter().map(|(_, c)| c).sum());
                let probabilities = if total > 0.0 {
                    node.distribution
                        .iter()
                        .map(|&(i, c)| (i, c / total))
                        .collect()
                } else {
                    node.score_class.map(|i| (i, 1.0)).into_iter().collect()
                };
                Some(Outcome::Class {
                    label: score,
                    classes,
                    probabilities,
                })
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    Identity,
    Logistic,
    Tanh,
    Rectifier,
    Exponential,
}

impl Activation {
    fn apply(self, z: f64) -> f64 {
        match self {
            Activation::Identity => z,
            Activation::Logistic => 1.0 / (1.0 + (-z).exp()),
            Activation::Tanh => z.tanh(),
            Activation::Rectifier => z.max(0.0),
            Activation::Exponential => z.exp(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub(crate) activation: Activation,
    pub(crate) softmax: bool,
    /// Per neuron: bias and (input index in the previous layer, weight).
    pub(crate) neurons: Vec<(f64, Vec<(usize, f64)>)>,
}

/// A neural input: a field, optionally through a piecewise-linear norm.
#[derive(Debug, Clone)]
pub(crate) struct NeuralInput {
    pub(crate) field: usize,
    pub(crate) norm: Option<Vec<(f64, f64)>>,
}

#[derive(Debug, Clone)]
pub(crate) enum NeuralOutputs {
    /// One output neuron per class, in `classes` order.
    Classes {
        neurons: Vec<usize>,
        classes: Arc<Classes>,
    },
    /// One neuron, optionally denormalized by an inverse linear norm.
    Value {
        neuron: usize,
        norm: Option<Vec<(f64, f64)>>,
        target: Target,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Neural {
    pub(crate) inputs: Vec<NeuralInput>,
    pub(crate) layers: Vec<Layer>,
    pub(crate) outputs: NeuralOutputs,
}

/// Piecewise-linear interpolation through `(orig, norm)` points, linear
/// beyond the ends (outliers "asIs").
fn linear_norm(points: &[(f64, f64)], x: f64) -> f64 {
    let segment = points
        .windows(2)
        .position(|w| x <= w[1].0)
        .unwrap_or(points.len().saturating_sub(2));
    let (a, b) = (points[segment], points[segment + 1]);
    a.1 + (x - a.0) / (b.0 - a.0) * (b.1 - a.1)
}

/// The inverse: from a normalized value back to the original scale.
fn inverse_linear_norm(points: &[(f64, f64)], y: f64) -> f64 {
    let swapped: Vec<(f64, f64)> = points.iter().map(|&(o, n)| (n, o)).collect();
    linear_norm(&swapped, y)
}

impl Neural {
    fn evaluate(&self, x: &[f64]) -> Option<Outcome<'_>> {
        let mut values: Vec<f64> = Vec::with_capacity(self.inputs.len());
        for input in &self.inputs {
            let v = x[input.field];
            if v.is_nan() {
                return None;
            }
            values.push(match &input.norm {
                Some(points) => linear_norm(points, v),
                None => v,
            });
        }
        for layer in &self.layers {
            let mut next: Vec<f64> = layer
                .neurons
                .iter()
                .map(|(bias, weights)| {
                    let z = weights
                        .iter()
                        .fold(*bias, |acc, (i, w)| acc + values[*i] * w);
                    if layer.softmax {
                        z
                    } else {
                        layer.activation.apply(z)
                    }
                })
                .collect();
            if layer.softmax {
                let max = next.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = next.iter().map(|z| (z - max).exp()).sum();
                for z in &mut next {
                    *z = (*z - max).exp() / sum;
                }
            }
            values = next;
        }
        match &self.outputs {
            NeuralOutputs::Classes { neurons, classes } => {
                let probabilities: Vec<f64> = neurons.iter().map(|&n| values[n]).collect();
                let best = argmax(&probabilities)?;
                Some(Outcome::Class {
                    label: &classes.names[best],
                    classes,
                    probabilities: probabilities.into_iter().enumerate().collect(),
                })
            }
            NeuralOutputs::Value {
                neuron,
                norm,
                target,
            } => {
                let v = values[*neuron];
                let v = match norm {
                    Some(points) => inverse_linear_norm(points, v),
                    None => v,
                };
                Some(Outcome::Value(target.apply(v)))
            }
        }
    }
}

/// The index of the largest value; the first one on ties (the order the
/// model lists its classes in). NaN never wins.
pub(crate) fn argmax(values: &[f64]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, v) in values.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        if best.is_none_or(|b| *v > values[b]) {
            best = Some(i);
        }
    }
    best
}

/// [`argmax`] over `len` values given as (index, value) by increasing
/// index, every index not listed being 0.
fn argmax_sparse(values: &[(usize, f64)], len: usize) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for &(i, v) in values {
        if !v.is_nan() && best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    // The first index not listed stands for all the zeros.
    let mut absent = 0;
    for &(i, _) in values {
        if i != absent {
            break;
        }
        absent += 1;
    }
    match best {
        _ if absent >= len => best.map(|(i, _)| i),
        None => Some(absent),
        Some((i, v)) if v < 0.0 || (v == 0.0 && absent < i) => Some(absent),
        Some((i, _)) => Some(i),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    Identity,
    Log,
    Logit,
    Inverse,
    Exp,
}

impl Link {
    /// The inverse link: the mean from the linear predictor.
    fn mean(self, eta: f64) -> f64 {
        match self {
            Link::Identity => eta,
            Link::Log => eta.exp(),
            Link::Logit => 1.0 / (1.0 + (-eta).exp()),
            Link::Inverse => 1.0 / eta,
            Link::Exp => eta.ln(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Average,
    WeightedAverage,
    MajorityVote,
    WeightedMajorityVote,
}

#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub(crate) predicate: Predicate,
    pub(crate) weight: f64,
    pub(crate) model: Model,
}

#[derive(Debug, Clone)]
pub(crate) enum Model {
    Regression {
        intercept: f64,
        /// (field, coefficient, exponent)
        terms: Vec<(usize, f64, i32)>,
        target: Target,
    },
    GeneralRegression {
        link: Link,
        offset: f64,
        /// Per parameter: beta, and the (field, exponent) product it scales.
        parameters: Vec<(f64, Vec<(usize, f64)>)>,
        target: Target,
    },
    Tree(Tree),
    Neural(Neural),
    Mining {
        method: Method,
        segments: Vec<Segment>,
        classes: Option<Arc<Classes>>,
        target: Target,
    },
}

impl Model {
    /// What the model predicts for the row of values by field id.
    pub(crate) fn predict(&self, x: &[f64]) -> Option<Prediction> {
        self.evaluate(x).map(Outcome::into_prediction)
    }

    /// Recursive only through `Segment`s, whose nesting the parser bounds.
    fn evaluate(&self, x: &[f64]) -> Option<Outcome<'_>> {
        match self {
            Model::Regression {
                intercept,
                terms,
                target,
            } => {
                let mut y = *intercept;
                for &(field, coefficient, exponent) in terms {
                    let v = x[field];
                    if v.is_nan() {
                        return None;
                    }
                    y += coefficient * v.powi(exponent);
                }
                Some(Outcome::Value(target.apply(y)))
            }
            Model::GeneralRegression {
                link,
                offset,
                parameters,
                target,
            } => {
                let mut eta = *offset;
                for (beta, product) in parameters {
                    let mut term = *beta;
                    for &(field, exponent) in product {
                        let v = x[field];
                        if v.is_nan() {
                            return None;
                        }
                        term *= v.powf(exponent);
                    }
                    eta += term;
                }
                Some(Outcome::Value(target.apply(link.mean(eta))))
            }
            Model::Tree(tree) => tree.evaluate(x),
            Model::Neural(neural) => neural.evaluate(x),
            Model::Mining {
                method,
                segments,
                classes,
                target,
            } => mining(*method, segments, classes.as_ref(), target, x),
        }
    }
}

/// Combines the segments whose predicate holds. A segment with no
/// prediction makes the combined prediction missing: an average over the
/// other segments would be an answer the ensemble never gave.
fn mining<'m>(
    method: Method,
    segments: &'m [Segment],
    classes: Option<&'m Arc<Classes>>,
    target: &Target,
    x: &[f64],
) -> Option<Outcome<'m>> {
    let mut answers = Vec::with_capacity(segments.len());
    for segment in segments {
        if segment.predicate.eval(x) == Some(true) {
            answers.push((segment.weight, segment.model.evaluate(x)?));
        }
    }
    if answers.is_empty() {
        return None;
    }
    let weighted = matches!(
        method,
        Method::WeightedAverage | Method::WeightedMajorityVote
    );
    let weight = |w: f64| if weighted { w } else { 1.0 };
    let total_weight: f64 = answers.iter().map(|(w, _)| weight(*w)).sum();
    let Some(classes) = classes else {
        let sum: f64 = answers
            .iter()
            .map(|(w, p)| p.value().unwrap_or(f64::NAN) * weight(*w))
            .sum();
        return Some(Outcome::Value(target.apply(sum / total_weight)));
    };
    // Weights that cancel out leave no share to divide by.
    if total_weight == 0.0 {
        return None;
    }
    // Each segment's (class, weighted share), in segment order.
    let mut shares = Vec::new();
    for (w, answer) in &answers {
        let w = weight(*w);
        let Outcome::Class {
            label,
            classes: own,
            probabilities,
        } = answer
        else {
            return None;
        };
        match method {
            Method::Average | Method::WeightedAverage => {
                // Segments that inherit the ensemble's classes (the usual
                // case) need no look-up by name.
                let same = Arc::ptr_eq(own, classes);
                for &(i, p) in probabilities {
                    let at = if same {
                        Some(i)
                    } else {
                        own.names.get(i).and_then(|name| classes.position(name))
                    };
                    if let Some(at) = at {
                        shares.push((at, w * p));
                    }
                }
            }
            Method::MajorityVote | Method::WeightedMajorityVote => {
                if let Some(at) = classes.position(label) {
                    shares.push((at, w));
                }
            }
        }
    }
    // A stable sort keeps each class's shares in segment order, so each
    // sum is added up in the same order as over all classes at once.
    shares.sort_by_key(|&(at, _)| at);
    let mut scores: Vec<(usize, f64)> = Vec::new();
    for (at, share) in shares {
        if scores.last().is_none_or(|&(last, _)| last != at) {
            scores.push((at, 0.0));
        }
        if let Some((_, sum)) = scores.last_mut() {
            *sum += share;
        }
    }
    for (_, score) in &mut scores {
        *score /= total_weight;
    }
    let best = argmax_sparse(&scores, classes.names.len())?;
    Some(Outcome::Class {
        label: &classes.names[best],
        classes,
        probabilities: scores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_valued_logic_follows_the_specification() {
        let lt = |field, value| Predicate::Simple {
            field,
            op: Operator::LessThan,
            value,
        };
        let x = [1.0, f64::NAN];
        assert_eq!(lt(0, 2.0).eval(&x), Some(true));
        assert_eq!(lt(1, 2.0).eval(&x), None, "missing is unknown");
        let and = |parts| Predicate::Compound {
            op: BoolOp::And,
            parts,
        };
        assert_eq!(and(vec![lt(0, 2.0), lt(1, 2.0)]).eval(&x), None);
        assert_eq!(and(vec![lt(0, 0.0), lt(1, 2.0)]).eval(&x), Some(false));
        let surrogate = Predicate::Compound {
            op: BoolOp::Surrogate,
            parts: vec![lt(1, 2.0), lt(0, 0.0)],
        };
        assert_eq!(
            surrogate.eval(&x),
            Some(false),
            "the first known part decides"
        );
    }

    #[test]
    fn argmax_takes_the_first_of_ties_and_skips_nan() {
        assert_eq!(argmax(&[0.2, 0.4, 0.4]), Some(1));
        assert_eq!(argmax(&[f64::NAN, 0.1]), Some(1));
        assert_eq!(argmax(&[f64::NAN]), None);
    }

    #[test]
    fn linear_norms_interpolate_and_invert() {
        let points = [(0.0, 0.0), (10.0, 1.0), (20.0, 3.0)];
        assert_eq!(linear_norm(&points, 5.0), 0.5);
        assert_eq!(linear_norm(&points, 15.0), 2.0);
        assert_eq!(
            linear_norm(&points, 30.0),
            5.0,
            "extrapolated beyond the ends"
        );
        assert_eq!(inverse_linear_norm(&points, 2.0), 15.0);
    }
}

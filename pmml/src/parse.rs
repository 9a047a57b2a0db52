//! From PMML XML to the model structures. Elements are matched by local
//! name (any PMML 4.x namespace). What this evaluator does not implement
//! is an `Unsupported` error naming the element, never a silent skip of
//! something that would change the answer.
//!
//! The conversion recurses only over `Segment`s, `Node`s and
//! `CompoundPredicate`s, each bounded by [`MAX_NESTING`]; a linear scan of
//! the markup first bounds what the XML parser itself would do.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use roxmltree::{Document, Node as XmlNode};

use crate::model::{
    Activation, BoolOp, Cast, Classes, Layer, Link, Method, Model, Neural, NeuralInput,
    NeuralOutputs, NoTrueChild, Node, Operator, Predicate, Segment, Target, Tree,
};
use crate::{MAX_ATTRIBUTES, MAX_ELEMENT_DEPTH, MAX_NAMESPACES, MAX_NESTING, Pmml, PmmlError};

type Result<T> = std::result::Result<T, PmmlError>;

/// Model elements of PMML 4.x that this evaluator does not implement.
const OTHER_MODELS: &[&str] = &[
    "AnomalyDetectionModel",
    "AssociationModel",
    "BayesianNetworkModel",
    "BaselineModel",
    "ClusteringModel",
    "GaussianProcessModel",
    "NaiveBayesModel",
    "NearestNeighborModel",
    "RuleSetModel",
    "Scorecard",
    "SequenceModel",
    "SupportVectorMachineModel",
    "TextModel",
    "TimeSeriesModel",
];

const MODELS: &[&str] = &[
    "TreeModel",
    "RegressionModel",
    "GeneralRegressionModel",
    "NeuralNetwork",
    "MiningModel",
];

struct Context {
    /// DataDictionary: name -> declared values (categories), in order.
    dictionary: HashMap<String, Vec<String>>,
    /// Classes by target field, built once and shared by every model that
    /// predicts that field.
    classes: HashMap<String, Arc<Classes>>,
    fields: Vec<String>,
    ids: HashMap<String, usize>,
}

impl Context {
    fn field(&mut self, name: &str) -> usize {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        self.fields.push(name.to_owned());
        self.ids.insert(name.to_owned(), self.fields.len() - 1);
        self.fields.len() - 1
    }
}

fn unsupported(element: impl Into<String>, detail: impl Into<String>) -> PmmlError {
    PmmlError::Unsupported {
        element: element.into(),
        detail: detail.into(),
    }
}

fn invalid(message: impl Into<String>) -> PmmlError {
    PmmlError::Invalid(message.into())
}

fn over_limit(what: impl Into<String>, limit: usize) -> PmmlError {
    PmmlError::OverLimit {
        what: what.into(),
        limit,
    }
}

/// Refuses a `kind` element at nesting `level` (1 for the outermost).
fn check_nesting(kind: &str, level: usize) -> Result<()> {
    if level > MAX_NESTING {
        return Err(over_limit(
            format!("the nesting of {kind} elements"),
            MAX_NESTING,
        ));
    }
    Ok(())
}

/// Scans the markup once, without recursion, for what would make the XML
/// parser (recursive per element level, quadratic in the attributes of an
/// element and in the namespace declarations in scope) exhaust the stack or
/// take unbounded time: element nesting, attributes per element and
/// namespace declarations over their limits. Where the text stops being
/// XML the scan stops too: the parser fails there or before, and reads
/// nothing after.
fn check_markup(text: &str) -> Result<()> {
    let bytes = text.as_bytes();
    let find = |from: usize, pattern: &[u8]| {
        bytes
            .get(from..)
            .and_then(|rest| rest.windows(pattern.len()).position(|w| w == pattern))
            .map(|at| from + at)
    };
    let mut depth = 0usize;
    let mut namespaces = 0usize;
    let mut i = 0;
    while let Some(start) = find(i, b"<") {
        let rest = &bytes[start..];
        let skip =
            |open: &[u8], close: &[u8]| find(start + open.len(), close).map(|at| at + close.len());
        let next = if rest.starts_with(b"<!--") {
            skip(b"<!--", b"-->")
        } else if rest.starts_with(b"<![CDATA[") {
            skip(b"<![CDATA[", b"]]>")
        } else if rest.starts_with(b"<?") {
            skip(b"<?", b"?>")
        } else if rest.starts_with(b"<!") {
            // A DTD (refused by the parser) or no XML at all.
            None
        } else if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            Some(start + 2)
        } else {
            depth += 1;
            let tag = start_tag(bytes, start, depth, &mut namespaces)?;
            if let Some((_, true)) = tag {
                depth -= 1;
            }
            tag.map(|(end, _)| end)
        };
        match next {
            Some(next) => i = next,
            None => return Ok(()),
        }
    }
    Ok(())
}

/// Checks the start tag at `start`, at nesting `depth`, counting its
/// namespace declarations into `namespaces`. Gives where it ends and
/// whether the element is empty (`/>`), or `None` where it is not XML.
fn start_tag(
    bytes: &[u8],
    start: usize,
    depth: usize,
    namespaces: &mut usize,
) -> Result<Option<(usize, bool)>> {
    let name_end = bytes[start..]
        .iter()
        .position(|b| b.is_ascii_whitespace() || matches!(b, b'/' | b'>'))
        .map_or(bytes.len(), |at| start + at);
    // For messages: the element's name, or its start when it is long.
    let name = || String::from_utf8_lossy(&bytes[start + 1..name_end.min(start + 65)]).into_owned();
    if depth > MAX_ELEMENT_DEPTH {
        return Err(over_limit(
            format!("the nesting of XML elements (at `{}`)", name()),
            MAX_ELEMENT_DEPTH,
        ));
    }
    // Up to the first `>` outside quotes, every attribute has one `=`
    // outside quotes, after its name: the last word before it.
    let mut attributes = 0;
    let mut word = name_end..name_end;
    let mut word_start = None;
    let mut j = name_end;
    loop {
        let byte = match bytes.get(j) {
            None | Some(b'<') => return Ok(None),
            Some(&byte) => byte,
        };
        if byte.is_ascii_whitespace() || matches!(byte, b'=' | b'"' | b'\'' | b'>') {
            if let Some(from) = word_start.take() {
                word = from..j;
            }
        } else if word_start.is_none() {
            word_start = Some(j);
        }
        match byte {
            b'"' | b'\'' => {
                match bytes[j + 1..].iter().position(|&b| b == byte || b == b'<') {
                    Some(at) if bytes[j + 1 + at] == byte => j += at + 1,
                    // `<` in a value is not XML.
                    _ => return Ok(None),
                }
            }
            b'=' => {
                attributes += 1;
                if attributes > MAX_ATTRIBUTES {
                    return Err(over_limit(
                        format!("the attributes of a `{}` element", name()),
                        MAX_ATTRIBUTES,
                    ));
                }
                let attribute = &bytes[word.clone()];
                if attribute == b"xmlns" || attribute.starts_with(b"xmlns:") {
                    *namespaces += 1;
                    if *namespaces > MAX_NAMESPACES {
                        return Err(over_limit("the namespace declarations", MAX_NAMESPACES));
                    }
                }
            }
            b'>' => return Ok(Some((j + 1, bytes[j - 1] == b'/'))),
            _ => {}
        }
        j += 1;
    }
}

fn children<'a, 'input>(
    node: XmlNode<'a, 'input>,
    name: &'a str,
) -> impl Iterator<Item = XmlNode<'a, 'input>> + 'a {
    node.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

fn child<'a, 'input>(node: XmlNode<'a, 'input>, name: &'a str) -> Option<XmlNode<'a, 'input>> {
    children(node, name).next()
}

fn attr<'a>(node: XmlNode<'a, '_>, name: &str) -> Result<&'a str> {
    node.attribute(name).ok_or_else(|| {
        invalid(format!(
            "{} has no `{name}` attribute",
            node.tag_name().name()
        ))
    })
}

fn number(node: XmlNode<'_, '_>, name: &str) -> Result<f64> {
    let text = attr(node, name)?;
    text.trim().parse().map_err(|_| {
        invalid(format!(
            "{}@{name} is `{text}`, not a number",
            node.tag_name().name()
        ))
    })
}

fn number_or(node: XmlNode<'_, '_>, name: &str, default: f64) -> Result<f64> {
    match node.attribute(name) {
        None => Ok(default),
        Some(_) => number(node, name),
    }
}

/// Parses a whole document.
pub(crate) fn document(text: &str) -> Result<Pmml> {
    check_markup(text)?;
    let doc = Document::parse(text).map_err(|e| PmmlError::Xml(e.to_string()))?;
    let root = doc.root_element();
    if root.tag_name().name() != "PMML" {
        return Err(PmmlError::Xml(format!(
            "the root element is {}, not PMML",
            root.tag_name().name()
        )));
    }
    let mut context = Context {
        dictionary: HashMap::new(),
        classes: HashMap::new(),
        fields: Vec::new(),
        ids: HashMap::new(),
    };
    let dictionary = child(root, "DataDictionary").ok_or_else(|| invalid("no DataDictionary"))?;
    for field in children(dictionary, "DataField") {
        let values = children(field, "Value")
            .filter(|v| v.attribute("property").is_none_or(|p| p == "valid"))
            .filter_map(|v| v.attribute("value").map(str::to_owned))
            .collect();
        context
            .dictionary
            .insert(attr(field, "name")?.to_owned(), values);
    }
    if let Some(transformations) = child(root, "TransformationDictionary")
        && transformations.children().any(|c| c.is_element())
    {
        return Err(unsupported(
            "TransformationDictionary",
            "derived fields are not implemented",
        ));
    }
    let model_node = root
        .children()
        .filter(|c| c.is_element())
        .find(|c| {
            let name = c.tag_name().name();
            MODELS.contains(&name) || OTHER_MODELS.contains(&name)
        })
        .ok_or_else(|| invalid("no model element"))?;
    let schema = mining_schema(model_node, &mut context)?;
    let classification = model_node.attribute("functionName") == Some("classification");
    let model = model(model_node, &mut context, None, 0)?;
    Ok(Pmml {
        model: Arc::new(model),
        fields: context.fields,
        active: schema.active,
        replacements: schema.replacements,
        classification,
    })
}

struct Schema {
    active: Vec<String>,
    target: Option<String>,
    /// `missingValueReplacement`s: (field id, value).
    replacements: Vec<(usize, f64)>,
}

fn mining_schema(model: XmlNode<'_, '_>, context: &mut Context) -> Result<Schema> {
    let schema = child(model, "MiningSchema")
        .ok_or_else(|| invalid(format!("{} has no MiningSchema", model.tag_name().name())))?;
    let mut active = Vec::new();
    let mut target = None;
    let mut replacements = Vec::new();
    for field in children(schema, "MiningField") {
        let name = attr(field, "name")?;
        match field.attribute("usageType").unwrap_or("active") {
            "active" => {
                let id = context.field(name);
                if field.attribute("missingValueReplacement").is_some() {
                    replacements.push((id, number(field, "missingValueReplacement")?));
                }
                active.push(name.to_owned());
            }
            "target" | "predicted" => target = Some(name.to_owned()),
            // Supplementary fields are carried along, never read.
            "supplementary" | "frequencyWeight" | "analysisWeight" => {}
            other => {
                return Err(unsupported(
                    format!("MiningField@usageType={other}"),
                    format!("field {name}"),
                ));
            }
        }
    }
    Ok(Schema {
        active,
        target,
        replacements,
    })
}

fn check_no_local_transformations(model: XmlNode<'_, '_>) -> Result<()> {
    if let Some(local) = child(model, "LocalTransformations")
        && local.children().any(|c| c.is_element())
    {
        return Err(unsupported(
            "LocalTransformations",
            format!("in {}", model.tag_name().name()),
        ));
    }
    Ok(())
}

fn targets(model: XmlNode<'_, '_>) -> Result<Target> {
    let Some(target) = child(model, "Targets").and_then(|t| child(t, "Target")) else {
        return Ok(Target::identity());
    };
    Ok(Target {
        factor: number_or(target, "rescaleFactor", 1.0)?,
        constant: number_or(target, "rescaleConstant", 0.0)?,
        min: target
            .attribute("min")
            .map(|_| number(target, "min"))
            .transpose()?,
        max: target
            .attribute("max")
            .map(|_| number(target, "max"))
            .transpose()?,
        cast: match target.attribute("castInteger") {
            None => None,
            Some("round") => Some(Cast::Round),
            Some("ceiling") => Some(Cast::Ceiling),
            Some("floor") => Some(Cast::Floor),
            Some(other) => return Err(unsupported(format!("Target@castInteger={other}"), "")),
        },
    })
}

/// The classes of a classification model: the target field's declared
/// values. A segment's model without a target of its own takes its
/// ensemble's classes (`inherited`).
fn classes(
    model: XmlNode<'_, '_>,
    context: &mut Context,
    inherited: Option<&Arc<Classes>>,
) -> Result<Option<Arc<Classes>>> {
    if model.attribute("functionName") != Some("classification") {
        return Ok(None);
    }
    let schema = mining_schema(model, context)?;
    let Some(target) = schema.target else {
        return match inherited {
            Some(classes) => Ok(Some(classes.clone())),
            None => Err(invalid(format!(
                "classification {} without a target field",
                model.tag_name().name()
            ))),
        };
    };
    if let Some(classes) = context.classes.get(&target) {
        return Ok(Some(classes.clone()));
    }
    match context.dictionary.get(&target) {
        Some(values) if !values.is_empty() => {
            let classes = Arc::new(Classes::new(values.clone()).map_err(|class| {
                invalid(format!(
                    "the target field {target} declares class `{class}` twice"
                ))
            })?);
            context.classes.insert(target, classes.clone());
            Ok(Some(classes))
        }
        _ => Err(invalid(format!(
            "the target field {target} declares no classes"
        ))),
    }
}

/// A model element; `segments` is how many `Segment`s enclose it.
fn model(
    node: XmlNode<'_, '_>,
    context: &mut Context,
    inherited: Option<&Arc<Classes>>,
    segments: usize,
) -> Result<Model> {
    let name = node.tag_name().name();
    if !MODELS.contains(&name) {
        return Err(unsupported(name, "this model kind is not implemented"));
    }
    mining_schema(node, context)?;
    check_no_local_transformations(node)?;
    match name {
        "TreeModel" => tree(node, context, inherited).map(Model::Tree),
        "RegressionModel" => regression(node, context),
        "GeneralRegressionModel" => general_regression(node, context),
        "NeuralNetwork" => neural(node, context).map(Model::Neural),
        "MiningModel" => mining(node, context, segments),
        _ => unreachable!("checked above"),
    }
}

/// A predicate; `compounds` is how many `CompoundPredicate`s enclose it.
fn predicate(node: XmlNode<'_, '_>, context: &mut Context, compounds: usize) -> Result<Predicate> {
    match node.tag_name().name() {
        "True" => Ok(Predicate::True),
        "False" => Ok(Predicate::False),
        "SimplePredicate" => {
            let field = context.field(attr(node, "field")?);
            let op = match attr(node, "operator")? {
                "equal" => Operator::Equal,
                "notEqual" => Operator::NotEqual,
                "lessThan" => Operator::LessThan,
                "lessOrEqual" => Operator::LessOrEqual,
                "greaterThan" => Operator::GreaterThan,
                "greaterOrEqual" => Operator::GreaterOrEqual,
                "isMissing" => Operator::IsMissing,
                "isNotMissing" => Operator::IsNotMissing,
                other => {
                    return Err(unsupported(format!("SimplePredicate@operator={other}"), ""));
                }
            };
            let value = match op {
                Operator::IsMissing | Operator::IsNotMissing => 0.0,
                _ => {
                    let text = attr(node, "value")?;
                    text.trim().parse().map_err(|_| {
                        unsupported(
                            "SimplePredicate",
                            format!("non-numeric value `{text}` (categorical fields are not implemented)"),
                        )
                    })?
                }
            };
            Ok(Predicate::Simple { field, op, value })
        }
        "CompoundPredicate" => {
            check_nesting("CompoundPredicate", compounds + 1)?;
            let op = match attr(node, "booleanOperator")? {
                "and" => BoolOp::And,
                "or" => BoolOp::Or,
                "xor" => BoolOp::Xor,
                "surrogate" => BoolOp::Surrogate,
                other => {
                    return Err(unsupported(
                        format!("CompoundPredicate@booleanOperator={other}"),
                        "",
                    ));
                }
            };
            let parts = node
                .children()
                .filter(|c| c.is_element() && c.tag_name().name() != "Extension")
                .map(|c| predicate(c, context, compounds + 1))
                .collect::<Result<Vec<_>>>()?;
            Ok(Predicate::Compound { op, parts })
        }
        other => Err(unsupported(other, "as a predicate")),
    }
}

const PREDICATES: &[&str] = &[
    "True",
    "False",
    "SimplePredicate",
    "CompoundPredicate",
    "SimpleSetPredicate",
];

fn node_predicate(node: XmlNode<'_, '_>, context: &mut Context) -> Result<Predicate> {
    let found = node
        .children()
        .find(|c| c.is_element() && PREDICATES.contains(&c.tag_name().name()))
        .ok_or_else(|| invalid(format!("{} without a predicate", node.tag_name().name())))?;
    predicate(found, context, 0)
}

fn tree(
    model: XmlNode<'_, '_>,
    context: &mut Context,
    inherited: Option<&Arc<Classes>>,
) -> Result<Tree> {
    match model.attribute("missingValueStrategy").unwrap_or("none") {
        "none" => {}
        other => {
            return Err(unsupported(
                format!("TreeModel@missingValueStrategy={other}"),
                "only `none` is implemented",
            ));
        }
    }
    let no_true_child = match model
        .attribute("noTrueChildStrategy")
        .unwrap_or("returnNullPrediction")
    {
        "returnNullPrediction" => NoTrueChild::ReturnNullPrediction,
        "returnLastPrediction" => NoTrueChild::ReturnLastPrediction,
        other => {
            return Err(unsupported(
                format!("TreeModel@noTrueChildStrategy={other}"),
                "",
            ));
        }
    };
    let classes = classes(model, context, inherited)?;
    let root = child(model, "Node").ok_or_else(|| invalid("TreeModel without a Node"))?;
    Ok(Tree {
        root: tree_node(root, classes.as_deref(), context, 1)?,
        classes,
        no_true_child,
        target: targets(model)?,
    })
}

/// A `Node` at nesting `level` (1 for the root) and its subtree.
fn tree_node(
    node: XmlNode<'_, '_>,
    classes: Option<&Classes>,
    context: &mut Context,
    level: usize,
) -> Result<Node> {
    check_nesting("Node", level)?;
    let mut distribution = Vec::new();
    let mut given_probabilities = false;
    if let Some(classes) = classes {
        for score in children(node, "ScoreDistribution") {
            let value = attr(score, "value")?;
            let i = classes
                .position(value)
                .ok_or_else(|| invalid(format!("ScoreDistribution for unknown class {value}")))?;
            let count = match score.attribute("probability") {
                Some(_) => {
                    given_probabilities = true;
                    number(score, "probability")?
                }
                None => number(score, "recordCount")?,
            };
            distribution.push((i, count));
        }
        // By class, the last of a class given twice counting; a stable
        // sort keeps their order.
        distribution.sort_by_key(|&(i, _)| i);
        distribution.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                *earlier = *later;
            }
            same
        });
    }
    let score = node.attribute("score");
    Ok(Node {
        predicate: node_predicate(node, context)?,
        score: score.map(str::to_owned),
        score_class: score.and_then(|s| classes?.position(s)),
        record_count: match node.attribute("recordCount") {
            Some(_) if !given_probabilities => Some(number(node, "recordCount")?),
            _ => None,
        },
        distribution,
        children: children(node, "Node")
            .map(|c| tree_node(c, classes, context, level + 1))
            .collect::<Result<Vec<_>>>()?,
    })
}

fn regression(model: XmlNode<'_, '_>, context: &mut Context) -> Result<Model> {
    if model.attribute("functionName") != Some("regression") {
        return Err(unsupported(
            "RegressionModel@functionName=classification",
            "only regression is implemented",
        ));
    }
    match model.attribute("normalizationMethod").unwrap_or("none") {
        "none" => {}
        other => {
            return Err(unsupported(
                format!("RegressionModel@normalizationMethod={other}"),
                "",
            ));
        }
    }
    let mut tables = children(model, "RegressionTable");
    let table = tables
        .next()
        .ok_or_else(|| invalid("RegressionModel without a RegressionTable"))?;
    if tables.next().is_some() {
        return Err(unsupported(
            "RegressionTable",
            "more than one in a regression",
        ));
    }
    let mut terms = Vec::new();
    for element in table.children().filter(|c| c.is_element()) {
        match element.tag_name().name() {
            "NumericPredictor" => {
                let exponent = number_or(element, "exponent", 1.0)?;
                terms.push((
                    context.field(attr(element, "name")?),
                    number(element, "coefficient")?,
                    exponent as i32,
                ));
            }
            "Extension" => {}
            other => return Err(unsupported(other, "in a RegressionTable")),
        }
    }
    Ok(Model::Regression {
        intercept: number_or(table, "intercept", 0.0)?,
        terms,
        target: targets(model)?,
    })
}

fn general_regression(model: XmlNode<'_, '_>, context: &mut Context) -> Result<Model> {
    match attr(model, "modelType")? {
        "generalizedLinear" | "regression" | "generalLinear" => {}
        other => {
            return Err(unsupported(
                format!("GeneralRegressionModel@modelType={other}"),
                "",
            ));
        }
    }
    if model.attribute("functionName") != Some("regression") {
        return Err(unsupported(
            "GeneralRegressionModel@functionName=classification",
            "only regression is implemented",
        ));
    }
    let link = match model.attribute("linkFunction").unwrap_or("identity") {
        "identity" => Link::Identity,
        "log" => Link::Log,
        "logit" => Link::Logit,
        "exp" => Link::Exp,
        "power" if model.attribute("linkParameter") == Some("-1") => Link::Inverse,
        other => {
            return Err(unsupported(
                format!("GeneralRegressionModel@linkFunction={other}"),
                "",
            ));
        }
    };
    if child(model, "FactorList").is_some_and(|f| f.children().any(|c| c.is_element())) {
        return Err(unsupported(
            "FactorList",
            "categorical predictors are not implemented",
        ));
    }
    let parameters: HashSet<&str> = child(model, "ParameterList")
        .map(|list| {
            children(list, "Parameter")
                .map(|p| attr(p, "name"))
                .collect::<Result<HashSet<_>>>()
        })
        .transpose()?
        .unwrap_or_default();
    let mut products: HashMap<String, Vec<(usize, f64)>> = HashMap::new();
    if let Some(pp) = child(model, "PPMatrix") {
        for cell in children(pp, "PPCell") {
            let exponent = number(cell, "value")?;
            let field = context.field(attr(cell, "predictorName")?);
            products
                .entry(attr(cell, "parameterName")?.to_owned())
                .or_default()
                .push((field, exponent));
        }
    }
    let matrix = child(model, "ParamMatrix")
        .ok_or_else(|| invalid("GeneralRegressionModel without a ParamMatrix"))?;
    let mut terms = Vec::new();
    let mut given = HashSet::new();
    for cell in children(matrix, "PCell") {
        if cell.attribute("targetCategory").is_some() {
            return Err(unsupported("PCell@targetCategory", "in a regression"));
        }
        let name = attr(cell, "parameterName")?;
        if !parameters.contains(name) {
            return Err(invalid(format!("PCell for undeclared parameter {name}")));
        }
        // One beta per parameter; each product is then moved, not copied.
        if !given.insert(name) {
            return Err(invalid(format!("two PCells for parameter {name}")));
        }
        terms.push((
            number(cell, "beta")?,
            products.remove(name).unwrap_or_default(),
        ));
    }
    Ok(Model::GeneralRegression {
        link,
        offset: number_or(model, "offsetValue", 0.0)?,
        parameters: terms,
        target: targets(model)?,
    })
}

fn activation(name: &str) -> Result<Activation> {
    Ok(match name {
        "identity" => Activation::Identity,
        "logistic" => Activation::Logistic,
        "tanh" => Activation::Tanh,
        "rectifier" => Activation::Rectifier,
        "exponential" => Activation::Exponential,
        other => return Err(unsupported(format!("activationFunction={other}"), "")),
    })
}

fn softmax(name: Option<&str>) -> Result<Option<bool>> {
    match name {
        None => Ok(None),
        Some("none") => Ok(Some(false)),
        Some("softmax") => Ok(Some(true)),
        Some(other) => Err(unsupported(format!("normalizationMethod={other}"), "")),
    }
}

/// A NormContinuous's `(orig, norm)` points.
fn linear_norms(norm: XmlNode<'_, '_>) -> Result<Vec<(f64, f64)>> {
    let points = children(norm, "LinearNorm")
        .map(|p| Ok((number(p, "orig")?, number(p, "norm")?)))
        .collect::<Result<Vec<_>>>()?;
    if points.len() < 2 {
        return Err(invalid(
            "NormContinuous with fewer than two LinearNorm points",
        ));
    }
    Ok(points)
}

fn derived_field<'a, 'i>(node: XmlNode<'a, 'i>) -> Result<XmlNode<'a, 'i>> {
    child(node, "DerivedField")
        .and_then(|d| d.children().find(|c| c.is_element()))
        .ok_or_else(|| invalid(format!("{} without a DerivedField", node.tag_name().name())))
}

fn neural(model: XmlNode<'_, '_>, context: &mut Context) -> Result<Neural> {
    let default_activation = activation(attr(model, "activationFunction")?)?;
    let default_softmax = softmax(model.attribute("normalizationMethod"))?.unwrap_or(false);
    let inputs_node = child(model, "NeuralInputs")
        .ok_or_else(|| invalid("NeuralNetwork without NeuralInputs"))?;
    // Neuron id -> position in its layer, for the layer just built.
    let mut previous: HashMap<String, usize> = HashMap::new();
    let mut inputs = Vec::new();
    for input in children(inputs_node, "NeuralInput") {
        let expression = derived_field(input)?;
        let (field, norm) = match expression.tag_name().name() {
            "FieldRef" => (attr(expression, "field")?, None),
            "NormContinuous" => (attr(expression, "field")?, Some(linear_norms(expression)?)),
            other => return Err(unsupported(other, "in a NeuralInput")),
        };
        previous.insert(attr(input, "id")?.to_owned(), inputs.len());
        inputs.push(NeuralInput {
            field: context.field(field),
            norm,
        });
    }
    let mut layers = Vec::new();
    for layer in children(model, "NeuralLayer") {
        let layer_activation = match layer.attribute("activationFunction") {
            Some(name) => activation(name)?,
            None => default_activation,
        };
        let layer_softmax =
            softmax(layer.attribute("normalizationMethod"))?.unwrap_or(default_softmax);
        let mut ids = HashMap::new();
        let mut neurons = Vec::new();
        for neuron in children(layer, "Neuron") {
            let mut weights = Vec::new();
            for con in children(neuron, "Con") {
                let from = attr(con, "from")?;
                let index = *previous.get(from).ok_or_else(|| {
                    unsupported(
                        "Con",
                        format!("from `{from}`, not in the previous layer (only layered networks are implemented)"),
                    )
                })?;
                weights.push((index, number(con, "weight")?));
            }
            ids.insert(attr(neuron, "id")?.to_owned(), neurons.len());
            neurons.push((number_or(neuron, "bias", 0.0)?, weights));
        }
        layers.push(Layer {
            activation: layer_activation,
            softmax: layer_softmax,
            neurons,
        });
        previous = ids;
    }
    let outputs_node = child(model, "NeuralOutputs")
        .ok_or_else(|| invalid("NeuralNetwork without NeuralOutputs"))?;
    let outputs = if model.attribute("functionName") == Some("classification") {
        let mut neurons = Vec::new();
        let mut classes = Vec::new();
        for output in children(outputs_node, "NeuralOutput") {
            let expression = derived_field(output)?;
            if expression.tag_name().name() != "NormDiscrete" {
                return Err(unsupported(
                    expression.tag_name().name(),
                    "in a classification NeuralOutput",
                ));
            }
            let neuron = attr(output, "outputNeuron")?;
            neurons.push(*previous.get(neuron).ok_or_else(|| {
                invalid(format!("output neuron {neuron} is not in the last layer"))
            })?);
            classes.push(attr(expression, "value")?.to_owned());
        }
        let classes = Classes::new(classes)
            .map_err(|class| invalid(format!("two NeuralOutputs for class `{class}`")))?;
        NeuralOutputs::Classes {
            neurons,
            classes: Arc::new(classes),
        }
    } else {
        let output = child(outputs_node, "NeuralOutput")
            .ok_or_else(|| invalid("NeuralOutputs without a NeuralOutput"))?;
        let expression = derived_field(output)?;
        let norm = match expression.tag_name().name() {
            "FieldRef" => None,
            "NormContinuous" => Some(linear_norms(expression)?),
            other => return Err(unsupported(other, "in a regression NeuralOutput")),
        };
        let neuron = attr(output, "outputNeuron")?;
        NeuralOutputs::Value {
            neuron: *previous.get(neuron).ok_or_else(|| {
                invalid(format!("output neuron {neuron} is not in the last layer"))
            })?,
            norm,
            target: targets(model)?,
        }
    };
    Ok(Neural {
        inputs,
        layers,
        outputs,
    })
}

/// A MiningModel inside `segments` enclosing `Segment`s.
fn mining(model: XmlNode<'_, '_>, context: &mut Context, segments: usize) -> Result<Model> {
    let segmentation =
        child(model, "Segmentation").ok_or_else(|| invalid("MiningModel without Segmentation"))?;
    let method = match attr(segmentation, "multipleModelMethod")? {
        "average" => Method::Average,
        "weightedAverage" => Method::WeightedAverage,
        "majorityVote" => Method::MajorityVote,
        "weightedMajorityVote" => Method::WeightedMajorityVote,
        other => {
            return Err(unsupported(
                format!("Segmentation@multipleModelMethod={other}"),
                "implemented: average, weightedAverage, majorityVote, weightedMajorityVote",
            ));
        }
    };
    let classes = classes(model, context, None)?;
    let level = segments + 1;
    let mut segments = Vec::new();
    for segment in children(segmentation, "Segment") {
        check_nesting("Segment", level)?;
        let inner = segment
            .children()
            .filter(|c| c.is_element())
            .find(|c| {
                let name = c.tag_name().name();
                MODELS.contains(&name) || OTHER_MODELS.contains(&name)
            })
            .ok_or_else(|| invalid("Segment without a model"))?;
        let weight = number_or(segment, "weight", 1.0)?;
        // Weights add up: an infinite or NaN one would leave no average.
        if !weight.is_finite() {
            return Err(invalid(format!("Segment@weight is {weight}")));
        }
        segments.push(Segment {
            predicate: node_predicate(segment, context)?,
            weight,
            model: self::model(inner, context, classes.as_ref(), level)?,
        });
    }
    Ok(Model::Mining {
        method,
        segments,
        classes,
        target: targets(model)?,
    })
}

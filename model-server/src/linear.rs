//! The ONNX-ML `LinearRegressor` operator (`ai.onnx.ml` opset 1),
//! registered in tract's ONNX operator registry in place of tract's own.
//!
//! scikit-learn's linear models export to it. tract turns it into a
//! packed matrix product, which for one row of eleven features costs
//! several times the dot product itself, and it refuses the `PROBIT` and
//! `SOFTMAX_ZERO` post transforms. Here a row is one dot product per
//! target plus its intercept, then the post transform, as onnxruntime
//! computes it.

use std::sync::Arc;

use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::bail;
use tract_onnx::tract_core::internal::{
    EvalContext, EvalOp, Op, StaticName, TypedOp, as_op, op_as_typed_op, op_out_of_plan,
};
use tract_onnx::tract_hir::internal::{
    Expansion, InferenceOp, InferenceResult, Solver, TensorProxy, check_input_arity,
    check_output_arity, expand,
};

use crate::onnx_ml::{PostTransform, rows_of, score_rows, with_scores};
use crate::tract_model::RowPredictor;

/// A parsed linear regressor: `targets` rows of `features` coefficients.
#[derive(Debug)]
pub(crate) struct Linear {
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
    targets: usize,
    features: usize,
    post: PostTransform,
}

impl Linear {
    /// Parses a `LinearRegressor` node.
    fn parse(node: &NodeProto) -> TractResult<Self> {
        let targets: i64 = node.get_attr_opt("targets")?.unwrap_or(1);
        if targets < 1 {
            bail!("LinearRegressor: targets is {targets}, it must be at least 1");
        }
        let targets = targets as usize;
        let coefficients: Vec<f32> = node.get_attr_opt_vec("coefficients")?.unwrap_or_default();
        if coefficients.is_empty() || !coefficients.len().is_multiple_of(targets) {
            bail!(
                "LinearRegressor: {} coefficients do not make {targets} equal rows",
                coefficients.len()
            );
        }
        // The coefficients bound `targets`, so the default intercepts are
        // no larger than the model.
        let intercepts: Vec<f32> = node
            .get_attr_opt_vec("intercepts")?
            .unwrap_or_else(|| vec![0.0; targets]);
        if intercepts.len() != targets {
            bail!(
                "LinearRegressor: {} intercepts for {targets} targets",
                intercepts.len()
            );
        }
        Ok(Linear {
            features: coefficients.len() / targets,
            coefficients,
            intercepts,
            targets,
            post: PostTransform::parse(node)?,
        })
    }

    /// Scores one row (`features` long) into `out` (`targets` long).
    #[inline]
    fn score(&self, row: &[f32], out: &mut [f32]) {
        for ((o, weights), b) in out
            .iter_mut()
            .zip(self.coefficients.chunks_exact(self.features))
            .zip(&self.intercepts)
        {
            *o = row.iter().zip(weights).map(|(x, w)| x * w).sum::<f32>() + b;
        }
        self.post.apply(out);
    }
}

impl RowPredictor for Linear {
    fn predict(&self, row: &[f32]) -> Option<f64> {
        if row.len() != self.features {
            return None;
        }
        Some(with_scores(self.targets, |out| {
            self.score(row, out);
            f64::from(out[0])
        }))
    }
}

/// The operator as tract runs it: [N, features] (or [features]) in,
/// [N, targets] scores out.
#[derive(Debug, Clone)]
struct LinearOp(Arc<Linear>);

impl PartialEq for LinearOp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for LinearOp {}

impl Op for LinearOp {
    fn name(&self) -> StaticName {
        "LinearRegressor".into()
    }

    op_as_typed_op!();
}

impl EvalOp for LinearOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext<'_>, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let l = &*self.0;
        let features = |width| {
            if width != l.features {
                bail!(
                    "LinearRegressor: rows have {width} features, the coefficients {}",
                    l.features
                );
            }
            Ok(())
        };
        let (scores, _) = score_rows(
            "LinearRegressor",
            &inputs[0],
            l.targets,
            features,
            |row, out| l.score(row, out),
        )?;
        Ok(tvec!(scores))
    }
}

impl TypedOp for LinearOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let n = rows_of("LinearRegressor", inputs)?;
        Ok(tvec!(f32::fact([n, self.0.targets.to_dim()])))
    }

    as_op!();
}

/// The operator as the ONNX parser sees it, before typing.
#[derive(Debug, Clone)]
struct LinearExpansion(LinearOp);

impl Expansion for LinearExpansion {
    fn name(&self) -> StaticName {
        "LinearRegressor".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[1], self.0.0.targets.to_dim())?;
        // A row, or a batch of rows, as `score_rows` reads them.
        s.given(&inputs[0].rank, move |s, rank| match rank {
            1 => s.equals(&outputs[0].shape[0], 1.to_dim()),
            2 => s.equals(&outputs[0].shape[0], &inputs[0].shape[0]),
            _ => bail!("LinearRegressor: input of rank {rank}, not 1 or 2"),
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, self.0.clone(), inputs)
    }
}

fn regressor(
    _ctx: &tract_onnx::model::ParsingContext<'_>,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let linear = Linear::parse(node)?;
    Ok((expand(LinearExpansion(LinearOp(Arc::new(linear)))), vec![]))
}

/// Registers the operator, replacing tract's.
pub(crate) fn register(framework: &mut tract_onnx::Onnx) {
    framework.op_register.insert("LinearRegressor", regressor);
}

/// The row predictor behind `op`, if it is ours.
pub(crate) fn row_predictor(op: &dyn TypedOp) -> Option<Arc<dyn RowPredictor>> {
    op.downcast_ref::<LinearOp>()
        .map(|op| op.0.clone() as Arc<dyn RowPredictor>)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::AttributeProto;
    use tract_onnx::pb::attribute_proto::AttributeType;

    fn node(attributes: &[(&str, &[f32])], extra: Vec<AttributeProto>) -> NodeProto {
        let mut attribute: Vec<AttributeProto> = attributes
            .iter()
            .map(|(name, values)| AttributeProto {
                name: (*name).into(),
                r#type: AttributeType::Floats as i32,
                floats: values.to_vec(),
                ..AttributeProto::default()
            })
            .collect();
        attribute.extend(extra);
        NodeProto {
            op_type: "LinearRegressor".into(),
            attribute,
            ..NodeProto::default()
        }
    }

    fn attribute(name: &str, kind: AttributeType) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: kind as i32,
            ..AttributeProto::default()
        }
    }

    #[test]
    fn targets_intercepts_and_post_transforms() {
        let one = Linear::parse(&node(
            &[("coefficients", &[1.0, 2.0, 3.0]), ("intercepts", &[0.5])],
            vec![],
        ))
        .unwrap();
        assert_eq!(one.predict(&[1.0, 1.0, 1.0]), Some(6.5));
        // A row of the wrong width gives no prediction.
        assert_eq!(one.predict(&[1.0, 1.0]), None);

        let mut targets = attribute("targets", AttributeType::Int);
        targets.i = 2;
        let mut logistic = attribute("post_transform", AttributeType::String);
        logistic.s = b"LOGISTIC".to_vec();
        let two = Linear::parse(&node(
            &[("coefficients", &[1.0, -1.0, 0.0, 2.0])],
            vec![targets, logistic],
        ))
        .unwrap();
        let mut out = [0.0; 2];
        two.score(&[3.0, 3.0], &mut out);
        assert_eq!(out[0], 0.5); // logistic(3 - 3)
        assert!((out[1] - 1.0 / (1.0 + (-6.0f32).exp())).abs() < 1e-6);
    }

    #[test]
    fn malformed_regressors_are_refused_with_the_reason() {
        let err = |n: NodeProto| Linear::parse(&n).unwrap_err().to_string();
        let mut targets = attribute("targets", AttributeType::Int);
        targets.i = 2;
        assert!(
            err(node(&[("coefficients", &[1.0, 2.0, 3.0])], vec![targets])).contains("equal rows")
        );
        assert!(err(node(&[("coefficients", &[])], vec![])).contains("0 coefficients"));
        let wrong = node(
            &[("coefficients", &[1.0]), ("intercepts", &[1.0, 2.0])],
            vec![],
        );
        assert!(err(wrong).contains("2 intercepts"));
        let mut unknown = attribute("post_transform", AttributeType::String);
        unknown.s = b"CUBE".to_vec();
        assert!(err(node(&[("coefficients", &[1.0])], vec![unknown])).contains("CUBE"));
    }
}

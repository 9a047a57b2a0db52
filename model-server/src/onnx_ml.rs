//! What our ONNX-ML operators (the tree ensembles and the linear
//! regressor) share: the post transform (`post_transform`: what is
//! applied to a row's scores last, as onnxruntime computes it), and the
//! walk over an input's rows.

use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::bail;

/// What is applied to a row's scores after they are summed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PostTransform {
    None,
    Softmax,
    Logistic,
    /// Softmax over the non-zero scores; zeros stay zero.
    SoftmaxZero,
    Probit,
}

impl PostTransform {
    /// The node's `post_transform` attribute (`NONE` when absent).
    pub(crate) fn parse(node: &NodeProto) -> TractResult<Self> {
        Ok(match node.get_attr_opt::<&str>("post_transform")? {
            None | Some("NONE") => PostTransform::None,
            Some("SOFTMAX") => PostTransform::Softmax,
            Some("LOGISTIC") => PostTransform::Logistic,
            Some("SOFTMAX_ZERO") => PostTransform::SoftmaxZero,
            Some("PROBIT") => PostTransform::Probit,
            Some(other) => bail!("{}: unknown post_transform {other}", node.op_type),
        })
    }

    /// Applies the transform to one row's scores in place.
    pub(crate) fn apply(self, out: &mut [f32]) {
        match self {
            PostTransform::None => {}
            PostTransform::Logistic => out.iter_mut().for_each(|o| *o = 1.0 / (1.0 + (-*o).exp())),
            PostTransform::Softmax | PostTransform::SoftmaxZero => {
                let zero = self == PostTransform::SoftmaxZero;
                let max = out.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for o in out.iter_mut() {
                    if !(zero && *o == 0.0) {
                        *o = (*o - max).exp();
                        sum += *o;
                    }
                }
                if sum > 0.0 {
                    out.iter_mut().for_each(|o| *o /= sum);
                }
            }
            PostTransform::Probit => out.iter_mut().for_each(|o| *o = probit(*o)),
        }
    }
}

/// The standard normal quantile function (Acklam's rational approximation,
/// relative error below 1.2e-9, ample for float32).
fn probit(p: f32) -> f32 {
    let p = p as f64;
    if !(0.0..=1.0).contains(&p) {
        return f32::NAN;
    }
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let x = if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    };
    x as f32
}

/// Runs `f` on `n` scores of scratch space, on the stack when few: one
/// row's scores, for scoring without allocating.
pub(crate) fn with_scores<R>(n: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut small = [0f32; 16];
    if n <= small.len() {
        f(&mut small[..n])
    } else {
        f(&mut vec![0f32; n])
    }
}

/// The most scores an operator gives for one input (256 MiB of f32): the
/// scores are rows × targets, and a hostile graph could feed a constant
/// input of many rows to a model of many targets.
const MAX_SCORES: usize = 1 << 26;

/// The number of rows in an operator's input fact: `[N, width]` has N,
/// `[width]` is one row (as `score_rows` reads them).
pub(crate) fn rows_of(op: &str, inputs: &[&TypedFact]) -> TractResult<TDim> {
    let Some(input) = inputs.first() else {
        bail!("{op}: no input");
    };
    Ok(match input.rank() {
        1 => 1.to_dim(),
        2 => input.shape[0].clone(),
        rank => bail!("{op}: input of rank {rank}, not 1 or 2"),
    })
}

/// Scores every row of an operator's input (`[N, width]` or `[width]`,
/// cast to f32) into an `[N, targets]` tensor. `check_width` refuses rows
/// the operator cannot read; `score` fills one row's scores and returns
/// what else the operator keeps per row (a classifier's best class).
pub(crate) fn score_rows<T>(
    op: &str,
    input: &TValue,
    targets: usize,
    check_width: impl FnOnce(usize) -> TractResult<()>,
    mut score: impl FnMut(&[f32], &mut [f32]) -> T,
) -> TractResult<(TValue, Vec<T>)> {
    let input = input.cast_to::<f32>()?;
    let view = input.to_plain_array_view::<f32>()?;
    let (rows, width) = match view.shape() {
        [w] => (1, *w),
        [r, w] => (*r, *w),
        shape => bail!("{op}: input of shape {shape:?}"),
    };
    check_width(width)?;
    // Rows of no features hold no data to bound their count by (and
    // neither they nor rows of no scores can be chunked).
    if width == 0 || targets == 0 {
        bail!("{op}: rows of {width} features and {targets} scores");
    }
    let Some(total) = rows.checked_mul(targets).filter(|&t| t <= MAX_SCORES) else {
        bail!("{op}: {rows} rows of {targets} scores are too many");
    };
    let flat: Vec<f32>;
    let data = match view.as_slice() {
        Some(s) => s,
        None => {
            flat = view.iter().copied().collect();
            &flat
        }
    };
    let mut scores = vec![0f32; total];
    let kept = data
        .chunks_exact(width)
        .zip(scores.chunks_exact_mut(targets))
        .map(|(row, out)| score(row, out))
        .collect();
    let scores = tract_ndarray::Array2::from_shape_vec((rows, targets), scores)?
        .into_tensor()
        .into_tvalue();
    Ok((scores, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms_compute_what_the_spec_says() {
        assert!((probit(0.975) - 1.959_964).abs() < 1e-5);
        assert_eq!(probit(0.5), 0.0);
        assert!(probit(1.5).is_nan());
        let mut logistic = [0.0, 2.0];
        PostTransform::Logistic.apply(&mut logistic);
        assert_eq!(logistic[0], 0.5);
        assert!((logistic[1] - 0.880_797).abs() < 1e-6);
        let mut softmax = [1.0, 1.0, 0.0];
        PostTransform::Softmax.apply(&mut softmax);
        assert!((softmax.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(softmax[2] > 0.0);
        let mut zero = [1.0, 1.0, 0.0];
        PostTransform::SoftmaxZero.apply(&mut zero);
        assert_eq!(zero, [0.5, 0.5, 0.0]);
    }
}

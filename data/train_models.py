#!/usr/bin/env python3
"""Train the wine-quality models that the model server serves, export them to ONNX.

What it does
------------
Reads ``data/winequality_red.csv`` (UCI red wine, 1,599 rows, ``;``-separated, no
header: 11 features then the quality score), splits it 80/20 (stratified on the
quality, fixed seed), trains ten scikit-learn models on the 80 % part, scores
them on the held-out 20 %, and exports each with skl2onnx to ``data/models/onnx/``:

    wine_linear_regression.onnx              LinearRegression
    wine_linear_classifier.onnx              StandardScaler + LogisticRegression
    wine_mlp_regression.onnx                 StandardScaler + MLPRegressor (32, 16)
    wine_mlp_classifier.onnx                 StandardScaler + MLPClassifier (32, 16)
    wine_decision_tree_regression.onnx       DecisionTreeRegressor (depth 6)
    wine_decision_tree_classifier.onnx       DecisionTreeClassifier (depth 8)
    wine_random_forest_regression.onnx       RandomForestRegressor (50 trees, depth 8)
    wine_random_forest_classifier.onnx       RandomForestClassifier (50 trees, depth 8)
    wine_gradient_boosting_regression.onnx   GradientBoostingRegressor (100 trees, depth 3)
    wine_gradient_boosting_classifier.onnx   GradientBoostingClassifier (50 rounds x 6 classes, depth 3)

It then runs every ONNX file with onnxruntime on all 1,599 rows and writes
``data/models/onnx/reference_predictions.csv`` (``row`` = 0-based row index in
the CSV, then one column per model named after the file: the regression value,
or the predicted class label) and ``data/models/onnx/README.md``.

ONNX interface (every file)
---------------------------
* one input ``input``: float32 tensor [N, 11], the features in CSV column order:
  fixed acidity, volatile acidity, citric acid, residual sugar, chlorides,
  free sulfur dioxide, total sulfur dioxide, density, pH, sulphates, alcohol.
  The batch dimension is symbolic and named ``N``.
* regressors: one output ``variable``, float32 [N, 1], the predicted quality.
* classifiers (exported with ``zipmap: False``): ``label``, int64 [N], the
  predicted quality class (3..8), and ``probabilities``, float32 [N, 6], one
  column per class in the order 3, 4, 5, 6, 7, 8.

float32, not double: float32 is skl2onnx's default and the only element type
that every file can use in a Rust runtime. skl2onnx can export double inputs
(DoubleTensorType), but then the linear models become MatMul/Add and the tree
ensembles carry their thresholds in ``nodes_values_as_tensor`` (ai.onnx.ml 3),
which tract-onnx 0.23 does not read (it parses the float ``nodes_values``).
The server casts the WineRecord doubles to float32 before scoring.

Operators are kept to what tract-onnx 0.23 understands where possible:
``target_opset = {"": 15, "ai.onnx.ml": 3}`` (ai.onnx.ml 5 would turn the trees
into the newer ``TreeEnsemble`` op), classifiers without ZipMap, and a
StandardScaler exported as ``Sub`` + ``Div`` instead of the ai.onnx.ml
``Scaler`` op (which tract does not implement). tract-onnx 0.23 has no
``TreeEnsembleRegressor``; the model server registers its own.

How to run (from the repository root, needs Python 3.10+ and the registry)
------------------------------------------------------------------------
    pip install --target .tools/python-train -r data/requirements-train.txt
    PYTHONPATH=.tools/python-train python3 data/train_models.py

``.tools/`` is git-ignored. Re-running with the pinned versions rewrites the same
models and predictions (seed 42 everywhere, one BLAS/OpenMP thread).
"""

import os

# One thread for BLAS/OpenMP before numpy loads: keeps floating-point sums, and so
# the trained weights, identical from run to run.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import csv  # noqa: E402
import hashlib  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import skl2onnx  # noqa: E402
import sklearn  # noqa: E402
from onnx import TensorProto  # noqa: E402
from skl2onnx import convert_sklearn  # noqa: E402
from skl2onnx.common.data_types import FloatTensorType  # noqa: E402
from sklearn.ensemble import (  # noqa: E402
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier, MLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor  # noqa: E402

SEED = 42
TARGET_OPSET = {"": 15, "ai.onnx.ml": 3}
N_FEATURES = 11
FEATURES = [
    "fixed acidity",
    "volatile acidity",
    "citric acid",
    "residual sugar",
    "chlorides",
    "free sulfur dioxide",
    "total sulfur dioxide",
    "density",
    "pH",
    "sulphates",
    "alcohol",
]

DATA_DIR = Path(__file__).resolve().parent
CSV_PATH = DATA_DIR / "winequality_red.csv"
OUT_DIR = DATA_DIR / "models" / "onnx"


def load_data():
    """The CSV as (X float64 [n, 11], y int64 [n]), in file order."""
    rows = []
    with open(CSV_PATH, newline="") as f:
        for line in csv.reader(f, delimiter=";"):
            if line:
                rows.append([float(v) for v in line])
    data = np.asarray(rows, dtype=np.float64)
    assert data.shape[1] == N_FEATURES + 1, data.shape
    return data[:, :N_FEATURES], data[:, N_FEATURES].astype(np.int64)


def models():
    """(name, kind, estimator, description); kind is 'regression' or 'classifier'."""
    mlp = dict(
        hidden_layer_sizes=(32, 16),
        activation="relu",
        alpha=1e-3,
        max_iter=2000,
        early_stopping=True,
        n_iter_no_change=20,
        random_state=SEED,
    )
    return [
        ("linear_regression", "regression", LinearRegression(),
         "ordinary least squares on the raw features"),
        ("linear_classifier", "classifier",
         make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000)),
         "standard scaling + multinomial logistic regression"),
        ("mlp_regression", "regression",
         make_pipeline(StandardScaler(), MLPRegressor(**mlp)),
         "standard scaling + MLP 11-32-16-1, ReLU, Adam, early stopping"),
        ("mlp_classifier", "classifier",
         make_pipeline(StandardScaler(), MLPClassifier(**mlp)),
         "standard scaling + MLP 11-32-16-6, ReLU, softmax, Adam, early stopping"),
        ("decision_tree_regression", "regression",
         DecisionTreeRegressor(max_depth=6, min_samples_leaf=5, random_state=SEED),
         "one CART tree, depth <= 6, >= 5 rows per leaf"),
        ("decision_tree_classifier", "classifier",
         DecisionTreeClassifier(max_depth=8, min_samples_leaf=3, random_state=SEED),
         "one CART tree, depth <= 8, >= 3 rows per leaf"),
        ("random_forest_regression", "regression",
         RandomForestRegressor(n_estimators=50, max_depth=8, min_samples_leaf=2,
                               random_state=SEED, n_jobs=1),
         "50 trees, depth <= 8, >= 2 rows per leaf"),
        ("random_forest_classifier", "classifier",
         RandomForestClassifier(n_estimators=50, max_depth=8, min_samples_leaf=2,
                                random_state=SEED, n_jobs=1),
         "50 trees, depth <= 8, >= 2 rows per leaf"),
        ("gradient_boosting_regression", "regression",
         GradientBoostingRegressor(n_estimators=100, max_depth=3, learning_rate=0.1,
                                   subsample=0.8, random_state=SEED),
         "100 boosting rounds of depth-3 trees, squared error, subsample 0.8"),
        ("gradient_boosting_classifier", "classifier",
         GradientBoostingClassifier(n_estimators=50, max_depth=3, learning_rate=0.1,
                                    subsample=0.8, random_state=SEED),
         "50 boosting rounds x 6 classes of depth-3 trees, log loss, subsample 0.8"),
    ]


def scaler_as_sub_div(scope, operator, container):
    """skl2onnx converter: StandardScaler as (x - mean) / scale with standard ops.

    skl2onnx's own converter emits ai.onnx.ml ``Scaler``, which tract-onnx 0.23
    does not implement. ``Sub`` and ``Div`` compute the same thing as sklearn.
    """
    op = operator.raw_operator
    n = op.n_features_in_
    mean = op.mean_ if op.with_mean else np.zeros(n)
    scale = op.scale_ if op.with_std else np.ones(n)
    mean_name = scope.get_unique_variable_name("scaler_mean")
    scale_name = scope.get_unique_variable_name("scaler_scale")
    centered = scope.get_unique_variable_name("scaler_centered")
    container.add_initializer(mean_name, TensorProto.FLOAT, [n],
                              mean.astype(np.float32).tolist())
    container.add_initializer(scale_name, TensorProto.FLOAT, [n],
                              scale.astype(np.float32).tolist())
    container.add_node("Sub", [operator.inputs[0].full_name, mean_name], [centered],
                       name=scope.get_unique_operator_name("ScalerSub"))
    container.add_node("Div", [centered, scale_name], [operator.outputs[0].full_name],
                       name=scope.get_unique_operator_name("ScalerDiv"))


def dedupe_opsets(model):
    """skl2onnx can list the default domain twice; keep one import per domain."""
    best = {}
    for imp in model.opset_import:
        best[imp.domain] = max(best.get(imp.domain, 0), imp.version)
    del model.opset_import[:]
    for domain in sorted(best):
        model.opset_import.add(domain=domain, version=best[domain])


def name_batch_dim(model):
    """Name the free batch dimension of inputs and outputs 'N' (a symbol for tract)."""
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) >= 1 and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "N"


def export(name, kind, estimator, description):
    options = {id(estimator): {"zipmap": False}} if kind == "classifier" else None
    if kind == "classifier" and hasattr(estimator, "steps"):
        options = {id(estimator.steps[-1][1]): {"zipmap": False}}
    onx = convert_sklearn(
        estimator,
        name=f"wine_{name}",
        initial_types=[("input", FloatTensorType([None, N_FEATURES]))],
        target_opset=TARGET_OPSET,
        options=options,
        custom_conversion_functions={StandardScaler: scaler_as_sub_div},
    )
    name_batch_dim(onx)
    dedupe_opsets(onx)
    onx.doc_string = (
        f"wine_{name}: scikit-learn {type(_final(estimator)).__name__} ({description}), "
        "trained on the UCI red wine quality data (data/train_models.py, seed "
        f"{SEED}). Input 'input' float32 [N, 11] in CSV column order: "
        + ", ".join(FEATURES) + "."
    )
    onnx.checker.check_model(onx)
    return onx


def _final(estimator):
    return estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator


def op_list(onx):
    seen = []
    for node in onx.graph.node:
        key = f"{node.domain}:{node.op_type}" if node.domain else node.op_type
        if key not in seen:
            seen.append(key)
    return seen


def main():
    random.seed(SEED)
    np.random.seed(SEED)
    warnings.filterwarnings("ignore", category=UserWarning)  # version notices

    X, y = load_data()
    n = len(y)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=SEED, stratify=y)
    X32 = X.astype(np.float32)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    print(f"{n} rows: {len(y_train)} train, {len(y_test)} held out; "
          f"scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__}, "
          f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}")

    columns = {}
    summary = []
    for name, kind, est, description in models():
        est.fit(X_train, y_train)
        pred_test = est.predict(X_test)
        if kind == "regression":
            score = {
                "R2": r2_score(y_test, pred_test),
                "RMSE": mean_squared_error(y_test, pred_test) ** 0.5,
                "MAE": mean_absolute_error(y_test, pred_test),
                "accuracy of rounded": accuracy_score(y_test, np.rint(pred_test)),
            }
        else:
            score = {
                "accuracy": accuracy_score(y_test, pred_test),
                "macro F1": f1_score(y_test, pred_test, average="macro", zero_division=0),
            }

        onx = export(name, kind, est, description)
        path = OUT_DIR / f"wine_{name}.onnx"
        data = onx.SerializeToString()
        path.write_bytes(data)

        sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        outs = sess.run(None, {"input": X32})
        out_names = [o.name for o in sess.get_outputs()]
        sk_all = est.predict(X)
        if kind == "regression":
            assert out_names == ["variable"], out_names
            value = outs[0]
            assert value.shape == (n, 1) and value.dtype == np.float32, (value.shape, value.dtype)
            value = value[:, 0]
            columns[f"wine_{name}"] = [repr(float(v)) for v in value]
            agreement = f"largest abs. difference {np.max(np.abs(value - sk_all)):.2e}"
        else:
            assert out_names == ["label", "probabilities"], out_names
            label, proba = outs
            assert label.shape == (n,) and label.dtype == np.int64, (label.shape, label.dtype)
            assert proba.shape == (n, 6) and proba.dtype == np.float32, (proba.shape, proba.dtype)
            columns[f"wine_{name}"] = [str(int(v)) for v in label]
            agreement = f"labels differing from sklearn: {int(np.sum(label != sk_all))}/{n}"
            top2 = np.sort(proba, axis=1)[:, -2:]
            ties = int(np.sum(top2[:, 1] == top2[:, 0]))
            if ties:
                agreement += (f"; {ties} rows with tied top probabilities "
                              "(label = first tied class, as sklearn and onnxruntime)")

        ops = op_list(onx)
        summary.append(dict(name=name, kind=kind, description=description,
                            estimator=type(_final(est)).__name__, score=score,
                            size=len(data), ops=ops, agreement=agreement,
                            sha256=hashlib.sha256(data).hexdigest()))
        score_text = ", ".join(f"{k} {v:.3f}" for k, v in score.items())
        print(f"wine_{name}.onnx: {len(data):,} bytes; {score_text}; {agreement}; "
              f"ops {' '.join(ops)}")

    with open(OUT_DIR / "reference_predictions.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["row"] + list(columns))
        for i in range(n):
            w.writerow([i] + [columns[c][i] for c in columns])

    write_readme(summary, n, len(y_train), len(y_test))
    total = sum(s["size"] for s in summary)
    print(f"total ONNX size {total:,} bytes; wrote {OUT_DIR}")


def write_readme(summary, n, n_train, n_test):
    lines = [
        "# ONNX models of the red wine quality data",
        "",
        "Trained and exported by `data/train_models.py` (scikit-learn, skl2onnx; "
        "seed 42); re-run it to rebuild every file here (see the script's header "
        "for how). These models are ours, trained on the UCI Wine Quality data set "
        "(see `data/SOURCE.md`).",
        "",
        "## Interface",
        "",
        "- Input `input`: float32 [N, 11], the features in CSV column order: "
        + ", ".join(FEATURES) + ". The batch dimension is the symbol `N`.",
        "- Regressors (`*_regression.onnx`): output `variable`, float32 [N, 1], the "
        "predicted quality as a real number.",
        "- Classifiers (`*_classifier.onnx`, exported with `zipmap: False`): output "
        "`label`, int64 [N], the predicted quality class, and `probabilities`, "
        "float32 [N, 6], one column per class 3, 4, 5, 6, 7, 8.",
        "- Exported with `target_opset={\"\": 15, \"ai.onnx.ml\": 3}`; each file "
        "declares the lowest versions its operators need (default domain 14 or 15, "
        "ai.onnx.ml 1 or 3). A StandardScaler is exported as `Sub` + `Div` rather "
        "than ai.onnx.ml `Scaler`.",
        "",
        "## Files",
        "",
        "Scores are on a held-out 20 % split (stratified on quality, seed 42): the "
        f"models were trained on the other {n_train} of the {n} rows, and scored on "
        f"these {n_test}. \"rounded acc.\" is the accuracy of the regression value "
        "rounded to the nearest integer. The last column compares onnxruntime's output "
        "(float32) with scikit-learn's (float64) on all rows.",
        "",
        "| file | model | held-out score | size (bytes) | operators | onnxruntime vs scikit-learn |",
        "|---|---|---|---:|---|---|",
    ]
    for s in summary:
        score = s["score"]
        if s["kind"] == "regression":
            text = (f"R² {score['R2']:.3f}, RMSE {score['RMSE']:.3f}, MAE {score['MAE']:.3f}, "
                    f"rounded acc. {score['accuracy of rounded']:.3f}")
        else:
            text = f"accuracy {score['accuracy']:.3f}, macro F1 {score['macro F1']:.3f}"
        lines.append(
            f"| `wine_{s['name']}.onnx` | {s['estimator']}: {s['description']} | {text} | "
            f"{s['size']:,} | {', '.join('`' + o + '`' for o in s['ops'])} | {s['agreement']} |")
    lines += [
        "",
        "`reference_predictions.csv`: onnxruntime's output for every row of "
        "`data/winequality_red.csv` (float32 input): `row` is the 0-based row index, "
        "then one column per model, named after its file without `.onnx`: the "
        "regression value (`variable`, shortest decimal that round-trips the float32 "
        "value widened to double) or the predicted class (`label`).",
        "",
        "## Running them with tract-onnx 0.23",
        "",
        "- tract-onnx 0.23.9 implements `LinearRegressor`, `LinearClassifier`, "
        "`Normalizer`, `ArrayFeatureExtractor`, `TreeEnsembleClassifier` and the "
        "standard operators used here, but not `TreeEnsembleRegressor` (the "
        "regression trees, forest and boosting fail with "
        "`Unimplemented(TreeEnsembleRegressor)` when optimized) nor `Scaler` or "
        "`ZipMap` (avoided in these exports); the model server registers its own "
        "tree-ensemble operators.",
        "- Ties: where two classes share the top probability (exact ties happen in "
        "the single decision tree, whose leaves can hold equal counts), the label is "
        "the first of them in class order (the lower quality), as in scikit-learn and "
        "onnxruntime; another runtime must break ties the same way to match "
        "`reference_predictions.csv`.",
        "- Regression values from another runtime may differ from the reference in the "
        "last float32 bits (summation order); compare with a small tolerance "
        "(the largest onnxruntime vs scikit-learn difference is listed above).",
        "- Give the input an explicit fact (`f32`, shape `[N, 11]` or a fixed batch) "
        "before optimizing.",
        "",
    ]
    (OUT_DIR / "README.md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())

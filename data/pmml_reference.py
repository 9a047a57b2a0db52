#!/usr/bin/env python3
"""Reference predictions of the seven tutorial PMML files, from an independent evaluator.

Scores all rows of ``data/winequality_red.csv`` (UCI red wine, 1,599 rows, ``;``-separated,
no header row: 11 features + quality) with each ``data/models/pmml/*.pmml`` file using
``pypmml`` (a Python wrapper around the Scala/Java evaluator PMML4S; the package carries its
jars and runs on the machine's Java, here 17, offline) and writes

* ``data/models/pmml/reference_predictions.csv``: ``row`` (0-based), then per file (column
  named after the file stem) the predicted value: for regression the predicted value
  (``repr`` of the double), for classification the predicted class label exactly as pypmml
  returns it; for classification files also ``<stem>.probabilities``: the per-class
  probabilities as pypmml returns them, ``label:repr(p)`` joined by ``|``, in the order of
  the target's DataDictionary values (5, 6, 7, 4, 8, 3); ``nan`` where pypmml gives NaN.
* ``data/models/pmml/reference_notes.md``: versions used, and per classification file the
  rows where pypmml's answer is not a single well-defined one (NaN probabilities, ties),
  compared with a small spec-following evaluation done in this script (see below).

The cross-check: this script also evaluates every file itself following the PMML 4.3
specification (plain Python, only the elements these files use) and reports how far the two
agree. Rules used there: a TreeModel's predicted class is the ``score`` of the leaf reached;
a class missing from a leaf's ScoreDistribution has probability 0 (pypmml gives NaN); the
random forest (MiningModel, multipleModelMethod="average") averages the ten trees'
distributions and predicts the class of highest average probability, a tie going to the
class listed first in the DataDictionary.

Commands (from the repository root; ``.tools/`` is git-ignored)::

    pip install --target .tools/python-pmml pypmml        # used: pypmml 1.5.8 (JPype1, py4j)
    PYTHONPATH=.tools/python-pmml python3 data/pmml_reference.py

Java: pypmml starts ``$JAVA_HOME/bin/java`` or ``java`` on the PATH (used: OpenJDK 17).
"""

import csv
import functools
import glob
import math
import os
import platform
import subprocess
import sys
import xml.etree.ElementTree as ET

import pypmml
from pypmml import Model

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "winequality_red.csv")
PMML_DIR = os.path.join(HERE, "models", "pmml")
OUT_CSV = os.path.join(PMML_DIR, "reference_predictions.csv")
OUT_NOTES = os.path.join(PMML_DIR, "reference_notes.md")

# UCI column order (the file has no header row).
COLUMNS = [
    "fixed acidity", "volatile acidity", "citric acid", "residual sugar", "chlorides",
    "free sulfur dioxide", "total sulfur dioxide", "density", "pH", "sulphates", "alcohol",
    "quality",
]
NS = "{http://www.dmg.org/PMML-4_3}"


def load_rows():
    with open(DATA, newline="") as f:
        lines = [line for line in csv.reader(f, delimiter=";") if line]
    names = COLUMNS
    try:
        float(lines[0][0])
    except ValueError:  # a header row, should one ever be added: use its (unquoted) names
        names = [n.strip().strip('"') for n in lines[0]]
        lines = lines[1:]
    rows = [{n: float(v) for n, v in zip(names, line)} for line in lines]
    assert len(rows) == 1599, len(rows)
    return rows


# ---------------------------------------------------------------- spec-following evaluation
def tag(e):
    return e.tag.replace(NS, "")


def predicate(e, rec):
    t = tag(e)
    if t == "True":
        return True
    if t == "False":
        return False
    if t == "SimplePredicate":
        x, v, op = rec[e.get("field")], float(e.get("value")), e.get("operator")
        return {"lessOrEqual": x <= v, "greaterThan": x > v, "lessThan": x < v,
                "greaterOrEqual": x >= v, "equal": x == v, "notEqual": x != v}[op]
    raise NotImplementedError(t)


PRED_TAGS = {"True", "False", "SimplePredicate", "CompoundPredicate", "SimpleSetPredicate"}


def tree_leaf(tree, rec):
    node = tree.find(NS + "Node")
    while True:
        children = node.findall(NS + "Node")
        if not children:
            return node
        for c in children:  # firstHit; these files: two complementary children per split
            p = next(x for x in c if tag(x) in PRED_TAGS)
            if predicate(p, rec):
                node = c
                break
        else:
            return node  # no true child: not reached with these files and this data


def leaf_distribution(leaf, classes):
    total = float(leaf.get("recordCount"))
    d = {c: 0.0 for c in classes}
    for sd in leaf.findall(NS + "ScoreDistribution"):
        d[sd.get("value")] = float(sd.get("recordCount")) / total
    return d


@functools.lru_cache(maxsize=None)
def parse(path):
    return ET.parse(path).getroot()


def spec_eval(path, rec):
    """(predicted value or label, {class: probability} or None)."""
    root = parse(path)
    target = [f for f in root.find(NS + "DataDictionary") if f.get("optype") == "categorical"]
    classes = [v.get("value") for v in target[0].findall(NS + "Value")] if target else None
    model = next(e for e in root if tag(e) not in ("Header", "DataDictionary"))
    kind = tag(model)
    if kind == "RegressionModel":
        t = model.find(NS + "RegressionTable")
        return float(t.get("intercept")) + sum(
            float(p.get("coefficient")) * rec[p.get("name")]
            for p in t.findall(NS + "NumericPredictor")), None
    if kind == "GeneralRegressionModel":
        beta = {c.get("parameterName"): float(c.get("beta"))
                for c in model.find(NS + "ParamMatrix")}
        eta = beta.get("p0", 0.0)  # the intercept parameter (no PPCell row)
        for c in model.find(NS + "PPMatrix"):
            eta += beta[c.get("parameterName")] * rec[c.get("predictorName")] ** float(c.get("value"))
        assert model.get("linkFunction") == "identity"
        return eta, None
    if kind == "TreeModel" and model.get("functionName") == "regression":
        return float(tree_leaf(model, rec).get("score")), None
    if kind == "TreeModel":
        leaf = tree_leaf(model, rec)
        return leaf.get("score"), leaf_distribution(leaf, classes)
    if kind == "MiningModel":
        seg = model.find(NS + "Segmentation")
        assert seg.get("multipleModelMethod") == "average"
        trees = [s.find(NS + "TreeModel") for s in seg.findall(NS + "Segment")]
        avg = {c: 0.0 for c in classes}
        for t in trees:
            for c, p in leaf_distribution(tree_leaf(t, rec), classes).items():
                avg[c] += p / len(trees)
        best = max(avg.values())
        return next(c for c in classes if avg[c] == best), avg
    if kind == "NeuralNetwork":
        default_act = model.get("activationFunction")
        values = {}
        for ni in model.find(NS + "NeuralInputs"):
            values[ni.get("id")] = rec[ni.find(NS + "DerivedField").find(NS + "FieldRef").get("field")]
        for layer in model.findall(NS + "NeuralLayer"):
            act = layer.get("activationFunction", default_act)
            out = {}
            for n in layer.findall(NS + "Neuron"):
                z = float(n.get("bias", "0")) + sum(
                    float(c.get("weight")) * values[c.get("from")] for c in n.findall(NS + "Con"))
                out[n.get("id")] = {"logistic": lambda z: 1.0 / (1.0 + math.exp(-z)),
                                    "tanh": math.tanh, "identity": lambda z: z}[act](z)
            if layer.get("normalizationMethod", "none") == "softmax":
                m = max(out.values())
                e = {k: math.exp(v - m) for k, v in out.items()}
                s = sum(e.values())
                out = {k: v / s for k, v in e.items()}
            values.update(out)
        probs = {}
        for no in model.find(NS + "NeuralOutputs"):
            probs[no.find(NS + "DerivedField").find(NS + "NormDiscrete").get("value")] = \
                values[no.get("outputNeuron")]
        best = max(probs.values())
        return next(c for c in classes if probs[c] == best), probs
    raise NotImplementedError(kind)


# ------------------------------------------------- pypmml, one forest segment at a time
def segment_models(path):
    """pypmml models of a MiningModel's segments, each a stand-alone PMML document
    (the file's DataDictionary + the segment's TreeModel, with the target added to its
    MiningSchema), or None if the file is not a MiningModel."""
    root = ET.parse(path).getroot()
    model = next(e for e in root if tag(e) not in ("Header", "DataDictionary"))
    if tag(model) != "MiningModel":
        return None
    ET.register_namespace("", NS[1:-1])
    target = next(f.get("name") for f in model.find(NS + "MiningSchema")
                  if f.get("usageType") == "target")
    models = []
    for seg in model.find(NS + "Segmentation").findall(NS + "Segment"):
        doc = ET.Element(NS + "PMML", {"version": root.get("version")})
        doc.append(root.find(NS + "Header"))
        doc.append(root.find(NS + "DataDictionary"))
        tree = seg.find(NS + "TreeModel")
        schema = tree.find(NS + "MiningSchema")
        if not any(f.get("usageType") == "target" for f in schema):
            schema.insert(0, ET.Element(NS + "MiningField", {"name": target, "usageType": "target"}))
        doc.append(tree)
        models.append(Model.fromString(ET.tostring(doc, encoding="unicode")).setSupplementOutput(True))
    return models


# ----------------------------------------------------------------------------------- main
def java_version():
    java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else "java"
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    return out.strip().splitlines()[0] if out else "unknown"


def ties(probs):
    vals = [p for p in probs.values() if not math.isnan(p)]
    return bool(vals) and sum(1 for p in vals if p == max(vals)) > 1


def ranges(rows):
    out, i = [], 0
    while i < len(rows):
        j = i
        while j + 1 < len(rows) and rows[j + 1] == rows[j] + 1:
            j += 1
        out.append(str(rows[i]) if i == j else "%d-%d" % (rows[i], rows[j]))
        i = j + 1
    return ", ".join(out)


def row_list(rows, n=1599):
    if not rows:
        return "none (0)"
    if len(rows) == n:
        return "all %d" % n
    if len(rows) > n // 2:
        rest = sorted(set(range(n)) - set(rows))
        return "%d: all except %s" % (len(rows), ranges(rest))
    return "%d: %s" % (len(rows), ranges(rows))


def fmt_probs(classes, probs):
    return "|".join("%s:%r" % (c, probs[c]) for c in classes)


def main():
    rows = load_rows()
    files = sorted(glob.glob(os.path.join(PMML_DIR, "*.pmml")))
    assert len(files) == 7, files
    header = ["row"]
    columns = {}  # column name -> list of strings
    notes = []
    for path in files:
        stem = os.path.splitext(os.path.basename(path))[0]
        model = Model.fromFile(path).setSupplementOutput(True)
        segments = segment_models(path)
        target = model.targetName
        classification = model.functionName == "classification"
        classes = [str(c) for c in model.classes] if classification else None
        inputs = list(model.inputNames)
        missing = [n for n in inputs if n not in rows[0]]
        assert not missing, (stem, missing)
        n = dict(stem=stem, element=model.modelElement, fn=model.functionName,
                 cls=classification, inputs=inputs, nan=[], ties=[], spec_ties=[], differ=[],
                 prob_mismatch=0, max_rel=0.0, seg_differ=[], seg_prob_max_diff=0.0,
                 vote_differs=[], min_margin=math.inf)
        preds, probs_col, seg_preds, seg_probs_col = [], [], [], []
        for i, rec in enumerate(rows):
            record = {k: rec[k] for k in inputs}
            res = model.predict(record)
            value = res["predicted_" + target]
            spec_value, spec_probs = spec_eval(path, rec)
            if not classification:
                preds.append(repr(float(value)))
                rel = abs(float(value) - spec_value) / max(abs(spec_value), 1e-300)
                n["max_rel"] = max(n["max_rel"], rel)
                if rel > 1e-9:
                    n["differ"].append(i)
                continue
            label = str(value)
            probs = {c: float(res["probability(%s)" % c]) for c in classes}
            preds.append(label)
            probs_col.append(fmt_probs(classes, probs))
            if any(math.isnan(p) for p in probs.values()):
                n["nan"].append(i)
            if ties(probs):
                n["ties"].append(i)
            if ties(spec_probs):
                n["spec_ties"].append(i)
            if label != spec_value:
                n["differ"].append(i)
            n["prob_mismatch"] += sum(1 for c in classes if not math.isnan(probs[c])
                                      and abs(probs[c] - spec_probs[c]) > 1e-12)
            top = sorted(spec_probs.values())
            n["min_margin"] = min(n["min_margin"], top[-1] - top[-2])
            if segments:
                # pypmml per tree, NaN (class absent from the leaf) read as 0, then averaged
                avg = {c: 0.0 for c in classes}
                votes = {c: 0 for c in classes}
                for seg in segments:
                    r = seg.predict(record)
                    votes[str(r["predicted_" + target])] += 1
                    for c in classes:
                        p = float(r["probability_%s" % c])  # default output names (no Output element)
                        avg[c] += (0.0 if math.isnan(p) else p) / len(segments)
                best = max(avg.values())
                seg_label = next(c for c in classes if avg[c] == best)
                seg_preds.append(seg_label)
                seg_probs_col.append(fmt_probs(classes, avg))
                if seg_label != spec_value:
                    n["seg_differ"].append(i)
                n["seg_prob_max_diff"] = max(n["seg_prob_max_diff"], max(
                    abs(avg[c] - spec_probs[c]) for c in classes))
                most = max(votes.values())
                if next(c for c in classes if votes[c] == most) != seg_label:
                    n["vote_differs"].append(i)
        header.append(stem)
        columns[stem] = preds
        if classification:
            header.append(stem + ".probabilities")
            columns[stem + ".probabilities"] = probs_col
        if segments:
            header += [stem + ".segment_average", stem + ".segment_average_probabilities"]
            columns[stem + ".segment_average"] = seg_preds
            columns[stem + ".segment_average_probabilities"] = seg_probs_col
        n["segments"] = len(segments) if segments else 0
        n["labels"] = ", ".join("`%s` %d" % (c, preds.count(c)) for c in classes
                                if c in preds) if classification else ""
        notes.append(n)
        print(stem, "done", file=sys.stderr)
    Model.close()

    with open(OUT_CSV, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for i in range(len(rows)):
            w.writerow([i] + [columns[c][i] for c in header[1:]])

    w = open(OUT_NOTES, "w").write
    w("# PMML reference predictions: notes\n\n")
    w("Written by `data/pmml_reference.py` (its docstring has the commands). Evaluator: "
      "pypmml %s (the PMML4S jars it carries) on %s; Python %s. Rows are 0-based indices "
      "into `data/winequality_red.csv` (no header row, 1,599 rows).\n\n"
      % (pypmml.__version__, java_version(), platform.python_version()))
    w("`reference_predictions.csv`: `row`, then per file (column named after the file stem) "
      "the predicted value: regression, `repr` of the double; classification, the class label "
      "as pypmml returns it, with `<stem>.probabilities`: `label:probability` joined by `|` in "
      "DataDictionary order (5, 6, 7, 4, 8, 3), `nan` where pypmml gives NaN. For the random "
      "forest also `<stem>.segment_average` and `<stem>.segment_average_probabilities`: each of "
      "its ten trees scored on its own by pypmml, a NaN (class absent from the leaf's "
      "ScoreDistribution) read as 0, the ten distributions averaged (multipleModelMethod "
      "\"average\") and the highest taken, a tie going to the first class in DataDictionary "
      "order.\n\n")
    w("The script also evaluates each file itself (\"spec\" below), following the PMML 4.3 "
      "specification: a class missing from a leaf's ScoreDistribution has probability 0; a tree "
      "predicts its leaf's `score`; the forest as for `segment_average`. Regression answers are "
      "compared at 1e-9 relative, labels exactly.\n\n")
    w("## Findings\n\n")
    w("- pypmml gives NaN (not 0) for a class absent from the leaf's ScoreDistribution. Where a "
      "probability is not NaN it equals the spec value (mismatches above 1e-12: %s).\n"
      % ", ".join("%s %d" % (n["stem"], n["prob_mismatch"]) for n in notes if n["cls"]))
    for n in notes:
        if n["segments"]:
            w("- `%s` (MiningModel, average of %d trees): every class except the one all ten "
              "leaves list is NaN in pypmml (in every row here), and pypmml then labels rows "
              "%s (count per label) whatever the probabilities: "
              "pypmml's label differs from the spec answer in %s rows. **Use `segment_average` "
              "as the reference for this file**: it differs from the spec evaluation in %s "
              "rows (largest probability difference %.3g). The smallest gap between the highest "
              "and second-highest averaged probability is %.3g, so there are no ties and "
              "the tie rule is never used. A majority vote of the trees' `score`s (vote ties to "
              "the first class in DataDictionary order) would give a different class in %s rows, so the segments must be averaged as probability "
              "distributions, not counted as votes.\n"
              % (n["stem"], n["segments"], n["labels"], row_list(n["differ"]), row_list(n["seg_differ"]),
                 n["seg_prob_max_diff"], n["min_margin"], row_list(n["vote_differs"])))
        elif n["element"] == "TreeModel" and n["cls"]:
            w("- `%s` (TreeModel): rows with a NaN probability (harmless: the label is the leaf's "
              "`score`): %s. Rows at a leaf whose two "
              "highest ScoreDistribution entries tie: %s (two leaves, 5 and 6 tied: 59/59 of "
              "133 and 2/2 of 4); the leaf's `score` is `5` in both, which pypmml returns; "
              "pypmml's label differs from the spec answer in rows: %s.\n"
              % (n["stem"], row_list(n["nan"]), row_list(n["spec_ties"]), row_list(n["differ"])))
        elif n["cls"]:
            w("- `%s` (%s): rows with NaN probabilities %s, ties %s, differing from spec %s.\n"
              % (n["stem"], n["element"], row_list(n["nan"]), row_list(n["spec_ties"]),
                 row_list(n["differ"])))
        else:
            w("- `%s` (%s, regression): rows differing from spec (above 1e-9 relative): %s; "
              "largest relative difference %.3g.\n"
              % (n["stem"], n["element"], row_list(n["differ"]), n["max_rel"]))
    w("\n## Inputs (MiningSchema order)\n\n")
    for n in notes:
        w("- `%s`: %s\n" % (n["stem"], ", ".join("`%s`" % k for k in n["inputs"])))


if __name__ == "__main__":
    main()

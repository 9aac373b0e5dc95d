#!/usr/bin/python3
"""Train Kiln's two demo models and write them as a model repository.

Models (both trained on real public data committed under scripts/demo/data/):

  iris    multinomial logistic regression on the 4 Iris measurements
          input  "input"         FP32  [batch, 4]   (cm)
          output "probabilities" FP32  [batch, 3]   (Softmax)
                 "label"         INT64 [batch]      (ArgMax; 0 setosa, 1 versicolor, 2 virginica)

  digits  MLP 64 -> 64 (ReLU) -> 10 on the 8x8 UCI handwritten digits
          input  "pixels"        FP32  [batch, 64]  (raw pixel counts 0..16, row-major)
          output "probabilities" FP32  [batch, 10]  (Softmax)
                 "label"         INT64 [batch]      (ArgMax; the digit)

The ONNX graphs are written by hand with onnx.helper (opset 13, IR version 8).
After saving, each file is loaded back and evaluated with a small numpy
interpreter of the operators it uses; the script fails unless the graph
reproduces scikit-learn's predict_proba and predict on the test split.

Requires Debian's python3-onnx, python3-numpy and python3-sklearn; run with
/usr/bin/python3 from the repository root:

    /usr/bin/python3 scripts/demo/train_models.py [--out models]

Output is deterministic (fixed seeds, single-threaded training data order).
"""

import argparse
import gzip
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.neural_network import MLPClassifier

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
SEED = 0
OPSET = 13
IR_VERSION = 8

CONFIG_YAML = """\
backend: onnx
max_batch_size: 64
dynamic_batching: {max_queue_delay: 1ms}
parameters: {intra_op_threads: 1}
"""


# --------------------------------------------------------------------------- data


def load_sklearn_csv(path):
    """Read scikit-learn's bundled CSV layout: a header line
    "n_samples,n_features[,class names...]" followed by rows of features and
    an integer target in the last column."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        header = f.readline().strip().split(",")
        rows = np.loadtxt(f, delimiter=",", dtype=np.float64)
    if rows.ndim == 1:
        rows = rows[None, :]
    n_samples = int(header[0]) if header[0].isdigit() else len(rows)
    if n_samples != len(rows):
        raise SystemExit(f"{path}: header says {n_samples} rows, found {len(rows)}")
    names = header[2:]
    return rows[:, :-1], rows[:, -1].astype(np.int64), names


def load_digits_csv(path):
    """digits.csv.gz has no header: 64 pixel columns and the digit."""
    with gzip.open(path, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.float64)
    return rows[:, :-1], rows[:, -1].astype(np.int64)


# --------------------------------------------------------------------------- onnx


def f32(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def make_model(graph):
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="kiln-demo",
        producer_version="1",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def classifier_io(input_name, n_features, n_classes):
    inputs = [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", n_features])]
    outputs = [
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_classes]),
        helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
    ]
    return inputs, outputs


def head_nodes(logits):
    return [
        helper.make_node("Softmax", [logits], ["probabilities"], name="softmax", axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], name="argmax", axis=1, keepdims=0),
    ]


def iris_graph(clf):
    # Multinomial logistic regression: softmax(x W^T + b).
    w, b = clf.coef_, clf.intercept_  # [3, 4], [3]
    inputs, outputs = classifier_io("input", w.shape[1], w.shape[0])
    nodes = [helper.make_node("Gemm", ["input", "W", "B"], ["logits"], name="linear", transB=1)]
    nodes += head_nodes("logits")
    graph = helper.make_graph(
        nodes, "iris_logistic_regression", inputs, outputs, initializer=[f32("W", w), f32("B", b)]
    )
    graph.doc_string = "Multinomial logistic regression on the Iris measurements (cm)."
    return make_model(graph)


def digits_graph(clf, scale):
    # MLP: softmax(relu((x * scale) W1 + b1) W2 + b2); scaling is part of the graph
    # so clients send raw pixel counts.
    (w1, w2), (b1, b2) = clf.coefs_, clf.intercepts_  # [64, H], [H, 10]
    inputs, outputs = classifier_io("pixels", w1.shape[0], w2.shape[1])
    nodes = [
        helper.make_node("Mul", ["pixels", "scale"], ["scaled"], name="scale"),
        helper.make_node("Gemm", ["scaled", "W1", "B1"], ["hidden_pre"], name="dense1"),
        helper.make_node("Relu", ["hidden_pre"], ["hidden"], name="relu1"),
        helper.make_node("Gemm", ["hidden", "W2", "B2"], ["logits"], name="dense2"),
    ]
    nodes += head_nodes("logits")
    init = [f32("scale", [scale]), f32("W1", w1), f32("B1", b1), f32("W2", w2), f32("B2", b2)]
    graph = helper.make_graph(nodes, "digits_mlp", inputs, outputs, initializer=init)
    graph.doc_string = "MLP on 8x8 handwritten digits; input is raw pixel counts 0..16."
    return make_model(graph)


def run_graph(model, feeds):
    """Evaluate a saved graph with numpy. Supports exactly the operators the
    demo and benchmark graphs use, with the attributes they set."""
    env = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    env.update(feeds)
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        x = [env[name] for name in node.input]
        if node.op_type == "Gemm":
            a, b = x[0], x[1]
            if attrs.get("transA", 0):
                a = a.T
            if attrs.get("transB", 0):
                b = b.T
            y = attrs.get("alpha", 1.0) * (a @ b)
            if len(x) > 2:
                y = y + attrs.get("beta", 1.0) * x[2]
            out = y.astype(np.float32)
        elif node.op_type == "Mul":
            out = (x[0] * x[1]).astype(np.float32)
        elif node.op_type == "Relu":
            out = np.maximum(x[0], 0).astype(np.float32)
        elif node.op_type == "Softmax":
            axis = attrs.get("axis", -1)
            z = x[0] - x[0].max(axis=axis, keepdims=True)
            e = np.exp(z)
            out = (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)
        elif node.op_type == "ArgMax":
            out = np.argmax(x[0], axis=attrs.get("axis", 0)).astype(np.int64)
            if attrs.get("keepdims", 1):
                out = np.expand_dims(out, attrs.get("axis", 0))
        else:
            raise NotImplementedError(node.op_type)
        env[node.output[0]] = out
    return [env[o.name] for o in model.graph.output]


def verify(path, input_name, clf, x_test, y_test):
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    probs, labels = run_graph(model, {input_name: x_test.astype(np.float32)})
    want = clf.predict_proba(x_test)
    max_diff = float(np.abs(probs - want).max())
    if max_diff > 1e-5:
        raise SystemExit(f"{path}: probabilities differ from predict_proba by {max_diff}")
    if not np.array_equal(labels, clf.predict(x_test)):
        raise SystemExit(f"{path}: labels differ from predict")
    acc = accuracy_score(y_test, labels)
    print(f"{path}: {os.path.getsize(path)} bytes, graph matches sklearn (max |dp| = {max_diff:.2e}),"
          f" test accuracy {acc:.4f} ({int(round(acc * len(y_test)))}/{len(y_test)})")
    return acc, probs


# --------------------------------------------------------------------------- output


def cv_accuracy(make, x, y):
    """5-fold stratified cross-validated accuracy on all rows: a steadier number
    than one small test split."""
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED)
    scores = cross_val_score(make(), x, y, cv=folds, scoring="accuracy")
    return float(scores.mean()), float(scores.std())


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def number(v):
    """Render a float compactly for JSON (integers without a trailing .0)."""
    v = float(v)
    return int(v) if v.is_integer() else round(v, 6)


def write_example(path, input_name, row):
    body = {"inputs": [{"name": input_name, "shape": [1, len(row)], "datatype": "FP32",
                        "data": [number(v) for v in row]}]}
    write(path, json.dumps(body) + "\n")


def save(model, out, name):
    path = os.path.join(out, name, "1", "model.onnx")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    onnx.save(model, path)
    write(os.path.join(out, name, "config.yaml"), CONFIG_YAML)
    return path


def fmt_probs(p):
    return "[" + ", ".join(f"{v:.4f}" for v in p) + "]"


def train_iris(out):
    x, y, names = load_sklearn_csv(os.path.join(DATA, "iris.csv"))
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=SEED, stratify=y)
    def make():
        return LogisticRegression(C=1.0, max_iter=1000, random_state=SEED)

    clf = make().fit(x_tr, y_tr)
    cv_mean, cv_std = cv_accuracy(make, x, y)
    print(f"iris: 5-fold CV accuracy {cv_mean:.4f} ± {cv_std:.4f}")
    path = save(iris_graph(clf), out, "iris")
    acc, probs = verify(path, "input", clf, x_te, y_te)

    row = x_te[0]
    write_example(os.path.join(out, "iris", "example.json"), "input", row)
    label = int(np.argmax(probs[0]))
    readme = f"""# iris

Multinomial logistic regression (scikit-learn `LogisticRegression`, lbfgs, C=1) trained on
Fisher's Iris data: 4 measurements in centimetres (sepal length, sepal width, petal length,
petal width) → one of 3 species (0 `{names[0]}`, 1 `{names[1]}`, 2 `{names[2]}`).

- Data: `scripts/demo/data/iris.csv` (see `scripts/demo/data/README.md`), 150 rows, stratified
  70/30 split with seed {SEED}: {len(y_tr)} training rows, {len(y_te)} test rows.
- Test accuracy: **{acc:.4f}** ({int(round(acc * len(y_te)))}/{len(y_te)}); 5-fold cross-validated
  accuracy of the same recipe on all rows: {cv_mean:.4f} ± {cv_std:.4f}.
- Graph (`1/model.onnx`, ONNX opset {OPSET}, IR version {IR_VERSION}): `Gemm → Softmax → ArgMax`,
  verified against `predict_proba` on the test split by `scripts/demo/train_models.py`.

| | name | datatype | shape |
|---|---|---|---|
| input | `input` | FP32 | [-1, 4] |
| output | `probabilities` | FP32 | [-1, 3] |
| output | `label` | INT64 | [-1] |

Example (first test row, true class {int(y_te[0])} `{names[int(y_te[0])]}`; body in `example.json`):

```sh
curl -s localhost:8000/v2/models/iris/infer -d @models/iris/example.json
```

The model answers `label` = {label} (`{names[label]}`), `probabilities` ≈ {fmt_probs(probs[0])}.

Regenerate with `/usr/bin/python3 scripts/demo/train_models.py`.
"""
    write(os.path.join(out, "iris", "README.md"), readme)
    return acc


def train_digits(out):
    x, y = load_digits_csv(os.path.join(DATA, "digits.csv.gz"))
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=y)
    scale = 1.0 / 16.0  # pixels are counts 0..16; exact in float32
    def make():
        return MLPClassifier(hidden_layer_sizes=(64,), activation="relu", solver="adam", alpha=1e-4,
                             max_iter=500, random_state=SEED)

    clf = make().fit(x_tr * scale, y_tr)
    cv_mean, cv_std = cv_accuracy(make, x * scale, y)
    print(f"digits: 5-fold CV accuracy {cv_mean:.4f} ± {cv_std:.4f}")

    class Scaled:  # predict_proba/predict on raw pixels, as the graph sees them
        def predict_proba(self, v):
            return clf.predict_proba(v * scale)

        def predict(self, v):
            return clf.predict(v * scale)

    path = save(digits_graph(clf, scale), out, "digits")
    acc, probs = verify(path, "pixels", Scaled(), x_te, y_te)

    row = x_te[0]
    write_example(os.path.join(out, "digits", "example.json"), "pixels", row)
    label = int(np.argmax(probs[0]))
    art = "\n".join(
        "".join(" .:-=+*#%@@"[min(10, int(v) * 10 // 16)] * 2 for v in row[r * 8:(r + 1) * 8]).rstrip()
        for r in range(8))
    readme = f"""# digits

A small neural network (scikit-learn `MLPClassifier`: 64 → 64 ReLU → 10, adam, seed {SEED}) trained on
the UCI Optical Recognition of Handwritten Digits data: 8×8 images whose pixels count the "on"
pixels of a 4×4 block of the original 32×32 bitmap (integers 0..16) → the digit 0..9.

- Data: `scripts/demo/data/digits.csv.gz` (see `scripts/demo/data/README.md`), 1797 images,
  stratified 75/25 split with seed {SEED}: {len(y_tr)} training images, {len(y_te)} test images.
- Test accuracy: **{acc:.4f}** ({int(round(acc * len(y_te)))}/{len(y_te)}); 5-fold cross-validated
  accuracy of the same recipe on all rows: {cv_mean:.4f} ± {cv_std:.4f}.
- Graph (`1/model.onnx`, ONNX opset {OPSET}, IR version {IR_VERSION}):
  `Mul(1/16) → Gemm → Relu → Gemm → Softmax → ArgMax`; send raw pixel counts, row-major.
  Verified against `predict_proba` on the test split by `scripts/demo/train_models.py`.

| | name | datatype | shape |
|---|---|---|---|
| input | `pixels` | FP32 | [-1, 64] |
| output | `probabilities` | FP32 | [-1, 10] |
| output | `label` | INT64 | [-1] |

Example (first test image, a {int(y_te[0])}; body in `example.json`):

```
{art}
```

```sh
curl -s localhost:8000/v2/models/digits/infer -d @models/digits/example.json
```

The model answers `label` = {label}, with probability {probs[0][label]:.4f}.

Regenerate with `/usr/bin/python3 scripts/demo/train_models.py`.
"""
    write(os.path.join(out, "digits", "README.md"), readme)
    return acc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="models", help="model repository directory (default: models)")
    args = ap.parse_args()
    np.random.seed(SEED)
    train_iris(args.out)
    train_digits(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

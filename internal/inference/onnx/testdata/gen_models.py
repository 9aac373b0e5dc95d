#!/usr/bin/python3
"""Generate the tiny ONNX models the onnx backend's tests load.

Run from anywhere with Debian's python (onnx 1.12, numpy 1.24):

    /usr/bin/python3 internal/inference/onnx/testdata/gen_models.py

For every model NAME it writes NAME.onnx and NAME.json next to this file.
The JSON holds the metadata the backend must report (symbolic dims are -1)
and an example request with the numpy reference outputs. Each example
tensor carries "raw": base64 of Kiln's tensor layout (little-endian
elements; BOOL one byte each; FP16/BF16 their 16 bits; BYTES a 4-byte
little-endian length before each element), plus "data" for humans.
Batch models have 4 example rows; tests use the first n of them.

Models under unsupported/ load nowhere: the backend must reject them with
a clear error. Output is deterministic (seeded); rerunning rewrites
identical files.
"""

import base64
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = 13
ROWS = 4

DTYPES = {
    TensorProto.FLOAT: "FP32",
    TensorProto.DOUBLE: "FP64",
    TensorProto.INT32: "INT32",
    TensorProto.INT64: "INT64",
    TensorProto.BOOL: "BOOL",
    TensorProto.UINT8: "UINT8",
    TensorProto.FLOAT16: "FP16",
    TensorProto.BFLOAT16: "BF16",
    TensorProto.STRING: "BYTES",
}


def bf16_bits(a):
    """float32 values that bf16 represents exactly -> their 16-bit patterns."""
    a = np.asarray(a, dtype=np.float32)
    bits = a.view(np.uint32)
    assert not np.any(bits & 0xFFFF), "value not exactly representable in bf16"
    return (bits >> 16).astype(np.uint16)


def raw_bytes(dtype, value):
    """Kiln's little-endian layout for an example tensor."""
    if dtype == TensorProto.STRING:
        out = b""
        for s in np.asarray(value, dtype=object).ravel():
            b = s.encode("utf-8")
            out += len(b).to_bytes(4, "little") + b
        return out
    if dtype == TensorProto.BFLOAT16:
        return np.asarray(value, dtype="<u2").tobytes()  # already bit patterns
    np_type = {
        TensorProto.FLOAT: "<f4",
        TensorProto.DOUBLE: "<f8",
        TensorProto.INT32: "<i4",
        TensorProto.INT64: "<i8",
        TensorProto.BOOL: "u1",
        TensorProto.UINT8: "u1",
        TensorProto.FLOAT16: "<f2",
    }[dtype]
    return np.asarray(value).astype(np_type).tobytes()


def readable(dtype, value):
    a = np.asarray(value)
    if dtype == TensorProto.STRING:
        return [str(s) for s in a.ravel()]
    if dtype == TensorProto.BFLOAT16:
        return [float(v) for v in (a.astype(np.uint32) << 16).view(np.float32).ravel()]
    if dtype == TensorProto.BOOL:
        return [bool(v) for v in a.ravel()]
    if dtype in (TensorProto.INT32, TensorProto.INT64, TensorProto.UINT8):
        return [int(v) for v in a.ravel()]
    return [float(v) for v in a.ravel()]


def example_tensor(name, dtype, value):
    a = np.asarray(value)
    return {
        "name": name,
        "datatype": DTYPES[dtype],
        "shape": list(a.shape),
        "data": readable(dtype, a),
        "raw": base64.b64encode(raw_bytes(dtype, a)).decode("ascii"),
    }


def spec(name, dtype, shape):
    return {"name": name, "datatype": DTYPES[dtype], "shape": [d if isinstance(d, int) else -1 for d in shape]}


def save(name, nodes, inputs, outputs, feeds, results, initializers=(), subdir=""):
    """inputs/outputs: [(name, TensorProto type, shape)], shape dims int or a symbol."""
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="kiln-gen_models")
    model.ir_version = 8
    onnx.checker.check_model(model)
    directory = os.path.join(HERE, subdir)
    os.makedirs(directory, exist_ok=True)
    onnx.save(model, os.path.join(directory, name + ".onnx"))
    if subdir:
        return
    all_shapes = [s for _, _, s in inputs] + [s for _, _, s in outputs]
    ref = {
        "name": name,
        "batch_dim": all(len(s) > 0 and not isinstance(s[0], int) for s in all_shapes),
        "inputs": [spec(n, t, s) for n, t, s in inputs],
        "outputs": [spec(n, t, s) for n, t, s in outputs],
        "example": {
            "inputs": [example_tensor(n, t, feeds[n]) for n, t, _ in inputs],
            "outputs": [example_tensor(n, t, results[n]) for n, t, _ in outputs],
        },
    }
    with open(os.path.join(HERE, name + ".json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


def const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def affine(name, elem, np_type, x):
    """y = x * 2 + 1 on one batched input."""
    save(
        name,
        [helper.make_node("Mul", ["x", "two"], ["x2"]), helper.make_node("Add", ["x2", "one"], ["y"])],
        [("x", elem, ["batch", 4])],
        [("y", elem, ["batch", 4])],
        {"x": x},
        {"y": (x * np_type(2) + np_type(1)).astype(np_type)},
        [const("two", np.array(2, dtype=np_type)), const("one", np.array(1, dtype=np_type))],
    )


def main():
    rng = np.random.default_rng(20260101)

    affine("fp32", TensorProto.FLOAT, np.float32, rng.normal(size=(ROWS, 4)).astype(np.float32))
    affine("fp64", TensorProto.DOUBLE, np.float64, rng.normal(size=(ROWS, 4)))
    affine("int32", TensorProto.INT32, np.int32, rng.integers(-1000, 1000, size=(ROWS, 4), dtype=np.int32))
    affine("int64", TensorProto.INT64, np.int64,
           rng.integers(-(1 << 40), 1 << 40, size=(ROWS, 4), dtype=np.int64))

    # BOOL: two inputs, three outputs.
    a = rng.integers(0, 2, size=(ROWS, 3)).astype(bool)
    b = rng.integers(0, 2, size=(ROWS, 3)).astype(bool)
    save(
        "bool",
        [helper.make_node("Not", ["a"], ["not_a"]), helper.make_node("And", ["a", "b"], ["a_and_b"]),
         helper.make_node("Xor", ["a", "b"], ["a_xor_b"])],
        [("a", TensorProto.BOOL, ["batch", 3]), ("b", TensorProto.BOOL, ["batch", 3])],
        [("not_a", TensorProto.BOOL, ["batch", 3]), ("a_and_b", TensorProto.BOOL, ["batch", 3]),
         ("a_xor_b", TensorProto.BOOL, ["batch", 3])],
        {"a": a, "b": b},
        {"not_a": ~a, "a_and_b": a & b, "a_xor_b": a ^ b},
    )

    # UINT8: y = uint8(int32(x) * 2 + 1); x <= 100 so nothing wraps.
    x = rng.integers(0, 101, size=(ROWS, 4), dtype=np.uint8)
    save(
        "uint8",
        [helper.make_node("Cast", ["x"], ["xi"], to=TensorProto.INT32),
         helper.make_node("Mul", ["xi", "two"], ["x2"]), helper.make_node("Add", ["x2", "one"], ["yi"]),
         helper.make_node("Cast", ["yi"], ["y"], to=TensorProto.UINT8)],
        [("x", TensorProto.UINT8, ["batch", 4])],
        [("y", TensorProto.UINT8, ["batch", 4])],
        {"x": x},
        {"y": (x.astype(np.int32) * 2 + 1).astype(np.uint8)},
        [const("two", np.array(2, dtype=np.int32)), const("one", np.array(1, dtype=np.int32))],
    )

    # FP16: y = fp16(float(x) * 2 + 1), with a dynamic batch dimension, so
    # the backend must derive the output shape to pre-allocate it.
    x = (rng.integers(-64, 64, size=(ROWS, 4)) / 8).astype(np.float16)
    cast_chain = [
        helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["xf", "two"], ["x2"]), helper.make_node("Add", ["x2", "one"], ["yf"]),
    ]
    f32_consts = [const("two", np.array(2, dtype=np.float32)), const("one", np.array(1, dtype=np.float32))]
    save(
        "fp16",
        cast_chain + [helper.make_node("Cast", ["yf"], ["y"], to=TensorProto.FLOAT16)],
        [("x", TensorProto.FLOAT16, ["batch", 4])],
        [("y", TensorProto.FLOAT16, ["batch", 4])],
        {"x": x},
        {"y": (x.astype(np.float32) * 2 + 1).astype(np.float16)},
        f32_consts,
    )

    # BF16: the same with values bf16 represents exactly (numpy has no bf16).
    xf = (rng.integers(-64, 64, size=(ROWS, 4)) / 4).astype(np.float32)
    save(
        "bf16",
        cast_chain + [helper.make_node("Cast", ["yf"], ["y"], to=TensorProto.BFLOAT16)],
        [("x", TensorProto.BFLOAT16, ["batch", 4])],
        [("y", TensorProto.BFLOAT16, ["batch", 4])],
        {"x": bf16_bits(xf)},
        {"y": bf16_bits(xf * 2 + 1)},
        f32_consts,
    )

    # Several inputs and outputs of two types.
    a = rng.normal(size=(ROWS, 3)).astype(np.float32)
    b = rng.normal(size=(ROWS, 3)).astype(np.float32)
    c = rng.integers(-50, 50, size=(ROWS, 2), dtype=np.int64)
    save(
        "multi",
        [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Mul", ["a", "b"], ["product"]),
         helper.make_node("Add", ["c", "one"], ["c_plus_one"])],
        [("a", TensorProto.FLOAT, ["batch", 3]), ("b", TensorProto.FLOAT, ["batch", 3]),
         ("c", TensorProto.INT64, ["batch", 2])],
        [("sum", TensorProto.FLOAT, ["batch", 3]), ("product", TensorProto.FLOAT, ["batch", 3]),
         ("c_plus_one", TensorProto.INT64, ["batch", 2])],
        {"a": a, "b": b, "c": c},
        {"sum": a + b, "product": a * b, "c_plus_one": c + 1},
        [const("one", np.array(1, dtype=np.int64))],
    )

    # 0-d tensors: a scalar input and a scalar output; no batch dimension.
    x = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    s = np.array(2.5, dtype=np.float32)
    save(
        "scalar",
        [helper.make_node("ReduceSum", ["x"], ["sx"], keepdims=0), helper.make_node("Mul", ["sx", "s"], ["total"]),
         helper.make_node("Mul", ["x", "s"], ["scaled"])],
        [("x", TensorProto.FLOAT, [3]), ("s", TensorProto.FLOAT, [])],
        [("total", TensorProto.FLOAT, []), ("scaled", TensorProto.FLOAT, [3])],
        {"x": x, "s": s},
        {"total": np.float32(x.sum(dtype=np.float32) * s), "scaled": x * s},
    )

    # No inputs at all: constants, one of them a scalar.
    c = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    n = np.array(42, dtype=np.int64)
    save(
        "constant",
        [helper.make_node("Constant", [], ["c"], value=const("cv", c)),
         helper.make_node("Constant", [], ["n"], value=const("nv", n))],
        [],
        [("c", TensorProto.FLOAT, [2, 3]), ("n", TensorProto.INT64, [])],
        {},
        {"c": c, "n": n},
    )

    # Strings (BYTES) through Identity.
    words = np.array([["hello", ""], ["héllo wörld", "a"], ["kiln", "x" * 40], ["", "tab\tand\nnewline"]], dtype=object)
    save(
        "strings",
        [helper.make_node("Identity", ["x"], ["y"])],
        [("x", TensorProto.STRING, ["batch", 2])],
        [("y", TensorProto.STRING, ["batch", 2])],
        {"x": words},
        {"y": words},
    )

    # The MLP 64 -> 256 -> 256 -> 10 (Gemm + Relu; W as [in, out]).
    sizes = [64, 256, 256, 10]
    nodes, inits, prev = [], [], "input"
    weights = []
    for i in range(3):
        w = (rng.normal(size=(sizes[i], sizes[i + 1])) / np.sqrt(sizes[i])).astype(np.float32)
        bias = (rng.normal(size=(sizes[i + 1],)) * 0.1).astype(np.float32)
        weights.append((w, bias))
        inits += [const(f"W{i}", w), const(f"b{i}", bias)]
        g = "output" if i == 2 else f"g{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"W{i}", f"b{i}"], [g]))
        if i < 2:
            nodes.append(helper.make_node("Relu", [g], [f"r{i}"]))
            prev = f"r{i}"
    x = rng.normal(size=(ROWS, 64)).astype(np.float32)
    h = x
    for i, (w, bias) in enumerate(weights):
        h = h @ w + bias
        if i < 2:
            h = np.maximum(h, 0)
    save("mlp", nodes, [("input", TensorProto.FLOAT, ["batch", 64])], [("output", TensorProto.FLOAT, ["batch", 10])],
         {"input": x}, {"output": h.astype(np.float32)}, inits)

    # Models the backend must reject at load, each for one reason.
    bad = "unsupported"
    save("sequence_output", [helper.make_node("SequenceConstruct", ["x"], ["seq"])],
         [("x", TensorProto.FLOAT, [3])], [], {}, {}, subdir=bad)
    # make_tensor_value_info cannot express a sequence; patch the output in.
    path = os.path.join(HERE, bad, "sequence_output.onnx")
    m = onnx.load(path)
    m.graph.output.append(helper.make_value_info(
        "seq", helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [3]))))
    onnx.checker.check_model(m)
    onnx.save(m, path)
    save("fp16_dynamic", [helper.make_node("Identity", ["x"], ["y"])],
         [("x", TensorProto.FLOAT16, ["n", "m"])], [("y", TensorProto.FLOAT16, ["n", "m"])], {}, {}, subdir=bad)
    save("fp16_scalar", [helper.make_node("Identity", ["x"], ["y"])],
         [("x", TensorProto.FLOAT16, [])], [("y", TensorProto.FLOAT16, [])], {}, {}, subdir=bad)
    save("string_scalar", [helper.make_node("Identity", ["x"], ["y"])],
         [("x", TensorProto.STRING, [])], [("y", TensorProto.STRING, [])], {}, {}, subdir=bad)
    # An element type Kiln has no datatype for but ORT loads: FLOAT8E4M3FN
    # (enum 17, opset 19). onnx 1.12 predates it, so write the enum by hand
    # and skip the checker. (ORT refuses complex64 itself at load.)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    x.type.tensor_type.elem_type = y.type.tensor_type.elem_type = 17
    m = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "float8_input", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 19)], producer_name="kiln-gen_models")
    m.ir_version = 9
    onnx.save(m, os.path.join(HERE, bad, "float8_input.onnx"))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Generate the benchmark models into a directory (default: bench/models).

  mlp.onnx                 MLP 64 -> 256 -> 256 -> 10 (Gemm + Relu), seeded random weights
                           input "input" FP32 [batch, 64], output "output" FP32 [batch, 10]
                           ONNX opset 13, IR version 8. Needs numpy and onnx only.
  mlp.npz                  the same weights (w1, b1, w2, b2, w3, b3; w as [in, out]) for peers
                           that build the MLP themselves.

With --resnet (needs torch and torchvision):

  resnet18.onnx            torchvision resnet18(weights=None) after torch.manual_seed(0), eval mode,
                           exported with torch.onnx.export, opset 13,
                           input "input" FP32 [batch, 3, 224, 224], output "logits" FP32 [batch, 1000]
  resnet18.pt              the same weights as TorchScript (torch.jit.trace), for libtorch / TorchServe
  resnet18_state_dict.pt   the same weights as a state_dict, for a plain PyTorch peer:
                           m = torchvision.models.resnet18(weights=None); m.load_state_dict(torch.load(p))

The MLP is always written (skip it with --no-mlp). If --resnet is given and torch or
torchvision cannot be imported, the script says so and exits with status 3 after
writing the MLP. Files are overwritten; generated models are not committed
(bench/models/ is in .gitignore).

    /usr/bin/python3 scripts/bench/gen_models.py [--out bench/models] [--resnet] [--no-mlp]
"""

import argparse
import hashlib
import inspect
import os
import sys

SEED = 0
OPSET = 13
IR_VERSION = 8
MLP_LAYERS = (64, 256, 256, 10)


def describe(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    print(f"wrote {path} ({os.path.getsize(path)} bytes, sha256 {h.hexdigest()})")


def mlp_weights():
    import numpy as np

    rng = np.random.default_rng(SEED)
    params = {}
    for i, (n_in, n_out) in enumerate(zip(MLP_LAYERS[:-1], MLP_LAYERS[1:]), start=1):
        # He-normal weights keep activations in a sane range through the ReLUs.
        params[f"w{i}"] = (rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(np.float32)
        params[f"b{i}"] = (rng.standard_normal(n_out) * 0.01).astype(np.float32)
    return params


def mlp_model(params):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n_layers = len(MLP_LAYERS) - 1
    nodes, init = [], []
    x = "input"
    for i in range(1, n_layers + 1):
        w, b = f"w{i}", f"b{i}"
        init += [numpy_helper.from_array(params[w], w.upper()), numpy_helper.from_array(params[b], b.upper())]
        last = i == n_layers
        y = "output" if last else f"dense{i}"
        nodes.append(helper.make_node("Gemm", [x, w.upper(), b.upper()], [y], name=f"dense{i}"))
        if not last:
            nodes.append(helper.make_node("Relu", [y], [f"relu{i}"], name=f"relu{i}"))
            y = f"relu{i}"
        x = y
    graph = helper.make_graph(
        nodes,
        "bench_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", MLP_LAYERS[0]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", MLP_LAYERS[-1]])],
        initializer=init,
    )
    graph.doc_string = "Benchmark MLP 64-256-256-10 with seeded random weights (seed %d)." % SEED
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="kiln-bench", producer_version="1")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def write_mlp(out):
    import numpy as np
    import onnx

    params = mlp_weights()
    path = os.path.join(out, "mlp.onnx")
    onnx.save(mlp_model(params), path)
    describe(path)
    npz = os.path.join(out, "mlp.npz")
    np.savez(npz, **params)
    describe(npz)

    # Sanity check: the reference forward pass on a seeded batch gives finite,
    # non-constant logits of the right shape.
    x = np.random.default_rng(SEED + 1).standard_normal((4, MLP_LAYERS[0])).astype(np.float32)
    h = x
    for i in range(1, len(MLP_LAYERS)):
        h = h @ params[f"w{i}"] + params[f"b{i}"]
        if i < len(MLP_LAYERS) - 1:
            h = np.maximum(h, 0)
    assert h.shape == (4, MLP_LAYERS[-1]) and np.isfinite(h).all() and h.std() > 0


def write_resnet(out):
    try:
        import torch
        import torchvision
    except ImportError as err:
        print(f"gen_models: --resnet needs torch and torchvision ({err}); "
              "install them (e.g. pip install torch torchvision --index-url "
              "https://download.pytorch.org/whl/cpu) and rerun. ResNet-18 was NOT generated.",
              file=sys.stderr)
        return False

    torch.manual_seed(SEED)
    model = torchvision.models.resnet18(weights=None)
    model.eval()
    example = torch.randn(1, 3, 224, 224)

    onnx_path = os.path.join(out, "resnet18.onnx")
    extra = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        # Newer torch defaults to the dynamo exporter, which targets opset >= 18;
        # the TorchScript-based exporter honours opset 13 and dynamic_axes.
        extra["dynamo"] = False
    with torch.no_grad():
        torch.onnx.export(
            model,
            (example,),
            onnx_path,
            opset_version=OPSET,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            do_constant_folding=True,
            **extra,
        )
    describe(onnx_path)

    ts_path = os.path.join(out, "resnet18.pt")
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
    traced.save(ts_path)
    describe(ts_path)

    sd_path = os.path.join(out, "resnet18_state_dict.pt")
    torch.save(model.state_dict(), sd_path)
    describe(sd_path)

    # The three artifacts must agree on a batch of two.
    batch = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        want = model(batch)
        got = torch.jit.load(ts_path)(batch)
    if not torch.allclose(want, got, atol=1e-4):
        raise SystemExit("gen_models: TorchScript output differs from the eager model")
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError:
        print("gen_models: onnxruntime not importable; skipped checking resnet18.onnx against torch")
    else:
        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        (ort_out,) = sess.run(["logits"], {"input": batch.numpy()})
        diff = float(np.abs(ort_out - want.numpy()).max())
        if diff > 1e-3:
            raise SystemExit(f"gen_models: resnet18.onnx differs from torch by {diff}")
        print(f"resnet18.onnx matches torch (max |diff| = {diff:.2e})")
    return True


def main():
    ap = argparse.ArgumentParser(description="Generate Kiln's benchmark models.")
    ap.add_argument("--out", default=os.path.join("bench", "models"), help="output directory")
    ap.add_argument("--resnet", action="store_true", help="also generate ResNet-18 (needs torch, torchvision)")
    ap.add_argument("--no-mlp", action="store_true", help="do not generate the MLP")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    if not args.no_mlp:
        write_mlp(args.out)
    if args.resnet and not write_resnet(args.out):
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())

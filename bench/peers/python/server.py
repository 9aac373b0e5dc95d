"""Benchmark peer: the seed's approach to serving.

An aiohttp (asyncio) server that speaks Open Inference Protocol v2 JSON and
calls a PyTorch model once per request, on the event loop, with the same
weights as the ONNX models Kiln serves:

  --model mlp       the MLP 64-256-256-10 rebuilt from mlp.npz
  --model resnet18  torchvision resnet18 with resnet18_state_dict.pt

Threads are pinned: torch.set_num_threads(--threads), one inter-op thread,
and OPENBLAS_NUM_THREADS / OMP_NUM_THREADS set to --threads before torch is
imported (Debian's torch calls OpenBLAS for Linear layers).

    python3 bench/peers/python/server.py --model mlp --weights bench/models/mlp.npz --port 9300 --threads 2
"""

import argparse
import os
import sys


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["mlp", "resnet18"], required=True)
    ap.add_argument("--name", help="served model name (default: --model)")
    ap.add_argument("--weights", required=True, help="mlp.npz or resnet18_state_dict.pt")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9300)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op (and BLAS/OpenMP) threads")
    return ap.parse_args()


ARGS = parse_args()
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from aiohttp import web  # noqa: E402


def build_mlp(path):
    p = np.load(path)
    layers = []
    i = 1
    while f"w{i}" in p:
        w, b = p[f"w{i}"], p[f"b{i}"]  # w is [in, out]
        lin = torch.nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if f"w{i + 1}" in p:
            layers.append(torch.nn.ReLU())
        i += 1
    meta_in = [{"name": "input", "datatype": "FP32", "shape": [-1, int(p["w1"].shape[0])]}]
    meta_out = [{"name": "output", "datatype": "FP32", "shape": [-1, int(p[f"w{i - 1}"].shape[1])]}]
    return torch.nn.Sequential(*layers), meta_in, meta_out


def build_resnet18(path):
    import torchvision

    m = torchvision.models.resnet18(weights=None)
    m.load_state_dict(torch.load(path))
    meta_in = [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]}]
    meta_out = [{"name": "logits", "datatype": "FP32", "shape": [-1, 1000]}]
    return m, meta_in, meta_out


def main():
    torch.set_num_threads(ARGS.threads)
    torch.set_num_interop_threads(1)
    name = ARGS.name or ARGS.model
    model, meta_in, meta_out = (build_mlp if ARGS.model == "mlp" else build_resnet18)(ARGS.weights)
    model.eval()
    out_name = meta_out[0]["name"]
    metadata = {"name": name, "versions": ["1"], "platform": "pytorch_torch", "inputs": meta_in, "outputs": meta_out}

    async def health(_request):
        return web.json_response({"live": True, "ready": True})

    async def model_metadata(_request):
        return web.json_response(metadata)

    async def infer(request):
        try:
            body = await request.json()
            inp = body["inputs"][0]
            x = torch.tensor(inp["data"], dtype=torch.float32).reshape(inp["shape"])
            with torch.inference_mode():
                y = model(x)
            out = {"name": out_name, "datatype": "FP32", "shape": list(y.shape), "data": y.flatten().tolist()}
            answer = {"model_name": name, "model_version": "1", "outputs": [out]}
            if "id" in body:
                answer["id"] = body["id"]
            return web.json_response(answer)
        except Exception as err:  # noqa: BLE001 - report any failure as a 400 like the seed did
            return web.json_response({"error": str(err)}, status=400)

    app = web.Application(client_max_size=1 << 30)
    app.router.add_get("/v2/health/live", health)
    app.router.add_get("/v2/health/ready", health)
    app.router.add_get(f"/v2/models/{name}", model_metadata)
    app.router.add_post(f"/v2/models/{name}/infer", infer)
    print(f"python peer: {name} on http://{ARGS.host}:{ARGS.port} (torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)", file=sys.stderr, flush=True)
    web.run_app(app, host=ARGS.host, port=ARGS.port, print=None, access_log=None)


if __name__ == "__main__":
    main()

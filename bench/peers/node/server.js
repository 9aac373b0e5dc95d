// Benchmark peer: an Open Inference Protocol v2 JSON server on
// onnxruntime-node (the same ONNX Runtime 1.30 library Kiln loads).
// One session; every request is one session.run of that request's inputs.
//
//   node server.js --model-path ../../models/mlp.onnx --model mlp --port 9200 --intra-op 2
//
// Endpoints: GET /v2/health/live, /v2/health/ready, /v2/models/{m};
// POST /v2/models/{m}/infer with JSON tensors (FP32, INT32, INT64).
'use strict';

const http = require('node:http');
const ort = require('onnxruntime-node');

function parseArgs(argv) {
  const args = { host: '127.0.0.1', port: 9200, model: 'mlp', modelPath: '', intraOp: 1, interOp: 1 };
  for (let i = 2; i < argv.length; i += 2) {
    const k = argv[i], v = argv[i + 1];
    switch (k) {
      case '--host': args.host = v; break;
      case '--port': args.port = Number(v); break;
      case '--model': args.model = v; break;
      case '--model-path': args.modelPath = v; break;
      case '--intra-op': args.intraOp = Number(v); break;
      case '--inter-op': args.interOp = Number(v); break;
      default: throw new Error(`unknown flag ${k}`);
    }
  }
  if (!args.modelPath) throw new Error('--model-path is required');
  return args;
}

const typed = {
  FP32: { ort: 'float32', array: Float32Array },
  INT32: { ort: 'int32', array: Int32Array },
  INT64: { ort: 'int64', array: BigInt64Array },
};
const datatypeOf = { float32: 'FP32', int32: 'INT32', int64: 'INT64' };

function send(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function toTensor(input) {
  const t = typed[input.datatype];
  if (!t) throw new Error(`input ${input.name}: unsupported datatype ${input.datatype}`);
  let data = input.data;
  if (!Array.isArray(data)) throw new Error(`input ${input.name}: data must be an array`);
  if (data.length > 0 && Array.isArray(data[0])) data = data.flat(Infinity);
  const arr = t.array === BigInt64Array ? BigInt64Array.from(data, (x) => BigInt(x)) : t.array.from(data);
  return new ort.Tensor(t.ort, arr, input.shape);
}

function toOutput(name, tensor) {
  let data = Array.from(tensor.data);
  if (tensor.type === 'int64') data = data.map(Number);
  return { name, datatype: datatypeOf[tensor.type] || tensor.type, shape: tensor.dims, data };
}

function metadata(args, session) {
  const describe = (names, meta) => names.map((name, i) => {
    const m = meta && meta[i];
    const shape = m && m.shape ? m.shape.map((d) => (typeof d === 'number' ? d : -1)) : [];
    return { name, datatype: m && m.type ? datatypeOf[m.type] || m.type : 'FP32', shape };
  });
  return {
    name: args.model, versions: ['1'], platform: 'onnxruntime_onnx',
    inputs: describe(session.inputNames, session.inputMetadata),
    outputs: describe(session.outputNames, session.outputMetadata),
  };
}

async function main() {
  const args = parseArgs(process.argv);
  const session = await ort.InferenceSession.create(args.modelPath, {
    intraOpNumThreads: args.intraOp,
    interOpNumThreads: args.interOp,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const meta = metadata(args, session);
  const base = `/v2/models/${args.model}`;
  const server = http.createServer(async (req, res) => {
    try {
      if (req.method === 'GET' && (req.url === '/v2/health/live' || req.url === '/v2/health/ready')) {
        return send(res, 200, { live: true, ready: true });
      }
      if (req.method === 'GET' && (req.url === base || req.url === `${base}/versions/1`)) {
        return send(res, 200, meta);
      }
      if (req.method !== 'POST' || (req.url !== `${base}/infer` && req.url !== `${base}/versions/1/infer`)) {
        return send(res, 404, { error: `no route ${req.method} ${req.url}` });
      }
      const body = JSON.parse(await readBody(req));
      const feeds = {};
      for (const input of body.inputs || []) feeds[input.name] = toTensor(input);
      const results = await session.run(feeds);
      const outputs = session.outputNames.map((n) => toOutput(n, results[n]));
      const answer = { model_name: args.model, model_version: '1', outputs };
      if (body.id !== undefined) answer.id = body.id;
      return send(res, 200, answer);
    } catch (err) {
      return send(res, 400, { error: String(err && err.message ? err.message : err) });
    }
  });
  server.keepAliveTimeout = 60000;
  server.listen(args.port, args.host, () => {
    console.error(`node peer: ${args.model} on http://${args.host}:${server.address().port} (onnxruntime-node ${require('onnxruntime-node/package.json').version}, intra-op ${args.intraOp})`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  console.error('node peer:', err);
  process.exit(1);
});

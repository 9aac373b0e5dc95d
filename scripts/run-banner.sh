#!/usr/bin/env bash
# Printed by `make run` before Kiln starts.
cat <<'TXT'

  Kiln is starting with the demo models in ./models (iris, digits).
  HTTP API:  http://127.0.0.1:8000/v2        metrics: http://127.0.0.1:8000/metrics
  Try, from another terminal:

    curl -s localhost:8000/v2/models/iris/infer -d @models/iris/example.json
    curl -s localhost:8000/v2/models/digits/infer -d @models/digits/example.json

  Stop with Ctrl-C.

TXT

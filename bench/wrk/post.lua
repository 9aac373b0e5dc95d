-- wrk script for the benchmark cross-check: POST the same OIP v2 JSON
-- inference request on every connection and request. The body is read
-- from the file named by the WRK_BODY_FILE environment variable (the
-- harness writes the exact body `kiln bench` sends).
--
--   WRK_BODY_FILE=body.json wrk -t2 -c64 -d10s --latency -s bench/wrk/post.lua \
--       http://127.0.0.1:8000/v2/models/mlp/infer
local path = os.getenv("WRK_BODY_FILE")
assert(path, "set WRK_BODY_FILE to the request body file")
local f = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"


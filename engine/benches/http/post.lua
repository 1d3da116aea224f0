-- wrk script: POST the one-row OIP infer body in body.json (next to this file).
-- wrk counts answers with status > 399 in summary.errors.status; done() prints that count
-- so a fast stream of 4xx never passes for throughput. (No per-response callback: it would
-- make wrk itself the bottleneck.)
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local f = assert(io.open(dir .. "body.json", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a"):gsub("%s+$", "")
f:close()
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  io.write(string.format("non-2xx/3xx responses: %d, socket errors: connect %d read %d write %d timeout %d\n",
    summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout))
end

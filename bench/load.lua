-- wrk script for bench/load.py: GET the paths in LOAD_PATHS (space-separated, from the environment) in turn,
-- with the headers given by -H (the session cookie). done() prints one line, LOAD_RESULT {json}, with the request
-- count, the errors by kind (wrk counts statuses >= 400 as "status" errors), the redirects (a lost session shows
-- up as redirects to the login page) and latency percentiles in microseconds.

local paths = {}
for path in string.gmatch(os.getenv("LOAD_PATHS") or "/", "%S+") do
  table.insert(paths, path)
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  redirects = 0
end

function request()
  counter = counter + 1
  return wrk.format("GET", paths[(counter % #paths) + 1])
end

function response(status, headers, body)
  if status >= 300 and status < 400 then
    redirects = redirects + 1
  end
end

function done(summary, latency, requests)
  local total_redirects = 0
  for _, thread in ipairs(threads) do
    total_redirects = total_redirects + thread:get("redirects")
  end
  local errors = summary.errors
  io.write(string.format(
    'LOAD_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "timeouts": %d, "status_errors": %d, "redirects": %d, "p50_us": %d, "p95_us": %d, ' ..
    '"p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, errors.connect, errors.read, errors.write, errors.timeout,
    errors.status, total_redirects, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max))
end

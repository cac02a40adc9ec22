-- wrk script: after the run, print one machine-readable line with the counts and the
-- latency percentiles wrk's --latency output lacks (p99.9, p99.99). Latencies are in µs.
-- Defines no request()/response() hooks (so wrk keeps its fast path) unless BENCH_UNIQUE_QUERY is
-- set: then every request gets its own query string (`?u=<thread>-<n>`), which makes each one a cache
-- miss for a proxy cache keyed by URI.
if os.getenv("BENCH_UNIQUE_QUERY") == "1" then
  local n = 0
  local tag = tostring(math.random(1, 1e9))
  request = function()
    n = n + 1
    return wrk.format(nil, wrk.path .. "?u=" .. tag .. "-" .. n)
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"lat_mean_us":%.1f,"lat_max_us":%d,"p50_us":%d,"p75_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"p999_us":%d,"p9999_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency:percentile(99.99)))
end

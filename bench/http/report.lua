-- report.lua — wrk script for the HTTP benchmark (bench/http/run.py).
-- Sends wrk's fixed request (a GET) and, when the run ends, prints one line
--   WRKJSON {"requests":…, "duration_us":…, "bytes":…, "errors":{…}, "latency_us":{…}}
-- that the driver parses. put.lua loads this file for the same report.

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max))
end

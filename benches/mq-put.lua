-- mq-put.lua: MQ put rows of benches/http.sh (mq mode, mq-api.md §4.1).
--   wrk -t2 -c100 -d4s --latency -s mq-put.lua URL_BASE -- SIZE QUEUE
-- Each request is  POST <path of URL_BASE>/put?queue=<QUEUE>  with a SIZE-byte body: one
-- durable enqueue. The same script is run against the nginx yardstick (empty 200).

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("hb_tid", #threads)
end

local req

function init(args)
   local size = tonumber(args[1] or "256")
   local queue = args[2] or "bench"
   local base = (wrk.path or "/"):gsub("/+$", "")
   local unit = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
   local body = string.rep(unit, math.floor(size / #unit) + 1):sub(1, size)
   req = "POST " .. base .. "/put?queue=" .. queue .. " HTTP/1.1\r\n" ..
         "Host: " .. (wrk.headers["Host"] or wrk.host) .. "\r\n" ..
         "Content-Type: application/octet-stream\r\n" ..
         "Content-Length: " .. size .. "\r\n\r\n" .. body
end

function request()
   return req
end

function done(summary, latency, requests)
   local secs = summary.duration / 1e6
   local e = summary.errors
   io.write(string.format(
      "HB_RESULT qps=%.1f p50_us=%d p99_us=%d max_us=%d reqs=%d non2xx=%d sockerr=%d bytes=%d\n",
      summary.requests / secs, latency:percentile(50), latency:percentile(99), latency.max,
      summary.requests, e.status, e.connect + e.read + e.write + e.timeout, summary.bytes))
end

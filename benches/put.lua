-- put.lua: PUT rows of benches/http.sh (adapted from ../shared/bench/put.lua).
--   wrk -t2 -c100 -d4s --latency -s put.lua URL_BASE -- SIZE [PREFIX] [NKEYS]
-- Each request is  POST <path of URL_BASE>/put?key=...  with a SIZE-byte body.
--   NKEYS absent or 0: key = <PREFIX><SIZE>_<thread>_<random in 1..1e9>, so practically every
--                      PUT is an insert (the plain PUT rows);
--   NKEYS > 0:         key = <PREFIX><random in 0..NKEYS-1>, an overwrite of a preloaded key
--                      (the "N keys in the store" rows: the store keeps its size).
-- The same script is run against the nginx `return 200` yardstick (URL_BASE ending in /s<SIZE>),
-- so the client-side cost is the same on both sides of the ratio.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("hb_tid", #threads)
end

local pre, post, nkeys

function init(args)
   local size = tonumber(args[1] or "256")
   local prefix = args[2] or ""
   nkeys = tonumber(args[3] or "0") or 0
   local base = (wrk.path or "/"):gsub("/+$", "")
   math.randomseed(os.time() * 1000 + (hb_tid or 0) * 7919)
   math.random(); math.random()
   local unit = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
   local body = string.rep(unit, math.floor(size / #unit) + 1):sub(1, size)
   if nkeys > 0 then
      pre = "POST " .. base .. "/put?key=" .. prefix
   else
      if prefix == "" then prefix = "p" end
      pre = "POST " .. base .. "/put?key=" .. prefix .. size .. "_" .. (hb_tid or 0) .. "_"
   end
   post = " HTTP/1.1\r\nHost: " .. (wrk.headers["Host"] or wrk.host) .. "\r\n" ..
          "Content-Type: application/octet-stream\r\n" ..
          "Content-Length: " .. size .. "\r\n\r\n" .. body
end

function request()
   if nkeys > 0 then
      return pre .. math.random(0, nkeys - 1) .. post
   end
   return pre .. math.random(1, 1000000000) .. post
end

function done(summary, latency, requests)
   local secs = summary.duration / 1e6
   local e = summary.errors
   io.write(string.format(
      "HB_RESULT qps=%.1f p50_us=%d p99_us=%d max_us=%d reqs=%d non2xx=%d sockerr=%d bytes=%d\n",
      summary.requests / secs, latency:percentile(50), latency:percentile(99), latency.max,
      summary.requests, e.status, e.connect + e.read + e.write + e.timeout, summary.bytes))
end

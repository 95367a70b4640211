-- get.lua: GET rows of benches/http.sh (adapted from ../shared/bench/get.lua).
--   wrk -t2 -c100 -d4s --latency -s get.lua URL_BASE -- PREFIX NKEYS
-- Each request is  GET <path of URL_BASE>/get?key=<PREFIX><i>  with i uniform in [0, NKEYS).
-- The keys must have been preloaded (http.sh does it with preload.lua). Up to 100,000 keys
-- the requests are pre-formatted in init() (one table lookup per request); above that they
-- are built per request (one string concatenation), so 1M keys do not cost wrk 100 MB per
-- thread. The same script, with the same arguments, is run against the nginx yardstick.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("hb_tid", #threads)
end

local reqs, nkeys, pre, post

function init(args)
   local prefix = args[1] or "g"
   nkeys = tonumber(args[2] or "1000")
   local base = (wrk.path or "/"):gsub("/+$", "")
   math.randomseed(os.time() * 1000 + (hb_tid or 0) * 7919)
   math.random(); math.random()
   pre = "GET " .. base .. "/get?key=" .. prefix
   post = " HTTP/1.1\r\nHost: " .. (wrk.headers["Host"] or wrk.host) .. "\r\n\r\n"
   if nkeys <= 100000 then
      reqs = {}
      for i = 0, nkeys - 1 do
         reqs[i + 1] = pre .. i .. post
      end
   end
end

function request()
   if reqs then
      return reqs[math.random(1, nkeys)]
   end
   return pre .. math.random(0, nkeys - 1) .. post
end

function done(summary, latency, requests)
   local secs = summary.duration / 1e6
   local e = summary.errors
   io.write(string.format(
      "HB_RESULT qps=%.1f p50_us=%d p99_us=%d max_us=%d reqs=%d non2xx=%d sockerr=%d bytes=%d\n",
      summary.requests / secs, latency:percentile(50), latency:percentile(99), latency.max,
      summary.requests, e.status, e.connect + e.read + e.write + e.timeout, summary.bytes))
end

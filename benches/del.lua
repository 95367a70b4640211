-- del.lua: DEL rows of benches/http.sh.
--   wrk -t2 -c100 -d4s --latency -s del.lua URL_BASE -- PREFIX NKEYS NTHREADS [MARKER]
-- Each request is  GET <path of URL_BASE>/del?key=<PREFIX><i>. Thread t (1..NTHREADS) walks
-- i = t-1, t-1+NTHREADS, ... < NKEYS, so every preloaded key is deleted exactly once and no
-- delete finds its key gone (that would be a cheap 404). A thread that has sent all its keys
-- asks for GET <path>/status.html (not counted) until all its deletes are answered, then
-- stops and creates <MARKER>.<t>; http.sh ends wrk with SIGINT once every thread is done, so
-- a row is shorter than -d when the keys run out first (wrk's duration is the real one).
-- The nginx yardstick answers the same requests with an empty 200.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("hb_tid", #threads)
end

local pre, post, filler, i, nkeys, step, mine, answered, fillers, marker, primed, stopped

function init(args)
   local prefix = args[1] or "d"
   nkeys = tonumber(args[2] or "1000")
   step = tonumber(args[3] or "2")
   marker = args[4]
   i = (hb_tid or 1) - 1
   mine = 0
   if i < nkeys then mine = math.floor((nkeys - 1 - i) / step) + 1 end
   answered, fillers = 0, 0
   local base = (wrk.path or "/"):gsub("/+$", "")
   local host = wrk.headers["Host"] or wrk.host
   pre = "GET " .. base .. "/del?key=" .. prefix
   post = " HTTP/1.1\r\nHost: " .. host .. "\r\n\r\n"
   filler = "GET " .. base .. "/status.html HTTP/1.1\r\nHost: " .. host .. "\r\n\r\n"
end

local function finish()
   if stopped then return end
   stopped = true
   if marker and marker ~= "" then
      local f = io.open(marker .. "." .. (hb_tid or 1), "w")
      if f then f:write(answered, "\n"); f:close() end
   end
   wrk.thread:stop()
end

function request()
   -- wrk 4 calls request() once in the first thread before the run (script_verify_request);
   -- that call, and every thread's first, get the filler, so no key is skipped.
   if primed and i < nkeys then
      local r = pre .. i .. post
      i = i + step
      return r
   end
   primed = true
   return filler
end

function response(status, headers, body)
   if body == "ok\n" then
      fillers = fillers + 1
      wrk.thread:set("hb_fillers", fillers)
      if mine == 0 then finish() end
      return
   end
   answered = answered + 1
   if answered >= mine then finish() end
end

function done(summary, latency, requests)
   local secs = summary.duration / 1e6
   local e = summary.errors
   local nf = 0
   for _, t in ipairs(threads) do nf = nf + (t:get("hb_fillers") or 0) end
   local n = summary.requests - nf
   io.write(string.format(
      "HB_RESULT qps=%.1f p50_us=%d p99_us=%d max_us=%d reqs=%d non2xx=%d sockerr=%d bytes=%d secs=%.2f\n",
      n / secs, latency:percentile(50), latency:percentile(99), latency.max,
      n, e.status, e.connect + e.read + e.write + e.timeout, summary.bytes, secs))
end

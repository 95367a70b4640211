-- get.lua: GET rows of benches/http.sh (adapted from ../shared/bench/get.lua).
--   wrk -t2 -c100 -d4s --latency -s get.lua URL_BASE -- PREFIX NKEYS
-- Each request is  GET <path of URL_BASE>/get?key=<PREFIX><i>  with i uniform in [0, NKEYS).
-- The keys must have been preloaded (http.sh does it with preload.lua). The requests are
-- pre-formatted in init(), so a request costs wrk one table lookup whatever NKEYS is: all of
-- them up to 100,000 keys; above that, 100,000 keys drawn uniformly from [0, NKEYS) with a
-- seed of the thread's own (so 1M keys do not cost wrk 100 MB per thread, and a 1M-key row
-- differs from a 10k-key row only in the store: building each request per call cost wrk a
-- third of its rate). The same script, with the same arguments, is run against the nginx
-- yardstick.

package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local hb = require("hb")

function setup(thread) hb.setup(thread) end

local TABLE_MAX = 100000
local reqs, n, started

function init(args)
   local prefix = args[1] or "g"
   local nkeys = tonumber(args[2] or "1000")
   math.randomseed(os.time() * 1000 + (hb_tid or 0) * 7919)
   math.random(); math.random()
   local pre = "GET " .. hb.base() .. "/get?key=" .. prefix
   local post = " HTTP/1.1\r\nHost: " .. hb.host() .. "\r\n\r\n"
   reqs = {}
   if nkeys <= TABLE_MAX then
      n = nkeys
      for i = 0, n - 1 do reqs[i + 1] = pre .. i .. post end
   else
      n = TABLE_MAX
      for i = 1, n do reqs[i] = pre .. math.random(0, nkeys - 1) .. post end
   end
   hb.ready()
end

function request()
   if not started then started = hb.start() end
   return reqs[math.random(1, n)]
end

function done(summary, latency, requests)
   hb.result(summary, latency)
end

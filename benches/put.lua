-- put.lua: PUT rows of benches/http.sh (adapted from ../shared/bench/put.lua).
--   wrk -t2 -c100 -d4s --latency -s put.lua URL_BASE -- SIZE [PREFIX] [NKEYS] [POOL_MB]
-- Each request is  POST <path of URL_BASE>/put?key=...  with a SIZE-byte body.
--   NKEYS absent or 0: key = <PREFIX><SIZE>_<thread>_<run>_<n>, a new key per request (the
--                      plain PUT rows are inserts);
--   NKEYS > 0:         key = <PREFIX><i>, i drawn uniformly from [0, NKEYS): an overwrite of a
--                      preloaded key (the "N keys in the store" rows; the store keeps its size).
-- The requests are pre-formatted in init(), body included: building one per call costs wrk a
-- copy of the body and its garbage collection, which took a third of wrk's rate at 256 B and
-- more than half at 64 KiB, so the nginx yardstick would have measured wrk. The pool holds up
-- to 400,000 requests and POOL_MB MiB (default 512) per thread; a thread that has sent its
-- whole pool starts it again, so in insert mode its further PUTs overwrite keys it sent
-- earlier in the row (in LMDB a hot overwrite is much cheaper than an insert: 3x at 64 KiB).
-- done() reports how many (reused=), and http.sh notes it in the row. The last 10 bytes of
-- each body are the request's number: LuaJIT hashes a long string from 4 of its bytes (start,
-- end, middle, quarter), and requests that differ only near their start share one hash chain.
-- The same script is run against the nginx `return 200` yardstick (URL_BASE ending in /s<SIZE>),
-- so the client-side cost is the same on both sides of the ratio.

package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local hb = require("hb")

function setup(thread) hb.setup(thread) end

local POOL_REQS = 400000
local reqs, n, i, started

-- Globals, read by done() through thread:get().
hb_sent, hb_pool, hb_inserts = 0, 0, 0

function init(args)
   local size = tonumber(args[1] or "256")
   local prefix = args[2] or ""
   local nkeys = tonumber(args[3] or "0") or 0
   local pool_bytes = (tonumber(args[4] or "512") or 512) * 1048576
   local tid = hb_tid or 0
   math.randomseed(os.time() * 1000 + tid * 7919)
   math.random(); math.random()
   local tail = size >= 16 and 10 or 0
   local post = " HTTP/1.1\r\nHost: " .. hb.host() .. "\r\n" ..
                "Content-Type: application/octet-stream\r\n" ..
                "Content-Length: " .. size .. "\r\n\r\n" .. hb.body(size - tail)
   local fmt = tail > 0 and "%010d" or ""
   n = math.max(1, math.min(POOL_REQS, math.floor(pool_bytes / (#post + 80))))
   reqs = {}
   if nkeys <= 0 then
      hb_inserts = 1
      if prefix == "" then prefix = "p" end
      local pre = "POST " .. hb.base() .. "/put?key=" .. prefix .. size .. "_" .. tid .. "_" ..
                  math.random(1, 1000000000) .. "_"
      for k = 1, n do reqs[k] = pre .. k .. post .. string.format(fmt, k) end
   else
      local pre = "POST " .. hb.base() .. "/put?key=" .. prefix
      for k = 1, n do reqs[k] = pre .. math.random(0, nkeys - 1) .. post .. string.format(fmt, k) end
   end
   hb_pool = n
   i = 0
   hb.ready()
end

function request()
   if not started then
      started = hb.start()
      if not started then return reqs[n] end
   end
   i = i + 1
   if i > n then i = 1 end
   hb_sent = hb_sent + 1
   return reqs[i]
end

function done(summary, latency, requests)
   local reused = 0
   for _, t in ipairs(hb.threads) do
      if t:get("hb_inserts") == 1 then
         reused = reused + math.max(0, (t:get("hb_sent") or 0) - (t:get("hb_pool") or 0))
      end
   end
   local pool = hb.threads[1] and hb.threads[1]:get("hb_pool") or 0
   hb.result(summary, latency, nil, string.format("reused=%d pool=%d", reused, pool))
end

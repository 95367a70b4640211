-- del.lua: DEL rows of benches/http.sh.
--   wrk -t2 -c100 -d4s --latency -s del.lua URL_BASE -- PREFIX NKEYS NTHREADS [MARKER]
-- Each request is  GET <path of URL_BASE>/del?key=<PREFIX><i>. Thread t (1..NTHREADS) walks
-- i = t-1, t-1+NTHREADS, ... < NKEYS, so every preloaded key is deleted exactly once and no
-- delete finds its key gone (that would be a cheap 404). A thread that has sent all its keys
-- asks for GET <path>/status.html (a filler, not counted) until all its deletes are answered,
-- then stops and creates <MARKER>.<t>; http.sh ends wrk with SIGINT once every thread is
-- done, so a row is shorter than -d when the keys run out first (wrk's duration is the real
-- one). The nginx yardstick answers the same requests with an empty 200.

package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local hb = require("hb")

function setup(thread) hb.setup(thread) end

local pre, post, filler, i, nkeys, step, mine, answered, marker, started, stopped

hb_fillers = 0

function init(args)
   local prefix = args[1] or "d"
   nkeys = tonumber(args[2] or "1000")
   step = tonumber(args[3] or "2")
   marker = args[4]
   i = (hb_tid or 1) - 1
   mine = 0
   if i < nkeys then mine = math.floor((nkeys - 1 - i) / step) + 1 end
   answered = 0
   pre = "GET " .. hb.base() .. "/del?key=" .. prefix
   post = " HTTP/1.1\r\nHost: " .. hb.host() .. "\r\n\r\n"
   filler = "GET " .. hb.base() .. "/status.html HTTP/1.1\r\nHost: " .. hb.host() .. "\r\n\r\n"
   hb.ready()
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
   if not started then
      started = hb.start()
      if not started then return filler end
   end
   if i < nkeys then
      local r = pre .. i .. post
      i = i + step
      return r
   end
   return filler
end

function response(status, headers, body)
   if body == "ok\n" then
      hb_fillers = hb_fillers + 1
      if answered >= mine then finish() end
      return
   end
   answered = answered + 1
   if answered >= mine then finish() end
end

function done(summary, latency, requests)
   hb.result(summary, latency, summary.requests - hb.sum("hb_fillers"))
end

-- preload.lua: fills the store (or a queue) before a measurement; used by benches/http.sh.
--   wrk -t2 -c100 -d<BOUND> -s preload.lua URL_BASE -- MODE NAME SIZE FIRST COUNT NTHREADS MARKER
-- MODE kv: POST /put?key=<NAME><i> for i in [FIRST, FIRST+COUNT), each key once, thread t
--          (1..NTHREADS) taking i = FIRST+t-1, FIRST+t-1+NTHREADS, ...
-- MODE mq: POST /put?queue=<NAME>, COUNT messages in all (the i only split the work).
-- Bodies are SIZE bytes of the pattern put.lua sends. A thread whose keys are all sent asks
-- for GET /status.html (a filler: answer "ok\n", not counted) until every PUT it sent is
-- answered; then it stops and creates the file <MARKER>.<t>. http.sh waits for all markers
-- (or the -d bound) and ends wrk with SIGINT, since wrk itself always waits out -d.
-- done() prints: HB_PRELOAD sent=<PUTs answered> bad=<non-200 among them> secs=<wall time>

package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local hb = require("hb")

function setup(thread) hb.setup(thread) end

local pre, post, filler, i, last, step, mine, marker, started, stopped

-- Globals, read by done() through thread:get().
hb_answered, hb_bad = 0, 0

function init(args)
   local mode = args[1] or "kv"
   local name = args[2] or "k"
   local size = tonumber(args[3] or "256")
   local first = tonumber(args[4] or "0")
   local count = tonumber(args[5] or "1000")
   step = tonumber(args[6] or "2")
   marker = args[7]
   i = first + (hb_tid or 1) - 1
   last = first + count - 1
   mine = 0
   if i <= last then mine = math.floor((last - i) / step) + 1 end
   local base, host = hb.base(), hb.host()
   post = " HTTP/1.1\r\nHost: " .. host .. "\r\nContent-Type: application/octet-stream\r\n" ..
          "Content-Length: " .. size .. "\r\n\r\n" .. hb.body(size)
   if mode == "mq" then
      post = "POST " .. base .. "/put?queue=" .. name .. post
   else
      pre = "POST " .. base .. "/put?key=" .. name
   end
   filler = "GET " .. base .. "/status.html HTTP/1.1\r\nHost: " .. host .. "\r\n\r\n"
   hb.ready()
end

local function finish()
   if stopped then return end
   stopped = true
   if marker and marker ~= "" then
      local f = io.open(marker .. "." .. (hb_tid or 1), "w")
      if f then f:write(hb_answered, " ", hb_bad, "\n"); f:close() end
   end
   wrk.thread:stop()
end

function request()
   if not started then
      started = hb.start()
      if not started then return filler end
   end
   if i <= last then
      local r
      if pre then r = pre .. i .. post else r = post end
      i = i + step
      return r
   end
   if mine == 0 then finish() end
   return filler
end

function response(status, headers, body)
   if body == "ok\n" then return end
   hb_answered = hb_answered + 1
   if status ~= 200 then hb_bad = hb_bad + 1 end
   if hb_answered >= mine then finish() end
end

function done(summary, latency, requests)
   io.write(string.format("HB_PRELOAD sent=%d bad=%d secs=%.1f\n", hb.sum("hb_answered"),
                          hb.sum("hb_bad"), summary.duration / 1e6))
end

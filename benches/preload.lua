-- preload.lua: fills the store (or a queue) before a measurement; used by benches/http.sh.
--   wrk -t2 -c100 -d<BOUND> -s preload.lua URL_BASE -- MODE NAME SIZE FIRST COUNT NTHREADS MARKER
-- MODE kv: POST /put?key=<NAME><i> for i in [FIRST, FIRST+COUNT), each key once, thread t
--          (1..NTHREADS) taking i = FIRST+t-1, FIRST+t-1+NTHREADS, ...
-- MODE mq: POST /put?queue=<NAME>, COUNT messages in all (the i only split the work).
-- Bodies are SIZE bytes of the pattern put.lua sends. A thread whose keys are all sent asks
-- for GET /status.html (answer "ok\n", not counted) until every PUT it sent is answered; then
-- it stops and creates the file <MARKER>.<t>. http.sh waits for all markers (or the -d bound)
-- and ends wrk with SIGINT, since wrk itself always waits out -d.
-- done() prints: HB_PRELOAD sent=<PUTs answered> bad=<non-200 among them> secs=<wall time>

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("hb_tid", #threads)
end

local pre, post, filler, i, last, step, mine, answered, bad, marker, stopped, primed

function init(args)
   local mode = args[1] or "kv"
   local name = args[2] or "k"
   local size = tonumber(args[3] or "256")
   local first = tonumber(args[4] or "0")
   local count = tonumber(args[5] or "1000")
   step = tonumber(args[6] or "2")
   marker = args[7]
   local tid = hb_tid or 1
   i = first + tid - 1
   last = first + count - 1
   mine = 0
   if i <= last then mine = math.floor((last - i) / step) + 1 end
   answered, bad, stopped = 0, 0, false
   local base = (wrk.path or "/"):gsub("/+$", "")
   local host = wrk.headers["Host"] or wrk.host
   local unit = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
   local body = string.rep(unit, math.floor(size / #unit) + 1):sub(1, size)
   if mode == "mq" then
      pre = "POST " .. base .. "/put?queue=" .. name
   else
      pre = "POST " .. base .. "/put?key=" .. name
   end
   post = " HTTP/1.1\r\nHost: " .. host .. "\r\nContent-Type: application/octet-stream\r\n" ..
          "Content-Length: " .. size .. "\r\n\r\n" .. body
   filler = "GET " .. base .. "/status.html HTTP/1.1\r\nHost: " .. host .. "\r\n\r\n"
   if mode == "mq" then
      local once = pre .. post
      pre, post = nil, once
   end
end

local function finish()
   if stopped then return end
   stopped = true
   wrk.thread:set("hb_answered", answered)
   wrk.thread:set("hb_bad", bad)
   if marker and marker ~= "" then
      local f = io.open(marker .. "." .. (hb_tid or 1), "w")
      if f then f:write(answered, " ", bad, "\n"); f:close() end
   end
   wrk.thread:stop()
end

function request()
   -- wrk 4 calls request() once in the first thread's state before the run to check the
   -- request (script_verify_request): that call, and every thread's first, get the filler,
   -- so no key is lost to it.
   if not primed then
      primed = true
      return filler
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
   answered = answered + 1
   if status ~= 200 then bad = bad + 1 end
   wrk.thread:set("hb_answered", answered)
   wrk.thread:set("hb_bad", bad)
   if answered >= mine then finish() end
end

function done(summary, latency, requests)
   local sent, nbad = 0, 0
   for _, t in ipairs(threads) do
      sent = sent + (t:get("hb_answered") or 0)
      nbad = nbad + (t:get("hb_bad") or 0)
   end
   io.write(string.format("HB_PRELOAD sent=%d bad=%d secs=%.1f\n", sent, nbad,
                          summary.duration / 1e6))
end

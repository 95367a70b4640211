-- preload.lua: writes the keys the rows of benches/cluster.sh read and overwrite.
--   wrk -t1 -c33 -d<BOUND> -s preload.lua URL -- SYSTEM PREFIX SIZE FIRST COUNT STEP MARKER
-- Writes <PREFIX><i> for i = FIRST, FIRST+STEP, ... below COUNT, each once, with a
-- SIZE-byte value of the pattern kv.lua sends (SYSTEM hs: POST /put?key=..., etcd: POST
-- /v3/kv/put with base64 JSON). cluster.sh runs one wrk per node, each with its own FIRST,
-- so the nodes share the work. Once its keys are sent, the thread sends fillers (hs: GET
-- /status.html, answered "ok\n"; etcd: GET /version, answered {"etcdserver":...}), not
-- counted, until every PUT it sent is answered; then it creates MARKER.1 and stops, and
-- cluster.sh ends wrk with SIGINT (wrk itself always waits out -d).
-- done() prints: HB_PRELOAD sent=<PUTs answered> bad=<non-200 among them> secs=<wall time>

package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "../?.lua;" .. package.path
local hb = require("hb")
local b64 = require("cluster.b64")

function setup(thread) hb.setup(thread) end

local system, prefix, value, i, last, step, mine, marker, filler, host, started, stopped

hb_answered, hb_bad = 0, 0

function init(args)
   system = args[1] or "hs"
   prefix = args[2] or "c"
   local size = tonumber(args[3] or "256")
   local first = tonumber(args[4] or "0")
   local count = tonumber(args[5] or "1000")
   step = tonumber(args[6] or "1")
   marker = args[7]
   i = first
   last = count - 1
   mine = 0
   if i <= last then mine = math.floor((last - i) / step) + 1 end
   host = hb.host()
   local raw = hb.body(size)
   value = system == "etcd" and b64.encode(raw) or raw
   if system == "etcd" then
      filler = "GET /version HTTP/1.1\r\nHost: " .. host .. "\r\n\r\n"
   else
      filler = "GET /status.html HTTP/1.1\r\nHost: " .. host .. "\r\n\r\n"
   end
   hb.ready()
end

local function finish()
   if stopped then return end
   stopped = true
   if marker and marker ~= "" then
      local f = io.open(marker .. ".1", "w")
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
      local key = prefix .. i
      i = i + step
      if system == "etcd" then
         local body = '{"key":"' .. b64.encode(key) .. '","value":"' .. value .. '"}'
         return "POST /v3/kv/put HTTP/1.1\r\nHost: " .. host ..
                "\r\nContent-Type: application/json\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
      end
      return "POST /put?key=" .. key .. " HTTP/1.1\r\nHost: " .. host ..
             "\r\nContent-Type: application/octet-stream\r\nContent-Length: " .. #value ..
             "\r\n\r\n" .. value
   end
   if mine == 0 then finish() end
   return filler
end

function response(status, headers, body)
   if body == "ok\n" or body:sub(1, 14) == '{"etcdserver":' then return end
   hb_answered = hb_answered + 1
   if status ~= 200 then hb_bad = hb_bad + 1 end
   if hb_answered >= mine then finish() end
end

function done(summary, latency, requests)
   io.write(string.format("HB_PRELOAD sent=%d bad=%d secs=%.1f\n", hb.sum("hb_answered"),
                          hb.sum("hb_bad"), summary.duration / 1e6))
end

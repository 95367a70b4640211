-- mq-put.lua: MQ put rows of benches/http.sh (mq mode, mq-api.md §4.1).
--   wrk -t2 -c100 -d4s --latency -s mq-put.lua URL_BASE -- SIZE QUEUE
-- Each request is  POST <path of URL_BASE>/put?queue=<QUEUE>  with a SIZE-byte body: one
-- durable enqueue. The same script is run against the nginx yardstick (empty 200).

package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local hb = require("hb")

function setup(thread) hb.setup(thread) end

local req, started

function init(args)
   local size = tonumber(args[1] or "256")
   local queue = args[2] or "bench"
   req = "POST " .. hb.base() .. "/put?queue=" .. queue .. " HTTP/1.1\r\n" ..
         "Host: " .. hb.host() .. "\r\n" ..
         "Content-Type: application/octet-stream\r\n" ..
         "Content-Length: " .. size .. "\r\n\r\n" .. hb.body(size)
   hb.ready()
end

function request()
   if not started then started = hb.start() end
   return req
end

function done(summary, latency, requests)
   hb.result(summary, latency)
end

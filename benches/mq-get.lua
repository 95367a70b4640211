-- mq-get.lua: MQ get rows of benches/http.sh (mq mode, mq-api.md §4.2).
--   wrk -t2 -c100 -d4s --latency -s mq-get.lua URL_BASE -- QUEUE [WORKER] [MARKER]
-- Each request is  GET <path of URL_BASE>/get?queue=<QUEUE>&worker=<WORKER><thread>&ack=true:
-- one message taken and removed for good (a durable write). http.sh preloads the queue so it
-- should last the run; if it runs dry anyway, a thread stops at its first 404 and creates
-- <MARKER>.<t>, and http.sh ends wrk with SIGINT once every thread has stopped, so an empty
-- queue is not measured (the few 404s in flight are reported in the row as non-2xx).
-- The same script is run against the nginx yardstick (200 with a body of the message size).

package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local hb = require("hb")

function setup(thread) hb.setup(thread) end

local req, marker, started, stopped

function init(args)
   local queue = args[1] or "bench"
   local worker = args[2] or "w"
   marker = args[3]
   req = "GET " .. hb.base() .. "/get?queue=" .. queue .. "&worker=" .. worker .. (hb_tid or 0) ..
         "&ack=true HTTP/1.1\r\nHost: " .. hb.host() .. "\r\n\r\n"
   hb.ready()
end

function request()
   if not started then started = hb.start() end
   return req
end

function response(status, headers, body)
   if status == 404 and not stopped then
      stopped = true
      if marker and marker ~= "" then
         local f = io.open(marker .. "." .. (hb_tid or 1), "w")
         if f then f:write("empty\n"); f:close() end
      end
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   hb.result(summary, latency)
end

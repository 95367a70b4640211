-- kv.lua: the PUT and GET rows of benches/cluster.sh, one script for huststore and for etcd.
--   wrk -t1 -c33 -d10s --latency -s kv.lua URL -- SYSTEM OP SIZE PREFIX NKEYS [POOL_MB]
-- SYSTEM hs:   PUT = POST /put?key=<PREFIX><i> with a SIZE-byte body; GET = GET /get?key=<PREFIX><i>
-- SYSTEM etcd: PUT = POST /v3/kv/put {"key":b64(<PREFIX><i>),"value":b64(body)} (etcd's JSON
--              gateway); GET = POST /v3/kv/range {"key":b64(<PREFIX><i>)}, linearizable (etcd's
--              default: no "serializable").
-- OP local: a GET that is not linearizable: hs GET /get?key=...&consistency=local (the
--              receiving node's replica), etcd /v3/kv/range with "serializable":true.
-- i is uniform in [0, NKEYS): PUTs overwrite keys that preload.lua wrote, GETs read them.
-- Requests are pre-formatted in init() (as ../put.lua and ../get.lua do, so that wrk's Lua is
-- not what a row measures): GET one per key; PUT a pool of up to 2*NKEYS requests and POOL_MB
-- MiB (default 64), each with its own random key and the request's number in the last 10
-- bytes of the value (LuaJIT hashes a long string from a few of its bytes; requests that
-- differed only near their start would share one hash chain).

package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "../?.lua;" .. package.path
local hb = require("hb")
local b64 = require("cluster.b64")

function setup(thread) hb.setup(thread) end

local reqs, n, started

function init(args)
   local system = args[1] or "hs"
   local op = args[2] or "get"
   local size = tonumber(args[3] or "256")
   local prefix = args[4] or "c"
   local nkeys = tonumber(args[5] or "10000")
   local pool_bytes = (tonumber(args[6] or "64") or 64) * 1048576
   math.randomseed(os.time() * 1000 + (hb_tid or 0) * 7919 + (tonumber(os.getenv("HB_SEED") or "0") or 0))
   math.random(); math.random()
   local host = hb.host()
   reqs = {}
   if op == "get" or op == "local" then
      local qs = op == "local" and "&consistency=local" or ""
      local ser = op == "local" and ',"serializable":true' or ""
      n = nkeys
      for i = 0, n - 1 do
         if system == "etcd" then
            local body = '{"key":"' .. b64.encode(prefix .. i) .. '"' .. ser .. '}'
            reqs[i + 1] = "POST /v3/kv/range HTTP/1.1\r\nHost: " .. host ..
                          "\r\nContent-Type: application/json\r\nContent-Length: " .. #body ..
                          "\r\n\r\n" .. body
         else
            reqs[i + 1] = "GET /get?key=" .. prefix .. i .. qs .. " HTTP/1.1\r\nHost: " .. host .. "\r\n\r\n"
         end
      end
   else
      local value = b64.split(hb.body(size - 10)) -- fixed part (encoded once) and the rest
      local approx = size * 4 / 3 + 200
      n = math.max(1, math.min(2 * nkeys, math.floor(pool_bytes / approx)))
      for k = 1, n do
         local key = prefix .. math.random(0, nkeys - 1)
         local tail = value.rest .. string.format("%010d", k)
         if system == "etcd" then
            local body = '{"key":"' .. b64.encode(key) .. '","value":"' .. value.head ..
                         b64.encode(tail) .. '"}'
            reqs[k] = "POST /v3/kv/put HTTP/1.1\r\nHost: " .. host ..
                      "\r\nContent-Type: application/json\r\nContent-Length: " .. #body ..
                      "\r\n\r\n" .. body
         else
            reqs[k] = "POST /put?key=" .. key .. " HTTP/1.1\r\nHost: " .. host ..
                      "\r\nContent-Type: application/octet-stream\r\nContent-Length: " .. size ..
                      "\r\n\r\n" .. value.raw .. tail
         end
      end
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

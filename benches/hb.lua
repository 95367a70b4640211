-- hb.lua: what the wrk scripts of benches/ share; each loads it with
--   package.path = (folder of the script) .. "?.lua;" .. package.path; local hb = require("hb")
--
-- The start gate. wrk runs init() of thread 1, starts thread 1, then runs init() of thread 2,
-- starts it, ..., and only then starts its clock. A script that pre-formats its requests
-- spends a good fraction of a second in init(), so thread 1 would serve alone before the
-- clock starts and its requests would count over a shorter time (+5-10% on a 2-4 s run). So,
-- when HB_GO names a file and HB_THREADS the thread count (benches/http.sh sets both), the
-- last thread's init() creates the file and every thread's first request() waits for it
-- (at most 60 s). wrk also calls request() once from its main thread, right after thread 1's
-- init(), to check the request; that call must not wait (it would wait for ever) and gets
-- what hb.start() tells the script.

local M = {}
local ffi = require("ffi")
ffi.cdef [[
unsigned long pthread_self(void);
int usleep(unsigned int usec);
]]

M.UNIT = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

--- SIZE bytes of the pattern every script sends (and http.sh checks).
function M.body(size)
   return string.rep(M.UNIT, math.floor(size / #M.UNIT) + 1):sub(1, size)
end

--- The threads, in the main state (setup() and done() run there).
M.threads = {}

--- Call from setup(thread): numbers the threads 1..N (global hb_tid in each thread's state).
function M.setup(thread)
   table.insert(M.threads, thread)
   thread:set("hb_tid", #M.threads)
end

--- Path part of URL_BASE without a trailing slash ("" or "/s256").
function M.base()
   return (wrk.path or "/"):gsub("/+$", "")
end

function M.host()
   return wrk.headers["Host"] or wrk.host
end

local main_thread
local go = os.getenv("HB_GO")
local nthreads = tonumber(os.getenv("HB_THREADS") or "")

--- Call at the end of init().
function M.ready()
   main_thread = ffi.C.pthread_self()
   if go and go ~= "" and hb_tid == nthreads then
      local f = io.open(go, "w")
      if f then f:close() end
   end
end

--- Call from request() until it returns true: false for wrk's check of request() from its
--- main thread, else waits for the start gate and returns true.
function M.start()
   if ffi.C.pthread_self() == main_thread then
      return false
   end
   if go and go ~= "" then
      for _ = 1, 60000 do
         local f = io.open(go, "r")
         if f then
            f:close()
            break
         end
         ffi.C.usleep(1000)
      end
   end
   return true
end

--- The line http.sh parses (latency percentiles from wrk's histogram, microseconds: p50, p99,
--- p99.9). `requests` overrides summary.requests (fillers left out);
--- `extra` is appended as is ("name=value ...").
function M.result(summary, latency, requests, extra)
   local secs = summary.duration / 1e6
   local e = summary.errors
   local n = requests or summary.requests
   io.write(string.format(
      "HB_RESULT qps=%.1f p50_us=%d p99_us=%d p999_us=%d max_us=%d reqs=%d non2xx=%d sockerr=%d bytes=%d secs=%.2f%s\n",
      n / secs, latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
      latency.max, n, e.status,
      e.connect + e.read + e.write + e.timeout, summary.bytes, secs,
      extra and (" " .. extra) or ""))
end

--- Sum of a numeric global over the threads (read after the run, in done()).
function M.sum(name)
   local total = 0
   for _, t in ipairs(M.threads) do
      total = total + (tonumber(t:get(name)) or 0)
   end
   return total
end

return M

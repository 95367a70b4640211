-- b64.lua: base64 (RFC 4648, with padding) for the etcd requests of benches/cluster/*.lua;
-- etcd's JSON gateway takes keys and values as base64 strings.

local M = {}
local CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local sym = {}
for i = 1, 64 do sym[i - 1] = CHARS:sub(i, i) end

--- base64 of the string s.
function M.encode(s)
   local out, o = {}, 0
   for i = 1, #s, 3 do
      local a, b, c = s:byte(i, i + 2)
      local v = a * 65536 + (b or 0) * 256 + (c or 0)
      out[o + 1] = sym[math.floor(v / 262144) % 64]
      out[o + 2] = sym[math.floor(v / 4096) % 64]
      out[o + 3] = b and sym[math.floor(v / 64) % 64] or "="
      out[o + 4] = c and sym[v % 64] or "="
      o = o + 4
   end
   return table.concat(out)
end

--- Splits s into a head of a multiple of 3 bytes, encoded once (so that encode(s .. t) is
--- head .. encode(rest .. t) for any t), and the rest (0-2 bytes).
function M.split(s)
   local cut = #s - #s % 3
   return { raw = s:sub(1, cut), head = M.encode(s:sub(1, cut)), rest = s:sub(cut + 1) }
end

return M

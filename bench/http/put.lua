-- put.lua — wrk script for the HTTP benchmark (bench/http/run.py): every
-- request is a PUT of a new key, so no two requests of a run write the same
-- key and the driver can count the keys afterwards.
--   wrk ... -s put.lua URL -- NAMESPACE PREFIX [TOKEN]
-- writes PUT /api/v1/namespaces/NAMESPACE/keys/PREFIX<thread>-<n> with a
-- ~100-byte JSON object {"n":<n>,"t":<thread>,"pad":"…"} (distinct for every write).

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local counter = 0

-- Runs in the main Lua state once per wrk thread: number the threads.
function setup(thread)
   counter = counter + 1
   thread:set("tid", counter)
end

local ns, prefix, n, pad
local headers = { ["Content-Type"] = "application/json" }

-- Runs in each thread's own Lua state.
function init(args)
   ns = args[1] or "bench"
   prefix = args[2] or "k"
   if args[3] then
      headers["Authorization"] = "Bearer " .. args[3] -- a server started with --auth
   end
   n = 0
   pad = string.rep("x", 74)
end

function request()
   n = n + 1
   local path = string.format("/api/v1/namespaces/%s/keys/%s%d-%d", ns, prefix, tid, n)
   local body = string.format('{"n":%d,"t":%d,"pad":"%s"}', n, tid, pad)
   return wrk.format("PUT", path, headers, body)
end

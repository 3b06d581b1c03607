-- put.lua — wrk script for the HTTP benchmark (bench/http/run.py): every
-- request is a PUT of a new key, so no two requests of a run write the same
-- key and the driver can count the keys afterwards.
--   wrk ... -s put.lua URL -- NAMESPACE PREFIX [TOKEN]
-- writes PUT /api/v1/namespaces/NAMESPACE/keys/PREFIX<thread>-<n> with a
-- ~100-byte JSON object {"n":<n>,"t":<thread>,"pad":"…"} (distinct for every write).
--
-- The client shares the machine's cores with the server, so each request
-- is made with as little work as possible: the parts that never change are
-- built once, and a request is a few concatenations (wrk.format and two
-- string.format calls per request cost the 64-connection runs 5-8 % of
-- their rate; docs/BENCH.md).

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local counter = 0

-- Runs in the main Lua state once per wrk thread: number the threads.
function setup(thread)
   counter = counter + 1
   thread:set("tid", counter)
end

local head, mid, tail, n

-- Runs in each thread's own Lua state.
function init(args)
   local ns = args[1] or "bench"
   local prefix = args[2] or "k"
   -- a server started with --auth
   local auth = args[3] and ("Authorization: Bearer " .. args[3] .. "\r\n") or ""
   local host = wrk.headers["Host"] or wrk.host
   head = "PUT /api/v1/namespaces/" .. ns .. "/keys/" .. prefix .. tid .. "-"
   mid = " HTTP/1.1\r\nHost: " .. host .. "\r\n" .. auth ..
      "Content-Type: application/json\r\nContent-Length: "
   tail = ',"t":' .. tid .. ',"pad":"' .. string.rep("x", 74) .. '"}'
   n = 0
end

function request()
   n = n + 1
   local body = '{"n":' .. n .. tail
   return head .. n .. mid .. #body .. "\r\n\r\n" .. body
end

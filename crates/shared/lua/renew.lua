-- renew.lua: extend a worker's leases, and tell it which of its executions
-- it no longer owns or was asked to cancel.
--
-- KEYS[1..NS]  the namespace keys (records.lua)
-- ARGV[1]  lease length in ms
-- ARGV[2]  L, then L lease keys of the worker (names in the leases sorted
--          set; only their scores change, so they are not declared as keys)
-- then ARGV pairs: entry and attempt of each execution the worker runs
-- Returns: { lost, cancel }: entries whose attempt is no longer theirs (the
--   worker must stop them and not report them), and entries whose job was
--   asked to cancel (the worker stops them and reports them cancelled).

local deadline = ms_str(now_ms() + tonumber(ARGV[1]))
local nl = tonumber(ARGV[2])
if nl > 0 then
  local renewed = {}
  for l = 1, nl do
    renewed[2 * l - 1] = deadline
    renewed[2 * l] = ARGV[2 + l]
  end
  redis.call('ZADD', LEASES, 'XX', unpack(renewed))
end
local lost, cancel = {}, {}
local first = 3 + nl
local n = (#ARGV - first + 1) / 2
local ids = {}
for i = 1, n do ids[i] = string.sub(ARGV[first + 2 * i - 2], 1, 36) end
load_states(ids)
for i = 1, n do
  local entry, attempt = ARGV[first + 2 * i - 2], tonumber(ARGV[first + 2 * i - 1])
  local st = state_of(ids[i])
  if st and st.status == 'running' and st.attempt == attempt then
    if st.words.cancel then cancel[#cancel + 1] = entry end
  else
    lost[#lost + 1] = entry
  end
end
return { lost, cancel }

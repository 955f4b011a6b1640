-- renew.lua: extend the leases of a worker's running executions.
--
-- KEYS[1..12]  the namespace keys (records.lua)
-- ARGV[1]  lease length in ms
-- ARGV[2i], ARGV[2i+1]  entry and attempt of the i-th execution
-- Returns: { lost, cancel }: entries whose attempt is no longer theirs (the
--   worker must stop them and not report them), and entries whose job was
--   asked to cancel (the worker stops them and reports them cancelled).

local deadline = ms_str(now_ms() + tonumber(ARGV[1]))
local lost, cancel, renewed = {}, {}, {}
local n = (#ARGV - 1) / 2
local ids = {}
for i = 1, n do ids[i] = string.sub(ARGV[2 * i], 1, 36) end
load_states(ids)
for i = 1, n do
  local entry, attempt = ARGV[2 * i], tonumber(ARGV[2 * i + 1])
  local st = state_of(ids[i])
  if st and st.status == 'running' and st.attempt == attempt then
    renewed[#renewed + 1] = deadline
    renewed[#renewed + 1] = entry
    if st.words.cancel then cancel[#cancel + 1] = entry end
  else
    lost[#lost + 1] = entry
  end
end
if #renewed > 0 then redis.call('ZADD', LEASES, 'XX', unpack(renewed)) end
return { lost, cancel }

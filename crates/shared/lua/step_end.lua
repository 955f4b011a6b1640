-- step_end.lua: a flow's step that lived in another partition ended: record
-- its end in its run's state, as notify_parent does for a local step. The
-- end was written to the step's partition's hand-off hash with the step's
-- own end (notify_if_step in jobs.lua) and is carried here (handoff.rs).
--
-- KEYS[1..NS]  the namespace keys of the run's partition (records.lua)
-- KEYS[NS+1]   the run's state hash ({p}:flow:<id>)
-- ARGV[1]  the step job's id
-- ARGV[2]  the end, as notify_if_step wrote it: JSON {p = run id, s = step,
--          i = for-each position (absent otherwise), st = final status,
--          pl = result or reason}
-- Returns: 1 recorded; 0 already recorded (or the run no longer waits for
--   this step: carried twice, or the run finished); -1 the end is not
--   readable (left for the caller to report); the error STALETAGS (nothing
--   written) when the caller's view of the tags registry is out of date.
--
-- Carrying an end twice records it once: the step's `c:<id>` field goes
-- with the first. The second counts itself in the stats hash
-- (`repeated`): a write, so that the WAIT after it also waits for the
-- first's writes (handoff.rs).

if stale_tags() then return redis.error_reply(STALE_TAGS) end
local fstate, id = KEYS[NS + 1], ARGV[1]
local ok, e = pcall(cjson.decode, ARGV[2])
if not ok or type(e) ~= 'table' or type(e.p) ~= 'string' or type(e.s) ~= 'string'
  or type(e.st) ~= 'string' then
  return -1
end
if redis.call('HEXISTS', fstate, 'c:' .. id) == 0 then
  redis.call('HINCRBY', STATS, 'repeated', 1)
  return 0
end
local iter = e.i
if type(iter) ~= 'number' then iter = nil end
local payload = e.pl
if type(payload) ~= 'string' then payload = '' end
notify_parent(e.p, fstate, id, e.s, iter, e.st, payload)
flush_records()
flush_queues()
return 1

-- retry.lua: put a failed or cancelled job back, as a new attempt under its
-- limit (`sluice retry`). It is queued at the tail of the ready list, so it
-- waits its turn like a job enqueued now, and is admitted by its key's limit.
--
-- KEYS[1..NS]  the namespace keys (records.lua)
-- ARGV[1]  the job's id
-- ARGV[2]  its concurrency key as the caller read it ("" for none)
-- Returns: "queued", "missing", "unfinished" (it has not finished: nothing
--   to retry), "succeeded" (it did not fail) or "step" (a flow's step or a
--   flow run: retry the run by enqueueing it again); an error if the key
--   changed under the caller; the error STALETAGS (nothing written) when
--   the caller's view of the tags registry is out of date.

if stale_tags() then return redis.error_reply(STALE_TAGS) end
local now_s = ms_str(now_ms())
local id, ckey = ARGV[1], ARGV[2]
local st = state_of(id)
local spec = spec_of(id)
if not st or not spec then return 'missing' end
if (spec.ckey or '') ~= ckey then
  return redis.error_reply('concurrency key of job ' .. id .. ' changed while retrying')
end
if spec.kind == 'step' or spec.kind == 'flow' then return 'step' end
local status = st.status
if status == 'succeeded' then return 'succeeded' end
if status ~= 'failed' and status ~= 'cancelled' then return 'unfinished' end
-- Out of the finished index (retention would purge it) and the counters.
-- Its entry there names its key (finish in slots.lua); one an older
-- version wrote, or a corrupt job's, is the bare id. An entry whose key is
-- not its spec's (a damaged or crafted queue entry the job ran under) is
-- looked for through the whole list: rare, and a retry is a command.
local entry = make_entry(id, ckey)
if redis.call('LREM', IDX[status], 1, entry) == 0
  and (entry == id or redis.call('LREM', IDX[status], 1, id) == 0) then
  local list = redis.call('LRANGE', IDX[status], 0, -1)
  for i = #list, 1, -1 do
    if string.sub(list[i], 1, 36) == id then
      redis.call('LREM', IDX[status], 1, list[i])
      break
    end
  end
end
redis.call('HINCRBY', STATS, status, -1)
redis.call('HINCRBY', STATS, 'active', 1)
-- The attempts so far stay counted: the next one is attempt + 1.
set_state(id, 'queued', st.attempt, now_s)
flush_records()
push_ready(queue_of(id), { entry })
flush_queues()
return 'queued'

-- enqueue_once.lua: store a batch of new jobs, some of them with the
-- caller's idempotency key: a key seen within the retention period gives
-- back the job it first enqueued, and nothing is written for it.
--
-- KEYS[1..NS]  the namespace keys (records.lua)
-- KEYS[NS+i]  idem:<key> of the i-th job's idempotency key (any name without one)
-- ARGV[1]  how long an idempotency key is kept, in ms
-- then 8 values per job: the 7 that write_job takes (jobs.lua), then its
--   idempotency key ("" for none)
-- Returns: the id of each job, in order: its own, or the one its key
--   enqueued before (within this batch too); the error STALETAGS (nothing
--   written) when the caller's view of the tags registry is out of date.
--
-- Every job of the batch is written by this one call, so a batch lands whole.

if stale_tags() then return redis.error_reply(STALE_TAGS) end
local now = now_ms()
local now_s = ms_str(now)
local keep_ms = ARGV[1]
local acc = new_jobs(now_s)
local ids = {}
-- Keys taken by this call: their jobs' specs are written at its end.
local taken = {}
local per = JOB_ARGS + 1
local n = (#ARGV - 1) / per
local bad = unknown_tag(1, per, n)
if bad then return redis.error_reply('tag ' .. bad .. ' is not registered') end
-- The same call run twice (a cluster client may resend a call whose
-- connection dropped, and it may have run) writes no job the second time
-- and answers as the first did: ids are fresh, so a stored one was written
-- by this call. A call that writes no job (a repeat, or one whose every
-- job's key named an earlier one) counts itself in the stats hash
-- (`repeated`): a write, so that a WAIT after it also waits for the
-- writes it answers with, which another call made.
for i = 1, n do
  if redis.call('HEXISTS', JOBS, ARGV[1 + per * (i - 1) + 1]) == 1 then
    redis.call('HINCRBY', STATS, 'repeated', 1)
    for j = 1, n do
      local a = 1 + per * (j - 1)
      local own = ARGV[a + 1]
      ids[j] = ARGV[a + per] ~= '' and redis.call('GET', KEYS[NS + j]) or own
    end
    return ids
  end
end
for i = 1, n do
  local a = 1 + per * (i - 1)
  local idem_key, key = KEYS[NS + i], ARGV[a + per]
  local before = key ~= '' and (taken[key] or redis.call('GET', idem_key))
  -- A key whose job retention removed (by keep_max) names nothing: it is
  -- taken afresh.
  if before and not taken[key] and redis.call('HEXISTS', JOBS, before) == 0 then before = false end
  if before then
    ids[i] = before
  else
    if key ~= '' then
      redis.call('SET', idem_key, ARGV[a + 1], 'PX', keep_ms)
      taken[key] = ARGV[a + 1]
    end
    write_job(acc, a, now, now_s)
    ids[i] = ARGV[a + 1]
  end
end
if acc.n == 0 and n > 0 then redis.call('HINCRBY', STATS, 'repeated', 1) end
flush_jobs(acc)
flush_records()
flush_queues()
return ids

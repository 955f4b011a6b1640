-- enqueue.lua: store a batch of new jobs and make them ready (or scheduled).
--
-- KEYS[1..12]  the namespace keys (records.lua)
-- KEYS[12+i]   idx:key:K of the i-th job's concurrency key (any name without one)
-- ARGV, 6 per job from ARGV[6i-5]: see write_job in jobs.lua
-- Returns: the number of jobs stored.
--
-- Every job of the batch is written by this one call, so a batch lands whole.

local now = now_ms()
local now_s = ms_str(now)
local acc = new_jobs(now_s)
for i = 1, #ARGV / JOB_ARGS do
  write_job(acc, KEYS[NS + i], JOB_ARGS * (i - 1), now, now_s)
end
flush_jobs(acc)
flush_records()
if redis.call('LLEN', MARKER) == 0 then redis.call('LPUSH', MARKER, '1') end
return acc.n

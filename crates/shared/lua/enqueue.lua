-- enqueue.lua: store a batch of new jobs and make them ready (or scheduled).
--
-- KEYS[1..12]  the namespace keys (records.lua)
-- KEYS[12+i]   ("full" only) idx:key:K of the i-th job's concurrency key
--              (any name without one)
-- ARGV[1]  "plain": every job is ready now and has no concurrency key; then
--          2 values per job: its id and its spec after created_at (see
--          write_job in jobs.lua)
--          "full": then 6 values per job, as write_job takes them
-- Returns: the number of jobs stored.
--
-- Every job of the batch is written by this one call, so a batch lands whole.

local now = now_ms()
local now_s = ms_str(now)
local acc = new_jobs(now_s)
if ARGV[1] == 'plain' then
  -- The common case, kept to the fewest Lua operations.
  local specs, ready, writes = acc.specs, acc.ready, state_writes
  for a = 2, #ARGV, 2 do
    local id = ARGV[a]
    specs[#specs + 1] = id
    specs[#specs + 1] = '{"created_at":' .. now_s .. ',' .. ARGV[a + 1]
    writes[#writes + 1] = id
    writes[#writes + 1] = acc.fresh
    ready[#ready + 1] = id
  end
  acc.n = #ready
else
  for i = 1, (#ARGV - 1) / JOB_ARGS do
    write_job(acc, KEYS[NS + i], 1 + JOB_ARGS * (i - 1), now, now_s)
  end
end
flush_jobs(acc)
flush_records()
if redis.call('LLEN', MARKER) == 0 then redis.call('LPUSH', MARKER, '1') end
return acc.n

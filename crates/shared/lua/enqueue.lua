-- enqueue.lua: store a batch of new jobs and make them ready (or scheduled).
--
-- KEYS[1..NS]  the namespace keys (records.lua)
-- ARGV[1]  "plain": every job is ready now, has no concurrency key and has
--          the tag ARGV[2]; then 2 values per job: its id and its spec
--          after created_at (see write_job in jobs.lua)
--          "keyed": every job is ready now, has the tag ARGV[2] and the
--          limit ARGV[3] (max) and ARGV[4] (window_ms); then 3 values per
--          job: its id, its concurrency key and its spec after created_at
--          "full": then 7 values per job, as write_job takes them
-- Returns: the number of jobs stored; the error STALETAGS (nothing written)
--   when the caller's view of the tags registry is out of date.
--
-- Every job of the batch is written by this one call, so a batch lands whole.
-- The same call run twice (a cluster client retries a call whose connection
-- dropped, and it may have run) writes no job the second time: ids are
-- fresh, so a batch whose first id is stored was written by this call.
-- That second run counts itself in the stats hash (`repeated`): a write,
-- so that a WAIT after it also waits for the first run's writes (a
-- hand-off entry goes only once they are confirmed, handoff.rs).

if stale_tags() then return redis.error_reply(STALE_TAGS) end
local first_id = ARGV[1] == 'plain' and ARGV[3] or ARGV[1] == 'keyed' and ARGV[5] or ARGV[2]
if first_id and redis.call('HEXISTS', JOBS, first_id) == 1 then
  redis.call('HINCRBY', STATS, 'repeated', 1)
  return math.floor((#ARGV - (ARGV[1] == 'plain' and 2 or ARGV[1] == 'keyed' and 4 or 1))
    / (ARGV[1] == 'plain' and 2 or ARGV[1] == 'keyed' and 3 or JOB_ARGS))
end
local now = now_ms()
local now_s = ms_str(now)
local acc = new_jobs(now_s)
if ARGV[1] == 'plain' then
  if not QUEUES[ARGV[2]] then return redis.error_reply('tag ' .. ARGV[2] .. ' is not registered') end
  -- The common case, kept to the fewest Lua operations.
  local specs, ready, writes = acc.specs, tag_list(acc.ready, ARGV[2]), state_writes
  for a = 3, #ARGV, 2 do
    local id = ARGV[a]
    specs[#specs + 1] = id
    specs[#specs + 1] = '{"created_at":' .. now_s .. ',' .. ARGV[a + 1]
    writes[#writes + 1] = id
    writes[#writes + 1] = acc.fresh
    ready[#ready + 1] = id
  end
  acc.n = #ready
elseif ARGV[1] == 'keyed' then
  if not QUEUES[ARGV[2]] then return redis.error_reply('tag ' .. ARGV[2] .. ' is not registered') end
  -- The common case of a keyed batch, with fewer values per job.
  local specs, ready, writes = acc.specs, tag_list(acc.ready, ARGV[2]), state_writes
  local fresh = fresh_stamped(acc, ARGV[3], ARGV[4])
  local i = 0
  for a = 5, #ARGV, 3 do
    local id, ckey = ARGV[a], ARGV[a + 1]
    i = i + 1
    specs[#specs + 1] = id
    specs[#specs + 1] = '{"created_at":' .. now_s .. ',' .. ARGV[a + 2]
    writes[#writes + 1] = id
    writes[#writes + 1] = fresh
    ready[#ready + 1] = make_entry(id, ckey)
  end
  acc.n = i
else
  local n = (#ARGV - 1) / JOB_ARGS
  local bad = unknown_tag(1, JOB_ARGS, n)
  if bad then return redis.error_reply('tag ' .. bad .. ' is not registered') end
  for i = 1, n do
    write_job(acc, 1 + JOB_ARGS * (i - 1), now, now_s)
  end
end
flush_jobs(acc)
flush_records()
flush_queues()
return acc.n

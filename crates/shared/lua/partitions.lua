-- partitions.lua: records how many partitions a namespace has, once, and
-- tells the recorded count.
--
-- KEYS[1]  {prefix}:partitions (the count, a string)
-- KEYS[2]  {prefix}:stats (present once the namespace has held a job)
-- ARGV[1]  the count this process's config asks for
-- ARGV[2]  "record" to record it when none is, "read" to only read
-- Returns: the recorded count, or when none is and ARGV[2] is "read", the
--   count the namespace would be recorded with (the caller refuses to go
--   on if it differs from its own).
--
-- A namespace that held jobs before the count was recorded was made by a
-- version without partitions: it has one, whatever the config says, so a
-- changed config cannot strand its jobs under a tag nobody reads.

local got = redis.call('GET', KEYS[1])
if got then return tonumber(got) end
local count = ARGV[1]
if redis.call('EXISTS', KEYS[2]) == 1 then count = '1' end
if ARGV[2] == 'record' then redis.call('SET', KEYS[1], count) end
return tonumber(count)

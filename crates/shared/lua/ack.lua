-- ack.lua: record the end of executions and free (or keep) their slots,
-- for a worker that has no room to admit more (admit.lua records them
-- otherwise, in the same call).
--
-- KEYS[1..12]  the namespace keys (records.lua)
-- KEYS[13..]   the keys of the section (acks.lua)
-- ARGV[1..]    the section (acks.lua)
-- Returns: the entries refused because their attempt is no longer current.

local now = now_ms()
local now_s = ms_str(now)
local head_before = delayed_head(DELAYED)
local sec = read_section(1, NS + 1)
local refused, requeued = record_acks(sec, now, now_s)
end_leases(sec)
flush_records()
flush_finished()
wake_if_earlier(DELAYED, MARKER, head_before)
if requeued and redis.call('LLEN', MARKER) == 0 then redis.call('LPUSH', MARKER, '1') end
return refused

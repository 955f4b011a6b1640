-- ack.lua: record the end of executions and free (or keep) their slots,
-- for a worker that has no room to admit more (admit.lua records them
-- otherwise, in the same call).
--
-- KEYS[1..NS]  the namespace keys (records.lua)
-- KEYS[NS+1..] the keys of the section (acks.lua)
-- ARGV[1..]    the section (acks.lua)
-- Returns: { refused, redo }: the entries refused because their attempt is
--   no longer current, and the positions of the executions not recorded
--   for want of their key's declaration (see record_acks in acks.lua); or
--   the error STALETAGS (nothing written) when the caller's view of the
--   tags registry is out of date.

if stale_tags() then return redis.error_reply(STALE_TAGS) end
local now = now_ms()
local now_s = ms_str(now)
note_heads()
local sec = read_section(1, NS + 1)
local refused, _, redo = record_acks(sec, now, now_s)
end_leases(sec, redo)
flush_records()
flush_finished()
flush_held()
flush_queues()
return { refused, redo }

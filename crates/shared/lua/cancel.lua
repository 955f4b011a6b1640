-- cancel.lua: cancel a job that has not finished.
--
-- KEYS[1..NS]  the namespace keys (records.lua)
-- KEYS[NS+1]  slots:K of the job's concurrency key (any name when it has none)
-- KEYS[NS+2]  wait:K
-- KEYS[NS+3]  the state hash of the flow the job is a step of (any name otherwise)
-- ARGV[1]  job id
-- ARGV[2]  the job's concurrency key as the caller read it ("" for none)
-- Returns: "cancelled", "requested" (running: its worker stops it), "finished"
--   or "missing"; an error if the key changed under the caller; the error
--   STALETAGS (nothing written) when the caller's view of the tags
--   registry is out of date.

if stale_tags() then return redis.error_reply(STALE_TAGS) end
local now = now_ms()
local now_s = ms_str(now)
local slots, wait = KEYS[NS + 1], KEYS[NS + 2]
local id, ckey = ARGV[1], ARGV[2]
local st = state_of(id)
if not st then return 'missing' end
local spec = spec_of(id) or {}
if (spec.ckey or '') ~= ckey then return redis.error_reply('concurrency key of job ' .. id .. ' changed while cancelling') end
local status = st.status
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then return 'finished' end
local flow = st.words.drive ~= nil
local parked_flow = status == 'running' and flow and st.words.drive ~= 'active'
if status == 'running' and not parked_flow then
  st.words.cancel = true
  set_state(id, 'running', st.attempt, st.at, st.words)
  flush_records()
  return 'requested'
end

local entry = make_entry(id, ckey)
local q = queue_of(id)
redis.call('LREM', q.ready, 1, entry)
local at = tonumber(redis.call('ZSCORE', q.delayed, entry))
redis.call('ZREM', q.delayed, entry)
note_heads()
if parked_flow then
  -- Not driving: it holds its slot and nothing else, so it ends here.
  if ckey ~= '' then end_slot(slots, wait, ckey, id .. '#f', tonumber(spec.window_ms) or 0, now) end
elseif ckey ~= '' then
  redis.call('LREM', wait, 1, id .. ' ' .. (spec.max or ''))
  -- A reserved slot goes back to what it was: the tail of an ended slot.
  if redis.call('ZREM', slots, id .. '#r') == 1 and at ~= nil and at > now then
    redis.call('ZADD', slots, at, id .. '#c')
  end
end
if status == 'waiting' then count_waiting(-1) end
local words = nil
if parked_flow then words = { started = st.at, ready = st.words.ready } end
set_state(id, 'cancelled', st.attempt, now_s, words)
finish('cancelled', entry)
notify_if_step(id, function() return KEYS[NS + 3] end, 'cancelled', 'cancelled by request')
flush_records()
flush_finished()
if ckey ~= '' then
  expire_slots(slots, now)
  settle(slots, wait, ckey, now)
  bound_slots(slots)
end
flush_held()
-- A slot handed to a waiter here must reach a worker's timer.
flush_queues()
return 'cancelled'

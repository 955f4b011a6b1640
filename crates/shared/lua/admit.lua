-- admit.lua: take what is due and ready, in the order it became ready, and
-- admit it, or send it to wait for its key. One call per turn of a worker.
--
-- KEYS[1..NS]  the namespace keys (records.lua)
-- KEYS[NS+1]  this call's lease key ({p}:lease:<worker>:<n>): a list with an
--          item per job admitted (lease_item), and the leases sorted set
--          holds its name until they end
-- KEYS[NS+2..]  the keys of the section (acks.lua)
-- ARGV[1]  lease length in ms
-- ARGV[2]  room: how many jobs this worker takes at most
-- ARGV[3]  the tags this worker serves, separated by spaces: it takes only
--          from their queues (queues.lua)
-- ARGV[4..]  the section (acks.lua): the worker's ended executions, recorded
--          first, and the concurrency keys declared (for those and for the
--          entries it expects to take)
-- Returns: { admitted, dropped, more, next_in_ms, expired, need, late, refused, redo }
--   admitted: 3 values per admitted job: entry, spec (JSON), and its new
--     state (which holds the attempt and the start, see records.lua);
--   dropped: ids not run (cancelled, finished, missing or corrupt);
--   more: 1 when entries were left for another turn (no room, or keys to declare);
--   next_in_ms: ms until the next delayed entry this worker times (see
--     next_in_ms in queues.lua) or lease deadline, or -1;
--   expired: lease keys past their deadline (at most room), for recover.lua;
--   need: concurrency keys of entries that came next but whose keys this call
--     did not declare: call again declaring them. Nothing after the first
--     such entry is taken, so each key's jobs are still admitted in order.
--     Also the keys of the delayed entries this worker times (next_in_ms in
--     queues.lua), for the call it makes when they fall due;
--   late: entry and late_ms pairs for jobs admitted to a slot reserved for
--     them: how long after the slot freed they were admitted;
--   refused: ended executions whose result was refused (see acks.lua);
--   redo: positions of ended executions not recorded: their key must be
--     declared (record_acks in acks.lua).
-- Or the error STALETAGS (nothing written) when the caller's view of the
-- tags registry is out of date. When this call's lease key holds items (the
-- same call ran before), nothing is written but the repeat's count
-- (`repeated` in the stats hash), and the reply hands out again
-- the jobs that run admitted and that still run under it.
--
-- Due delayed entries and the ready lists' heads of the worker's tags are
-- taken in the order they became ready (a delayed entry at its due time, a
-- ready one at the time in its state), so a delay that ran out never
-- overtakes an older job, and no tag starves another.
--
-- Taking and admitting in one atomic step keeps each key's jobs admitted in
-- the order they became ready, however many workers race. Admission is the
-- moment a worker commits to run a job: its slot is taken here, by Redis time.

if stale_tags() then return redis.error_reply(STALE_TAGS) end
-- Each call has a lease key of its own: one that holds items means this
-- call ran already (a cluster client may send a call twice when its
-- connection drops) and its caller never saw the reply. No job is touched:
-- the jobs that run admitted and that still run under it are handed out
-- again, so the caller starts them (their ends, recorded by that run, are
-- not refused). The repeat counts itself in the stats hash (`repeated`): a
-- write, so that a WAIT after it also waits for the first run's writes.
local ran = redis.call('LRANGE', KEYS[NS + 1], 0, -1)
if #ran > 0 then
  redis.call('HINCRBY', STATS, 'repeated', 1)
  local again = {}
  for _, item in ipairs(ran) do
    local attempt, entry = parse_lease_item(item)
    local id = attempt and entry_id(entry)
    local st = id and state_of(id)
    local spec = id and raw_spec(id)
    if st and spec and st.status == 'running' and st.attempt == attempt then
      again[#again + 1] = entry
      again[#again + 1] = spec
      again[#again + 1] = redis.call('HGET', STATE, id)
    end
  end
  -- The ended executions the first run left unrecorded (their key was not
  -- declared) still run their attempt: sent again, declared.
  local sec, redo = read_section(4, NS + 2), {}
  for i = 1, sec.n do
    local a = sec.first + 5 * i - 5
    local st = parse_lease_item(ARGV[a + 2] .. ' ' .. ARGV[a + 1]) and state_of(entry_id(ARGV[a + 1]))
    if st and st.status == 'running' and st.attempt == tonumber(ARGV[a + 2]) and st.at == ARGV[a + 3] then
      redo[#redo + 1] = i
    end
  end
  return { again, {}, 1, -1, {}, {}, {}, {}, redo }
end
local now = now_ms()
local now_s = ms_str(now)
local deadline_s = ms_str(now + tonumber(ARGV[1]))
local room = tonumber(ARGV[2])
local lease_key = KEYS[NS + 1]
-- Each tag once: a tag named twice would list its queue as two sources,
-- and each would take (and trim) the same entries.
local served, serving = {}, {}
for t in string.gmatch(ARGV[3], '%S+') do
  if QUEUES[t] and not serving[t] then
    serving[t] = true
    served[#served + 1] = QUEUES[t]
  end
end
for _, q in ipairs(served) do note_head(q) end
-- What ended first: slots it frees and flows it puts back are taken below.
local sec = read_section(4, NS + 2)
local declared = sec.declared
local refused, _, redo = record_acks(sec, now, now_s)
end_leases(sec, redo)
-- leased: the lease key's items, one per job admitted (lease_item).
local admitted, dropped, leased, lates = {}, {}, {}, {}
-- The state of every job admitted for its first attempt by this call.
local first_run = 'running 1 ' .. now_s

local id_of = entry_id

-- The sources: per served tag, its due delayed entries (with their due
-- times) and the head of its ready list.
local srcs = {}
for _, q in ipairs(served) do
  local due = redis.call('ZRANGEBYSCORE', q.delayed, '-inf', now, 'WITHSCORES', 'LIMIT', 0, room)
  if #due > 0 then srcs[#srcs + 1] = { q = q, due = true, list = due, pos = 1, step = 2, taken = {} } end
  local head = redis.call('LRANGE', q.ready, 0, room - 1)
  if #head > 0 then srcs[#srcs + 1] = { q = q, due = false, list = head, pos = 1, step = 1, taken = 0 } end
end

-- Keyed entries are admitted by their key's running count alone (held.lua)
-- unless the key has keys of its own or is full: only those need slots:K
-- and wait:K declared. Their states and counts are read here, one HMGET
-- each; a fresh job's state carries its stamped limit (state_limit), and
-- only the specs of the others are read for it, with one more. A keyed
-- entry's id and key are cut once, here, into E_ID and E_CKEY (entry ->
-- its id, its key): a keyed job costs a few table reads after this, not a
-- string cut each time it is looked at.
local E_ID, E_CKEY = {}, {}
local keyed_n = 0
do
  local keyed_ids, ckeys = {}, {}
  local sub = string.sub
  for _, src in ipairs(srcs) do
    local list, due = src.list, src.due
    for i = 1, #list, src.step do
      local e = list[i]
      if #e > 36 and (not due or sub(e, 1, 5) ~= 'wake ') then
        local id, ckey = sub(e, 1, 36), sub(e, 38)
        E_ID[e], E_CKEY[e] = id, ckey
        keyed_ids[#keyed_ids + 1] = id
        ckeys[#ckeys + 1] = ckey
      end
    end
  end
  keyed_n = #keyed_ids
  if keyed_n > 0 then
    load_states(keyed_ids)
    local want = {}
    for i = 1, #keyed_ids do
      local id = keyed_ids[i]
      if not state_limit(state_cache[id]) then want[#want + 1] = id end
    end
    if #want > 0 then preload(raw_specs, JOBS, want) end
    held_load(ckeys)
  end
end
-- Running counts as they will be once what is taken so far is admitted;
-- and keys one of whose entries could not be: their later entries cannot
-- either, or a job stamped with a higher max would overtake it.
local tentative, not_by_count = {}, {}
-- Whether an entry of key ckey can be admitted by the count alone. A job
-- without a valid stamped limit can: it is failed as corrupt, and a key
-- without keys of its own holds nothing reserved for it. A fresh job's
-- limit is read from its state (state_limit), written by the same enqueue
-- call as its spec and trusted as the spec is: its spec is then not
-- searched, and not checked against the entry's key.
-- Returns whether, and the stamped max and window when valid. Its count
-- was read above (held_load).
local function by_count(id, ckey)
  if not_by_count[ckey] or HS[ckey] then return false end
  -- state_limit ran on each keyed entry's state above: its result is read
  -- straight from its tables.
  local s = state_cache[id]
  local max, window = s and STATE_MAX[s], nil
  if max then window = STATE_WIN[s] else max, window = stamped_limit(id, ckey) end
  if not max then return true end
  local t = (tentative[ckey] or HN[ckey]) + 1
  if t > max then
    not_by_count[ckey] = true
    return false
  end
  tentative[ckey] = t
  return true, max, window
end

-- When several have candidates, the ready ones' states tell when they became ready.
if #srcs > 1 then
  local ids = {}
  for _, src in ipairs(srcs) do
    if not src.due then
      for _, e in ipairs(src.list) do ids[#ids + 1] = id_of(e) end
    end
  end
  if #ids > 0 then load_states(ids) end
end
local function ready_time(entry)
  local st = state_of(id_of(entry))
  if st then return tonumber(st.at) end
  return now
end
local function time_of(src)
  if src.due then return tonumber(src.list[src.pos + 1]) end
  return ready_time(src.list[src.pos])
end

-- Merge them by ready time (a tie goes to the ready list), up to `room`
-- jobs; "wake" entries cost no room. ord_due[k] is the due time of a
-- delayed entry, false for a ready one; ord_q[k] the queues it came from.
local ord, ord_due, ord_ckey, ord_wake, ord_q = {}, {}, {}, {}, {}
-- Per entry admitted by its key's count: its stamped max and window.
local ord_counted, ord_max, ord_win = {}, {}, {}
local need, need_seen = {}, {}
local picked, blocked, more = 0, false, false
while true do
  local best, best_t = nil, nil
  for _, src in ipairs(srcs) do
    if src.pos <= #src.list then
      if #srcs == 1 then
        best = src
        break
      end
      local t = time_of(src)
      if best == nil or t < best_t or (t == best_t and best.due and not src.due) then best, best_t = src, t end
    end
  end
  if best == nil then break end
  local entry, due_at = best.list[best.pos], false
  if best.due then due_at = tonumber(best.list[best.pos + 1]) end
  local wake = best.due and string.sub(entry, 1, 5) == 'wake '
  if picked >= room and not wake then
    more = true
    break
  end
  local ckey = ''
  if wake then ckey = string.sub(entry, 6) else ckey = E_CKEY[entry] or '' end
  local counted, max, window = false, nil, nil
  if not blocked and ckey ~= '' and not wake then counted, max, window = by_count(E_ID[entry], ckey) end
  if blocked or (ckey ~= '' and not counted and not declared[ckey]) then
    blocked, more = true, true
    if ckey ~= '' and not declared[ckey] and not need_seen[ckey] then
      need_seen[ckey] = true
      need[#need + 1] = ckey
    end
  else
    local k = #ord + 1
    ord[k], ord_due[k], ord_ckey[k], ord_wake[k], ord_q[k] = entry, due_at, ckey, wake, best.q
    ord_counted[k], ord_max[k], ord_win[k] = counted, max, window
    if best.due then best.taken[#best.taken + 1] = entry else best.taken = best.taken + 1 end
  end
  if not wake then picked = picked + 1 end
  best.pos = best.pos + best.step
end
-- A full take suggests more is waiting beyond what was looked at.
if picked >= room then more = true end

local job_ids = {}
for k, entry in ipairs(ord) do
  if not ord_wake[k] then job_ids[#job_ids + 1] = E_ID[entry] or id_of(entry) end
end
for _, src in ipairs(srcs) do
  if src.due then
    if #src.taken > 0 then redis.call('ZREM', src.q.delayed, unpack(src.taken)) end
  elseif src.taken > 0 then
    redis.call('LTRIM', src.q.ready, src.taken, -1)
  end
end
-- The states read above (keyed entries', and with several sources the
-- ready ones') are not read again: they, and those this call wrote (a flow
-- its acks put back), are in state_cache, which wins over `states`. Without
-- them, one HMGET straight into `states`, the plain jobs' common case.
local states = {}
if #job_ids > 0 then
  if keyed_n == 0 and #srcs <= 1 then states = hmget_all(STATE, job_ids) else load_states(job_ids) end
  preload(raw_specs, JOBS, job_ids)
end

-- When a job became ready: a waiting job keeps the moment it had.
local function ready_of(st)
  return st.words.ready or st.at
end

-- window: the stamped window of a keyed job that takes a slot.
local function admit(id, entry, st, ckey, window)
  local attempt = st.attempt + 1
  local spec = raw_spec(id)
  if st.status == 'running' then
    -- A flow's driver resumed: same run, same slot, a new attempt to fence with.
    st.words.drive = 'active'
    set_state(id, 'running', attempt, st.at, st.words)
  else
    local flow = is_flow_spec(spec)
    local words = { throttled = st.words.throttled }
    if flow then words.drive = 'active' end
    -- Kept for `sluice status` when it differs from creation (a delay, a retry).
    local ready = ready_of(st)
    if ready ~= created_of(id, ready) then words.ready = ready end
    set_state(id, 'running', attempt, now_s, words)
    -- A flow holds one slot for its whole run, whatever attempt drives
    -- it: counted once, here, at its first admission. A flow's key goes in
    -- the limits registry whatever its count: parked, the run is in no
    -- lease, where `sluice limits` would look for its stamp (limits.rs).
    if ckey ~= '' then
      running_add(ckey, 1, window, id)
      if flow then held_in_use[ckey] = id end
    end
  end
  leased[#leased + 1] = lease_item(attempt, entry)
  local n = #admitted
  admitted[n + 1] = entry
  admitted[n + 2] = spec
  admitted[n + 3] = state_cache[id]
end

local function to_wait(id, st, max, wait)
  local ready = ready_of(st)
  set_state(id, 'waiting', st.attempt, now_s, { ready = ready, throttled = st.words.throttled })
  count_waiting(1)
  wait_in_line(wait, id, max, tonumber(ready))
end

-- A job that will not run gives back a slot reserved for it, if any. A key
-- not declared has no keys of its own (by_count), so nothing is reserved.
local function release_reservation(ckey, id)
  local k = declared[ckey]
  if ckey ~= '' and k and redis.call('ZREM', k.slots, id .. '#r') == 1 then
    count_waiting(-1)
    expire_slots(k.slots, now)
    settle(k.slots, k.wait, ckey, now)
    bound_slots(k.slots)
  end
end

-- The job of queue entry `entry` fails as corrupt. Its status list entry
-- names the key its spec names, if it can be read, rather than the queue
-- entry's, which may differ: that is the key it is listed under, and the
-- entry retry.lua removes.
local function fail_corrupt(entry, st, reason)
  local id = E_ID[entry] or id_of(entry)
  local attempt = 0
  if st then attempt = st.attempt end
  set_state(id, 'failed', attempt, now_s)
  set_result(id, 'corrupt job record: ' .. reason)
  local spec = spec_of(id)
  local ckey = spec and type(spec.ckey) == 'string' and spec.ckey or ''
  finish('failed', make_entry(id, ckey))
  dropped[#dropped + 1] = id
end

-- Whether a spec names a concurrency key (or is cut short).
local function names_ckey(spec)
  local cut = string.find(spec, ',"args":', 1, true)
  local k = string.find(spec, ',"ckey":', 1, true)
  return cut == nil or (k ~= nil and k < cut)
end

local function limited(id, entry, st, ckey, due_at, q)
  local k = declared[ckey]
  local spec = spec_of(id)
  local max = spec and tonumber(spec.max)
  if not spec or spec.ckey ~= ckey or max == nil or max < 1 or tonumber(spec.window_ms) == nil then
    release_reservation(ckey, id)
    fail_corrupt(entry, st, 'max, window_ms or ckey missing or malformed')
    return
  end
  -- A limit set at run time wins over the stamped one for the decisions
  -- here; the wait list keeps the stamped one (settle reads the override
  -- itself, so that `limits unset` applies to jobs already waiting).
  local stamped = max
  max = override_of(ckey) or max
  touch_key(ckey, k.slots, k.wait)
  -- In the limits registry, should it wait (flush_held).
  held_in_use[ckey] = id
  expire_slots(k.slots, now)
  local until_ = paused_until(k.slots, now)
  if until_ then
    -- Paused: it waits for the pause to end. One that had been handed a
    -- slot was first in line, and stays so.
    if redis.call('ZREM', k.slots, id .. '#r') == 1 then
      redis.call('LPUSH', k.wait, id .. ' ' .. stamped)
    else
      to_wait(id, st, stamped, k.wait)
    end
    wake_key_at(k.wait, ckey, until_)
    return
  end
  if redis.call('ZREM', k.slots, id .. '#r') == 1 then
    count_waiting(-1)
    if due_at then
      lates[#lates + 1] = entry
      lates[#lates + 1] = now - due_at
    end
    admit(id, entry, st, ckey, spec.window_ms)
  elseif redis.call('LLEN', k.wait) > 0 then
    to_wait(id, st, stamped, k.wait)
  else
    local held = redis.call('ZCARD', k.slots) + held_count(ckey)
    if held < max then
      admit(id, entry, st, ckey, spec.window_ms)
    else
      local first = first_timed_slot(k.slots)
      if first ~= nil and held == max then
        -- Take over the earliest slot that frees at a known time.
        redis.call('ZREM', k.slots, first[1])
        hold_open(k.slots, id .. '#r')
        push_delayed(q, first[2], entry)
        set_state(id, 'waiting', st.attempt, now_s, { ready = ready_of(st), throttled = st.words.throttled })
        count_waiting(1)
      else
        to_wait(id, st, stamped, k.wait)
        if first ~= nil then wake_key_at(k.wait, ckey, first[2]) end
      end
    end
  end
end

local j = 0
for k, entry in ipairs(ord) do
  local ckey = ord_ckey[k]
  if ord_wake[k] then
    -- A wake for a key no job has (a damaged or hand-made entry) is dropped.
    local kk = declared[ckey]
    if kk then
      expire_slots(kk.slots, now)
      settle(kk.slots, kk.wait, ckey, now)
      bound_slots(kk.slots)
    end
  else
    j = j + 1
    local id = job_ids[j]
    local s, spec = state_cache[id], raw_specs[id] or nil
    if s == nil then s = states[j] end
    s = s or nil
    -- The common case, kept to the fewest Lua operations: a first attempt
    -- of a job without a key, or with one admitted by its count.
    local fast = s and spec and (ckey == '' or ord_counted[k]) and string.find(s, 'queued 0 ', 1, true) == 1
      and not is_flow_spec(spec)
    if fast and ckey ~= '' then
      -- running_add, inlined: the count was read (held_load) and only
      -- grows. The key is not written to the limits registry: its count
      -- field lists it as in use while it runs (held.lua).
      if ord_max[k] then
        local n = HN[ckey]
        HN[ckey] = n + 1
        HDIRTY[ckey] = true
        if ord_win[k] ~= 0 then HW[ckey] = true end
      else
        fast = false
      end
    end
    if fast then
      put_state(id, first_run)
      leased[#leased + 1] = lease_item(1, entry)
      local n = #admitted
      admitted[n + 1] = entry
      admitted[n + 2] = spec
      admitted[n + 3] = first_run
    else
      state_cache[id] = s or false
      local st = state_of(id)
      if not spec then
        if ckey ~= '' then release_reservation(ckey, id) end
        if st and (st.status == 'queued' or st.status == 'scheduled' or st.status == 'waiting') then
          fail_corrupt(entry, st, 'spec missing')
        else
          dropped[#dropped + 1] = id
        end
      elseif not st then
        if ckey ~= '' then release_reservation(ckey, id) end
        fail_corrupt(entry, nil, 'state missing or malformed')
      elseif st.status == 'running' then
        if st.words.drive == 'queued' then
          admit(id, entry, st, '', nil)
        else
          -- A stale entry of a job that runs already: a slot reserved for
          -- it would be held for ever.
          if ckey ~= '' then release_reservation(ckey, id) end
          dropped[#dropped + 1] = id
        end
      elseif st.status ~= 'queued' and st.status ~= 'scheduled' and st.status ~= 'waiting' then
        if ckey ~= '' then release_reservation(ckey, id) end
        dropped[#dropped + 1] = id
      elseif ckey == '' then
        if names_ckey(spec) then fail_corrupt(entry, st, 'concurrency key differs from its queue entry')
        else admit(id, entry, st, ckey, nil) end
      elseif ord_counted[k] then
        if ord_max[k] then admit(id, entry, st, ckey, ord_win[k])
        else fail_corrupt(entry, st, 'max, window_ms or ckey missing or malformed') end
      else
        limited(id, entry, st, ckey, ord_due[k], ord_q[k])
      end
    end
  end
end
-- One lease for all the jobs admitted here, renewed by the worker until they
-- have all ended: a lease per job cost Redis a sorted-set insert and removal
-- per job.
if #leased > 0 then
  redis.call('RPUSH', lease_key, unpack(leased))
  redis.call('ZADD', LEASES, deadline_s, lease_key)
end
flush_records()
flush_finished()
flush_held()
-- A worker left with room times its tags' next delayed entries itself
-- (queues.lua).
local next_in, timed = next_in_ms(served, now, #leased < room)
for _, e in ipairs(timed) do
  local ckey = ''
  if string.sub(e, 1, 5) == 'wake ' then ckey = string.sub(e, 6) else ckey = entry_ckey(e) end
  if ckey ~= '' and not need_seen[ckey] then
    need_seen[ckey] = true
    need[#need + 1] = ckey
  end
end
flush_queues()
-- This worker took all it had room for and more remains: pass the wake-up on
-- to another idle worker of each tag that has some left. A worker with
-- room left (entries left for keys to declare, or sent to wait rather than
-- run) looks again itself, at once.
if more and #leased >= room then
  for _, q in ipairs(served) do
    if redis.call('LLEN', q.marker) == 0 then
      local left = redis.call('LLEN', q.ready) > 0
      if not left then left = #redis.call('ZRANGEBYSCORE', q.delayed, '-inf', now, 'LIMIT', 0, 1) > 0 end
      if left then redis.call('LPUSH', q.marker, '1') end
    end
  end
end
local expired = redis.call('ZRANGEBYSCORE', LEASES, '-inf', now, 'LIMIT', 0, room)
local more_n = 0
if more then more_n = 1 end
return { admitted, dropped, more_n, next_in, expired, need, lates, refused, redo }

-- acks.lua: recording ended executions, for ack.lua and admit.lua (which
-- records a worker's ended executions in the same call that admits its next
-- jobs). Prepended after records.lua, queues.lua, held.lua, slots.lua and
-- jobs.lua; no KEYS or ARGV of its own.
--
-- The section these scripts read, from ARGV[a] and KEYS[k] on:
--   ARGV: m, then m concurrency keys (each declared once: its slots:K and
--         wait:K are the next 2m KEYS; an ended execution's key need not
--         be, see record_acks); q, then q flow runs (their state
--         hashes are the next q KEYS); L, the number of lease keys that
--         follow in KEYS, whose executions have all ended and are recorded
--         (here or before): they and their leases go, unless some
--         execution of the section is left unrecorded (see record_acks),
--         and then they are sent again with it; E, then 5 values per
--         ended execution: entry, attempt, started (the ms of its running
--         state, as admit.lua handed it out), outcome, payload (the result
--         for "ok", the reason otherwise); outcome is "ok", "err
--         <backoff_ms>" (the first retry's delay), "fail" (failed for good:
--         no retry) or "cancelled", followed by " step" for a flow's step.
-- A failed attempt is retried through the delayed set after
-- backoff_ms * 2^(attempt-1) while attempts remain (max_attempts in the
-- spec, default 3); a cancel request turns any outcome into "cancelled".

-- Reads the section; returns { declared (K -> {slots, wait}), fstates
-- (flow id -> state hash), leases (key names), first (ARGV index before the
-- first execution), n (executions), next_key (the KEYS index after it) }.
local function read_section(a, k)
  -- A key's { slots, wait } pair is made when first asked for: most
  -- declared keys end by their count and are never looked up.
  local at, k0 = {}, k
  local declared = setmetatable({}, { __index = function(t, key)
    local j = at[key]
    if not j then return nil end
    local v = { slots = KEYS[k0 + 2 * j - 2], wait = KEYS[k0 + 2 * j - 1] }
    t[key] = v
    return v
  end })
  local sec = { declared = declared, fstates = {}, leases = {} }
  local m = tonumber(ARGV[a])
  for j = 1, m do at[ARGV[a + j]] = j end
  a, k = a + m + 1, k + 2 * m
  local q = tonumber(ARGV[a])
  for p = 1, q do sec.fstates[ARGV[a + p]] = KEYS[k + p - 1] end
  a, k = a + q + 1, k + q
  local nl = tonumber(ARGV[a])
  for l = 1, nl do sec.leases[l] = KEYS[k + l - 1] end
  sec.n = tonumber(ARGV[a + 1])
  sec.first = a + 1
  sec.next_key = k + nl
  return sec
end

-- Records the section's executions; returns the entries refused because
-- their attempt is no longer current (the lease was lost and the job
-- recovered: such a late result is dropped), whether a flow was put back on
-- the ready list, and `redo`: the positions (1 for the section's first
-- execution) of those not recorded because their key was not declared and
-- their end needs its slots:K and wait:K (a slot kept for its window, a
-- waiter to hand it to, a pause): nothing of them is written, and the
-- caller sends them again with their keys declared. The worker declares
-- the key of an end it expects to need them (a job stamped with a window,
-- a throttle, a key it has seen bind), so most ends are only counted, with
-- no key of theirs in the call: declaring costs Redis three more strings
-- per end.
-- While any is not recorded the section's leases stay (end_leases is not
-- called): a lease goes only once all its executions are recorded.
local function record_acks(sec, now, now_s)
  local refused, requeued, redo = {}, false, {}
  local n, b = sec.n, sec.first
  if n == 0 then return refused, requeued, redo end
  local function fstate_of(parent)
    return sec.fstates[parent]
  end
  -- The ids, for the states' HMGET, and the keys, cut in one loop. A keyed
  -- execution's end reads its key's running count (held.lua): the counts
  -- in one HMGET.
  -- eck[i]: the i-th execution's key, cut once (nil for an entry of 36
  -- characters or fewer, '' for one of 37).
  local ids, ckeys, eck = {}, {}, {}
  local sub = string.sub
  for i = 1, n do
    local e = ARGV[b + 5 * i - 4]
    if #e > 36 then
      ids[i] = sub(e, 1, 36)
      local k = sub(e, 38)
      eck[i] = k
      ckeys[#ckeys + 1] = k
    else
      ids[i] = e
    end
  end
  local states = redis.call('HMGET', STATE, unpack(ids))
  if #ckeys > 0 then held_load(ckeys) end

  -- Anything but a plain success of a job without a key, or with a key
  -- whose end is only counted, and not a flow.
  local function slow(i, a)
    local entry, attempt, payload = ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 5]
    local outcome, rest = string.match(ARGV[a + 4], '^(%a+)(.*)$')
    local is_step = string.find(rest or '', ' step', 1, true) ~= nil
    local id = ids[i]
    -- What this call wrote (a flow its earlier acks woke) wins over the read.
    if state_cache[id] == nil then state_cache[id] = states[i] or false end
    local st = state_of(id)
    if not st or st.status ~= 'running' or st.attempt ~= attempt then
      refused[#refused + 1] = entry
      return
    end
    local ckey = entry_ckey(entry)
    local spec = nil
    -- "throttle <ms>": the far side said "not before ms from now".
    -- At least 1 ms: a pause that ends at once would be no pause at all.
    local throttle_ms = outcome == 'throttle' and math.max(1, tonumber(string.match(rest, '^ (%d+)')) or 1000)
    if ckey ~= '' then
      -- A flow holds the slot its first driver took, whatever attempt ends it.
      local token = id .. '#' .. attempt
      if st.words.drive then token = id .. '#f' end
      local max, window = stamped_limit(id, ckey)
      window = window or 0
      local k = sec.declared[ckey]
      if not k and ((throttle_ms and not st.words.cancel) or window > 0 or is_structured(ckey)) then
        redo[#redo + 1] = i
        return
      end
      -- The pause goes in first, so that the slot this ends is handed to no
      -- waiter before it is over (a longer pause already set stays); the
      -- slots reserved for waiters come back; and the job itself goes to
      -- the head of the line: it was admitted before all of them.
      if throttle_ms and not st.words.cancel then
        touch_key(ckey, k.slots, k.wait)
        redis.call('ZADD', k.slots, 'GT', now + throttle_ms, PAUSE)
        take_back_reservations(k.slots, k.wait, ckey)
        redis.call('LPUSH', k.wait, id .. ' ' .. (max or 1))
        -- A waiter's key is in the limits registry, which tells where wait
        -- lists are (runs.rs), though its count alone admitted it.
        held_in_use[ckey] = id
      end
      -- Undeclared, it is only counted (checked above), as end_slot would.
      if k then end_slot(k.slots, k.wait, ckey, token, window, now) else running_add(ckey, -1) end
    end
    if st.words.cancel and outcome ~= 'cancelled' then
      outcome = 'cancelled'
      payload = 'cancelled by request'
    end
    local final = nil
    local started = { started = st.at, ready = st.words.ready }
    if throttle_ms and st.words.cancel == nil then
      -- Not a failed attempt: the job waits again, at the head of its key
      -- (or, without a key, until the moment given), and this attempt is
      -- not counted toward max_attempts.
      -- It keeps the moment it first became ready: its place in its key's
      -- line (wait_in_line) is ahead of every job that became ready later.
      local words = { ready = st.words.ready or created_of(id, st.at), throttled = (tonumber(st.words.throttled) or 0) + 1 }
      set_result(id, payload)
      if ckey ~= '' then
        -- It is at the head of the key's wait list already (above).
        set_state(id, 'waiting', attempt, now_s, words)
        count_waiting(1)
      else
        local at = ms_str(now + throttle_ms)
        set_state(id, 'scheduled', attempt, at, { throttled = words.throttled })
        push_delayed(queue_of(id), at, entry)
      end
    elseif outcome == 'ok' then
      set_state(id, 'succeeded', attempt, now_s, started)
      if payload ~= 'null' then set_result(id, payload) end
      final = 'succeeded'
    elseif outcome == 'cancelled' then
      set_state(id, 'cancelled', attempt, now_s, started)
      final = 'cancelled'
    else
      if spec == nil then spec = spec_of(id) end
      -- "fail": the job failed for good, whatever attempts remain.
      local counted = attempt - (tonumber(st.words.throttled) or 0)
      if outcome ~= 'fail' and counted < max_attempts(spec and spec.max_attempts) then
        local backoff = tonumber(string.match(rest, '^ (%d+)')) or 1000
        -- Throttled attempts do not lengthen the backoff either; at most
        -- 366 days.
        local at = ms_str(now + math.min(backoff * 2 ^ (counted - 1), 31622400000))
        set_state(id, 'scheduled', attempt, at, { throttled = st.words.throttled })
        set_result(id, payload)
        push_delayed(queue_of(id), at, entry)
      else
        set_state(id, 'failed', attempt, now_s, started)
        set_result(id, payload)
        final = 'failed'
      end
    end
    if final then
      finish(final, entry)
      if is_step and notify_if_step(id, fstate_of, final, payload) then requeued = true end
    end
  end

  -- Whether the i-th execution's end is only one fewer running: a key with
  -- no window and no keys of its own (held.lua). Counts it if so. Its
  -- count was read above (held_load).
  local function counted_end(i)
    -- An entry shorter than an id (a damaged record) counts as keyless.
    local ckey = eck[i] or ''
    if HS[ckey] or HW[ckey] then return false end
    -- running_add(ckey, -1), inlined: " w" is not set, and the count was
    -- read unless the entry was damaged (shorter than an id).
    local c = HN[ckey]
    if not c then
      running_add(ckey, -1)
    else
      HN[ckey] = c > 0 and c - 1 or 0
      HDIRTY[ckey] = true
    end
    return true
  end

  -- The common case, kept to the fewest Lua operations: a plain success of
  -- a job without a key, or with a key whose end is only counted, and not
  -- a flow (a flow's state has words). A null result is not stored (none
  -- reads as null).
  local writes, results, done = state_writes, result_pairs, {}
  for i = 1, n do
    local a = b + 5 * i - 5
    local entry, attempt, started = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
    if ARGV[a + 4] == 'ok' and states[i] == 'running ' .. attempt .. ' ' .. started
      and (#entry == 36 or counted_end(i)) then
      local s = 'succeeded ' .. attempt .. ' ' .. now_s .. ' started=' .. started
      local id = ids[i]
      state_cache[id] = s
      writes[#writes + 1] = id
      writes[#writes + 1] = s
      local payload = ARGV[a + 5]
      if payload ~= 'null' then
        results[#results + 1] = id
        results[#results + 1] = payload
      end
      done[#done + 1] = entry
    else
      slow(i, a)
    end
  end
  for _, e in ipairs(done) do finish('succeeded', e) end
  return refused, requeued, redo
end

-- Removes the lease keys whose executions have all been recorded, unless
-- some of this section's were not (`redo` from record_acks): the caller
-- sends those leases' ends again, with them.
local function end_leases(sec, redo)
  if #redo == 0 and #sec.leases > 0 then
    redis.call('DEL', unpack(sec.leases))
    redis.call('ZREM', LEASES, unpack(sec.leases))
  end
end

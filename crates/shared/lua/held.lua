-- held.lua: helpers prepended to every script, after records.lua and
-- queues.lua and before slots.lua: how many executions run on each
-- concurrency key, kept in one namespace hash. It is not run on its own,
-- so it has no KEYS or ARGV of its own.
--
-- RUNNING ({p}:running, a namespace key, see records.lua) maps a
-- concurrency key K to "<n>", then " w" and " s" when they apply:
--   n  the executions of K running now: a script's job holds one slot per
--      running attempt, a flow one for its whole run. Absent means 0.
--   w  one of them may have a window (its slot stays held after it ends),
--      so its end reads its spec; without it, an end is only counted.
--   s  K's own keys, slots:K and wait:K (slots.lua), may hold something
--      (a slot in its window, one reserved for a waiter, a pause, a
--      waiter), or K has a limit set at run time.
--
-- Why: a job whose key holds fewer than its max and has no " s" is
-- admitted, and its end recorded, by the count alone, so a worker needs
-- neither slots:K nor wait:K in its call's KEYS (see admit.lua), and a key
-- whose limit does not bind costs Redis a hash field instead of a sorted set
-- created and deleted per job. Once a key binds (full, windowed, paused or
-- overridden) its jobs go through slots:K and wait:K, declared, as before.
-- Invariant: while slots:K or wait:K exists, or K has an override, K's
-- field ends in " s"; flush_held() restores it for every key a call
-- touched. A stale " s" (slots:K expired on its own) costs only the slow
-- path, which clears it.

-- A limit set at run time lives in the limits hash under this mark and the
-- key (see override_of in slots.lua).
local OVERRIDE_MARK = '\31'

-- Per call: K -> { n, s, dirty }, read once, written by flush_held().
local held_cache = {}
-- Keys whose own keys this call used: K -> { slots, wait }, whose " s" is
-- worked out again by flush_held().
local held_touched = {}
-- Keys this call put back in use, K -> "<max> <window_ms>": a key idle long
-- enough may have been pruned from the limits registry (prune_limits.lua),
-- and `sluice limits` must list it while it runs.
local held_in_use = {}

-- What may follow the count: whether it says " w".
local HELD_FLAGS = { [''] = false, [' s'] = false, [' w'] = true, [' w s'] = true }

-- s0: the " s" as stored, to tell whether it must be written.
local function parse_held(v)
  if not v then return { n = 0, w = false, s = false, s0 = false } end
  local n, flags = string.match(v, '^(%d+)(.*)$')
  local w, s = HELD_FLAGS[flags], false
  -- A damaged field: assume the key is in use by its own keys, which
  -- the slow path reads, and count nothing running.
  if w == nil then return { n = 0, w = true, s = true, s0 = true, dirty = true } end
  s = flags == ' s' or flags == ' w s'
  return { n = tonumber(n), w = w, s = s, s0 = s }
end

-- Reads the fields of many keys with one HMGET.
local function held_load(ckeys)
  local want, seen = {}, {}
  for _, k in ipairs(ckeys) do
    if held_cache[k] == nil and not seen[k] then
      seen[k] = true
      want[#want + 1] = k
    end
  end
  if #want == 0 then return end
  local v = redis.call('HMGET', RUNNING, unpack(want))
  for i, k in ipairs(want) do held_cache[k] = parse_held(v[i]) end
end

local function held_of(ckey)
  local h = held_cache[ckey]
  if h == nil then
    h = parse_held(redis.call('HGET', RUNNING, ckey))
    held_cache[ckey] = h
  end
  return h
end

-- One more (d = 1) or one fewer (d = -1) execution of K running. A first
-- one names its limit (max, window_ms) for the registry.
local function running_add(ckey, d, max, window)
  local h = held_of(ckey)
  if d > 0 and h.n == 0 and max then held_in_use[ckey] = max .. ' ' .. window end
  h.n = math.max(0, h.n + d)
  if d > 0 and window ~= 0 then h.w = true end
  if h.n == 0 then h.w = false end
  h.dirty = true
end

-- Whether an execution of K that ends is only one fewer running: no
-- window may be running and K has no keys of its own.
local function ends_by_count(ckey)
  local h = held_of(ckey)
  return not h.s and not h.w
end

-- Whether K's jobs need slots:K and wait:K.
local function is_structured(ckey)
  return held_of(ckey).s
end

-- This call uses K's own keys: until the end of the call, when its " s" is
-- worked out again, K counts as having keys of its own.
local function touch_key(ckey, slots, wait)
  held_touched[ckey] = { slots = slots, wait = wait }
  held_of(ckey).s = true
end

-- Writes the counts this call changed, with one HSET and one HDEL: a key
-- with nothing running and no keys of its own leaves no field behind.
local function flush_held()
  local back = {}
  for k in pairs(held_in_use) do back[#back + 1] = k end
  if #back > 0 then
    local have, add = redis.call('HMGET', LIMITS, unpack(back)), {}
    for i, k in ipairs(back) do
      if not have[i] then
        add[#add + 1] = k
        add[#add + 1] = held_in_use[k]
      end
    end
    hset_pairs(LIMITS, add)
    held_in_use = {}
  end
  for k, kk in pairs(held_touched) do
    local h = held_of(k)
    local s = redis.call('EXISTS', kk.slots) == 1 or redis.call('LLEN', kk.wait) > 0
      or redis.call('HEXISTS', LIMITS, OVERRIDE_MARK .. k) == 1
    h.s = s
    if s ~= h.s0 then h.dirty = true end
  end
  local sets, dels = {}, {}
  for k, h in pairs(held_cache) do
    if h.dirty then
      if h.n == 0 and not h.s then
        dels[#dels + 1] = k
      else
        local v = tostring(h.n)
        if h.w then v = v .. ' w' end
        if h.s then v = v .. ' s' end
        sets[#sets + 1] = k
        sets[#sets + 1] = v
      end
      h.dirty = false
      h.s0 = h.s
    end
  end
  hset_pairs(RUNNING, sets)
  for i = 1, #dels, 4000 do
    redis.call('HDEL', RUNNING, unpack(dels, i, math.min(i + 3999, #dels)))
  end
  held_touched = {}
end

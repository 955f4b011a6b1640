-- held.lua: helpers prepended to every script, after records.lua and
-- queues.lua and before slots.lua: how many executions run on each
-- concurrency key, kept in one namespace hash. It is not run on its own,
-- so it has no KEYS or ARGV of its own.
--
-- RUNNING ({p}:running, a namespace key, see records.lua) maps a
-- concurrency key K to "<n>", then " w" and " s" when they apply (and one
-- field, HELD_PIN, to a text that keeps the hash a hash table):
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

-- A field no key can name (keys hold no control byte), written with every
-- count while the hash holds any: its value is longer than Redis keeps in
-- a compact (listpack) hash by default, so the hash stays a hash table. A
-- listpack is scanned, and rewritten, on every field read and write, and
-- this hash is read and written for every keyed job.
local HELD_PIN = OVERRIDE_MARK
local HELD_PIN_TEXT = 'keeps this hash a hash table: Redis scans a compact hash on every access, and it is touched per keyed job'

-- Per call, read once and written by flush_held(): for a key K, HN[K] its
-- running count (nil: not read yet), HW[K] and HS[K] its " w" and " s"
-- (nil: not set), HS0[K] its " s" as stored, HDIRTY[K] whether it must be
-- written. Flat tables rather than a table per key: a keyed job costs a
-- few table writes, not an allocation.
local HN, HW, HS, HS0, HDIRTY = {}, {}, {}, {}, {}
-- Keys whose own keys this call used: K -> { slots, wait }, whose " s" is
-- worked out again by flush_held().
local held_touched = {}
-- Keys this call put in use by a slow path (a job sent to wait, or a first
-- execution admitted other than by its key's count alone), K -> the id of
-- the job that did: they go in the limits registry with its stamped limit,
-- if missing. `sluice limits` lists the keys of that registry and those of
-- the running counts (this hash), whose limits it reads off their running
-- jobs (limits.rs). Neither enqueue nor an admission by the count writes
-- the registry: that write, and the read of the job's limit for it, were
-- a tenth of what a keyed job cost Redis. The registry keeps the keys that
-- hold or wait for something until retention prunes them, idle
-- (prune_limits.lua), and tells where wait lists are.
local held_in_use = {}

-- Counts as text, without a string.format each.
local HELD_DIGITS = { [0] = '0', '1', '2', '3', '4', '5', '6', '7', '8', '9' }

-- What may follow the count: whether it says " w".
local HELD_FLAGS = { [''] = false, [' s'] = false, [' w'] = true, [' w s'] = true }

-- Reads a stored field (false: none) into the tables above.
local function parse_held(k, v)
  if not v then
    HN[k] = 0
    return
  end
  -- The common form, a count of one digit alone, without a pattern.
  if #v == 1 then
    local d = string.byte(v) - 48
    if d >= 0 and d <= 9 then
      HN[k] = d
      return
    end
  end
  local n, flags = string.match(v, '^(%d+)(.*)$')
  local w = HELD_FLAGS[flags]
  if w == nil then
    -- A damaged field: assume the key is in use by its own keys and
    -- windows, so its jobs take the slow path, which rewrites the field,
    -- and count nothing running.
    HN[k], HW[k], HS[k], HS0[k], HDIRTY[k] = 0, true, true, true, true
    return
  end
  HN[k] = tonumber(n)
  if w then HW[k] = true end
  if flags == ' s' or flags == ' w s' then HS[k], HS0[k] = true, true end
end

-- Reads the fields of many keys with one HMGET.
local function held_load(ckeys)
  local want = {}
  for i = 1, #ckeys do
    local k = ckeys[i]
    if HN[k] == nil then
      HN[k] = false
      want[#want + 1] = k
    end
  end
  if #want == 0 then return end
  local v = hmget_all(RUNNING, want)
  for i = 1, #want do parse_held(want[i], v[i]) end
end

-- K's running count, read if this call has not yet.
local function held_count(ckey)
  local n = HN[ckey]
  if not n then
    parse_held(ckey, redis.call('HGET', RUNNING, ckey))
    n = HN[ckey]
  end
  return n
end

-- One more (d = 1) or one fewer (d = -1) execution of K running; `window`
-- is a new one's, `id` its job's.
local function running_add(ckey, d, window, id)
  local n = held_count(ckey)
  if d > 0 and n == 0 and id then held_in_use[ckey] = id end
  n = n + d
  if n < 0 then n = 0 end
  HN[ckey] = n
  if d > 0 and window ~= 0 then HW[ckey] = true end
  if n == 0 then HW[ckey] = nil end
  HDIRTY[ckey] = true
end

-- Whether K's jobs need slots:K and wait:K.
local function is_structured(ckey)
  held_count(ckey)
  return HS[ckey] == true
end

-- This call uses K's own keys: until the end of the call, when its " s" is
-- worked out again, K counts as having keys of its own.
local function touch_key(ckey, slots, wait)
  held_count(ckey)
  held_touched[ckey] = { slots = slots, wait = wait }
  HS[ckey] = true
end

-- Numbers read from text, kept for the call: the stamped limits of a
-- batch repeat, and tonumber() parses its text with strtod each time.
-- Only text is kept: a decoded spec gives numbers, and NaN cannot be a
-- table key.
local NUMS = {}
local function number_of(s)
  local v = tonumber(s)
  if type(s) == 'string' then NUMS[s] = v or false end
  return v
end

-- The limit stamped on job `id` for key `ckey`: max (at least 1) and
-- window_ms, or nil when its spec is missing, names another key or has no
-- valid limit. Read off the spec's head without decoding it (the key then
-- reads the same in JSON: a key the JSON escapes is not found this way,
-- and is decoded), else decoded.
local function stamped_limit(id, ckey)
  local raw = raw_spec(id)
  if not raw then return nil end
  local m, w = nil, nil
  local p = nil
  -- A backslash in the key could stand for another key's escaped text.
  if not string.find(ckey, '\\', 1, true) then
    p = string.find(raw, ',"ckey":"' .. ckey .. '","max":', 1, true)
  end
  if p then
    local cut = string.find(raw, ',"args":', 1, true)
    if not cut or p > cut then return nil end
    m, w = string.match(raw, '^(%d+),"window_ms":(%d+)', p + #ckey + 17)
  else
    local spec = spec_of(id)
    if spec and spec.ckey == ckey then m, w = spec.max, spec.window_ms end
  end
  m, w = NUMS[m] or number_of(m), NUMS[w] or number_of(w)
  if not m or not w or m < 1 then return nil end
  return m, w
end

-- The limit a fresh keyed job's state carries ("queued 0 <ms>
-- limit=<max>/<window_ms>", see jobs.lua): max (at least 1) and window_ms,
-- or false when the state carries none, or a malformed one. Parsed once per
-- distinct state text: the jobs of an enqueue batch share one.
local STATE_MAX, STATE_WIN = {}, {}
local function state_limit(s)
  if not s then return false end
  local m = STATE_MAX[s]
  if m == nil then
    m = false
    local a, b = string.match(s, '^queued 0 %d+ limit=(%d+)/(%d+)$')
    if a and #a <= 15 and #b <= 15 and tonumber(a) >= 1 then
      m = tonumber(a)
      STATE_WIN[s] = tonumber(b)
    end
    STATE_MAX[s] = m
  end
  return m, STATE_WIN[s]
end

-- Writes the counts this call changed, with one HSET and one HDEL: a key
-- with nothing running and no keys of its own leaves no field behind.
local function flush_held()
  local back, ids = {}, {}
  for k, id in pairs(held_in_use) do
    back[#back + 1] = k
    ids[#ids + 1] = id
  end
  if #back > 0 then
    local have, add = hmget_all(LIMITS, back), {}
    for i = 1, #back do
      if not have[i] then
        local m, w = stamped_limit(ids[i], back[i])
        if m then
          add[#add + 1] = back[i]
          add[#add + 1] = string.format('%d %d', m, w)
        end
      end
    end
    hset_pairs(LIMITS, add)
    held_in_use = {}
  end
  for k, kk in pairs(held_touched) do
    local s = redis.call('EXISTS', kk.slots) == 1 or redis.call('LLEN', kk.wait) > 0
      or redis.call('HEXISTS', LIMITS, OVERRIDE_MARK .. k) == 1
    if s then HS[k] = true else HS[k] = nil end
    if s ~= (HS0[k] == true) then HDIRTY[k] = true end
  end
  held_touched = {}
  local sets, dels = {}, {}
  for k in pairs(HDIRTY) do
    local n, s = HN[k], HS[k]
    if n == 0 and not s then
      dels[#dels + 1] = k
    else
      local v = HELD_DIGITS[n] or string.format('%d', n)
      if HW[k] then v = v .. ' w' end
      if s then v = v .. ' s' end
      sets[#sets + 1] = k
      sets[#sets + 1] = v
    end
    HS0[k] = s
  end
  HDIRTY = {}
  if #sets > 0 then
    sets[#sets + 1] = HELD_PIN
    sets[#sets + 1] = HELD_PIN_TEXT
    hset_pairs(RUNNING, sets)
  end
  if #dels > 0 then
    for i = 1, #dels, 4000 do
      redis.call('HDEL', RUNNING, unpack(dels, i, math.min(i + 3999, #dels)))
    end
    -- Only the pin left: nothing runs, and nothing is left behind.
    if redis.call('HLEN', RUNNING) == 1 and redis.call('HEXISTS', RUNNING, HELD_PIN) == 1 then
      redis.call('DEL', RUNNING)
    end
  end
end

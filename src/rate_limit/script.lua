-- The fleet's rolling windows of one budget, kept in the store: one call checks and records
-- atomically, on the store's own clock, so every sidecar sees the same count.
--
-- KEYS[1]  the budget's requests: a sorted set, member -> finish time (ms, store clock). A
--          request in flight carries its admission time + lease until its release, so it
--          counts in every window until it finishes (or its lease runs out).
-- KEYS[2]  the budget's epoch: a number that changes when the store lost KEYS[1] (restarted
--          empty); a sidecar then first pushes its own recent requests back ("seed").
-- Both keys carry the budget as their hash tag, so they live on one Redis Cluster slot.
--
-- ARGV[1]  "admit" | "release" | "seed"
-- ARGV[2]  the epoch the caller last saw (0: none yet)
-- ARGV[3]  an epoch to set if the store has none
-- ARGV[4]  lease (ms): how long an unreleased request counts as in flight
-- ARGV[5]  the longest window (ms)
-- admit:   ARGV[6] member, ARGV[7..] pairs of (requests, per in ms)
--          -> {1, epoch} admitted | {0, wait ms, 1 if a full window waits on a request in
--             flight} | {2, epoch} the epoch is not ARGV[2]: seed, then admit again
-- release: ARGV[6] member -> {1}: it finished now
-- seed:    ARGV[6] member prefix, ARGV[7..] how long ago each request finished (ms), -1 for
--          one still in flight -> {1, epoch} | {2, epoch} as for admit

if redis.replicate_commands then
  pcall(redis.replicate_commands)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mode = ARGV[1]

if mode == 'release' then
  redis.call('ZADD', KEYS[1], 'XX', now, ARGV[6])
  return {1}
end

local epoch = tonumber(redis.call('GET', KEYS[2]) or 0)
if epoch == 0 then
  epoch = tonumber(ARGV[3])
  redis.call('SET', KEYS[2], epoch)
end
if tonumber(ARGV[2]) ~= epoch then
  return {2, epoch}
end

local lease = tonumber(ARGV[4])
local longest = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now - longest))

if mode == 'seed' then
  for i = 7, #ARGV do
    local age = tonumber(ARGV[i])
    local score = now - age
    if age < 0 then
      score = now + lease
    end
    redis.call('ZADD', KEYS[1], string.format('%d', score), ARGV[6] .. ':' .. (i - 6))
  end
  redis.call('PEXPIRE', KEYS[1], longest + lease + 1000)
  return {1, epoch}
end

local wait = 0
local busy = 0
for i = 7, #ARGV, 2 do
  local limit = tonumber(ARGV[i])
  local per = tonumber(ARGV[i + 1])
  local from = string.format('(%d', now - per)
  local used = redis.call('ZCOUNT', KEYS[1], from, '+inf')
  if used >= limit then
    -- The (used - limit + 1)-th oldest request in the window must leave it first.
    local e = redis.call('ZRANGEBYSCORE', KEYS[1], from, '+inf', 'WITHSCORES', 'LIMIT', used - limit, 1)
    local s = tonumber(e[2])
    if s > now then
      busy = 1
    elseif s + per - now > wait then
      wait = s + per - now
    end
  end
end
if wait == 0 and busy == 0 then
  redis.call('ZADD', KEYS[1], string.format('%d', now + lease), ARGV[6])
  redis.call('PEXPIRE', KEYS[1], longest + lease + 1000)
  return {1, epoch}
end
return {0, wait, busy}

-- A journaled session (CONTRACT §10) observes nothing that a replay could not give it again:
-- math.random starts from the journaled seed, and os.time() / os.clock() ask the host, which
-- journals their values (and gives them back while a revived session replays).
-- Run once, after the bootstrap, as journaled(host, seed).
local host, seed = ...
math.randomseed(seed)
local time = os.time
os.time = function(t)
  if t ~= nil then return time(t) end
  return host("os_time")
end
os.clock = function() return host("os_clock") end

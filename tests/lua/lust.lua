-- A small test runner with lust's interface, for running algocline's own Lua specs on bare
-- lupa (algocline_nb's code, written for these tests; not lust itself).
--
--   describe(name, fn)    a group; groups nest, and their names prefix the test's name
--   it(name, fn)          one test: it passes unless fn raises
--   before(fn), after(fn) run around every test of the current group and of its subgroups
--                         (outer groups' before first, their after last); fn gets the test name
--   expect(v).to.<m>(...), expect(v).to_not.<m>(...), with the chain words be / have / a / an
--     equal(x[, eps])     deep equality (tables compared key by key; numbers within eps)
--     be(x)               raw equality (==)
--     exist()             not nil
--     truthy()            neither nil nor false
--     a(type_name)        type(v) == type_name (a table: getmetatable(v) == the table)
--     match(pattern)      tostring(v):find(pattern)
--     have(x)             v is a table holding x among its values
--     fail([pattern])     v is a function that raises (with a message matching pattern)
--
-- Every test's outcome lands in lust.results as {name = "group > ... > test", ok = bool,
-- err = message|nil}; lust.counts() gives passed, failed.
local lust = { results = {} }

local groups = { { name = nil, before = {}, after = {} } }

local function full_name(name)
  local parts = {}
  for i = 2, #groups do parts[#parts + 1] = groups[i].name end
  parts[#parts + 1] = name
  return table.concat(parts, " > ")
end

function lust.describe(name, fn)
  groups[#groups + 1] = { name = tostring(name), before = {}, after = {} }
  local ok, err = pcall(fn)
  groups[#groups] = nil
  if not ok then
    -- an error in a group's own body (outside any `it`) is a failure of that group
    lust.results[#lust.results + 1] = {
      name = full_name(tostring(name)) .. " (group body)", ok = false, err = tostring(err),
    }
  end
end

local function traceback(msg)
  if type(msg) ~= "string" then msg = tostring(msg) end
  local tb = debug and debug.traceback
  return tb and tb(msg, 2) or msg
end

function lust.it(name, fn)
  local title = full_name(tostring(name))
  local ok, err = true, nil
  for i = 1, #groups do
    for _, hook in ipairs(groups[i].before) do
      if ok then ok, err = xpcall(hook, traceback, title) end
    end
  end
  if ok then ok, err = xpcall(fn, traceback) end
  for i = #groups, 1, -1 do
    for _, hook in ipairs(groups[i].after) do
      local hook_ok, hook_err = xpcall(hook, traceback, title)
      if ok and not hook_ok then ok, err = false, hook_err end
    end
  end
  lust.results[#lust.results + 1] = { name = title, ok = ok, err = err }
end

function lust.before(fn) local g = groups[#groups]; g.before[#g.before + 1] = fn end
function lust.after(fn) local g = groups[#groups]; g.after[#g.after + 1] = fn end

function lust.counts()
  local passed, failed = 0, 0
  for _, r in ipairs(lust.results) do
    if r.ok then passed = passed + 1 else failed = failed + 1 end
  end
  return passed, failed
end

-- ------------------------------------------------------------------ matchers

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

local function deep_equal(a, b, eps, seen)
  if type(a) == "number" and type(b) == "number" and eps then
    return math.abs(a - b) <= eps
  end
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  if a == b then return true end
  seen = seen or {}
  if seen[a] == b then return true end
  seen[a] = b
  for k, v in pairs(a) do
    if not deep_equal(v, b[k], eps, seen) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

-- Each matcher gives (holds, message when it should hold, message when it should not).
local matchers = {}

function matchers.equal(v, x, eps)
  return deep_equal(v, x, eps),
    "expected " .. show(v) .. " to equal " .. show(x),
    "expected " .. show(v) .. " to not equal " .. show(x)
end

function matchers.be(v, x)
  return v == x, "expected " .. show(v) .. " to be " .. show(x),
    "expected " .. show(v) .. " to not be " .. show(x)
end

function matchers.exist(v)
  return v ~= nil, "expected a value, got nil", "expected nil, got " .. show(v)
end

function matchers.truthy(v)
  return not not v, "expected " .. show(v) .. " to be truthy",
    "expected " .. show(v) .. " to not be truthy"
end

function matchers.a(v, kind)
  local holds
  if type(kind) == "table" then holds = getmetatable(v) == kind else holds = type(v) == kind end
  return holds, "expected " .. show(v) .. " to be a " .. show(kind),
    "expected " .. show(v) .. " to not be a " .. show(kind)
end
matchers.an = matchers.a

function matchers.match(v, pattern)
  local holds = type(pattern) == "string" and tostring(v):find(pattern) ~= nil
  return holds, "expected " .. show(v) .. " to match " .. show(pattern),
    "expected " .. show(v) .. " to not match " .. show(pattern)
end

function matchers.have(v, x)
  local holds = false
  if type(v) == "table" then
    for _, item in pairs(v) do
      if deep_equal(item, x) then holds = true; break end
    end
  end
  return holds, "expected " .. show(v) .. " to have " .. show(x),
    "expected " .. show(v) .. " to not have " .. show(x)
end

function matchers.fail(v, pattern)
  if type(v) ~= "function" then
    return false, "expected a function to call, got " .. show(v),
      "expected a function to call, got " .. show(v)
  end
  local ok, err = pcall(v)
  local holds = not ok
  if holds and pattern ~= nil then holds = tostring(err):find(pattern) ~= nil end
  local what = pattern ~= nil and (" with an error matching " .. show(pattern)) or ""
  return holds, "expected the function to fail" .. what .. (ok and "" or (", got " .. show(err))),
    "expected the function to not fail" .. what .. ", got " .. show(err)
end

-- `expect(v).to` / `.to_not`: each matcher is a field, and so is each chain word, which
-- leads to the same matchers (`to.be.truthy()`, `to.be.a("table")`); `to.be(x)` is a call.
local CHAIN = { be = true, have = true, a = true, an = true }

local function assertion(v, negated)
  local function check(key)
    local m = matchers[key]
    if not m then error("lust: unknown matcher '" .. tostring(key) .. "'", 3) end
    return function(...)
      local holds, yes_msg, no_msg = m(v, ...)
      if negated then holds = not holds end
      if not holds then error(negated and no_msg or yes_msg, 2) end
    end
  end
  local node
  node = setmetatable({}, {
    __index = function(_, key)
      if CHAIN[key] and key ~= "a" and key ~= "an" then
        return setmetatable({}, {
          __index = function(_, k) return node[k] end,
          __call = function(_, ...) return check(key)(...) end,
        })
      end
      return check(key)
    end,
  })
  return node
end

function lust.expect(v)
  return { to = assertion(v, false), to_not = assertion(v, true) }
end

return lust

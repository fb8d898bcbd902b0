-- Per-session runtime set-up: the alc.* core, the sandbox, and the driver of the strategy.
--
-- Run once per session runtime as  bootstrap(host, NULL, config)  and returns two functions:
--   prepare(code, ctx_json, chunkname) -> true | nil, message
--   step(status, value)                -> tag, ...
-- `host(op, ...)` is the session's Python bridge; it is kept in upvalues only, never in _G.
-- The strategy runs in one coroutine; alc.llm / alc.llm_batch yield a request to the driver,
-- which answers by calling step() again. Steps return:
--   "pause", n, prompt, system|false, max_tokens, grounded, underspecified   (n == 1)
--   "pause", n, flat                                   (n > 1: 5 fields per query, in order)
--   "done", json_text | "error", message | "cancelled" | "oom", message
local host, NULL, config = ...

local traceback, sethook = debug.traceback, debug.sethook
local co_create, co_resume, co_status = coroutine.create, coroutine.resume, coroutine.status
local co_yield, co_running = coroutine.yield, coroutine.running
local raw_pcall, raw_xpcall, raw_load, raw_loadfile = pcall, xpcall, load, loadfile
local type, tostring, error, select, rawget, rawset = type, tostring, error, select, rawget, rawset
local setmetatable, tointeger, concat = setmetatable, math.tointeger, table.concat

local LLM = setmetatable({}, { __name = "alc.llm request" })
local CANCEL = setmetatable({}, { __tostring = function() return "session cancelled" end })
local budgeted = config.budgeted
local main_co

-- ------------------------------------------------------------------ lazily loaded modules

local json
local function need_json()
  if not json then
    json = raw_load(host("source", "json"), "=json", "t")(NULL)
  end
  return json
end

local alc = { null = NULL }
_G.alc = alc

function alc.json_encode(value) return need_json().encode(value) end
function alc.json_decode(text)
  if type(text) ~= "string" then error("alc.json_decode: expected a string, got " .. type(text), 2) end
  return need_json().decode(text)
end

-- Everything else of alc.* (the prelude) loads on first use: sessions that only call
-- alc.llm keep their runtime small.
setmetatable(alc, {
  __index = function(t, key)
    setmetatable(t, nil)
    local prelude = host("source", "prelude")
    if prelude then raw_load(prelude, "=alc.prelude", "t")() end
    return rawget(t, key)
  end,
})

-- ------------------------------------------------------------------ LLM requests

local function budget_check(n)
  if budgeted then
    local err = host("budget", n)
    if err then error(err, 0) end
  end
end

local function answer(status, value)
  if status then return value end
  error(value, 0)
end

local function query_fields(q, where)
  local prompt = q.prompt
  if type(prompt) == "number" then prompt = tostring(prompt) end
  if type(prompt) ~= "string" then
    error(where .. ": prompt must be a string, got " .. type(prompt), 3)
  end
  local system = q.system
  if type(system) ~= "string" then system = false end
  local max_tokens = q.max_tokens
  if max_tokens == nil then
    max_tokens = 1024
  else
    max_tokens = tointeger(max_tokens)
    if not max_tokens or max_tokens < 0 then
      error(where .. ": max_tokens must be a non-negative integer", 3)
    end
  end
  return prompt, system, max_tokens, q.grounded == true, q.underspecified == true
end

local EMPTY = {}

function alc.llm(prompt, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("alc.llm: opts must be a table, got " .. type(opts), 2)
  end
  opts = opts or EMPTY
  local system = opts.system
  local p, s, m, g, u = query_fields(
    { prompt = prompt, system = system, max_tokens = opts.max_tokens,
      grounded = opts.grounded, underspecified = opts.underspecified },
    "alc.llm")
  budget_check(1)
  return answer(co_yield(LLM, 1, p, s, m, g, u))
end

function alc.llm_batch(items)
  if type(items) ~= "table" then error("alc.llm_batch: expected an array of items", 2) end
  local n = #items
  if n == 0 then error("alc.llm_batch: empty items array", 2) end
  local flat, k = {}, 0
  for i = 1, n do
    local item = items[i]
    if type(item) ~= "table" then error("alc.llm_batch: item " .. i .. " is not a table", 2) end
    local p, s, m, g, u = query_fields(item, "alc.llm_batch item " .. i)
    flat[k + 1], flat[k + 2], flat[k + 3], flat[k + 4], flat[k + 5] = p, s, m, g, u
    k = k + 5
  end
  budget_check(n)
  if n == 1 then
    return { answer(co_yield(LLM, 1, flat[1], flat[2], flat[3], flat[4], flat[5])) }
  end
  return answer(co_yield(LLM, n, flat))
end

-- ------------------------------------------------------------------ host services

local function text(v)
  if v == nil then return "" end
  return tostring(v)
end

function alc.log(level, msg, ...)
  if msg == nil and select("#", ...) == 0 then level, msg = "info", level end
  host("log", text(level), text(msg))
end

function alc.progress(step, total, msg)
  -- numbers (or numeric strings) only: a progress event must carry a numeric step
  local s = step ~= nil and tonumber(step) or nil
  local t = total ~= nil and tonumber(total) or nil
  if s == nil then error("alc.progress: step must be a number, got " .. type(step), 2) end
  if total ~= nil and t == nil then
    error("alc.progress: total must be a number, got " .. type(total), 2)
  end
  host("progress", s, t, msg ~= nil and tostring(msg) or nil)
end

function alc.time() return host("time") end

function alc.budget_remaining()
  if not budgeted then return nil end
  local calls, ms, tokens = host("budget_remaining")
  if calls == nil then calls = NULL end
  if ms == nil then ms = NULL end
  if tokens == nil then tokens = NULL end
  return { llm_calls = calls, elapsed_ms = ms, tokens = tokens }
end

local stats = {}
alc.stats = {
  record = function(key, value)
    stats[tostring(key)] = value
    host("stat", tostring(key), need_json().encode(value))
  end,
  get = function(key) return stats[tostring(key)] end,
}

alc._dirs = { state = config.state_dir, cards = config.cards_dir, scenarios = config.scenarios_dir }

-- ------------------------------------------------------------------ alc.state (persistent)

-- The registry's JSON file store (`<app_dir>/state/<ns>.json`) answers host("state_<op>", ns,
-- ...) with true, result | false, message. Values cross as JSON text, so they keep algocline's
-- conversion rules (ints vs floats, null, arrays). The namespace is fixed when the session
-- starts: ctx._ns when it is a string, else "default" (prepare() sets it).
local state_ns = "default"
local utf8_len = utf8.len

local function state_call(op, ...)
  local ok, res = host("state_" .. op, state_ns, ...)
  if not ok then error(res, 3) end
  return res
end

local function state_key(key, fn)
  local t = type(key)
  if t == "number" then return tostring(key) end
  if t ~= "string" then error("alc.state." .. fn .. ": key must be a string, got " .. t, 3) end
  if not utf8_len(key) then error("alc.state." .. fn .. ": key must be valid UTF-8 text", 3) end
  return key
end

local function state_value(value, fn)
  local ok, res = raw_pcall(need_json().encode, value)
  if not ok then error("alc.state." .. fn .. ": the value is not JSON-able: " .. tostring(res), 3) end
  if not utf8_len(res) then error("alc.state." .. fn .. ": the value holds text that is not UTF-8", 3) end
  return res
end

local state = {}
function state.get(key, default)
  local found = state_call("get", state_key(key, "get"))
  if found == nil then return default end
  return need_json().decode(found)
end
function state.set(key, value)
  state_call("set", state_key(key, "set"), state_value(value, "set"))
end
-- (no tail calls to state_call: its error level 3 must be the strategy's line)
function state.set_nx(key, value)
  local written = state_call("set_nx", state_key(key, "set_nx"), state_value(value, "set_nx"))
  return written
end
function state.delete(key)
  local existed = state_call("delete", state_key(key, "delete"))
  return existed
end
function state.has(key)
  local found = state_call("has", state_key(key, "has"))
  return found
end
function state.keys()
  local out, arr = {}, need_json().decode(state_call("keys"))
  for i = 1, #arr do out[i] = arr[i] end
  return out
end
function state.incr(key, delta, default)
  key = state_key(key, "incr")
  if delta == nil then delta = 1 end
  if default == nil then default = 0 end
  if type(delta) ~= "number" then error("alc.state.incr: delta must be a number", 2) end
  if type(default) ~= "number" then error("alc.state.incr: default must be a number", 2) end
  local value = state_call("incr", key, delta, default)
  return value
end
-- alc.state.update lives in the prelude: a missing key loads it (any missing alc key does).
setmetatable(state, {
  __index = function(t, key)
    setmetatable(t, nil)
    local _ = alc.__prelude
    return rawget(t, key)
  end,
})
alc.state = state

-- ------------------------------------------------------------------ packages (require)

local io_open, searchpath, sformat, package_lib = io.open, package.searchpath, string.format, package

-- Replaces Lua's file searcher (kept working when the sandbox removes io). It searches
-- package.path the same way, but names a chunk after its file relative to the package root
-- ("@cot/init.lua", so errors read "cot/init.lua:12: ..."), and runs a module with no
-- arguments, as algocline's loader does. A miss lists every file it tried.
local function package_searcher(name)
  local path = package_lib.path
  if type(path) ~= "string" then error("package.path must be a string", 0) end
  local tried = {}
  for template in path:gmatch("[^;]+") do
    local file, miss = searchpath(name, template)
    if file then
      local root = template:match("^[^?]*"):match("^(.*[/\\])") or ""
      local f, err = io_open(file, "rb")
      local src = f and f:read("a")
      if f then f:close() end
      local chunk
      if src then chunk, err = raw_load(src, "@" .. file:sub(#root + 1), "t") end
      if not chunk then
        error(sformat("error loading module '%s' from file '%s':\n\t%s", name, file,
          tostring(err or "cannot read the file")), 0)
      end
      return function() return chunk() end, file
    end
    tried[#tried + 1] = miss
  end
  return concat(tried, "\n\t")
end

function print(...)
  local n, parts = select("#", ...), {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  host("log", "info", concat(parts, "\t"))
end

-- ------------------------------------------------------------------ sandbox

debug = nil
python = nil
package.loaded.debug = nil
package.loaded.python = nil
package.cpath = ""
package.loadlib = function() return nil, "C modules are not allowed in algocline_nb", "absent" end
local searchers = package.searchers
searchers[4], searchers[3] = nil, nil
searchers[2] = package_searcher
package.path = config.package_path

-- Binary chunks can corrupt the VM: only source text is ever loaded.
function load(chunk, name, _, env)
  if env == nil then return raw_load(chunk, name, "t") end
  return raw_load(chunk, name, "t", env)
end
function loadfile(name, _, env)
  if env == nil then return raw_loadfile(name, "t") end
  return raw_loadfile(name, "t", env)
end
function dofile(name)
  local f, err = raw_loadfile(name, "t")
  if not f then error(err, 2) end
  return f()
end

-- os.exit would end the whole Python process (the notebook's kernel).
os.exit = function() error("os.exit is not available in an algocline_nb session", 2) end
if config.sandbox then
  io = nil
  package.loaded.io = nil
  os.execute, os.remove, os.rename = nil, nil, nil
end

-- A cancelled session's error must not be swallowed by the strategy's own pcall, and an
-- alc.llm request made inside a strategy's own coroutine travels up to the driver.
local function keep_cancel(ok, ...)
  if not ok and (...) == CANCEL then error(CANCEL, 0) end
  return ok, ...
end
function pcall(f, ...) return keep_cancel(raw_pcall(f, ...)) end
function xpcall(f, handler, ...)
  return keep_cancel(raw_xpcall(f, function(m)
    if m == CANCEL then return m end
    return handler(m)
  end, ...))
end

-- Hooks are per coroutine in Lua: the strategy's own coroutines get the cancellation hook too,
-- so a loop spinning inside one is cancelled like any other.
local function hook()
  if host("cancelled") then error(CANCEL, 0) end
end
local function new_co(f)
  local co = co_create(f)
  sethook(co, hook, "", config.hook_count)
  return co
end
function coroutine.create(f) return new_co(f) end

local function relay(co, ok, first, ...)
  if ok and first == LLM and co_status(co) == "suspended" then
    return relay(co, co_resume(co, co_yield(LLM, ...)))
  end
  if not ok and first == CANCEL then error(CANCEL, 0) end
  return ok, first, ...
end
function coroutine.resume(co, ...) return relay(co, co_resume(co, ...)) end
local function unwrap(ok, ...)
  if ok then return ... end
  error((...), 0)
end
function coroutine.wrap(f)
  local co = new_co(f)
  return function(...) return unwrap(relay(co, co_resume(co, ...))) end
end

-- ------------------------------------------------------------------ the driver

local function render(m)
  if type(m) == "table" then
    local ok, s = raw_pcall(function() return need_json().encode(m) end)
    if ok then return "error object: " .. s end
  end
  return tostring(m)
end

local function on_error(m)
  if m == CANCEL then return m end
  return traceback(render(m), 2)
end

local function prepare(code, ctx_json, chunkname)
  -- A chunk is the body of a function: top-level `return` gives the result, and syntax
  -- errors point at the user's own lines.
  local body, err = raw_load(code, chunkname, "t")
  if not body then return nil, err end
  if ctx_json then
    ctx = need_json().decode(ctx_json)
  else
    ctx = {}
  end
  if type(ctx._ns) == "string" then state_ns = ctx._ns end
  main_co = co_create(function() return raw_xpcall(body, on_error) end)
  sethook(main_co, hook, "", config.hook_count)
  return true
end

local function finish(co, ok, tag, a, b, ...)
  if not ok then
    if tag == "not enough memory" then return "oom", tag end
    return "error", render(tag)
  end
  if tag == LLM then
    if a == 1 then return "pause", 1, b, ... end
    return "pause", a, b
  end
  if co_status(co) ~= "dead" then
    return "error", "the strategy called coroutine.yield outside of a coroutine of its own"
  end
  if tag then
    local encoded, res = raw_pcall(need_json().encode, a)
    if encoded then return "done", res end
    return "error", "the strategy's result cannot be encoded as JSON: " .. tostring(res)
  end
  if a == CANCEL then return "cancelled" end
  if a == "not enough memory" then return "oom", a end
  return "error", a
end

local function step(status, value)
  if host("cancelled") then return "cancelled" end
  return finish(main_co, co_resume(main_co, status, value))
end

return prepare, step

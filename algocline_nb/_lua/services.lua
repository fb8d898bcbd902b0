-- alc.* services loaded on first use (most paused sessions never need them): log, progress,
-- time, budget_remaining, stats, _dirs, state, the package searcher, print and the loaders.
--
-- Run by bootstrap.lua with the core's private pieces as arguments (see services() there);
-- `info()` gives the session's namespace and the hook count for new coroutines.
local host, NULL, alc, need_json, LLM, CANCEL, hook, sethook, co_create, co_resume, co_status,
  co_yield, co_isyieldable, rt, PREEMPT, raw_load, raw_loadfile, io_open, info, budgeted,
  state_dir, cards_dir, scenarios_dir, sandbox, root_path = ...
local raw_pcall = pcall
local type, tostring, tonumber, error, select, rawget = type, tostring, tonumber, error, select, rawget
local setmetatable, concat = setmetatable, table.concat

-- ------------------------------------------------------------------ host services

function alc.json_encode(value) return need_json().encode(value) end
function alc.json_decode(text)
  if type(text) ~= "string" then error("alc.json_decode: expected a string, got " .. type(text), 2) end
  return need_json().decode(text)
end

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

alc._dirs = { state = state_dir, cards = cards_dir, scenarios = scenarios_dir }

-- ------------------------------------------------------------------ alc.state (persistent)

-- The registry's JSON file store (`<app_dir>/state/<ns>.json`) answers host("state_<op>", ns,
-- ...) with true, result | false, message. Values cross as JSON text, so they keep algocline's
-- conversion rules (ints vs floats, null, arrays). The namespace is fixed when the session
-- starts: ctx._ns when it is a string, else "default" (prepare() sets it).
local utf8_len = utf8.len

local function state_call(op, ...)
  local ok, res = host("state_" .. op, (info()), ...)
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

local searchpath, sformat, package_lib = package.searchpath, string.format, package

-- Replaces Lua's file searcher (kept working when the sandbox removes io). It searches
-- package.path the same way, but names a chunk after its file relative to the package root
-- ("@cot/init.lua", so errors read "cot/init.lua:12: ..."), and runs a module with no
-- arguments, as algocline's loader does. A miss lists every file it tried.
local function package_searcher(name)
  -- sandboxed: the registry's roots, whatever the strategy wrote into package.path
  local path = sandbox and root_path or package_lib.path
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

local function print_(...)
  local n, parts = select("#", ...), {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  host("log", "info", concat(parts, "\t"))
end

-- ------------------------------------------------------------------ loaders and coroutines

-- Binary chunks can corrupt the VM: only source text is ever loaded.
local function load_(chunk, name, _, env)
  if env == nil then return raw_load(chunk, name, "t") end
  return raw_load(chunk, name, "t", env)
end
-- Sandboxed, a file is read only if it resolves (symlinks followed) to one under a package root.
local function confined(name)
  if not sandbox then return name end
  if type(name) ~= "string" then return nil, "a file name is needed in a sandboxed session" end
  local path = host("confine", name)
  if not path then
    return nil, "cannot read " .. name .. ": outside the package roots of a sandboxed session"
  end
  return path
end
local function loadfile_(name, _, env)
  local path, why = confined(name)
  if not path then return nil, why end
  if env == nil then return raw_loadfile(path, "t") end
  return raw_loadfile(path, "t", env)
end
local function dofile_(name)
  local path, why = confined(name)
  if not path then error(why, 2) end
  local f, err = raw_loadfile(path, "t")
  if not f then error(err, 2) end
  return f()
end

-- Hooks are per coroutine in Lua: the strategy's own coroutines get the cancellation hook (and
-- then the runtime's C hook over it, which hands back to it on cancellation), and an alc.llm
-- request made inside one travels up to the driver and its answer back down. When the C hook
-- suspends a coroutine because the step's slice is over, the relay suspends every coroutine
-- above it too, up to the driver; the next step resumes them all where they were.
local function create(f)
  local co = co_create(f)
  sethook(co, hook, "", select(2, info()))
  rt("adopt", sformat("%p", co))
  return co
end
local function relay(co, ok, first, ...)
  if ok and co_status(co) == "suspended" then
    if first == LLM then return relay(co, co_resume(co, co_yield(LLM, ...))) end
    if first == PREEMPT
      or (first == nil and select("#", ...) == 0 and rt("preempted", sformat("%p", co))) then
      if co_isyieldable() then co_yield(PREEMPT) end
      return relay(co, co_resume(co))
    end
  end
  if not ok and first == CANCEL then error(CANCEL, 0) end
  return ok, first, ...
end
local function resume(co, ...) return relay(co, co_resume(co, ...)) end
local function unwrap(ok, ...)
  if ok then return ... end
  error((...), 0)
end
local function wrap(f)
  local co = create(f)
  return function(...) return unwrap(relay(co, co_resume(co, ...))) end
end

-- os.exit would end the whole Python process (the notebook's kernel).
local function exit() error("os.exit is not available in an algocline_nb session", 2) end
local function setlocale()
  error("os.setlocale is not available in an algocline_nb session (it would change how every"
    .. " session of the process reads and writes numbers)", 2)
end
local function loadlib() return nil, "C modules are not allowed in algocline_nb", "absent" end

return {
  searcher = package_searcher, exit = exit, setlocale = setlocale, loadlib = loadlib, print = print_, load = load_,
  loadfile = loadfile_, dofile = dofile_, create = create, resume = resume, wrap = wrap,
}


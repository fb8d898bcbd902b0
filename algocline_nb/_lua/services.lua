-- alc.* services loaded on first use (most paused sessions never need them): log, progress,
-- time, budget_remaining, stats, _dirs, state, print and the loaders.
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

-- alc.math (the original's mlua-mathlib module, in mathspecial/mathstats/mathlib.lua) loads on
-- its first use: until then an empty table whose metatable fetches the chunks and fills it.
local next_ = next
local function math_load(t)
  setmetatable(t, nil)
  local lib = raw_load(host("chunk", "mathspecial"), "=algocline_nb/mathspecial.lua", "b")(t)
  raw_load(host("chunk", "mathstats"), "=algocline_nb/mathstats.lua", "b")(t, lib)
  raw_load(host("chunk", "mathlib"), "=algocline_nb/mathlib.lua", "b")(t, lib)
end
alc.math = setmetatable({}, {
  __index = function(t, key) math_load(t); return rawget(t, key) end,
  __pairs = function(t) math_load(t); return next_, t, nil end,
})

-- ------------------------------------------------------------------ Eval support

-- evalframe reads files and the clock through a `std` global, which the original's host
-- injects for an Eval: alc._std() builds one from alc.* (json), the clock and file reads that a
-- sandboxed session may make only under the package roots and the scenarios folder.
local function readable(path)
  if type(path) ~= "string" then return nil, "a file path (string) is needed" end
  if not sandbox then return path end
  local resolved = host("confine", path)
  if not resolved then
    return nil, "cannot read " .. path .. ": outside the package roots and the scenarios"
      .. " folder of a sandboxed session"
  end
  return resolved
end
local function fs_read(path)
  local p, why = readable(path)
  if not p then error("std.fs.read: " .. why, 2) end
  local f, err = io_open(p, "r")
  if not f then error("std.fs.read: " .. tostring(err or p), 2) end
  local body = f:read("a")
  f:close()
  return body
end
local function fs_is_file(path)
  local p = readable(path)
  local f = p and io_open(p, "r")
  if not f then return false end
  f:close()
  return true
end
function alc._std()
  return {
    json = { decode = alc.json_decode, encode = alc.json_encode },
    fs = { read = fs_read, is_file = fs_is_file },
    time = { now = alc.time },
  }
end
-- alc.eval marks where each case begins (the host then counts each case's tokens), and an
-- Eval session keeps its report under <app_dir>/evals (its id goes into the report).
function alc._eval_mark(n) host("eval_mark", n) end
local eval_impl
function alc._eval_impl(scenario, strategy, opts)
  if not eval_impl then
    eval_impl = raw_load(host("chunk", "eval"), "=algocline_nb/eval.lua", "b")()
  end
  return eval_impl(scenario, strategy, opts)
end
function alc._eval_save(report, strategy, label)
  local ok, text = raw_pcall(need_json().encode, report)
  if not ok then error("alc.eval: the report is not JSON-able: " .. tostring(text), 2) end
  local saved, id = host("eval_save", tostring(strategy), tostring(label), text)
  if saved then report.eval_id = id else host("log", "warn", tostring(id)) end
  return report
end

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

-- ------------------------------------------------------------------ alc.card (run records)

-- The registry's card store (algocline's FileCardStore: `<card_dir>/<pkg>/<card_id>.toml`,
-- samples beside them, `<card_dir>/_aliases.toml`) answers host("card_<op>", ...) with
-- true, result | false, message (see algocline_nb/_cards_bridge.py). Tables go as JSON text
-- and results come back as JSON text, so they keep algocline's conversion rules.
local function card_call(op, ...)
  local ok, res = host("card_" .. op, ...)
  if not ok then error(res, 3) end
  if res == nil then return nil end
  return need_json().decode(res)
end

-- A string argument (a number is taken as its text, as the original's bridge does).
local function card_text(v, fn, what)
  local t = type(v)
  if t == "number" then return tostring(v) end
  if t ~= "string" then error("alc.card." .. fn .. ": " .. what .. " must be a string, got " .. t, 3) end
  if not utf8_len(v) then error("alc.card." .. fn .. ": " .. what .. " must be valid UTF-8 text", 3) end
  return v
end

-- A table argument as JSON text (nil stays nil when the argument is optional).
local function card_json(v, fn, what, optional)
  if v == nil and optional then return nil end
  if type(v) ~= "table" then
    error("alc.card." .. fn .. ": " .. what .. " must be a table, got " .. type(v), 3)
  end
  local ok, res = raw_pcall(need_json().encode, v)
  if not ok then error("alc.card." .. fn .. ": " .. what .. " is not JSON-able: " .. tostring(res), 3) end
  if not utf8_len(res) then error("alc.card." .. fn .. ": " .. what .. " holds text that is not UTF-8", 3) end
  return res
end

-- (no tail calls to card_call: its error level 3 must be the strategy's line)
local card = {}
function card.create(t)
  local r = card_call("create", card_json(t, "create", "the card"))
  return r
end
function card.get(card_id)
  local r = card_call("get", card_text(card_id, "get", "card_id"))
  return r
end
function card.list(filter)
  local r = card_call("list", card_json(filter, "list", "filter", true))
  return r
end
function card.append(card_id, fields)
  local r = card_call("append", card_text(card_id, "append", "card_id"),
    card_json(fields, "append", "fields"))
  return r
end
function card.alias_set(name, card_id, opts)
  local r = card_call("alias_set", card_text(name, "alias_set", "name"),
    card_text(card_id, "alias_set", "card_id"), card_json(opts, "alias_set", "opts", true))
  return r
end
function card.alias_list(filter)
  local r = card_call("alias_list", card_json(filter, "alias_list", "filter", true))
  return r
end
function card.get_by_alias(name)
  local r = card_call("get_by_alias", card_text(name, "get_by_alias", "name"))
  return r
end
function card.find(query)
  local r = card_call("find", card_json(query, "find", "query", true))
  return r
end
function card.write_samples(card_id, samples)
  local r = card_call("write_samples", card_text(card_id, "write_samples", "card_id"),
    card_json(samples, "write_samples", "samples"))
  return r
end
function card.read_samples(card_id, opts)
  local r = card_call("read_samples", card_text(card_id, "read_samples", "card_id"),
    card_json(opts, "read_samples", "opts", true))
  return r
end
function card.lineage(query)
  local r = card_call("lineage", card_json(query, "lineage", "query"))
  return r
end
alc.card = card

local sformat = string.format

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
  exit = exit, setlocale = setlocale, loadlib = loadlib, print = print_, load = load_,
  loadfile = loadfile_, dofile = dofile_, create = create, resume = resume, wrap = wrap,
}


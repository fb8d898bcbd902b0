-- Per-session runtime set-up: the small core every session needs (alc.llm, the sandbox, the
-- driver). Everything else loads on first use: services.lua (host services, state, require,
-- print, loaders, coroutine relays) and then the prelude, so a paused session stays small.
--
-- Run once per runtime, in one host call (lupa's execute of the bytecode), as
--   bootstrap(host, NULL, budgeted, package_path, sandbox, hook_count, state_dir, cards_dir,
--             scenarios_dir, rt, code, ctx_ops, ctx_vals, chunkname)
--     -> step, shutdown, main_address, true, address | ..., nil, message
-- which sets up the core, then compiles the strategy `code` into its coroutine (`address`:
-- its lua_State*, for the host's hook) or returns the compile error `message`;
--   step(ok, value, level)             -> tag, ...
-- `host(op, ...)` is the session's Python bridge; it lives in upvalues only, never in _G.
-- alc.llm / alc.llm_batch yield their raw arguments; the host validates them and answers by
-- calling step(true, text_or_texts) or step(false, message, level). Steps return
--   "pause", prompt, opts | "batch", items | "done", json | "error", message
--   | "cancelled" | "oom", message | "preempted" | "yield"
-- "preempted": the slice of the step ran out inside one of the strategy's own coroutines (the
-- runtime's C hook suspended it and the relay suspended the driver's coroutine too); "yield":
-- the driver's coroutine was suspended without a value, by that hook (rt says) or by a stray
-- coroutine.yield of the strategy. Either way step(nil) continues it.
-- `rt(op, ...)` is the runtime's own bridge: rt("adopt", address) puts its C hook on a new
-- coroutine; rt("preempted", address) tells (once) whether that hook suspended it.
local host, NULL, budgeted, package_path, sandbox, hook_count, state_dir, cards_dir,
  scenarios_dir, rt, code, ctx_ops, ctx_vals, chunkname = ...

local traceback, sethook = debug.traceback, debug.sethook
local co_create, co_resume, co_status = coroutine.create, coroutine.resume, coroutine.status
local co_yield, co_running, co_isyieldable = coroutine.yield, coroutine.running,
  coroutine.isyieldable
local raw_load, raw_xpcall, raw_pcall = load, xpcall, pcall
local type, tostring, error, rawget, setmetatable = type, tostring, error, rawget, setmetatable
local next, gc, G, loaded = next, collectgarbage, _G, package.loaded

local LLM = setmetatable({}, { __name = "alc.llm request" })
local CANCEL = setmetatable({}, { __name = "session cancelled" })
local PREEMPT = setmetatable({}, { __name = "slice over" })
local main_co

local function answer(ok, value, level)
  if ok then return value end
  error(value, level or 0)
end

local alc = { null = NULL }
_G.alc = alc
-- The host reads only plain values and tables made here: the strategy's own tables are read
-- raw (rawget, rawlen), so no metamethod of theirs ever runs outside the strategy's coroutine.
local rawlen, utf8_len = rawlen, utf8.len
-- Text the host receives must be UTF-8: a prompt or system that is not raises here, in the
-- strategy, where pcall can catch it (the host would otherwise fail decoding it).
local function utf8_check(where, what, s)
  if type(s) == "string" and not utf8_len(s) then
    error(where .. ": " .. what .. " is not valid UTF-8 text", 3)
  end
end
local function raw_opts(opts, where)
  if type(opts) ~= "table" then return opts end
  local system = rawget(opts, "system")
  utf8_check(where, "system", system)
  return { system, rawget(opts, "max_tokens"), rawget(opts, "grounded"),
    rawget(opts, "underspecified"), n = 4 }
end
function alc.llm(prompt, opts)
  utf8_check("alc.llm", "prompt", prompt)
  return answer(co_yield(LLM, prompt, raw_opts(opts, "alc.llm")))
end
function alc.llm_batch(items)
  if type(items) ~= "table" then error("alc.llm_batch: expected an array of items", 2) end
  local n = rawlen(items)
  if n == 0 then error("alc.llm_batch: empty items array", 2) end
  local flat = {}
  for i = 1, n do
    local item = rawget(items, i)
    if type(item) ~= "table" then error("alc.llm_batch: item " .. i .. " is not a table", 2) end
    local prompt = rawget(item, "prompt")
    utf8_check("alc.llm_batch item " .. i, "prompt", prompt)
    flat[i] = { prompt, raw_opts(item, "alc.llm_batch item " .. i) }
  end
  return answer(co_yield(LLM, flat, LLM))
end

-- What json.lua's decoder marks arrays with: ctx tables the host builds carry it too, before
-- (and without) the JSON module ever loading.
local ARRAY_MT = { __name = "json.array" }
local json
local function need_json()
  if not json then
    json = raw_load(host("chunk", "json"), "=algocline_nb/json.lua", "b")(NULL, ARRAY_MT)
  end
  return json
end

-- The ctx as the host flattened it (``_ctx.flatten``): `ops` is one byte per step ("v" push the
-- next value, "n" push null, "o"/"a" pop a count of pairs/items into an object/array, the count
-- being the next value), `vals` the values in order. The tables are the ones json.lua's
-- decoder would build (objects plain, arrays marked, null the sentinel).
local sbyte = string.byte
local function build_ctx(ops, vals)
  local stack, sp, vi = {}, 0, 0
  for i = 1, #ops do
    local op = sbyte(ops, i)
    if op == 118 then
      vi = vi + 1
      sp = sp + 1
      stack[sp] = vals[vi]
    elseif op == 110 then
      sp = sp + 1
      stack[sp] = NULL
    else
      vi = vi + 1
      local n, t = vals[vi], {}
      local base
      if op == 111 then
        base = sp - 2 * n
        for j = base + 1, sp, 2 do t[stack[j]] = stack[j + 1] end
      else
        base = sp - n
        for j = 1, n do t[j] = stack[base + j] end
        setmetatable(t, ARRAY_MT)
      end
      for j = base + 2, sp do stack[j] = nil end
      sp = base + 1
      stack[sp] = t
    end
  end
  return stack[1]
end

local cancelled, ns = false, "default"
-- A cancelled session errors at its next hook; if the strategy swallows that error with pcall,
-- every following instruction errors again until the coroutine ends.
local function hook()
  if cancelled or host("cancelled") then
    cancelled = true
    sethook(co_running(), hook, "", 1)
    error(CANCEL, 0)
  end
end
-- The main state runs only the driver's own few lines, but give it the hook too: nothing of a
-- strategy can then run anywhere in this runtime where cancellation cannot reach it.
sethook(hook, "", hook_count)

-- The services get the core's private pieces as arguments when they first load (no table of
-- them: its keys and code would sit in every paused session).
local io_open, raw_loadfile = io.open, loadfile
local svc
local function services()
  if not svc then
    svc = raw_load(host("chunk", "services"), "=algocline_nb/services.lua", "b")(
      host, NULL, alc, need_json, LLM, CANCEL, hook, sethook, co_create, co_resume, co_status,
      co_yield, co_isyieldable, rt, PREEMPT, raw_load, raw_loadfile, io_open,
      function() return ns, cancelled and 1 or hook_count end,
      budgeted, state_dir, cards_dir, scenarios_dir, sandbox, package_path)
  end
  return svc
end

-- alc.* beyond llm loads in two tiers: the services, then the prelude.
local prelude_loaded = false
setmetatable(alc, {
  __index = function(t, key)
    services()
    local value = rawget(t, key)
    if value ~= nil or prelude_loaded then return value end
    prelude_loaded = true
    setmetatable(t, nil)
    local prelude = host("chunk", "prelude")
    if prelude then raw_load(prelude, "=alc.prelude", "b")() end
    return rawget(t, key)
  end,
})

-- ------------------------------------------------------------------ sandbox

debug, python = nil, nil
package.loaded.debug, package.loaded.python = nil, nil
package.cpath = ""
local searchers = package.searchers
searchers[4], searchers[3] = nil, nil
package.path = package_path
-- Stubs that load the services on first call (one shared function prototype). os.exit would
-- end the whole Python process (the notebook's kernel); package.loadlib could load C code.
local function stub(name) return function(...) return services()[name](...) end end
-- require loads only the package searcher (searcher.lua), not the services
local searcher
searchers[2] = function(name)
  if not searcher then
    searcher = raw_load(host("chunk", "searcher"), "=algocline_nb/searcher.lua", "b")(
      host, raw_load, sandbox, package_path)
  end
  return searcher(name)
end
-- os.setlocale would change how every session of the process formats and parses numbers.
os.exit, os.setlocale = stub("exit"), stub("setlocale")
package.loadlib = stub("loadlib")
print, load, loadfile, dofile = stub("print"), stub("load"), stub("loadfile"), stub("dofile")
coroutine.create, coroutine.resume, coroutine.wrap = stub("create"), stub("resume"), stub("wrap")
if sandbox then
  -- No file read and no command outside the package roots: io answers like a missing file (so
  -- packages that probe for one still load), dofile/loadfile/require reach the roots only (see
  -- services.lua), and the environment shows only ALC_* variables (API keys stay in the kernel).
  local refusal = "not available in a sandboxed session"
  local function refused(what) return function() return nil, what .. " is " .. refusal end end
  io = { open = refused("io.open"), lines = refused("io.lines"), popen = refused("io.popen"),
    type = function() return nil end }
  package.loaded.io = io
  os.execute, os.remove, os.rename, os.tmpname = nil, nil, nil, nil
  local getenv = os.getenv
  os.getenv = function(name)
    if type(name) == "string" and name:sub(1, 4) == "ALC_" then return getenv(name) end
    return nil
  end
end

-- Finalizers run with hooks off (Lua turns them off in __gc) and, when the runtime closes,
-- while the host holds the GIL: a looping __gc would freeze the whole process. A strategy
-- cannot mark an object for finalization but through setmetatable (debug is gone), which
-- therefore refuses any metatable with a __gc field (a placeholder `true` included, since Lua
-- decides at setmetatable time and reads __gc only when it finalizes). The metatable shared by
-- io's file handles is locked for the same reason (its __gc would run for every file).
local raw_setmetatable = setmetatable
G.setmetatable = function(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("finalizers (__gc) are not supported in algocline_nb sessions", 2)
  end
  return raw_setmetatable(t, mt)
end
if io and io.stdout then
  local file_mt = getmetatable(io.stdout)
  if type(file_mt) == "table" then rawset(file_mt, "__metatable", false) end
end

-- A message handler runs with hooks off when the error was raised by the cancellation hook:
-- once the session is cancelled, the strategy's handlers are skipped (the error goes on).
local raw_xpcall_ = raw_xpcall
function xpcall(f, handler, ...)
  return raw_xpcall_(f, function(m)
    if cancelled then return m end
    return handler(m)
  end, ...)
end

-- ------------------------------------------------------------------ the driver

local function on_error(m)
  if m == CANCEL then return m end
  if type(m) == "table" then
    local ok, s = raw_pcall(need_json().encode, m)
    if ok then m = "error object: " .. s end
  end
  return traceback(tostring(m), 2)
end

-- A strategy that ends with a large heap lets it go here, in GC steps the hook can preempt,
-- rather than in one lua_close on whichever thread drops the runtime (which holds the GIL:
-- 160 MB take about 170 ms). Small heaps (most sessions) skip this.
local BIG_HEAP_KB = 4096
local function release()
  if gc("count") < BIG_HEAP_KB then return end
  for k in next, G do G[k] = nil end
  for k in next, loaded do loaded[k] = nil end
  repeat until gc("step", 256)
end

local function prepare(code, ctx_ops, ctx_vals, chunkname)
  -- A chunk is the body of a function: top-level `return` gives the result, and syntax
  -- errors point at the user's own lines.
  local body, err = raw_load(code, chunkname, "t")
  if not body then return nil, err end
  -- Building ctx and encoding the result run inside the strategy's coroutine, under its hook:
  -- a large ctx or result can be preempted (and cancelled) like the strategy itself.
  -- The coroutine ends with "done", json | "unencodable", message | "failed", error.
  main_co = co_create(function()
    ctx = ctx_ops and build_ctx(ctx_ops, ctx_vals) or {}
    ctx_vals = nil
    if type(ctx._ns) == "string" then ns = ctx._ns end
    local ok, res = raw_xpcall(body, on_error)
    if not ok then
      release()
      return "failed", res
    end
    local encoded, text = raw_pcall(need_json().encode, res)
    res = nil
    release()
    if encoded and not utf8_len(text) then
      return "unencodable", "it holds text that is not valid UTF-8"
    end
    if encoded then return "done", text end
    return "unencodable", text
  end)
  sethook(main_co, hook, "", hook_count)
  return true, string.format("%p", main_co)
end

-- An error message goes to the host as text: bytes that are not UTF-8 are shown escaped.
local function printable(s)
  if type(s) ~= "string" or utf8_len(s) then return s end
  return (s:gsub("[\128-\255]", function(c) return string.format("\\x%02X", c:byte()) end))
end

local function finish(ok, tag, a, b)
  if cancelled then return "cancelled" end
  if not ok then
    if tag == "not enough memory" then return "oom", tag end
    if type(tag) ~= "string" then tag = "(error object is a " .. type(tag) .. " value)" end
    return "error", printable(tag)
  end
  if tag == LLM then
    if b == LLM then return "batch", a end
    return "pause", a, b
  end
  if co_status(main_co) ~= "dead" then
    if tag == PREEMPT then return "preempted" end
    return "yield"
  end
  if tag == "done" then return "done", a end
  if tag == "unencodable" then
    return "error", "the strategy's result cannot be encoded as JSON: " .. tostring(a)
  end
  if a == CANCEL then return "cancelled" end
  if a == "not enough memory" then return "oom", a end
  return "error", printable(a)
end

-- (the host checks for cancellation before each step: no Python call here)
-- At the first pause a full collection frees the set-up garbage (the bytecode, this chunk) at
-- once rather than over the next GC cycle: a paused session keeps only its live heap.
local first_pause = true
local function step(ok, value, level)
  local tag, a, b = finish(co_resume(main_co, ok, value, level))
  if first_pause and (tag == "pause" or tag == "batch") then
    first_pause = false
    gc("collect")
  end
  return tag, a, b
end

-- Before the host drops the runtime (on a Lua worker): let go of everything the strategy
-- built and free it here, in Lua with the GIL released, so that closing the state is quick.
local function shutdown()
  sethook()
  main_co = nil
  for k in next, G do G[k] = nil end
  for k in next, loaded do loaded[k] = nil end
  gc("collect")
end

-- One host call sets a session up: the runtime's core, then the strategy's coroutine.
local ok, address = prepare(code, ctx_ops, ctx_vals, chunkname)
code, ctx_vals = nil, nil
return step, shutdown, string.format("%p", co_running()), ok, address

-- algocline_nb prelude: the Layer-1 `alc.*` helpers, written in plain Lua 5.4.
-- Run once per session runtime after the host has filled `alc` with llm, llm_batch, log,
-- json_encode/json_decode, null, budget_remaining and state. Defines only `alc.*` fields.
local alc = alc
local type, tostring, tonumber, pairs, ipairs, pcall, error, select =
  type, tostring, tonumber, pairs, ipairs, pcall, error, select
local find, sub, byte, lower, fmt, concat, remove, max, min, charpattern =
  string.find, string.sub, string.byte, string.lower, string.format, table.concat,
  table.remove, math.max, math.min, utf8.charpattern

local function trim(s) return s:match("^%s*(.*%S)") or "" end

local function copy(t)
  local out = {}
  if t then for k, v in pairs(t) do out[k] = v end end
  return out
end

-- Code points of `s` (utf8.charpattern never raises on malformed bytes).
local function chars(s)
  local out, n = {}, 0
  for c in s:gmatch(charpattern) do n = n + 1; out[n] = c end
  return out
end

-- llm wrappers --------------------------------------------------------------------------------

local function llm_with(flag)
  return function(prompt, opts)
    local o = copy(opts)
    o[flag] = true
    return alc.llm(prompt, o)
  end
end
alc.specify = llm_with("underspecified")
alc.ground = llm_with("grounded")

function alc.llm_safe(prompt, opts, default)
  local ok, res = pcall(alc.llm, prompt, opts)
  if ok then return res end
  alc.log("warn", "alc.llm_safe: " .. tostring(res))
  return default
end

function alc.parallel(items, prompt_fn, opts)
  if type(items) ~= "table" or #items == 0 then
    error("alc.parallel: items must be a non-empty array", 2)
  end
  if type(prompt_fn) ~= "function" then error("alc.parallel: prompt_fn must be a function", 2) end
  opts = opts or {}
  local reqs = {}
  for i = 1, #items do
    local r = prompt_fn(items[i], i)
    if type(r) == "string" then
      r = { prompt = r, system = opts.system, max_tokens = opts.max_tokens }
    elseif type(r) ~= "table" or type(r.prompt) ~= "string" then
      error(fmt("alc.parallel: prompt_fn(item %d) must return a string or a table with a string 'prompt'", i), 2)
    end
    reqs[i] = r
  end
  local resps = alc.llm_batch(reqs)
  local post = opts.post_fn
  if not post then return resps end
  local out = {}
  for i = 1, #reqs do out[i] = post(resps[i], items[i], i) end
  return out
end

-- parsing -------------------------------------------------------------------------------------

function alc.parse_score(str, default)
  local n = tonumber(tostring(str):match("%d+"))
  if not n then return default == nil and 5 or default end
  return max(1, min(10, n))
end

function alc.parse_number(text, pattern)
  if type(text) ~= "string" then return nil end
  local m = text:match(pattern or "%-?%d+%.?%d*")
  return m and tonumber(m)
end

local function decode_table(s)
  local ok, v = pcall(alc.json_decode, s)
  if ok and type(v) == "table" then return v end
end

-- End index of the balanced `open`..`close` run starting at `i`, skipping JSON strings.
local function balanced_end(s, i, open, close)
  local depth, set = 0, "[%" .. open .. "%" .. close .. '"]'
  repeat
    local c
    i = find(s, set, i)
    if not i then return nil end
    c = sub(s, i, i)
    if c == '"' then
      repeat
        i = find(s, '[\\"]', i + 1)
        if not i then return nil end
        local esc = sub(s, i, i) == "\\"
        if esc then i = i + 1 end
      until not esc
    elseif c == open then
      depth = depth + 1
    else
      depth = depth - 1
    end
    i = i + 1
  until depth == 0
  return i - 1
end

function alc.json_extract(raw)
  if type(raw) ~= "string" then return nil end
  local v = decode_table(raw)
  if v then return v end
  local block = raw:match("```json%s*(.-)```")
  v = block and decode_table(block)
  if v then return v end
  block = raw:match("```[%w_%-]*%s*(.-)```")
  v = block and decode_table(block)
  if v then return v end
  for _, pair in ipairs({ "{}", "[]" }) do
    local open, close = sub(pair, 1, 1), sub(pair, 2, 2)
    local start = find(raw, open, 1, true)
    while start do
      local stop = balanced_end(raw, start, open, close)
      v = stop and decode_table(sub(raw, start, stop))
      if v then return v end
      start = find(raw, open, start + 1, true)
    end
  end
  return nil
end

-- The retry's system and prompt are the original's, byte for byte (hosts and recorded
-- transcripts see the same second query).
local JSON_SYSTEM = "Output ONLY valid JSON. No markdown fences, no explanation."

-- One retry when the answer holds no JSON, warned about in the log (twice if it fails again).
function alc.llm_json(prompt, opts)
  opts = opts or {}
  local raw = alc.llm(prompt, opts)
  local v = alc.json_extract(raw)
  if v then return v, raw end
  alc.log("warn", "alc.llm_json: JSON parse failed, retrying")
  local o = copy(opts)
  o.system = JSON_SYSTEM
  raw = alc.llm("The previous response was not valid JSON.\n\n"
    .. "Previous output:\n" .. tostring(raw) .. "\n\n"
    .. "Fix the JSON and return ONLY valid JSON.\n\n"
    .. "Original request:\n" .. tostring(prompt), o)
  v = alc.json_extract(raw)
  if not v then alc.log("warn", "alc.llm_json: JSON parse failed after retry") end
  return v, raw
end

-- text ----------------------------------------------------------------------------------------

local function split_lines(text)
  local out, n, pos, len = {}, 0, 1, #text
  while pos <= len do
    local nl = find(text, "\n", pos, true)
    local line = sub(text, pos, (nl or len + 1) - 1)
    if nl and sub(line, -1) == "\r" then line = sub(line, 1, -2) end
    n = n + 1; out[n] = line
    pos = (nl or len) + 1
  end
  return out
end

function alc.chunk(text, opts)
  opts = opts or {}
  local size, overlap = opts.size or 50, max(opts.overlap or 0, 0)
  local by_chars = opts.mode == "chars"
  if type(text) ~= "string" or text == "" or size <= 0 then return {} end
  local units = by_chars and chars(text) or split_lines(text)
  local n, sep = #units, by_chars and "" or "\n"
  local step = overlap >= size and 1 or size - overlap
  local out, start = {}, 1
  while start <= n do
    local stop = min(start + size - 1, n)
    out[#out + 1] = concat(units, sep, start, stop)
    if stop >= n then break end
    start = start + step
  end
  return out
end

function alc.fingerprint(str)
  local s = trim(lower(tostring(str)):gsub("%s+", " "))
  local h = 5381
  for i = 1, #s do h = (h * 33 + byte(s, i)) & 0xFFFFFFFF end
  return fmt("%08x", h)
end

local function jaro_winkler(a, b)
  local la, lb = #a, #b
  if la == 0 or lb == 0 then return (la == lb) and 1 or 0 end
  local window, ma, mb, m = max(max(la, lb) // 2 - 1, 0), {}, {}, 0
  for i = 1, la do
    for j = max(1, i - window), min(lb, i + window) do
      if not mb[j] and a[i] == b[j] then ma[i], mb[j], m = true, true, m + 1; break end
    end
  end
  if m == 0 then return 0 end
  local t, j = 0, 1
  for i = 1, la do
    if ma[i] then
      while not mb[j] do j = j + 1 end
      if a[i] ~= b[j] then t = t + 1 end
      j = j + 1
    end
  end
  local jaro = (m / la + m / lb + (m - t / 2) / m) / 3
  local p = 0
  while p < 4 and p < la and p < lb and a[p + 1] == b[p + 1] do p = p + 1 end
  return jaro + p * 0.1 * (1 - jaro)
end

function alc.match_enum(text, candidates, opts)
  if type(text) ~= "string" or type(candidates) ~= "table" then return nil end
  local low, best, best_pos = lower(text), nil, 0
  for _, c in ipairs(candidates) do
    local lc, pos, at = lower(c), nil, 0
    if lc ~= "" then
      repeat at = find(low, lc, at + 1, true); pos = at or pos until not at
      if pos and pos > best_pos then best, best_pos = c, pos end
    end
  end
  if best then return best end
  local threshold = opts and opts.threshold or 0.7
  local tokens = {}
  for w in low:gmatch("%S+") do
    w = w:match("^%p*(.-)%p*$")
    if w ~= "" then tokens[#tokens + 1] = chars(w) end
  end
  local best_score = -1
  for _, c in ipairs(candidates) do
    local lc = chars(lower(c))
    for _, tok in ipairs(tokens) do
      local s = jaro_winkler(tok, lc)
      if s >= threshold and s > best_score then best, best_score = c, s end
    end
  end
  return best
end

local BOOL_WORDS = {
  approved = true, yes = true, ok = true, accept = true, pass = true, confirm = true,
  agree = true, ["true"] = true, lgtm = true,
  rejected = false, no = false, deny = false, block = false, fail = false, refuse = false,
  disagree = false, ["false"] = false,
}

function alc.match_bool(text)
  if type(text) ~= "string" then return nil end
  local res
  for w in lower(text):gmatch("[%w_]+") do
    local v = BOOL_WORDS[w]
    if v ~= nil then res = v end
  end
  return res
end

-- collections ---------------------------------------------------------------------------------

function alc.map(items, fn)
  local out = {}
  for i, v in ipairs(items) do out[i] = fn(v, i) end
  return out
end

function alc.reduce(items, fn, init)
  local acc, first = init, 1
  if acc == nil then acc, first = items[1], 2 end
  for i = first, #items do acc = fn(acc, items[i], i) end
  return acc
end

function alc.filter(items, fn)
  local out = {}
  for i, v in ipairs(items) do
    if fn(v, i) then out[#out + 1] = v end
  end
  return out
end

function alc.vote(answers)
  local counts, order = {}, {}
  for _, a in ipairs(answers) do
    a = trim(tostring(a))
    if not counts[a] then order[#order + 1] = a end
    counts[a] = (counts[a] or 0) + 1
  end
  local winner, count = nil, 0
  for _, a in ipairs(order) do
    if counts[a] > count then winner, count = a, counts[a] end
  end
  return { winner = winner, count = count, total = #answers }
end

-- cache ---------------------------------------------------------------------------------------

local CACHE_MAX = 256
local cache_map, cache_keys, hits, misses = {}, {}, 0, 0

function alc.cache(prompt, opts)
  opts = opts or {}
  if opts.cache_skip then return alc.llm(prompt, opts) end
  local key = opts.cache_key or alc.fingerprint(tostring(prompt) .. "\0"
    .. tostring(opts.system or "") .. "\0" .. tostring(opts.max_tokens or 1024))
  local hit = cache_map[key]
  if hit ~= nil then hits = hits + 1; return hit end
  misses = misses + 1
  local res = alc.llm(prompt, opts)
  cache_map[key] = res
  cache_keys[#cache_keys + 1] = key
  if #cache_keys > CACHE_MAX then cache_map[remove(cache_keys, 1)] = nil end
  return res
end

function alc.cache_info()
  return { entries = #cache_keys, hits = hits, misses = misses, max_entries = CACHE_MAX }
end

function alc.cache_clear()
  -- Quirk kept from the original: the insertion list survives, so `entries` does too.
  cache_map, hits, misses = {}, 0, 0
end

-- config, budget, state, print ----------------------------------------------------------------

-- Only the defaults' keys are read, from ctx or from ctx[prefix] (when ctx has no such key,
-- from ctx itself; when it holds no table, from nothing, with a warning). A dict-like default
-- (a table with no [1]) given a table is tuned by it in turn, through alc.tuning; anything
-- else given replaces the default. `_schema` (parameter metadata) is dropped; defaults that
-- are not a table come back as they are.
function alc.tuning(defaults, ctx, opts)
  if type(defaults) ~= "table" then return defaults end
  local src = type(ctx) == "table" and ctx or {}
  local prefix = type(opts) == "table" and opts.prefix or nil
  if prefix then
    local ns = src[prefix]
    if type(ns) == "table" then
      src = ns
    elseif ns ~= nil then
      alc.log("warn", "alc.tuning: prefix '" .. tostring(prefix)
        .. "' exists but is not a table, ignoring")
      src = {}
    end
  end
  local out = {}
  for k, v in pairs(defaults) do
    if k ~= "_schema" then
      local given = src[k]
      if given == nil then
        out[k] = v
      elseif type(v) == "table" and v[1] == nil and type(given) == "table" then
        out[k] = alc.tuning(v, given)
      else
        out[k] = given
      end
    end
  end
  return out
end

function alc.budget_check()
  local b = alc.budget_remaining()
  if type(b) ~= "table" then return true end
  local calls, ms = b.llm_calls, b.elapsed_ms
  return not ((type(calls) == "number" and calls <= 0) or (type(ms) == "number" and ms <= 0))
end

if type(alc.state) == "table" then
  function alc.state.update(key, fn, default)
    local v = fn(alc.state.get(key, default))
    alc.state.set(key, v)
    return v
  end
end

function alc._print(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
  alc.log("info", concat(parts, "\t"))
end

-- pipelines -----------------------------------------------------------------------------------

-- A stage of alc.pipe: its name (in pipe_history and messages) and its run function.
local function pipe_stage(entry, i)
  if type(entry) == "function" then return "(inline-" .. i .. ")", entry end
  if type(entry) ~= "string" then
    error("alc.pipe: strategy[" .. i .. "] must be a string or function", 3)
  end
  local ok, pkg = pcall(require, entry)
  if not ok then
    error("alc.pipe: failed to load strategy '" .. entry .. "': " .. tostring(pkg), 3)
  end
  if type(pkg) ~= "table" or type(pkg.run) ~= "function" then
    error("alc.pipe: strategy '" .. entry .. "' must export run(ctx)", 3)
  end
  return entry, pkg.run
end

-- The pipe_history a stage's ctx carries (a ctx that dropped it gets the running one back).
local function history_of(c, running)
  local h = c.pipe_history
  if type(h) ~= "table" then h = running; c.pipe_history = h end
  return h
end

-- Stages run in order on a shallow copy of ctx; each must return a table (the ctx it hands
-- on), whose `result` becomes the next stage's `task` (a table JSON-encoded, anything else
-- through tostring). on_error "abort" (the default) lets a stage's error through; any other
-- mode logs it, records it in pipe_history and goes on with the ctx as the stage left it.
-- A stage that cannot load, or returns no table, is an error in every mode.
function alc.pipe(strategies, ctx, opts)
  if type(strategies) ~= "table" or #strategies == 0 then
    error("alc.pipe: strategies must be a non-empty array", 2)
  end
  if type(ctx) ~= "table" then error("alc.pipe: ctx must be a table", 2) end
  opts = opts or {}
  local catch, on_stage, n = (opts.on_error or "abort") ~= "abort", opts.on_stage, #strategies
  local cur, history = copy(ctx), {}
  cur.pipe_history = history
  for i, entry in ipairs(strategies) do
    local name, run = pipe_stage(entry, i)
    local ok, res = true, nil
    if catch then ok, res = pcall(run, cur) else res = run(cur) end
    if not ok then
      alc.log("warn", "alc.pipe: stage '" .. name .. "' failed: " .. tostring(res))
      history = history_of(cur, history)
      history[#history + 1] = { strategy = name, error = tostring(res) }
    else
      if type(res) ~= "table" then
        error("alc.pipe: strategy '" .. name .. "' must return a table (ctx)", 2)
      end
      cur = res
      history = history_of(cur, history)
      local result = cur.result
      history[#history + 1] = { strategy = name, result = result }
      if result ~= nil and i < n then
        cur.task = type(result) == "table" and alc.json_encode(result) or tostring(result)
      end
      if on_stage then on_stage(i, name, cur) end
    end
  end
  return cur
end

-- ============================================================================== alc.eval
-- alc.eval(scenario, strategy, opts?) -> report: `strategy` (a package name) run over an
-- evalframe suite. The arguments are checked here, as the original's prelude tests expect;
-- the evaluation itself lives in eval.lua, which a session loads on its first alc.eval
-- (alc._eval_impl, from the services): most sessions never evaluate anything.

local function eval_args(scenario, strategy)
  if not scenario then error("alc.eval: scenario is required", 3) end
  local kind = type(scenario)
  if kind ~= "string" and kind ~= "table" then
    error("alc.eval: scenario must be a string or table, got " .. kind, 3)
  end
  if type(strategy) ~= "string" then
    error("alc.eval: strategy must be a string package name, got " .. type(strategy), 3)
  end
end

function alc.eval(scenario, strategy, opts)
  eval_args(scenario, strategy)
  local impl = rawget(alc, "_eval_impl")
  if type(impl) ~= "function" then
    error("alc.eval: evaluations run only inside an algocline_nb session", 2)
  end
  return impl(scenario, strategy, opts)
end
-- ========================================================================== end alc.eval

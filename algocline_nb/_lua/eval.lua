-- alc.eval's evaluation (the prelude checks the arguments, then calls this; loaded on the
-- first alc.eval of a session). Returns function(scenario, strategy, opts) -> report.
--
-- alc.eval(scenario, strategy, opts?) -> report: grade `strategy` on an evalframe scenario.
--   scenario  a table (the simple form {cases = {{input, expected}...}, graders = {names}} or
--             evalframe's own form: ef.bind entries plus cases), or a string: a module name
--             (require), else <alc._dirs.scenarios>/<name>.lua, else a file path
--   opts      strategy_opts (merged into each case's ctx), auto_card (write a card and its
--             samples), card_pkg (the card's pkg.name; default: the strategy)
-- The report is evalframe's, made plain data (no functions): name ("<strategy>:<scenario>"),
-- aggregated, failures, results, summary (text), and card_id with auto_card. Each case's
-- alc.llm calls are ordinary pauses of the session.
local function read_text(path)
  -- an Eval's std shim reads through the host (confined under sandbox); bare Lua uses io
  local reader = rawget(_G, "std")
  local fs = type(reader) == "table" and type(reader.fs) == "table" and reader.fs or nil
  if fs and fs.is_file and fs.read then
    if not fs.is_file(path) then return nil end
    return fs.read(path)
  end
  local f = io.open(path, "r")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

local function run_file(path, label)
  local text = read_text(path)
  if text == nil then return false end
  local chunk, err = load(text, "@" .. path, "t")
  if not chunk then error("alc.eval: the scenario " .. label .. " does not compile: " .. tostring(err), 0) end
  return true, chunk()
end

local function resolve(scenario)
  local found, value = pcall(require, scenario)
  if found then return value end
  local dirs = rawget(alc, "_dirs")
  local folder = type(dirs) == "table" and dirs.scenarios or nil
  if type(folder) == "string" and folder ~= "" then
    local ok, spec = run_file(folder .. "/" .. scenario .. ".lua", "'" .. scenario .. "'")
    if ok then return spec end
  end
  local ok, spec = run_file(scenario, scenario)
  if ok then return spec end
  error("alc.eval: could not resolve scenario '" .. scenario .. "' (not a module, not in "
    .. tostring(folder) .. ", not a file)", 0)
end

local function judge(prompt) return alc.llm(prompt) end

local function binding_of(ef, g, i)
  if type(g) == "function" then
    return ef.bind({ ef.grader("grader_" .. i)({ check = g }) })
  end
  if type(g) ~= "string" then
    error("alc.eval: a grader must be a name or a function, got " .. type(g), 0)
  end
  if g == "llm_yes_no" then
    return ef.bind({
      ef.llm_graders.yes_no("Does the response answer the question in the input correctly?",
        { provider = judge }),
      ef.scorers.bool,
    })
  elseif g == "llm_factuality" then
    return ef.bind({ ef.llm_graders.factuality({ provider = judge }), ef.scorers.linear_1_5 })
  end
  local preset = ef.graders[g]
  if preset == nil then error("alc.eval: unknown grader '" .. g .. "'", 0) end
  return ef.bind({ preset })
end

local function suite_spec(ef, spec, provider)
  local out = { provider = spec.provider or provider }
  for i = 1, #spec do
    if type(spec[i]) == "table" and ef.bind.is_binding(spec[i]) then
      -- evalframe's own form: its bindings and cases as they are
      for j = 1, #spec do out[j] = spec[j] end
      out.cases = spec.cases
      return out
    end
  end
  for i, g in ipairs(spec.graders or { "exact_match" }) do out[i] = binding_of(ef, g, i) end
  local cases = {}
  for i, c in ipairs(spec.cases or {}) do
    if type(c) == "table" and ef.case.is_case(c) then
      cases[i] = c
    elseif type(c) == "table" and c.input ~= nil then
      cases[i] = ef.case(c)
    else
      error("alc.eval: case #" .. i .. " has no 'input'", 0)
    end
  end
  out.cases = cases
  return out
end

-- per-grader means for the card (from the cases' grades)
local function by_grader(ef, results)
  local scores, order = {}, {}
  for _, r in ipairs(results or {}) do
    for _, g in ipairs(r.grades or {}) do
      if type(g.grader) == "string" and type(g.score) == "number" then
        if not scores[g.grader] then
          scores[g.grader] = { weight = g.weight }
          order[#order + 1] = g.grader
        end
        local list = scores[g.grader]
        list[#list + 1] = g.score
      end
    end
  end
  if #order == 0 then return nil end
  local out = {}
  for _, name in ipairs(order) do
    local d = ef.stats.describe(scores[name])
    out[name] = { n = d.n, mean = d.mean, weight = scores[name].weight }
  end
  return out
end

local function write_card(ef, strategy, scenario_name, report, opts)
  local agg = report.aggregated or {}
  local buckets
  for tag, data in pairs(agg.by_tag or {}) do
    buckets = buckets or {}
    buckets[tag] = { n = (data.pass or 0) + (data.fail or 0), pass = data.pass, fail = data.fail,
      rate = data.rate, mean = data.stats and data.stats.mean or nil }
  end
  local card = alc.card.create({
    pkg = { name = opts.card_pkg or strategy },
    scenario = { name = scenario_name or "inline" },
    stats = {
      pass_rate = agg.pass_rate,
      mean_score = agg.scores and agg.scores.mean or nil,
      n = agg.total,
      passed = agg.passed,
      by_grader = by_grader(ef, report.results),
      by_bucket = buckets,
    },
  })
  if report.results and #report.results > 0 then
    alc.card.write_samples(card.card_id, report.results)
  end
  return card.card_id
end

return function(scenario, strategy, opts)
  if scenario == nil then error("alc.eval: scenario is required", 2) end
  local kind = type(scenario)
  if kind ~= "string" and kind ~= "table" then
    error("alc.eval: scenario must be a string or table, got " .. kind, 2)
  end
  if type(strategy) ~= "string" then
    error("alc.eval: strategy must be a string package name, got " .. type(strategy), 2)
  end
  opts = opts or {}
  if rawget(_G, "std") == nil and type(rawget(alc, "_std")) == "function" then
    std = alc._std()  -- what evalframe.std needs (the original's Eval injects the same)
  end
  local loaded, ef = pcall(require, "evalframe")
  if not loaded then
    error("alc.eval: the evalframe package cannot be loaded (install it into <app_dir>/packages,"
      .. " e.g. with algocline_nb.packages.install): " .. tostring(ef), 2)
  end
  local spec, scenario_name = scenario, nil
  if kind == "string" then
    scenario_name = scenario
    spec = resolve(scenario)
  else
    scenario_name = scenario.name
  end
  if type(spec) ~= "table" then
    error("alc.eval: scenario resolved to " .. type(spec) .. ", expected table", 2)
  end
  local provider = ef.providers.algocline({ strategy = strategy, opts = opts.strategy_opts })
  local built = suite_spec(ef, spec, provider)
  -- each case begins with a provider call: the host counts each case's tokens from there
  local inner, case_no = built.provider, 0
  local mark = rawget(alc, "_eval_mark")
  if type(mark) == "function" and type(inner) == "function" then
    built.provider = function(input)
      case_no = case_no + 1
      mark(case_no)
      return inner(input)
    end
  end
  local suite = ef.suite(strategy .. ":" .. (scenario_name or "inline"))(built)
  local report = suite:run():to_table()
  if opts.auto_card then
    report.card_id = write_card(ef, strategy, scenario_name, report, opts)
    alc.log("info", "alc.eval: card written: " .. tostring(report.card_id))
  end
  return report
end

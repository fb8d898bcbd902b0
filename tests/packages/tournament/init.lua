--- tournament: generate candidates in one batch, then judge them pairwise, round by round
--- (each round's matches are one batch), until one is left.
local kit = require("nbkit")

local M = {}

M.meta = {
  name = "tournament",
  version = "0.1.0",
  description = "Batch generation, then a single-elimination judged bracket",
  category = "selection",
}

local function judge_prompt(task, a, b)
  return kit.fill("Which answer is better, first or second?\nTask: {task}\nfirst: {a}\nsecond: {b}",
    { task = task, a = a, b = b })
end

function M.run(ctx)
  local task = kit.need(ctx, "task")
  local n = ctx.n or 4
  local items = {}
  for i = 1, n do
    items[i] = { prompt = "Candidate " .. i .. " for: " .. task, max_tokens = 200 }
  end
  local field = {}
  for i, c in ipairs(alc.llm_batch(items)) do field[i] = kit.trim(c) end
  local rounds = 0
  while #field > 1 do
    rounds = rounds + 1
    local pairs_ = {}
    for i = 1, #field - 1, 2 do pairs_[#pairs_ + 1] = { field[i], field[i + 1] } end
    local verdicts = alc.parallel(pairs_, function(p) return judge_prompt(task, p[1], p[2]) end)
    local next_field = {}
    for i, p in ipairs(pairs_) do
      local pick = alc.match_enum(verdicts[i], { "first", "second" })
      next_field[#next_field + 1] = pick == "second" and p[2] or p[1]
    end
    if #field % 2 == 1 then next_field[#next_field + 1] = field[#field] end
    field = next_field
  end
  ctx.result = { winner = field[1], rounds = rounds }
  return ctx
end

return M

--- decompose: recursively split a question into sub-questions (one per line) until the model
--- says ATOMIC or the depth limit is reached, answer the leaves, then merge bottom-up.
local kit = require("nbkit")

local M = {}

M.meta = {
  name = "decompose",
  version = "0.1.0",
  description = "Recursive decomposition and merge",
  category = "decomposition",
}

local function solve(q, depth, o, trace)
  if depth < o.max_depth then
    local split = alc.llm("Split into sub-questions or say ATOMIC: " .. q)
    local parts = kit.lines(split)
    if not (#parts == 1 and parts[1] == "ATOMIC") then
      local answers = {}
      for i, part in ipairs(parts) do answers[i] = solve(part, depth + 1, o, trace) end
      trace[#trace + 1] = "merge " .. q
      return kit.trim(alc.llm("Merge for " .. q .. ": " .. table.concat(answers, " + ")))
    end
  end
  trace[#trace + 1] = "answer " .. q
  return kit.trim(alc.llm("Answer directly: " .. q))
end

function M.run(ctx)
  local o = kit.opts({ max_depth = 2 }, ctx)
  local trace = {}
  ctx.result = { answer = solve(kit.need(ctx, "task"), 0, o, trace), trace = trace }
  return ctx
end

return M

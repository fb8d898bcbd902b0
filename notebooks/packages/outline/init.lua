--- outline: plan section titles, draft every section in one batch (alc.parallel), then have
--- the text scored and revised until the score reaches the threshold.
---
--- ctx.task (required): what to write about. Options (ctx): sections (3), threshold (8),
--- max_rounds (2). Sets ctx.result = {titles, text, score, rounds} and returns ctx.

local M = {}

M.meta = {
  name = "outline",
  version = "0.1.0",
  description = "Outline, draft the sections in one batch, then score and revise",
  category = "generation",
}

local function trim(s)
  return s:match("^%s*(.-)%s*$")
end

--- The first `n` non-empty lines of `text`, without list numbering ("1.", "2)").
local function titles_of(text, n)
  local titles = {}
  for line in text:gmatch("[^\n]+") do
    local title = trim((line:gsub("^%s*%d+[.)]%s*", "")))
    if title ~= "" then titles[#titles + 1] = title end
    if #titles == n then break end
  end
  return titles
end

function M.run(ctx)
  local task = ctx.task
  if type(task) ~= "string" or task == "" then
    error("outline: ctx.task is required (what to write about)")
  end
  local o = alc.tuning({ sections = 3, threshold = 8, max_rounds = 2 }, ctx)

  local plan = alc.llm(string.format("List %d section titles, one per line, for: %s", o.sections, task))
  local titles = titles_of(plan, o.sections)
  alc.progress(1, 3, #titles .. " sections planned")

  local drafts = alc.parallel(titles, function(title)
    return "Write one paragraph for the section '" .. title .. "' of: " .. task
  end, { system = "You write clear technical prose.", post_fn = trim })
  local text = table.concat(drafts, "\n")
  alc.progress(2, 3, "sections drafted")

  local score, rounds = 0, 0
  for round = 1, o.max_rounds do
    rounds = round
    score = alc.parse_score(alc.llm("Score this text from 1 to 10 (SCORE: n).\n" .. text), 0)
    alc.log("info", "outline: round " .. round .. " scored " .. score)
    if score >= o.threshold then break end
    text = trim(alc.llm("Revise this text.\n" .. text))
  end
  alc.progress(3, 3, "reviewed")

  ctx.result = { titles = titles, text = text, score = score, rounds = rounds }
  return ctx
end

return M

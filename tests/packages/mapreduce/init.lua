--- mapreduce: split a long text into overlapping line windows (alc.chunk), summarise each
--- (alc.map, one pause per chunk), then fold the summaries pairwise (alc.reduce).
local kit = require("nbkit")

local M = {}

M.meta = {
  name = "mapreduce",
  version = "0.1.0",
  description = "Chunked map/reduce summarisation over long text",
  category = "long_context",
}

function M.run(ctx)
  local text = kit.need(ctx, "text")
  local chunks = alc.chunk(text, { mode = "lines", size = ctx.size or 3, overlap = ctx.overlap or 1 })
  local summaries = alc.map(chunks, function(chunk, i)
    return kit.trim(alc.llm("Summarise part " .. i .. ":\n" .. chunk, { max_tokens = 64 }))
  end)
  local merged = alc.reduce(summaries, function(acc, s)
    return kit.trim(alc.llm("Merge two summaries:\nA: " .. acc .. "\nB: " .. s))
  end)
  ctx.result = { chunks = #chunks, summaries = summaries, summary = merged }
  return ctx
end

return M

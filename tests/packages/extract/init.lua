--- extract: pull a JSON record out of free text with alc.llm_json (which retries once when
--- the first answer holds no JSON), then enrich it with a second JSON call.
local kit = require("nbkit")

local M = {}

M.meta = {
  name = "extract",
  version = "0.1.0",
  description = "JSON extraction with one retry, then enrichment",
  category = "extraction",
}

function M.run(ctx)
  local text = kit.need(ctx, "task")
  local record, raw = alc.llm_json("Extract {name, born} as JSON from: " .. text)
  if type(record) ~= "table" then error("no JSON record in: " .. tostring(raw)) end
  local extra = alc.llm_json("Give {field} of " .. tostring(record.name) .. " as JSON.")
  record.field = type(extra) == "table" and extra.field or alc.null
  ctx.result = record
  return ctx
end

return M

local M = {}
local kit = require("nbkit")
kit.need({}, "config")
return M

-- JSON for strategy runtimes (Lua 5.4), byte-compatible with algocline's
-- mlua-serde + serde_json conversion.
--
-- The host runs this chunk once per runtime as `chunk(NULL, ARRAY_MT)`, where NULL is the
-- runtime's null sentinel and ARRAY_MT its array marker; the chunk returns the module:
--   encode(value) -> string        decode(text) -> value
--   null (the sentinel)            array_mt (marks tables that are arrays)
--   is_array(t) -> boolean
--
-- Encoding (Lua -> JSON):
--   * a table with rawlen > 0, or whose metatable is array_mt, is an array of
--     the elements 1..rawlen (holes become null, every other key is ignored);
--     any other table is an object whose keys must all be strings.  Object
--     keys are written in ascending byte order (like serde_json's BTreeMap).
--     Sorting relies on Lua's `<` for strings, which uses strcoll(): that is
--     plain byte order under the C collation locale (what Python leaves in
--     place unless the application changes LC_COLLATE itself).
--   * no whitespace is written; strings escape `"`, `\` and bytes below 0x20
--     the way serde_json does (\b \f \n \r \t, otherwise \u00xx, lowercase).
--     Every other byte, including DEL and bytes of invalid UTF-8 sequences,
--     is copied as is: the encoder does not validate UTF-8.
--   * integers print as integers; floats print as Rust's ryu crate prints
--     them (shortest round-trip digits, `7.0`, `1e16`, `1.5e-7`, `-0.0`);
--     NaN and infinities become null.
--   * nil, the null sentinel -> null.  Functions, threads and other userdata
--     are errors, as are tables that contain themselves.
--
-- Decoding (JSON -> Lua) follows serde_json's strict RFC 8259 grammar.  The
-- input must be valid UTF-8.  Objects become plain tables, arrays become
-- tables with metatable array_mt, null becomes the sentinel.  A number with
-- neither fraction nor exponent that fits in a signed 64-bit integer becomes
-- a Lua integer, any other number becomes a float (a float that overflows to
-- infinity is refused, as serde_json does).  Error messages give the 1-based
-- byte position of the problem.
--
-- Both directions accept at most 127 nested arrays/objects; the 128th level
-- is an error (serde_json's default recursion limit behaves the same way).

local NULL, array_mt = ...

local type, next, rawget, rawlen, rawequal = type, next, rawget, rawlen, rawequal
local getmetatable, setmetatable = getmetatable, setmetatable
local tonumber, error, pcall = tonumber, error, pcall
local mtype, huge = math.type, math.huge
local byte, char, find, format = string.byte, string.char, string.find, string.format
local gsub, match, rep, sub = string.gsub, string.match, string.rep, string.sub
local concat, sort = table.concat, table.sort
local utf8char, utf8len = utf8.char, utf8.len

local MAX_DEPTH = 128

if NULL == nil then
  -- Standalone use: make a private sentinel so that null still round-trips.
  NULL = setmetatable({}, { __name = "json.null" })
end

-- The runtime's array marker when it has one (the host builds ctx tables with it before this
-- module loads), else a private one.
array_mt = array_mt or { __name = "json.array" }

local M = { null = NULL, array_mt = array_mt }

function M.is_array(t)
  return type(t) == "table" and (rawlen(t) > 0 or getmetatable(t) == array_mt)
end

---------------------------------------------------------------------------
-- Encoding
---------------------------------------------------------------------------

-- Bytes that need escaping in a JSON string, and what they become.
local SPECIAL = '[\0-\31"\\]'
local ESCAPE = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}
for b = 0, 31 do
  local c = char(b)
  if not ESCAPE[c] then ESCAPE[c] = format("\\u%04x", b) end
end

local EFMT = {} -- EFMT[p] formats p digits after the point: "%.<p>e"
for p = 0, 16 do EFMT[p] = "%." .. p .. "e" end

local MIN_NORMAL = 2.2250738585072014e-308
local TWO53 = 9007199254740992.0

-- Shortest-round-trip text of a float, laid out the way ryu does.
local function float_text(v)
  if v ~= v or v == huge or v == -huge then return "null" end
  if v == 0 then return (1 / v < 0) and "-0.0" or "0.0" end
  local sign = ""
  if v < 0 then sign, v = "-", -v end
  -- Integral values below 2^53 are their own shortest representation.
  if v < TWO53 and v % 1 == 0 then return sign .. format("%d", v) .. ".0" end

  -- Any decimal of at most 15 significant digits survives a round trip
  -- through a normal double, so the first candidate worth trying for those
  -- has 15 digits (its trailing zeros are dropped below).  Subnormals carry
  -- fewer digits and start from one.
  local digits, kk
  for p = (v < MIN_NORMAL) and 0 or 14, 16 do
    local s = format(EFMT[p], v)
    local lead, frac, ex = match(s, "^(%d)%.?(%d*)e([-+]%d+)$")
    if tonumber(s) == v then
      digits, kk = lead .. frac, tonumber(ex) + 1
      break
    end
    if p == 15 then
      -- At a power of two the gap below v is half the gap above it, so the
      -- nearest 16-digit decimal can fall outside while the next one up
      -- still rounds to v; the shortest representation then has 16 digits.
      local up = tonumber(lead .. frac) + 1
      local e = tonumber(ex) - 15
      if tonumber(format("%de%d", up, e)) == v then
        digits = format("%d", up)
        kk = e + #digits
        break
      end
    end
  end
  digits = match(digits, "^(.-)0*$")

  local n = #digits
  if kk <= 16 and kk >= n then
    return sign .. digits .. rep("0", kk - n) .. ".0"
  elseif kk > 0 and kk <= 16 then
    return sign .. sub(digits, 1, kk) .. "." .. sub(digits, kk + 1)
  elseif kk > -5 and kk <= 0 then
    return sign .. "0." .. rep("0", -kk) .. digits
  elseif n == 1 then
    return sign .. digits .. "e" .. (kk - 1)
  end
  return sign .. sub(digits, 1, 1) .. "." .. sub(digits, 2) .. "e" .. (kk - 1)
end

local encode_value -- forward declaration (mutually recursive with encode_table)

-- Appends the text of table t to buf[n+1...]; returns the new n.
-- `depth` counts the containers open including t; `path` holds those tables.
local function encode_table(t, buf, n, path, depth)
  if path[t] then error("cannot encode a table that contains itself", 0) end
  if depth >= MAX_DEPTH then
    error(format("nesting too deep (more than %d levels)", MAX_DEPTH - 1), 0)
  end
  path[t] = true
  local len = rawlen(t)
  if len > 0 or getmetatable(t) == array_mt then
    n = n + 1
    buf[n] = "["
    for i = 1, len do
      if i > 1 then
        n = n + 1
        buf[n] = ","
      end
      n = encode_value(rawget(t, i), buf, n, path, depth)
    end
    n = n + 1
    buf[n] = "]"
  else
    local keys, nk = {}, 0
    for k in next, t do
      if type(k) ~= "string" then
        error("cannot encode non-string key (" .. type(k) .. ") in an object", 0)
      end
      nk = nk + 1
      keys[nk] = k
    end
    if nk == 0 then
      n = n + 1
      buf[n] = "{}"
    else
      sort(keys)
      for i = 1, nk do
        local k = keys[i]
        local ek = k
        if find(k, SPECIAL) then ek = gsub(k, SPECIAL, ESCAPE) end
        buf[n + 1] = (i == 1) and '{"' or ',"'
        buf[n + 2] = ek
        buf[n + 3] = '":'
        n = encode_value(rawget(t, k), buf, n + 3, path, depth)
      end
      n = n + 1
      buf[n] = "}"
    end
  end
  path[t] = nil
  return n
end

encode_value = function(v, buf, n, path, depth)
  local tv = type(v)
  if tv == "string" then
    if find(v, SPECIAL) then v = gsub(v, SPECIAL, ESCAPE) end
    buf[n + 1] = '"'
    buf[n + 2] = v
    buf[n + 3] = '"'
    return n + 3
  elseif tv == "number" then
    if mtype(v) == "integer" then
      buf[n + 1] = format("%d", v)
    else
      buf[n + 1] = float_text(v)
    end
    return n + 1
  elseif tv == "boolean" then
    buf[n + 1] = v and "true" or "false"
    return n + 1
  elseif v == nil or rawequal(v, NULL) then
    buf[n + 1] = "null"
    return n + 1
  elseif tv == "table" then
    return encode_table(v, buf, n, path, depth + 1)
  end
  error("cannot encode value of type " .. tv, 0)
end

function M.encode(value)
  local buf = {}
  local ok, res = pcall(encode_value, value, buf, 0, {}, 0)
  if not ok then error(res, 2) end
  return concat(buf)
end

---------------------------------------------------------------------------
-- Decoding
---------------------------------------------------------------------------

local function fail(pos, what)
  error(format("invalid JSON at byte %d: %s", pos, what), 0)
end

-- Simple escapes after a backslash, keyed by byte value.
local UNESCAPE = {
  [34] = '"', [92] = "\\", [47] = "/", [98] = "\b",
  [102] = "\f", [110] = "\n", [114] = "\r", [116] = "\t",
}

local NOT_WS = "[^ \t\n\r]"

-- i is just past the opening quote; returns the string and the position
-- just past the closing quote.
local function decode_string(text, i)
  local j = find(text, SPECIAL, i)
  if not j then fail(#text + 1, "unterminated string") end
  local c = byte(text, j)
  if c == 34 then return sub(text, i, j - 1), j + 1 end -- no escapes: fast path

  local parts, np = {}, 0
  while true do
    if c == 34 then
      parts[np + 1] = sub(text, i, j - 1)
      return concat(parts), j + 1
    elseif c ~= 92 then
      fail(j, "control character in string")
    end
    np = np + 1
    parts[np] = sub(text, i, j - 1)
    local e = byte(text, j + 1)
    local simple = UNESCAPE[e]
    if simple then
      np = np + 1
      parts[np] = simple
      i = j + 2
    elseif e == 117 then -- \uXXXX
      local hex = match(text, "^%x%x%x%x", j + 2)
      if not hex then fail(j, "invalid \\u escape") end
      local cp = tonumber(hex, 16)
      i = j + 6
      if cp >= 0xD800 and cp <= 0xDFFF then
        if cp >= 0xDC00 then fail(j, "lone trailing surrogate in \\u escape") end
        local low = match(text, "^\\u(%x%x%x%x)", i)
        low = low and tonumber(low, 16)
        if not low or low < 0xDC00 or low > 0xDFFF then
          fail(j, "lone leading surrogate in \\u escape")
        end
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)
        i = i + 6
      end
      np = np + 1
      parts[np] = utf8char(cp)
    elseif e == nil then
      fail(j + 1, "unterminated string")
    else
      fail(j, "invalid escape")
    end
    j = find(text, SPECIAL, i)
    if not j then fail(#text + 1, "unterminated string") end
    c = byte(text, j)
  end
end

-- i is at '-' or a digit; returns the number and the position after it.
local function decode_number(text, i)
  local _, e = find(text, "^-?%d+", i)
  if not e then fail(i, "invalid number") end
  local first = (byte(text, i) == 45) and i + 1 or i
  if e > first and byte(text, first) == 48 then fail(i, "invalid number (leading zero)") end
  local c = byte(text, e + 1)
  if c == 46 then -- '.'
    local _, f = find(text, "^%d+", e + 2)
    if not f then fail(e + 2, "expected digit after '.'") end
    e = f
    c = byte(text, e + 1)
  end
  if c == 101 or c == 69 then -- 'e' / 'E'
    local _, f = find(text, "^[-+]?%d+", e + 2)
    if not f then fail(e + 2, "expected digit in exponent") end
    e = f
  end
  -- tonumber yields an integer for a plain integer literal that fits in
  -- 64 bits and a float for everything else.
  local v = tonumber(sub(text, i, e))
  if v == huge or v == -huge then fail(i, "number out of range") end
  return v, e + 1
end

local decode_value -- forward declaration

local function decode_array(text, i, depth)
  local t, n = setmetatable({}, array_mt), 0
  i = find(text, NOT_WS, i)
  if i and byte(text, i) == 93 then return t, i + 1 end
  while true do
    local v
    v, i = decode_value(text, i, depth)
    n = n + 1
    t[n] = v
    i = find(text, NOT_WS, i)
    local c = i and byte(text, i)
    if c == 44 then
      i = i + 1
    elseif c == 93 then
      return t, i + 1
    else
      fail(i or #text + 1, "expected ',' or ']'")
    end
  end
end

local function decode_object(text, i, depth)
  local t = {}
  i = find(text, NOT_WS, i)
  if i and byte(text, i) == 125 then return t, i + 1 end
  while true do
    if not i or byte(text, i) ~= 34 then fail(i or #text + 1, "expected string key") end
    local k, v
    k, i = decode_string(text, i + 1)
    i = find(text, NOT_WS, i)
    if not i or byte(text, i) ~= 58 then fail(i or #text + 1, "expected ':'") end
    v, i = decode_value(text, i + 1, depth)
    t[k] = v
    i = find(text, NOT_WS, i)
    local c = i and byte(text, i)
    if c == 44 then
      i = find(text, NOT_WS, i + 1)
    elseif c == 125 then
      return t, i + 1
    else
      fail(i or #text + 1, "expected ',' or '}'")
    end
  end
end

-- `depth` counts the containers already open around the value at i.
decode_value = function(text, i, depth)
  i = find(text, NOT_WS, i)
  if not i then fail(#text + 1, "unexpected end of input") end
  local c = byte(text, i)
  if c == 34 then
    return decode_string(text, i + 1)
  elseif c == 45 or (c >= 48 and c <= 57) then
    return decode_number(text, i)
  elseif c == 123 or c == 91 then
    if depth + 1 >= MAX_DEPTH then
      fail(i, format("nesting too deep (more than %d levels)", MAX_DEPTH - 1))
    end
    if c == 91 then return decode_array(text, i + 1, depth + 1) end
    return decode_object(text, i + 1, depth + 1)
  elseif c == 116 then
    if sub(text, i, i + 3) == "true" then return true, i + 4 end
  elseif c == 102 then
    if sub(text, i, i + 4) == "false" then return false, i + 5 end
  elseif c == 110 then
    if sub(text, i, i + 3) == "null" then return NULL, i + 4 end
  end
  fail(i, "expected value")
end

local function decode_document(text)
  local count, bad_at = utf8len(text)
  if not count then fail(bad_at, "invalid UTF-8") end
  local v, i = decode_value(text, 1, 0)
  i = find(text, NOT_WS, i)
  if i then fail(i, "trailing characters") end
  return v
end

function M.decode(text)
  if type(text) ~= "string" then
    error("json.decode expects a string, got " .. type(text), 2)
  end
  local ok, res = pcall(decode_document, text)
  if not ok then error(res, 2) end
  return res
end

return M

-- A lust-compatible test runner (describe / it / expect / before / after), written for
-- algocline_nb's conformance tests: it runs one spec file of the bundled packages and returns
-- the outcome of every test as data instead of printing it.
--
--   local runner = dofile("tests/lua/lust_runner.lua")
--   local report = runner.run_file("/path/to/pkg/spec/pkg_spec.lua")
--   -- report = { passed = n, failed = m, tests = { { name =, ok =, err = }, ... },
--   --            file_error = nil | "message" }
--
-- The specs reach the framework through the global `lust` (as under the original's test
-- harness, which preloads it): `lust.describe`, `lust.it`, `lust.expect`, `lust.before`,
-- `lust.after`. Semantics kept from lust: `describe` runs its body at once; `it` runs at once
-- under pcall; hooks registered in a describe block run around every test of that block and of
-- the blocks nested in it, and are dropped when the block ends; `equal` is a deep comparison
-- (numbers within an optional epsilon); `be` is `==`; `match` is `string.find` with a pattern;
-- `fail` passes when calling the value raises.
--
-- Two deliberate departures, which make a broken spec count instead of aborting the file:
-- an error raised by a describe body, or by a hook, is recorded as one failed entry named after
-- the block.

local M = {}

local MAX_ERR = 400

local function short(msg)
    local text = tostring(msg)
    if #text > MAX_ERR then
        text = text:sub(1, MAX_ERR) .. "..."
    end
    return text
end

local function show(v)
    if type(v) == "string" then
        return string.format("%q", v)
    end
    return tostring(v)
end

-- deep equality: same type, numbers within eps when given, tables key by key both ways
local function deep_equal(a, b, eps)
    if type(a) ~= type(b) then
        return false
    end
    if type(a) == "number" and eps ~= nil then
        return math.abs(a - b) <= eps
    end
    if type(a) ~= "table" then
        return a == b
    end
    if a == b then
        return true
    end
    for k, v in pairs(a) do
        if not deep_equal(v, b[k], eps) then
            return false
        end
    end
    for k, v in pairs(b) do
        if not deep_equal(v, a[k], eps) then
            return false
        end
    end
    return true
end

-- is `v` of type `kind` (a type name), or an instance of the class table `kind` (found by
-- walking the __index chain of its metatables)?
local function is_a(v, kind)
    if type(kind) == "string" then
        return type(v) == kind
    end
    if type(kind) ~= "table" then
        error("expect(...).to.be.a: expected a type name or a class table, got " .. type(kind))
    end
    local seen = {}
    local cur = v
    while type(cur) == "table" and not seen[cur] do
        if cur == kind then
            return true
        end
        seen[cur] = true
        local mt = getmetatable(cur)
        cur = type(mt) == "table" and rawget(mt, "__index") or nil
    end
    return false
end

local function contains(t, x)
    if type(t) ~= "table" then
        return false
    end
    for _, v in pairs(t) do
        if deep_equal(v, x) then
            return true
        end
    end
    return false
end

-- each check: function(value, ...) -> ok, message when it should hold, message when negated
local checks = {}

checks.equal = function(v, expected, eps)
    return deep_equal(v, expected, eps),
        "expected " .. show(v) .. " to equal " .. show(expected),
        "expected " .. show(v) .. " to not equal " .. show(expected)
end

checks.be = function(v, expected)
    return v == expected,
        "expected " .. show(v) .. " to be " .. show(expected),
        "expected " .. show(v) .. " to not be " .. show(expected)
end

checks.exist = function(v)
    return v ~= nil, "expected " .. show(v) .. " to exist", "expected " .. show(v) .. " to not exist"
end

checks.truthy = function(v)
    return v and true or false,
        "expected " .. show(v) .. " to be truthy",
        "expected " .. show(v) .. " to not be truthy"
end

checks.a = function(v, kind)
    return is_a(v, kind),
        "expected " .. show(v) .. " to be a " .. show(kind),
        "expected " .. show(v) .. " to not be a " .. show(kind)
end
checks.an = checks.a

checks.have = function(v, x)
    if type(v) ~= "table" then
        error("expect(...).to.have: expected a table, got " .. type(v))
    end
    return contains(v, x),
        "expected " .. show(v) .. " to contain " .. show(x),
        "expected " .. show(v) .. " to not contain " .. show(x)
end

checks.match = function(v, pattern)
    local text = type(v) == "string" and v or tostring(v)
    return string.find(text, pattern) ~= nil,
        "expected " .. show(text) .. " to match pattern " .. show(pattern),
        "expected " .. show(text) .. " to not match pattern " .. show(pattern)
end

checks.fail = function(v)
    if type(v) ~= "function" then
        error("expect(...).to.fail: expected a function, got " .. type(v))
    end
    local ok = pcall(v)
    return not ok, "expected the function to fail", "expected the function to not fail"
end

-- `fail.with(pattern)`: the error message must match the pattern
local function fail_with(v, pattern)
    local ok, err = pcall(v)
    local text = tostring(err)
    local hit = (not ok) and string.find(text, pattern) ~= nil
    return hit,
        "expected the function to fail with an error matching " .. show(pattern),
        "expected the function to not fail with an error matching " .. show(pattern)
end

-- the chain words: `to`, `to_not`, `be`, `a`, ... Each step is a table that is also callable
-- when it names a check; `to_not` flips the sense of every check after it.
local function chain(value, negated)
    local node = {}
    local mt = {}
    mt.__index = function(_, key)
        if key == "to" or key == "is" or key == "been" or key == "has" or key == "have_been" then
            return chain(value, negated)
        end
        if key == "to_not" or key == "not_to" or key == "never" then
            return chain(value, not negated)
        end
        if key == "with" then
            return function(pattern)
                local ok, msg, neg_msg = fail_with(value, pattern)
                if negated then
                    ok, msg = not ok, neg_msg
                end
                if not ok then
                    error(msg, 2)
                end
            end
        end
        local check = checks[key]
        if check == nil then
            return nil
        end
        local step = {}
        return setmetatable(step, {
            __index = function(_, sub)
                -- `be.a`, `be.truthy`, `fail.with`, ...: keep chaining
                return chain(value, negated)[sub]
            end,
            __call = function(_, ...)
                local ok, msg, neg_msg = check(value, ...)
                if negated then
                    ok, msg = not ok, neg_msg
                end
                if not ok then
                    error(msg, 2)
                end
            end,
        })
    end
    return setmetatable(node, mt)
end

--- A fresh framework instance: the `lust` table the specs see, and its record of results.
function M.new()
    local lust = {}
    local results = {}
    local names = {} -- the describe path of the running block
    local befores, afters = {}, {} -- hooks by describe depth

    local function record(name, ok, err)
        results[#results + 1] = { name = name, ok = ok, err = ok and nil or short(err) }
    end

    local function full_name(name)
        if #names == 0 then
            return name
        end
        return table.concat(names, " / ") .. " / " .. name
    end

    local function run_hooks(hooks_by_depth, name)
        for depth = 1, #names do
            for _, hook in ipairs(hooks_by_depth[depth] or {}) do
                hook(name)
            end
        end
    end

    function lust.describe(name, body)
        names[#names + 1] = tostring(name)
        local depth = #names
        local ok, err = pcall(body)
        if not ok then
            record(table.concat(names, " / ") .. " [describe error]", false, err)
        end
        befores[depth], afters[depth] = nil, nil
        names[depth] = nil
    end

    function lust.it(name, body)
        local id = full_name(tostring(name))
        local ok, err = pcall(run_hooks, befores, name)
        if ok then
            ok, err = xpcall(body, function(e)
                return e
            end)
        end
        local after_ok, after_err = pcall(run_hooks, afters, name)
        if ok and not after_ok then
            ok, err = false, "after hook: " .. tostring(after_err)
        end
        record(id, ok, err)
    end

    function lust.before(fn)
        local depth = #names
        befores[depth] = befores[depth] or {}
        table.insert(befores[depth], fn)
    end

    function lust.after(fn)
        local depth = #names
        afters[depth] = afters[depth] or {}
        table.insert(afters[depth], fn)
    end

    function lust.expect(value)
        return chain(value, false)
    end

    return lust, results
end

--- Run one spec file with a fresh `lust` global; returns its report (see the top of the file).
function M.run_file(path)
    local lust, results = M.new()
    local previous = rawget(_G, "lust")
    _G.lust = lust
    local chunk, load_err = loadfile(path)
    local file_error
    if chunk == nil then
        file_error = short(load_err)
    else
        local ok, err = pcall(chunk)
        if not ok then
            file_error = short(err)
        end
    end
    _G.lust = previous
    local passed, failed = 0, 0
    for _, r in ipairs(results) do
        if r.ok then
            passed = passed + 1
        else
            failed = failed + 1
        end
    end
    return { passed = passed, failed = failed, tests = results, file_error = file_error }
end

return M

-- alc.math, part 2: the descriptive statistics of the original's mlua-mathlib 0.3, in plain
-- Lua. Run as chunk(M, lib) after mathspecial.lua (lib: its shared helpers).
--
-- As the original: an empty array and NaN/Infinity elements are refused, the variance is the
-- sample variance (Welford), percentiles are on the 0-100 scale with linear interpolation
-- between closest ranks, histograms put the maximum in the last bin.
local M, lib = ...
local huge, floor, sqrt, exp, log, abs, sort = math.huge, math.floor, math.sqrt, math.exp,
  math.log, math.abs, table.sort
local fail, num, uint, finite_array, normal_ppf = lib.fail, lib.num, lib.uint, lib.finite_array,
  lib.normal_ppf
local EPS = 2.220446049250313e-16

-- ------------------------------------------------------------------ statistics

local function mean_of(v, n)
  local s = 0.0
  for i = 1, n do s = s + v[i] end
  return s / n
end

local function variance_of(v, n) -- Welford; sample variance
  if n < 2 then return 0.0 end
  local m, m2 = 0.0, 0.0
  for i = 1, n do
    local x = v[i]
    local delta = x - m
    m = m + delta / i
    m2 = m2 + delta * (x - m)
  end
  return m2 / (n - 1)
end

local function percentile_of(s, n, p) -- s sorted
  if n == 1 then return s[1] end
  local rank = (p / 100) * (n - 1)
  local lo = floor(rank)
  if lo + 1 >= n then return s[n] end
  return s[lo + 1] + (rank - lo) * (s[lo + 2] - s[lo + 1])
end

local function sorted_array(t, fn)
  local v, n = finite_array(t, fn, nil, 3)
  sort(v)
  return v, n
end

function M.mean(t)
  local v, n = finite_array(t, "mean")
  return mean_of(v, n)
end
function M.variance(t)
  local v, n = finite_array(t, "variance")
  return variance_of(v, n)
end
function M.stddev(t)
  local v, n = finite_array(t, "stddev")
  return sqrt(variance_of(v, n))
end
function M.median(t)
  local s, n = sorted_array(t, "median")
  return percentile_of(s, n, 50)
end
function M.percentile(t, p)
  p = num(p, "percentile", "p")
  if not (p >= 0 and p <= 100) then fail("percentile", "p must be in [0, 100], got " .. tostring(p)) end
  local s, n = sorted_array(t, "percentile")
  return percentile_of(s, n, p)
end
function M.iqr(t)
  local s, n = sorted_array(t, "iqr")
  return percentile_of(s, n, 75) - percentile_of(s, n, 25)
end
function M.softmax(t)
  local v, n = finite_array(t, "softmax")
  local mx = -huge
  for i = 1, n do if v[i] > mx then mx = v[i] end end
  local s = 0.0
  for i = 1, n do
    v[i] = exp(v[i] - mx)
    s = s + v[i]
  end
  for i = 1, n do v[i] = v[i] / s end
  return v
end

local function pair(xs, ys, fn)
  local x, n = finite_array(xs, fn, "xs", 3)
  local y, m = finite_array(ys, fn, "ys", 3)
  if n ~= m then fail(fn, "arrays must have equal length", 2) end
  if n < 2 then fail(fn, "need at least 2 values", 2) end
  return x, y, n
end
function M.covariance(xs, ys)
  local x, y, n = pair(xs, ys, "covariance")
  local mx, my, s = mean_of(x, n), mean_of(y, n), 0.0
  for i = 1, n do s = s + (x[i] - mx) * (y[i] - my) end
  return s / (n - 1)
end
function M.correlation(xs, ys)
  local x, y, n = pair(xs, ys, "correlation")
  local mx, my = mean_of(x, n), mean_of(y, n)
  local c, vx, vy = 0.0, 0.0, 0.0
  for i = 1, n do
    local dx, dy = x[i] - mx, y[i] - my
    c, vx, vy = c + dx * dy, vx + dx * dx, vy + dy * dy
  end
  local den = sqrt(vx * vy)
  if den == 0 then fail("correlation", "zero variance") end
  return c / den
end
function M.histogram(t, bins)
  bins = uint(bins, "histogram", "bins")
  if bins == 0 then fail("histogram", "bins must be > 0") end
  local v, n = finite_array(t, "histogram")
  local lo, hi = huge, -huge
  for i = 1, n do
    if v[i] < lo then lo = v[i] end
    if v[i] > hi then hi = v[i] end
  end
  local counts, edges, width = {}, {}, nil
  for i = 1, bins do counts[i] = 0 end
  if abs(hi - lo) < EPS then
    counts[1], width = n, 1 / bins
  else
    width = (hi - lo) / bins
    for i = 1, n do
      local k = floor((v[i] - lo) / width)
      if k >= bins then k = bins - 1 end
      counts[k + 1] = counts[k + 1] + 1
    end
  end
  for i = 0, bins do edges[i + 1] = lo + i * width end
  return { counts = counts, edges = edges }
end
function M.wilson_ci(successes, total, confidence)
  successes, total = num(successes, "wilson_ci", "successes"), num(total, "wilson_ci", "total")
  confidence = num(confidence, "wilson_ci", "confidence")
  if not (total > 0) then fail("wilson_ci", "total must be > 0") end
  if not (confidence >= 0 and confidence <= 1) then fail("wilson_ci", "confidence must be in [0, 1]") end
  local z = normal_ppf(1 - (1 - confidence) / 2)
  local phat, z2 = successes / total, z * z
  local denom = 1 + z2 / total
  local center = (phat + z2 / (2 * total)) / denom
  local margin = (z * sqrt((phat * (1 - phat) + z2 / (4 * total)) / total)) / denom
  local lower, upper = center - margin, center + margin
  if not (lower >= 0) then lower = 0.0 end -- f64::max / f64::min ignore a NaN operand
  if not (upper <= 1) then upper = 1.0 end
  return { lower = lower, upper = upper, center = center }
end
function M.log_normalize(t)
  local v, n = finite_array(t, "log_normalize")
  local mx = -huge
  for i = 1, n do if v[i] > mx then mx = v[i] end end
  if mx <= 0 then fail("log_normalize", "all values must be positive (max must be > 0)") end
  local lmax = log(1 + mx)
  for i = 1, n do v[i] = v[i] <= 0 and 0.0 or log(1 + v[i]) / lmax * 100 end
  return v
end


-- alc.math, part 1: the argument checks, special functions and CDF/PPF of the original's
-- mlua-mathlib 0.3 (which wraps statrs 0.18), in plain Lua. Loaded first of the three alc.math
-- chunks (then mathstats.lua, mathlib.lua) on the first use of alc.math. Run as chunk(M): fills
-- M with its API functions and returns the helpers the other two share.
--
-- Conventions kept from the original: numbers arrive as f64 (a Lua integer or a numeric string
-- is converted; results are floats where the original returns f64), and arrays are read raw
-- (1..rawlen).
local M = ...
local type, tostring, tonumber, error, rawlen, rawget = type, tostring, tonumber, error, rawlen, rawget
local huge, floor, sqrt, exp, log, abs, sin, tan, pi =
  math.huge, math.floor, math.sqrt, math.exp, math.log, math.abs, math.sin, math.tan, math.pi
local tointeger = math.tointeger
local NAN = 0 / 0
local EPS = 2.220446049250313e-16
local LN_SQRT_2PI = 0.91893853320467274178

-- ------------------------------------------------------------------ argument checks

-- `depth` frames separate the API function from the checker that calls fail (1: the API
-- function itself), so the error points at the strategy's line; the checkers take the depth
-- of their own caller (default 2: called by the API function).
local function fail(fn, msg, depth)
  error("alc.math." .. fn .. ": " .. msg, (depth or 1) + 2)
end

local function num(v, fn, what, depth)
  local x = type(v) == "string" and tonumber(v) or v
  if type(x) ~= "number" then fail(fn, what .. " must be a number, got " .. type(v), depth or 2) end
  return x + 0.0
end

local function int(v, fn, what, depth)
  if type(v) == "string" then v = tonumber(v) end
  local i = type(v) == "number" and tointeger(v) or nil
  if not i then fail(fn, what .. " must be an integer, got " .. tostring(v), depth or 2) end
  return i
end

local function uint(v, fn, what, depth)
  if type(v) == "string" then v = tonumber(v) end
  local i = type(v) == "number" and tointeger(v) or nil
  if not i or i < 0 then
    fail(fn, what .. " must be a non-negative integer, got " .. tostring(v), depth or 2)
  end
  return i
end

local function table_arg(t, fn, what, depth)
  if type(t) ~= "table" then fail(fn, what .. " must be a table, got " .. type(t), depth or 2) end
  return t
end

-- An array of finite numbers (as floats), as the original's statistics read it. `depth`: as
-- fail's, counted from the caller (2 when the API function itself calls).
local function finite_array(t, fn, what, depth)
  depth = depth or 2
  if type(t) ~= "table" then
    fail(fn, (what or "values") .. " must be a table, got " .. type(t), depth)
  end
  local n = rawlen(t)
  if n == 0 then fail(fn, "expected non-empty array", depth) end
  local v = {}
  for i = 1, n do
    local raw = rawget(t, i)
    local x = type(raw) == "string" and tonumber(raw) or raw
    if type(x) ~= "number" then
      fail(fn, "element at index " .. i .. " must be a number, got " .. type(raw), depth)
    end
    if x ~= x or x == huge or x == -huge then
      local shown = x ~= x and "NaN" or (x > 0 and "inf" or "-inf")
      fail(fn, "element at index " .. i .. " is " .. shown .. " (NaN/Infinity not allowed)", depth)
    end
    v[i] = x + 0.0
  end
  return v, n
end

-- ------------------------------------------------------------------ special functions

-- erf by its exp-scaled power series (positive terms, no cancellation) below 2.5; erfc by its
-- continued fraction (modified Lentz) from 1 on, where 1 - erf would lose digits.
local function exp_minus_sq(x) -- exp(-x^2), without the rounding of x^2 (x >= 0, x < 2^37)
  local xh = floor(x * 65536) / 65536 -- few enough bits that xh^2 is exact
  return exp(-xh * xh) * exp(-(x - xh) * (x + xh))
end

local function erf_series(x) -- x >= 0
  if x == 0 then return x end
  local x2 = x * x
  local term, sum, n = x, x, 0
  repeat
    n = n + 1
    term = term * 2 * x2 / (2 * n + 1)
    sum = sum + term
  until term < 1e-17 * sum
  return 1.1283791670955126 * exp_minus_sq(x) * sum -- 2/sqrt(pi)
end

local function erfc_cf(x) -- x >= 1
  local tiny = 1e-300
  -- erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))
  local f, c, d = x, x, 0.0
  for k = 1, 500 do
    local a = k * 0.5
    d = x + a * d
    if d == 0 then d = tiny end
    c = x + a / c
    if c == 0 then c = tiny end
    d = 1 / d
    local delta = c * d
    f = f * delta
    if abs(delta - 1) < 1e-16 then break end
  end
  return exp_minus_sq(x) / (f * 1.7724538509055160273)
end

local function erf(x)
  if x ~= x then return NAN end
  local ax = abs(x)
  if ax > 6 then return x < 0 and -1.0 or 1.0 end
  local r = ax < 2.5 and erf_series(ax) or 1 - erfc_cf(ax)
  return x < 0 and -r or r
end

local function erfc(x)
  if x ~= x then return NAN end
  if x < 1 then return 1 - erf(x) end
  if x > 27.3 then return 0.0 end
  return erfc_cf(x)
end

-- ln Gamma: Lanczos (g = 7, 9 terms) below 10, the Stirling series above; ln((n-1)!) at
-- integers. As statrs: NaN where Gamma(x) < 0, +inf at the poles.
local LANCZOS = { 0.99999999999980993, 676.5203681218851, -1259.1392167224028,
  771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012,
  9.9843695780195716e-6, 1.5056327351493116e-7 }
local ln_factorial
local function lgamma(x)
  if x ~= x then return NAN end
  if x == huge then return huge end
  if x == floor(x) and x >= 1 and x <= 171 then return ln_factorial(floor(x) - 1) end
  if x < 0.5 then
    local s = sin(pi * (x - 2 * floor(x / 2))) -- reduce first: sin(pi*x) keeps its sign
    if s == 0 or x == floor(x) then return huge end
    return log(pi / s) - lgamma(1 - x)
  end
  if x >= 10 then
    local r = 1 / x
    local r2 = r * r
    return (x - 0.5) * log(x) - x + LN_SQRT_2PI
      + r * (1 / 12 + r2 * (-1 / 360 + r2 * (1 / 1260 + r2 * (-1 / 1680 + r2 * (1 / 1188)))))
  end
  local z = x - 1
  local a = LANCZOS[1]
  for i = 2, 9 do a = a + LANCZOS[i] / (z + i - 1) end
  local t = z + 7.5
  return LN_SQRT_2PI + (z + 0.5) * log(t) - t + log(a)
end

-- n! for n <= 170, computed once in double-double (so each value is correctly rounded).
local FACT
local function factorial_table()
  FACT = { [0] = 1.0 }
  local hi, lo = 1.0, 0.0
  for k = 1, 170 do
    local p = hi * k
    -- the exact error of hi * k: split hi in halves (Veltkamp; scaled by 2^-60 near the top,
    -- exactly, so the split cannot overflow); k < 2^8 needs no split
    local scale = hi > 1e290 and 0x1p60 or 1.0
    local hs = hi / scale
    local c = 134217729.0 * hs
    local h1 = (c - (c - hs)) * scale
    local h2 = hi - h1
    lo = lo * k + ((h1 * k - p) + h2 * k)
    hi = p + lo
    lo = lo - (hi - p)
    FACT[k] = hi
  end
end

local function factorial(n)
  if not FACT then factorial_table() end
  return FACT[n]
end

function ln_factorial(n)
  if n <= 1 then return 0.0 end
  if n <= 170 then return log(factorial(n)) end
  return lgamma(n + 1.0)
end

local function digamma(x)
  if x ~= x or x == -huge then return NAN end
  if x == huge then return huge end
  if x <= 0 and x == floor(x) then return -huge end
  if x < 0 then return digamma(1 - x) - pi / tan(pi * (x - floor(x))) end
  local r = 0.0
  while x < 10 do
    r = r - 1 / x
    x = x + 1
  end
  local f = 1 / (x * x)
  return r + log(x) - 0.5 / x - f * (1 / 12 - f * (1 / 120 - f * (1 / 252 - f * (1 / 240
    - f * (1 / 132 - f * (691 / 32760 - f / 12))))))
end

local function ln_beta(a, b) return lgamma(a) + lgamma(b) - lgamma(a + b) end

-- Regularized lower incomplete gamma P(a, x): series below x = a + 1, else 1 - Q by the
-- continued fraction. `upper` asks for Q instead.
local function gamma_pq(a, x, upper)
  if x <= 0 then return upper and 1.0 or 0.0 end
  if x == huge then return upper and 0.0 or 1.0 end
  local lnpre = a * log(x) - x - lgamma(a)
  if x < a + 1 then
    local term, sum, ap = 1 / a, 1 / a, a
    for _ = 1, 100000 do
      ap = ap + 1
      term = term * x / ap
      sum = sum + term
      if abs(term) < abs(sum) * 1e-17 then break end
    end
    local p = exp(lnpre) * sum
    if p > 1 then p = 1.0 end
    return upper and 1 - p or p
  end
  local tiny = 1e-300
  local b = x + 1 - a
  local c, d = 1 / tiny, 1 / b
  local h = d
  for i = 1, 100000 do
    local an = -i * (i - a)
    b = b + 2
    d = an * d + b
    if abs(d) < tiny then d = tiny end
    c = b + an / c
    if abs(c) < tiny then c = tiny end
    d = 1 / d
    local delta = d * c
    h = h * delta
    if abs(delta - 1) < 1e-16 then break end
  end
  local q = exp(lnpre) * h
  if q > 1 then q = 1.0 end
  return upper and q or 1 - q
end

-- Regularized incomplete beta I_x(a, b): the continued fraction, on the side where it
-- converges fast (x < (a + 1) / (a + b + 2)).
local function beta_cf(a, b, x)
  local tiny = 1e-300
  local qab, qap, qam = a + b, a + 1, a - 1
  local c, d = 1.0, 1 - qab * x / qap
  if abs(d) < tiny then d = tiny end
  d = 1 / d
  local h = d
  for m = 1, 100000 do
    local m2 = 2 * m
    local aa = m * (b - m) * x / ((qam + m2) * (a + m2))
    d = 1 + aa * d
    if abs(d) < tiny then d = tiny end
    c = 1 + aa / c
    if abs(c) < tiny then c = tiny end
    d = 1 / d
    h = h * d * c
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
    d = 1 + aa * d
    if abs(d) < tiny then d = tiny end
    c = 1 + aa / c
    if abs(c) < tiny then c = tiny end
    d = 1 / d
    local delta = d * c
    h = h * delta
    if abs(delta - 1) < 1e-16 then break end
  end
  return h
end

local function beta_reg(a, b, x)
  if x <= 0 then return 0.0 end
  if x >= 1 then return 1.0 end
  local lnfront = a * log(x) + b * log(1 - x) - ln_beta(a, b)
  if x < (a + 1) / (a + b + 2) then return exp(lnfront) * beta_cf(a, b, x) / a end
  return 1 - exp(lnfront) * beta_cf(b, a, 1 - x) / b
end

-- Standard normal quantile: Acklam's rational approximation, then Halley steps on the tail
-- side (p <= 0.5; the other half by symmetry, 1 - p being exact there).
local ACK_A = { -3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
  1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00 }
local ACK_B = { -5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
  6.680131188771972e+01, -1.328068155288572e+01 }
local ACK_C = { -7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
  -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00 }
local ACK_D = { 7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
  3.754408661907416e+00 }

local function ppf_lower(p) -- 0 < p <= 0.5
  local x
  if p < 0.02425 then
    local q = sqrt(-2 * log(p))
    local c, d = ACK_C, ACK_D
    x = (((((c[1] * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) * q + c[6])
      / ((((d[1] * q + d[2]) * q + d[3]) * q + d[4]) * q + 1)
  else
    local q = p - 0.5
    local r = q * q
    local a, b = ACK_A, ACK_B
    x = (((((a[1] * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * r + a[6]) * q
      / (((((b[1] * r + b[2]) * r + b[3]) * r + b[4]) * r + b[5]) * r + 1)
  end
  for _ = 1, 2 do
    local e = 0.5 * erfc(-x * 0.70710678118654752440) - p
    local u = e * 2.5066282746310002 * exp(x * x / 2)
    x = x - u / (1 + x * u / 2)
  end
  return x
end

local function normal_ppf(p)
  if p == 0 then return -huge end
  if p == 1 then return huge end
  if p == 0.5 then return 0.0 end
  if p < 0.5 then return ppf_lower(p) end
  return -ppf_lower(1 - p)
end

local function prob(p, fn)
  if not (p >= 0 and p <= 1) then fail(fn, "p must be in [0, 1], got " .. tostring(p), 2) end
  return p
end

function M.erf(x) return erf(num(x, "erf", "x")) end
function M.erfc(x) return erfc(num(x, "erfc", "x")) end
function M.lgamma(x) return lgamma(num(x, "lgamma", "x")) end
function M.digamma(x) return digamma(num(x, "digamma", "x")) end

local function shape2(a, b, fn, an, bn, depth)
  depth = depth or 2
  a, b = num(a, fn, an, depth + 1), num(b, fn, bn, depth + 1)
  if not (a > 0) or not (b > 0) then fail(fn, an .. " and " .. bn .. " must be > 0", depth) end
  return a, b
end
function M.ln_beta(a, b)
  a, b = shape2(a, b, "ln_beta", "a", "b")
  return ln_beta(a, b)
end
function M.beta(a, b)
  a, b = shape2(a, b, "beta", "a", "b")
  return exp(ln_beta(a, b))
end
function M.regularized_incomplete_beta(x, a, b)
  x = num(x, "regularized_incomplete_beta", "x")
  a, b = shape2(a, b, "regularized_incomplete_beta", "a", "b")
  if not (x >= 0 and x <= 1) then
    fail("regularized_incomplete_beta", "x must be in [0, 1], got " .. tostring(x))
  end
  return beta_reg(a, b, x)
end
function M.regularized_incomplete_gamma(a, x)
  a, x = num(a, "regularized_incomplete_gamma", "a"), num(x, "regularized_incomplete_gamma", "x")
  if a ~= a or x ~= x then return NAN end
  if not (a > 0) or a == huge then fail("regularized_incomplete_gamma", "a must be finite and > 0") end
  if x < 0 then fail("regularized_incomplete_gamma", "x must be >= 0") end
  return gamma_pq(a, x, false)
end
function M.factorial(n)
  n = uint(n, "factorial", "n")
  if n > 170 then fail("factorial", "n > 170 overflows f64") end
  return factorial(n)
end
function M.ln_factorial(n) return ln_factorial(uint(n, "ln_factorial", "n")) end
function M.normal_ppf(p) return normal_ppf(prob(num(p, "normal_ppf", "p"), "normal_ppf")) end

-- ------------------------------------------------------------------ CDF / PPF

local function normal_params(mu, sigma, fn)
  mu, sigma = num(mu, fn, "mu", 3), num(sigma, fn, "sigma", 3)
  if mu ~= mu or not (sigma > 0) then fail(fn, "mu must be a number and sigma > 0", 2) end
  return mu, sigma
end
function M.normal_cdf(x, mu, sigma)
  x = num(x, "normal_cdf", "x")
  mu, sigma = normal_params(mu, sigma, "normal_cdf")
  return 0.5 * erfc(-(x - mu) / (sigma * 1.4142135623730951))
end
function M.normal_ppf_params(p, mu, sigma)
  p = prob(num(p, "normal_ppf_params", "p"), "normal_ppf_params")
  mu, sigma = normal_params(mu, sigma, "normal_ppf_params")
  return mu + sigma * normal_ppf(p)
end

local function beta_shapes(a, b, fn)
  a, b = shape2(a, b, fn, "alpha", "beta", 3)
  if a == huge and b == huge then fail(fn, "alpha and beta cannot both be infinite", 2) end
  return a, b
end
local function beta_cdf(x, a, b)
  if x <= 0 then return 0.0 end
  if x >= 1 then return 1.0 end
  if a == huge then return 0.0 end
  if b == huge then return 1.0 end
  return beta_reg(a, b, x)
end
function M.beta_cdf(x, alpha, beta)
  x = num(x, "beta_cdf", "x")
  alpha, beta = beta_shapes(alpha, beta, "beta_cdf")
  return beta_cdf(x, alpha, beta)
end
function M.beta_ppf(p, alpha, beta)
  p = prob(num(p, "beta_ppf", "p"), "beta_ppf")
  local a, b = beta_shapes(alpha, beta, "beta_ppf")
  if p == 0 or b == huge then return 0.0 end
  if p == 1 or a == huge then return 1.0 end
  -- Newton on I_x(a, b) = p, kept inside a shrinking bracket (bisection when it leaves it)
  local lo, hi, x = 0.0, 1.0, a / (a + b)
  local lnb = ln_beta(a, b)
  for _ = 1, 300 do
    local f = beta_reg(a, b, x) - p
    if f == 0 then return x end
    if f < 0 then lo = x else hi = x end
    local dens = exp((a - 1) * log(x) + (b - 1) * log(1 - x) - lnb)
    local nx = x - f / dens
    if not (nx > lo and nx < hi) then nx = (lo + hi) / 2 end
    if abs(nx - x) <= 4 * EPS * nx or hi - lo <= 4 * EPS * x then return nx end
    x = nx
  end
  return x
end
function M.gamma_cdf(x, shape, scale)
  x, shape, scale = num(x, "gamma_cdf", "x"), num(shape, "gamma_cdf", "shape"),
    num(scale, "gamma_cdf", "scale")
  if scale <= 0 then fail("gamma_cdf", "scale must be > 0") end
  local rate = 1 / scale
  if not (shape > 0) or not (rate > 0) then fail("gamma_cdf", "shape and scale must be > 0") end
  if x <= 0 then return 0.0 end
  if shape == huge then return 0.0 end
  return gamma_pq(shape, x * rate, false)
end
function M.poisson_cdf(k, lambda)
  k, lambda = uint(k, "poisson_cdf", "k"), num(lambda, "poisson_cdf", "lambda")
  if not (lambda > 0) then fail("poisson_cdf", "lambda must be > 0") end
  if lambda == huge then return 0.0 end
  return gamma_pq(k + 1.0, lambda, true)
end
function M.beta_mean(alpha, beta)
  alpha, beta = num(alpha, "beta_mean", "alpha"), num(beta, "beta_mean", "beta")
  if alpha <= 0 or beta <= 0 then fail("beta_mean", "alpha and beta must be > 0") end
  return alpha / (alpha + beta)
end
function M.beta_variance(alpha, beta)
  alpha, beta = num(alpha, "beta_variance", "alpha"), num(beta, "beta_variance", "beta")
  if alpha <= 0 or beta <= 0 then fail("beta_variance", "alpha and beta must be > 0") end
  local ab = alpha + beta
  return (alpha * beta) / (ab * ab * (ab + 1))
end

return {
  fail = fail, num = num, int = int, uint = uint, table_arg = table_arg,
  finite_array = finite_array, lgamma = lgamma, normal_ppf = normal_ppf,
  finite = function(x) return x == x and x ~= huge and x ~= -huge end,
}

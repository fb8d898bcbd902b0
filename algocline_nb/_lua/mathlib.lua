-- alc.math, part 3: the seeded generators and the samplers of the original's mlua-mathlib 0.3,
-- in plain Lua. Run as chunk(M, lib) after mathspecial.lua and mathstats.lua: fills M; returns
-- a few internals for the tests (the loader drops them: no strategy can reach them).
--
-- The generator is the original's, word for word: Rust rand 0.9's StdRng = rand_chacha's
-- ChaCha12Rng (ChaCha with 12 rounds, the 32-byte seed as key, 64-bit block counter from 0,
-- stream 0), seeded by rand_core's seed_from_u64 (PCG32 output, the LCG advanced first).
-- Its output is the keystream's 32-bit words in order; a u64 is the next two words, low first.
--   rng_float             = random::<f64>()          = (u64 >> 11) * 2^-53
--   rng_int(r, lo, hi)    = random_range(lo..=hi) on i64: UniformInt::sample_single_inclusive
--   shuffle, sample_with_replacement: random_range on usize, which samples u32 words
--   uniform_sample        = Uniform::new(low, high) on f64
--   categorical_sample    = WeightedIndex::new(weights) (+1: a 1-based index)
-- The other samplers use standard exact algorithms (Box-Muller, Marsaglia-Tsang, PTRS, BTRS):
-- they have the right distributions but not rand_distr's streams.
--
-- Lua 5.4 integers are 64-bit two's complement: a u64 is kept as its bit pattern, u32 words
-- are masked with M32, `>>` is a logical shift, and unsigned comparisons use math.ult.
local M, lib = ...
local type, error, rawlen, rawget, setmetatable, tostring, tonumber = type, error, rawlen,
  rawget, setmetatable, tostring, tonumber
local tointeger, spack, sunpack = math.tointeger, string.pack, string.unpack
local ult, floor, sqrt, log, exp, cos, abs, huge, mininteger =
  math.ult, math.floor, math.sqrt, math.log, math.exp, math.cos, math.abs, math.huge,
  math.mininteger
local fail, num, int, uint, table_arg, lgamma, finite =
  lib.fail, lib.num, lib.int, lib.uint, lib.table_arg, lib.lgamma, lib.finite
local M32 = 0xffffffff
local TWO_PI = 6.283185307179586

-- ------------------------------------------------------------------ ChaCha

-- One ChaCha block: words st[17..24] are the key, (c0, c1) the block counter, (n0, n1) the
-- stream; `drounds` double rounds (6 for ChaCha12, 10 for ChaCha20). Writes st[1..16].
-- Only a word about to be shifted right must be a clean u32: sums and rotations keep bits
-- above 32 (even wrapping at 2^64 leaves the low 32 bits right), masked before each rotation
-- and at the end, which saves a quarter of the masks.
local function chacha(st, c0, c1, n0, n1, drounds)
  local k0, k1, k2, k3, k4, k5, k6, k7 = st[17], st[18], st[19], st[20], st[21], st[22],
    st[23], st[24]
  local x0, x1, x2, x3 = 0x61707865, 0x3320646e, 0x79622d32, 0x6b206574
  local x4, x5, x6, x7, x8, x9, x10, x11 = k0, k1, k2, k3, k4, k5, k6, k7
  local x12, x13, x14, x15 = c0, c1, n0, n1
  for _ = 1, drounds do
    -- columns
    x0 = x0 + x4; x12 = (x12 ~ x0) & M32; x12 = (x12 << 16) | (x12 >> 16)
    x8 = x8 + x12; x4 = (x4 ~ x8) & M32; x4 = (x4 << 12) | (x4 >> 20)
    x0 = x0 + x4; x12 = (x12 ~ x0) & M32; x12 = (x12 << 8) | (x12 >> 24)
    x8 = x8 + x12; x4 = (x4 ~ x8) & M32; x4 = (x4 << 7) | (x4 >> 25)
    x1 = x1 + x5; x13 = (x13 ~ x1) & M32; x13 = (x13 << 16) | (x13 >> 16)
    x9 = x9 + x13; x5 = (x5 ~ x9) & M32; x5 = (x5 << 12) | (x5 >> 20)
    x1 = x1 + x5; x13 = (x13 ~ x1) & M32; x13 = (x13 << 8) | (x13 >> 24)
    x9 = x9 + x13; x5 = (x5 ~ x9) & M32; x5 = (x5 << 7) | (x5 >> 25)
    x2 = x2 + x6; x14 = (x14 ~ x2) & M32; x14 = (x14 << 16) | (x14 >> 16)
    x10 = x10 + x14; x6 = (x6 ~ x10) & M32; x6 = (x6 << 12) | (x6 >> 20)
    x2 = x2 + x6; x14 = (x14 ~ x2) & M32; x14 = (x14 << 8) | (x14 >> 24)
    x10 = x10 + x14; x6 = (x6 ~ x10) & M32; x6 = (x6 << 7) | (x6 >> 25)
    x3 = x3 + x7; x15 = (x15 ~ x3) & M32; x15 = (x15 << 16) | (x15 >> 16)
    x11 = x11 + x15; x7 = (x7 ~ x11) & M32; x7 = (x7 << 12) | (x7 >> 20)
    x3 = x3 + x7; x15 = (x15 ~ x3) & M32; x15 = (x15 << 8) | (x15 >> 24)
    x11 = x11 + x15; x7 = (x7 ~ x11) & M32; x7 = (x7 << 7) | (x7 >> 25)
    -- diagonals
    x0 = x0 + x5; x15 = (x15 ~ x0) & M32; x15 = (x15 << 16) | (x15 >> 16)
    x10 = x10 + x15; x5 = (x5 ~ x10) & M32; x5 = (x5 << 12) | (x5 >> 20)
    x0 = x0 + x5; x15 = (x15 ~ x0) & M32; x15 = (x15 << 8) | (x15 >> 24)
    x10 = x10 + x15; x5 = (x5 ~ x10) & M32; x5 = (x5 << 7) | (x5 >> 25)
    x1 = x1 + x6; x12 = (x12 ~ x1) & M32; x12 = (x12 << 16) | (x12 >> 16)
    x11 = x11 + x12; x6 = (x6 ~ x11) & M32; x6 = (x6 << 12) | (x6 >> 20)
    x1 = x1 + x6; x12 = (x12 ~ x1) & M32; x12 = (x12 << 8) | (x12 >> 24)
    x11 = x11 + x12; x6 = (x6 ~ x11) & M32; x6 = (x6 << 7) | (x6 >> 25)
    x2 = x2 + x7; x13 = (x13 ~ x2) & M32; x13 = (x13 << 16) | (x13 >> 16)
    x8 = x8 + x13; x7 = (x7 ~ x8) & M32; x7 = (x7 << 12) | (x7 >> 20)
    x2 = x2 + x7; x13 = (x13 ~ x2) & M32; x13 = (x13 << 8) | (x13 >> 24)
    x8 = x8 + x13; x7 = (x7 ~ x8) & M32; x7 = (x7 << 7) | (x7 >> 25)
    x3 = x3 + x4; x14 = (x14 ~ x3) & M32; x14 = (x14 << 16) | (x14 >> 16)
    x9 = x9 + x14; x4 = (x4 ~ x9) & M32; x4 = (x4 << 12) | (x4 >> 20)
    x3 = x3 + x4; x14 = (x14 ~ x3) & M32; x14 = (x14 << 8) | (x14 >> 24)
    x9 = x9 + x14; x4 = (x4 ~ x9) & M32; x4 = (x4 << 7) | (x4 >> 25)
  end
  st[1], st[2] = (x0 + 0x61707865) & M32, (x1 + 0x3320646e) & M32
  st[3], st[4] = (x2 + 0x79622d32) & M32, (x3 + 0x6b206574) & M32
  st[5], st[6], st[7], st[8] = (x4 + k0) & M32, (x5 + k1) & M32, (x6 + k2) & M32, (x7 + k3) & M32
  st[9], st[10], st[11], st[12] = (x8 + k4) & M32, (x9 + k5) & M32, (x10 + k6) & M32,
    (x11 + k7) & M32
  st[13], st[14] = (x12 + c0) & M32, (x13 + c1) & M32
  st[15], st[16] = (x14 + n0) & M32, (x15 + n1) & M32
end

-- ------------------------------------------------------------------ the generators

-- A generator's state: st[1..16] the current block, st[17..24] the key, st[25] the next block
-- counter (a u64), st[26] the index of the next unread word (17: the block is used up). The
-- states live here, keyed (weakly) by the opaque handle the strategy holds: nothing it does
-- to the handle can reach or corrupt them.
local states = setmetatable({}, { __mode = "k" })
local handle_mt = {
  __name = "LuaRng",
  __metatable = "LuaRng",
  __tostring = function() return "LuaRng(StdRng)" end,
  __newindex = function() error("alc.math: an RNG handle has no fields", 2) end,
}

local function refill(st)
  local ctr = st[25]
  chacha(st, ctr & M32, ctr >> 32, 0, 0, 6)
  st[25] = ctr + 1
end

local function next_u32(st)
  local i = st[26]
  if i > 16 then
    refill(st)
    i = 1
  end
  st[26] = i + 1
  return st[i]
end

-- the next two words (low, high); across a block boundary as rand_core's BlockRng does
local function next_pair(st)
  local i = st[26]
  if i <= 15 then
    st[26] = i + 2
    return st[i], st[i + 1]
  end
  if i == 16 then
    local lo = st[16]
    refill(st)
    st[26] = 2
    return lo, st[1]
  end
  refill(st)
  st[26] = 3
  return st[1], st[2]
end

local function next_u64(st)
  local lo, hi = next_pair(st)
  return (hi << 32) | lo
end

local function unit(st) -- random::<f64>(): [0, 1)
  local lo, hi = next_pair(st)
  return ((hi << 21) | (lo >> 11)) * 0x1p-53
end

local function new_state(seed)
  local st = {}
  for i = 17, 24 do -- seed_from_u64: PCG32 outputs, the LCG advanced before each
    -- (multiplier 6364136223846793005, increment 11634580027462260723: in hex, as the
    -- increment does not fit a Lua integer literal in decimal)
    seed = seed * 0x5851f42d4c957f2d + 0xa17654e46fbe17f3
    local xorshifted = (((seed >> 18) ~ seed) >> 27) & M32
    local rot = seed >> 59
    st[i] = ((xorshifted >> rot) | (xorshifted << (32 - rot))) & M32
  end
  for i = 1, 16 do st[i] = 0 end
  st[25], st[26] = 0, 17
  return st
end

local function state_of(r, fn)
  local st = states[r]
  if not st then
    fail(fn, "expected an RNG made by alc.math.rng_create, got " .. type(r), 2)
  end
  return st
end

-- (hi, lo) of the 128-bit product of two u64 bit patterns
local function wmul64(a, b)
  local a0, a1, b0, b1 = a & M32, a >> 32, b & M32, b >> 32
  local p00, p01, p10 = a0 * b0, a0 * b1, a1 * b0
  local mid = (p00 >> 32) + (p01 & M32) + (p10 & M32)
  return a1 * b1 + (p01 >> 32) + (p10 >> 32) + (mid >> 32), (p00 & M32) | (mid << 32)
end

-- UniformInt::sample_single_inclusive for i64/u64: the offset from `low` (a u64 pattern)
local function offset64(st, size)
  if size == 0 then return next_u64(st) end -- the full 2^64 range
  local hi, lo = wmul64(next_u64(st), size)
  if ult(-size, lo) then -- biased zone: one more sample decides the carry
    local hi2 = wmul64(next_u64(st), size)
    if ult(lo + hi2, lo) then hi = hi + 1 end
  end
  return hi
end

-- the same on u32 words: random_range(low..=high) on usize with high < 2^32
local function offset32(st, size)
  if size == 0 then return next_u32(st) end
  local p = next_u32(st) * size
  local hi, lo = p >> 32, p & M32
  if lo > ((-size) & M32) then
    local hi2 = (next_u32(st) * size) >> 32
    if lo + hi2 > M32 then hi = hi + 1 end
  end
  return hi
end

local function index_in(st, low, high) -- random_range(low..=high) on usize
  if high <= M32 then return low + offset32(st, (high - low + 1) & M32) end
  return low + offset64(st, high - low + 1)
end

function M.rng_create(seed)
  if type(seed) == "string" then seed = tonumber(seed) end
  local s
  if type(seed) == "number" then
    if seed >= 0x1p63 and seed < 0x1p64 and seed == floor(seed) then
      s = tointeger(seed - 0x1p63) | mininteger -- a u64 above the i64 range (a float)
    else
      s = tointeger(seed)
      if s and s < 0 then s = nil end
    end
  end
  if not s then
    fail("rng_create", "seed must be an integer in [0, 2^64), got " .. tostring(seed))
  end
  local r = setmetatable({}, handle_mt)
  states[r] = new_state(s)
  return r
end

function M.rng_float(r) -- (the packages' hot path: unit() inlined while the block lasts)
  local st = states[r]
  local i = st and st[26]
  if i and i <= 15 then
    st[26] = i + 2
    return ((st[i + 1] << 21) | (st[i] >> 11)) * 0x1p-53
  end
  return unit(state_of(r, "rng_float"))
end

function M.rng_int(r, min, max)
  local st = state_of(r, "rng_int")
  min, max = int(min, "rng_int", "min"), int(max, "rng_int", "max")
  if min > max then fail("rng_int", "min (" .. min .. ") must be <= max (" .. max .. ")") end
  return min + offset64(st, max - min + 1)
end

function M.shuffle(r, t)
  local st = state_of(r, "shuffle")
  table_arg(t, "shuffle", "the list")
  local n, out = rawlen(t), {}
  for i = 1, n do out[i] = rawget(t, i) end
  for i = n - 1, 1, -1 do -- 0-based i as the original: j = random_range(0..=i)
    local j = index_in(st, 0, i)
    out[i + 1], out[j + 1] = out[j + 1], out[i + 1]
  end
  return out
end

function M.sample_with_replacement(r, t, n)
  local st = state_of(r, "sample_with_replacement")
  table_arg(t, "sample_with_replacement", "the list")
  n = uint(n, "sample_with_replacement", "n")
  local len = rawlen(t)
  if len == 0 then fail("sample_with_replacement", "input must be non-empty") end
  local out = {}
  for i = 1, n do out[i] = rawget(t, index_in(st, 1, len)) end
  return out
end

-- ------------------------------------------------------------------ uniform and weighted

-- Uniform::new(low, high) on f64: scale shrunk until scale * (1 - eps) + low <= high
local function uniform_scale(low, high)
  local scale = high - low
  while scale * (1 - 0x1p-52) + low > high do
    scale = sunpack("<d", spack("<i8", sunpack("<i8", spack("<d", scale)) - 1))
  end
  return scale
end
local function uniform_draw(st, low, scale)
  return ((next_u64(st) >> 12) * 0x1p-52) * scale + low
end

function M.uniform_sample(r, low, high)
  local st = state_of(r, "uniform_sample")
  low, high = num(low, "uniform_sample", "low"), num(high, "uniform_sample", "high")
  if not (low < high) then fail("uniform_sample", "low must be < high") end
  if not finite(high - low) then fail("uniform_sample", "the range must be finite") end
  return uniform_draw(st, low, uniform_scale(low, high))
end

function M.categorical_sample(r, weights)
  local st = state_of(r, "categorical_sample")
  table_arg(weights, "categorical_sample", "weights")
  local n = rawlen(weights)
  if n == 0 then fail("categorical_sample", "need at least 1 weight") end
  local sums, total = {}, 0.0
  for i = 1, n do
    local w = num(rawget(weights, i), "categorical_sample", "weight " .. i)
    if not (w >= 0) then fail("categorical_sample", "weight " .. i .. " is negative or NaN") end
    if i > 1 then sums[i - 1] = total end
    total = total + w
  end
  if total == 0 then fail("categorical_sample", "all weights are zero") end
  if total == huge then fail("categorical_sample", "the weights must be finite") end
  local chosen = uniform_draw(st, 0.0, uniform_scale(0.0, total))
  local lo, hi = 1, n -- the first running sum above `chosen` (binary search)
  while lo < hi do
    local mid = (lo + hi) // 2
    if sums[mid] <= chosen then lo = mid + 1 else hi = mid end
  end
  return lo
end

-- ------------------------------------------------------------------ continuous samplers

local function std_normal(st) -- Box-Muller (one of the pair)
  local u1 = 1 - unit(st)
  return sqrt(-2 * log(u1)) * cos(TWO_PI * unit(st))
end

local function gamma_ge1(st, shape) -- Marsaglia-Tsang, shape >= 1
  local d = shape - 1 / 3
  local c = 1 / sqrt(9 * d)
  while true do
    local x, v
    repeat
      x = std_normal(st)
      v = 1 + c * x
    until v > 0
    v = v * v * v
    local u = unit(st)
    local x2 = x * x
    if u < 1 - 0.0331 * x2 * x2 then return d * v end
    if log(u) < 0.5 * x2 + d * (1 - v + log(v)) then return d * v end
  end
end

-- log of a Gamma(shape, 1) variate (small shapes boosted: G(a) = G(a + 1) * U^(1/a))
local function log_gamma_variate(st, shape)
  if shape >= 1 then return log(gamma_ge1(st, shape)) end
  return log(gamma_ge1(st, shape + 1)) + log(1 - unit(st)) / shape
end

local function gamma_variate(st, shape)
  if shape >= 1 then return gamma_ge1(st, shape) end
  return exp(log_gamma_variate(st, shape))
end

local function spread(v, fn, what)
  v = num(v, fn, what, 3)
  if not (v >= 0) then fail(fn, what .. " must be >= 0 (and not NaN)", 2) end
  return v
end
function M.normal_sample(r, mean, stddev)
  local st = state_of(r, "normal_sample")
  local m, s = num(mean, "normal_sample", "mean"), spread(stddev, "normal_sample", "stddev")
  return m + s * std_normal(st)
end
function M.lognormal_sample(r, mu, sigma)
  local st = state_of(r, "lognormal_sample")
  local m, s = num(mu, "lognormal_sample", "mu"), spread(sigma, "lognormal_sample", "sigma")
  return exp(m + s * std_normal(st))
end

local function positive(v, fn, what)
  v = num(v, fn, what, 3)
  if not (v > 0) then fail(fn, what .. " must be > 0, got " .. tostring(v), 2) end
  return v
end
function M.gamma_sample(r, shape, scale)
  local st = state_of(r, "gamma_sample")
  shape, scale = positive(shape, "gamma_sample", "shape"), positive(scale, "gamma_sample", "scale")
  return gamma_variate(st, shape) * scale
end
function M.beta_sample(r, alpha, beta)
  local st = state_of(r, "beta_sample")
  alpha, beta = positive(alpha, "beta_sample", "alpha"), positive(beta, "beta_sample", "beta")
  local lx, ly = log_gamma_variate(st, alpha), log_gamma_variate(st, beta)
  return 1 / (1 + exp(ly - lx)) -- X / (X + Y), in logs (tiny shapes underflow X and Y)
end
function M.exp_sample(r, lambda)
  local st = state_of(r, "exp_sample")
  lambda = num(lambda, "exp_sample", "lambda")
  if not (lambda >= 0) then fail("exp_sample", "lambda must be >= 0") end
  local e = -log(1 - unit(st))
  if lambda == 0 then return huge end
  return e / lambda
end
function M.chi_squared_sample(r, df)
  local st = state_of(r, "chi_squared_sample")
  df = positive(df, "chi_squared_sample", "df")
  return 2 * gamma_variate(st, df / 2)
end
function M.student_t_sample(r, df)
  local st = state_of(r, "student_t_sample")
  df = positive(df, "student_t_sample", "df")
  local z = std_normal(st)
  return z / sqrt(2 * gamma_variate(st, df / 2) / df)
end
function M.dirichlet_sample(r, alphas)
  local st = state_of(r, "dirichlet_sample")
  table_arg(alphas, "dirichlet_sample", "alphas")
  local n = rawlen(alphas)
  if n < 2 then fail("dirichlet_sample", "need at least 2 alpha values") end
  local a = {}
  for i = 1, n do a[i] = positive(rawget(alphas, i), "dirichlet_sample", "alpha " .. i) end
  local out, sum = {}, 0.0
  for i = 1, n do
    out[i] = gamma_variate(st, a[i])
    sum = sum + out[i]
  end
  if sum == 0 then
    fail("dirichlet_sample", "gamma samples sum to zero (alpha values too small?)")
  end
  for i = 1, n do out[i] = out[i] / sum end
  return out
end

-- ------------------------------------------------------------------ discrete samplers

local function poisson_variate(st, lambda)
  if lambda < 10 then -- multiplication of uniforms
    local limit, k, p = exp(-lambda), 0, unit(st)
    while p > limit do
      k = k + 1
      p = p * unit(st)
    end
    return k
  end
  -- PTRS: Hoermann (1993), transformed rejection with squeeze
  local slam, loglam = sqrt(lambda), log(lambda)
  local b = 0.931 + 2.53 * slam
  local a = -0.059 + 0.02483 * b
  local inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
  local vr = 0.9277 - 3.6224 / (b - 2)
  while true do
    local u = unit(st) - 0.5
    local v = unit(st)
    local us = 0.5 - abs(u)
    local k = floor((2 * a / us + b) * u + lambda + 0.43)
    if us >= 0.07 and v <= vr then return k end
    if k >= 0 and not (us < 0.013 and v > us)
      and log(v) + log(inv_alpha) - log(a / (us * us) + b) <= -lambda + k * loglam - lgamma(k + 1)
    then
      return k
    end
  end
end

function M.poisson_sample(r, lambda)
  local st = state_of(r, "poisson_sample")
  lambda = num(lambda, "poisson_sample", "lambda")
  if not finite(lambda) then fail("poisson_sample", "lambda must be finite") end
  if not (lambda > 0) then fail("poisson_sample", "lambda must be > 0") end
  if lambda >= 1.844e19 then fail("poisson_sample", "lambda is too large") end
  return floor(poisson_variate(st, lambda))
end

local function binomial_variate(st, n, p) -- p <= 0.5
  local q = 1 - p
  if n * p < 10 then -- inversion, term by term
    local s, x = p / q, 0
    local a, f = (n + 1) * s, q ^ n
    local u = unit(st)
    while u > f do
      u = u - f
      x = x + 1
      if x > n then -- rounding left a sliver past the last term: draw again
        x, f, u = 0, q ^ n, unit(st)
      else
        f = f * (a / x - s)
      end
    end
    return x
  end
  -- BTRS: Hoermann (1993), transformed rejection with squeeze
  local spq = sqrt(n * p * q)
  local b = 1.15 + 2.53 * spq
  local a = -0.0873 + 0.0248 * b + 0.01 * p
  local c = n * p + 0.5
  local vr = 0.92 - 4.2 / b
  local alpha = (2.83 + 5.1 / b) * spq
  local lpq = log(p / q)
  local m = floor((n + 1) * p)
  local h = lgamma(m + 1.0) + lgamma(n - m + 1.0)
  while true do
    local u = unit(st) - 0.5
    local v = unit(st)
    local us = 0.5 - abs(u)
    local k = floor((2 * a / us + b) * u + c)
    if k >= 0 and k <= n then
      if us >= 0.07 and v <= vr then return k end
      if log(v * alpha / (a / (us * us) + b))
        <= h - lgamma(k + 1.0) - lgamma(n - k + 1.0) + (k - m) * lpq then
        return k
      end
    end
  end
end

function M.binomial_sample(r, n, p)
  local st = state_of(r, "binomial_sample")
  n, p = uint(n, "binomial_sample", "n"), num(p, "binomial_sample", "p")
  if not (p >= 0 and p <= 1) then fail("binomial_sample", "p must be in [0, 1]") end
  if p == 0 or n == 0 then return 0 end
  if p == 1 then return n end
  if p > 0.5 then return n - floor(binomial_variate(st, n, 1 - p)) end
  return floor(binomial_variate(st, n, p))
end

-- internals, for the tests that check the core against published vectors
return {
  chacha = chacha, next_u32 = next_u32, index_in = index_in,
  state_of = function(r) return states[r] end,
}

"""Test helper: an independent Python model of the generator behind the original's alc.math.

The original (mlua-mathlib 0.3) wraps Rust ``rand`` 0.9's ``StdRng``, built with
``seed_from_u64``. Written here from the algorithms' published definitions:

- ``StdRng`` is rand_chacha's ``ChaCha12Rng``: the ChaCha block function (RFC 8439 §2.3) with 12
  rounds, the 32-byte seed as the key (little-endian words), a 64-bit block counter in words 12-13
  starting at 0 and a 64-bit stream (0) in words 14-15. Its output is the block words in order,
  block after block; ``next_u64`` joins the next two words, low word first (rand_core's
  ``BlockRng``, also across a buffer boundary), ``fill_bytes`` takes whole words, little-endian.
- ``seed_from_u64`` (rand_core's default) fills the seed with PCG32 outputs (XSH RR) of an LCG
  advanced *before* each output, multiplier 6364136223846793005, increment 11634580027462260723.
- ``random::<f64>()`` is ``(next_u64 >> 11) * 2**-53``.
- ``random_range(lo..=hi)`` is ``UniformInt::sample_single_inclusive``: one widening multiply of
  a sample by the range size, and a second sample only when the low half lies in the biased
  zone (``lo > -range``), adding the carry of ``lo + hi(second)``. i64 ranges sample u64 words;
  usize ranges whose top fits in u32 sample one u32 word (``UniformUsize``).
- ``Uniform::new(low, high)`` for f64 (``uniform_sample``) shrinks ``scale`` until
  ``scale * (1 - eps) + low <= high`` and samples ``((u64 >> 12) * 2**-52) * scale + low``.
- ``WeightedIndex`` (``categorical_sample``) samples ``Uniform::new(0, total)`` and returns the
  number of running sums (of all weights but the last) that are ``<=`` the sample.

``Pcg32`` (rand_pcg's ``Lcg64Xsh32``) is here only to check this model against rand's own
published value-stability vectors, which use it as their test generator.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence

M32 = 0xFFFF_FFFF
M64 = 0xFFFF_FFFF_FFFF_FFFF
CONSTANTS = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)  # "expand 32-byte k"
PCG_MUL = 6364136223846793005
PCG_INC = 11634580027462260723


def _rotl(v: int, n: int) -> int:
    return ((v << n) | (v >> (32 - n))) & M32


def chacha_block(
    key: Sequence[int], w12: int, w13: int, w14: int, w15: int, rounds: int
) -> list[int]:
    """The 16 output words of one ChaCha block (``rounds`` = 8, 12 or 20)."""
    state = [*CONSTANTS, *key, w12, w13, w14, w15]
    x = list(state)

    def qr(a: int, b: int, c: int, d: int) -> None:
        x[a] = (x[a] + x[b]) & M32
        x[d] = _rotl(x[d] ^ x[a], 16)
        x[c] = (x[c] + x[d]) & M32
        x[b] = _rotl(x[b] ^ x[c], 12)
        x[a] = (x[a] + x[b]) & M32
        x[d] = _rotl(x[d] ^ x[a], 8)
        x[c] = (x[c] + x[d]) & M32
        x[b] = _rotl(x[b] ^ x[c], 7)

    for _ in range(rounds // 2):
        qr(0, 4, 8, 12), qr(1, 5, 9, 13), qr(2, 6, 10, 14), qr(3, 7, 11, 15)
        qr(0, 5, 10, 15), qr(1, 6, 11, 12), qr(2, 7, 8, 13), qr(3, 4, 9, 14)
    return [(x[i] + state[i]) & M32 for i in range(16)]


class WordRng:
    """Anything with ``next_u32``; ``next_u64`` joins two words, low first."""

    def next_u32(self) -> int:
        raise NotImplementedError

    def next_u64(self) -> int:
        lo = self.next_u32()
        return (self.next_u32() << 32) | lo

    def fill_bytes(self, n: int) -> bytes:
        out = b"".join(struct.pack("<I", self.next_u32()) for _ in range((n + 3) // 4))
        return out[:n]


class ChaCha(WordRng):
    """rand_chacha's ChaChaXRng from a 32-byte seed (stream 0 unless given)."""

    def __init__(self, seed: bytes, rounds: int = 12, stream: int = 0) -> None:
        assert len(seed) == 32
        self.key = struct.unpack("<8I", seed)
        self.rounds, self.stream = rounds, stream
        self.counter = 0
        self.words: list[int] = []
        self.index = 0

    def next_u32(self) -> int:
        if self.index >= len(self.words):
            c, s = self.counter, self.stream
            self.words = chacha_block(self.key, c & M32, c >> 32, s & M32, s >> 32, self.rounds)
            self.counter = (c + 1) & M64
            self.index = 0
        self.index += 1
        return self.words[self.index - 1]


def seed_from_u64(state: int, length: int = 32) -> bytes:
    """rand_core's default ``SeedableRng::seed_from_u64`` expansion of a u64 into a seed."""
    out = b""
    while len(out) < length:
        state = (state * PCG_MUL + PCG_INC) & M64
        xorshifted = (((state >> 18) ^ state) >> 27) & M32
        rot = state >> 59
        out += struct.pack("<I", ((xorshifted >> rot) | (xorshifted << (32 - rot))) & M32)
    return out[:length]


def std_rng(seed: int) -> ChaCha:
    """``StdRng::seed_from_u64(seed)`` of rand 0.9."""
    return ChaCha(seed_from_u64(seed & M64))


class Pcg32(WordRng):
    """rand_pcg's Lcg64Xsh32 (the generator of rand's own value-stability tests)."""

    def __init__(self, state: int, increment: int) -> None:
        self.increment = increment | 1
        self.state = (state + self.increment) & M64
        self._step()

    @classmethod
    def new(cls, state: int, stream: int) -> Pcg32:
        return cls(state, ((stream << 1) | 1) & M64)

    @classmethod
    def from_seed(cls, seed: bytes) -> Pcg32:
        state, inc = struct.unpack("<2Q", seed)
        return cls(state, inc)

    def _step(self) -> None:
        self.state = (self.state * PCG_MUL + self.increment) & M64

    def next_u32(self) -> int:
        s = self.state
        self._step()
        rot = s >> 59
        xsh = (((s >> 18) ^ s) >> 27) & M32
        return ((xsh >> rot) | (xsh << (32 - rot))) & M32


def random_f64(rng: WordRng) -> float:
    return (rng.next_u64() >> 11) * 2.0**-53


def _draw(rng: WordRng, bits: int) -> Callable[[], int]:
    return rng.next_u32 if bits == 32 else rng.next_u64


def sample_single_inclusive(rng: WordRng, low: int, high: int, bits: int) -> int:
    """``UniformInt::sample_single_inclusive`` over ``bits``-bit words (the Canon method)."""
    mask = (1 << bits) - 1
    if low > high:
        raise ValueError("EmptyRange")
    size = (high - low + 1) & mask
    draw = _draw(rng, bits)
    if size == 0:
        return low + draw()
    product = draw() * size
    hi, lo = product >> bits, product & mask
    if lo > (-size & mask):
        new_hi = (draw() * size) >> bits
        hi += (lo + new_hi) >> bits  # the carry
    return low + hi


def sample_lemire(rng: WordRng, low: int, high: int, bits: int) -> int:
    """``Uniform::new_inclusive(low, high).sample`` (Lemire's rejection), for rand's vectors."""
    mask = (1 << bits) - 1
    size = (high - low + 1) & mask
    thresh = (-size & mask) % size
    draw = _draw(rng, bits)
    while True:
        product = draw() * size
        if product & mask >= thresh:
            return low + (product >> bits)


def rng_int(rng: WordRng, low: int, high: int) -> int:
    """mlua-mathlib's ``rng_int``: ``random_range(low..=high)`` on i64."""
    raw = sample_single_inclusive(rng, low & M64, (low & M64) + ((high - low) & M64), 64)
    v = raw & M64
    return v - (1 << 64) if v >> 63 else v


def random_usize(rng: WordRng, low: int, high: int) -> int:
    """``random_range(low..=high)`` on usize (64-bit target): u32 words when ``high`` fits."""
    return sample_single_inclusive(rng, low, high, 32 if high <= M32 else 64)


def shuffle(rng: WordRng, values: Sequence[object]) -> list[object]:
    """mlua-mathlib's ``shuffle``: Fisher-Yates from the top, ``j = random_range(0..=i)``."""
    out = list(values)
    for i in range(len(out) - 1, 0, -1):
        j = random_usize(rng, 0, i)
        out[i], out[j] = out[j], out[i]
    return out


def sample_with_replacement(rng: WordRng, values: Sequence[object], n: int) -> list[object]:
    return [values[random_usize(rng, 1, len(values)) - 1] for _ in range(n)]


def _next_down(x: float) -> float:
    return math.nextafter(x, -math.inf)


def uniform_float(rng: WordRng, low: float, high: float) -> float:
    """``Uniform::new(low, high).sample`` for f64."""
    scale = high - low
    max_rand = 1.0 - 2.0**-52
    while scale * max_rand + low > high:
        scale = _next_down(scale)
    return ((rng.next_u64() >> 12) * 2.0**-52) * scale + low


def categorical(rng: WordRng, weights: Sequence[float]) -> int:
    """``WeightedIndex::new(weights).sample`` + 1 (mlua-mathlib's 1-based index)."""
    sums: list[float] = []
    total = float(weights[0])
    for w in weights[1:]:
        sums.append(total)
        total += float(w)
    chosen = uniform_float(rng, 0.0, total)
    return sum(1 for s in sums if s <= chosen) + 1


# ------------------------------------------------------------------ reference CDFs (for tests)


def normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def gamma_p(a: float, x: float) -> float:
    """Regularized lower incomplete gamma by its power series (fine for the tests' x)."""
    if x <= 0:
        return 0.0
    term = math.exp(a * math.log(x) - x - math.lgamma(a + 1.0))
    total, n = term, 0
    while term > 1e-17 * total:
        n += 1
        term *= x / (a + n)
        total += term
    return total

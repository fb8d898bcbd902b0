"""Tests for the runtime's pure-Lua JSON module (algocline_nb/_lua/json.lua).

The module must write exactly what algocline writes through mlua's serde
support and serde_json, and accept exactly what serde_json accepts.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lupa import lua54

JSON_LUA = Path(__file__).parent.parent / "algocline_nb" / "_lua" / "json.lua"

NULL = object()

Run = Callable[..., Any]


@pytest.fixture(scope="module")
def runtime() -> lua54.LuaRuntime:
    return lua54.LuaRuntime(register_eval=False, register_builtins=False)


@pytest.fixture(scope="module")
def json_mod(runtime: lua54.LuaRuntime) -> Any:
    return runtime.execute(JSON_LUA.read_text(encoding="utf-8"), NULL)


@pytest.fixture(scope="module")
def run(runtime: lua54.LuaRuntime, json_mod: Any) -> Run:
    """Run a Lua snippet that sees the module as `json` and one argument as `A`."""

    def _run(code: str, arg: Any = None) -> Any:
        return runtime.execute("local json, A = ...\n" + code, json_mod, arg)

    return _run


def encode(run: Run, expr: str) -> str:
    result: str = run(f"return json.encode({expr})")
    return result


def reencode(run: Run, text: str | bytes) -> str:
    result: str = run("return json.encode(json.decode(A))", text)
    return result


# --------------------------------------------------------------------------
# Reference for serde_json's float output (the ryu crate's layout)
# --------------------------------------------------------------------------


def ryu_text(v: float) -> str:
    if math.isnan(v) or math.isinf(v):
        return "null"
    if v == 0:
        return "-0.0" if math.copysign(1.0, v) < 0 else "0.0"
    sign = "-" if v < 0 else ""
    # repr() gives the shortest digits that round-trip, like ryu does.
    _, digit_tuple, exponent = Decimal(repr(abs(v))).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    n = len(digits)
    kk = n + exponent  # v == 0.<digits> * 10**kk
    if n <= kk <= 16:
        body = digits + "0" * (kk - n) + ".0"
    elif 0 < kk <= 16:
        body = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        body = "0." + "0" * -kk + digits
    elif n == 1:
        body = f"{digits}e{kk - 1}"
    else:
        body = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return sign + body


def sample_floats() -> list[float]:
    rng = random.Random(1234)
    values: list[float] = []
    for _ in range(1500):  # arbitrary bit patterns: every magnitude, some NaN/inf
        values.append(struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0])
    for _ in range(300):  # subnormals
        bits = rng.getrandbits(52) | (rng.getrandbits(1) << 63)
        values.append(struct.unpack("<d", struct.pack("<Q", bits))[0])
    for _ in range(500):  # integers stored as floats
        values.append(float(rng.randrange(-(2**62), 2**62)))
        values.append(float(rng.randrange(-100_000, 100_000)))
    for _ in range(500):  # everyday magnitudes, short decimals
        values.append(rng.uniform(-1000.0, 1000.0))
        values.append(round(rng.uniform(-100.0, 100.0), rng.randint(0, 6)))
        values.append(rng.random() * 10.0 ** rng.randint(-30, 30))
    values += [2.0**k for k in range(-1074, 1024)]  # powers of two: asymmetric gaps
    values += [10.0**k for k in range(-323, 309)]
    return values


def test_reference_formatter_sanity() -> None:
    assert ryu_text(7.0) == "7.0"
    assert ryu_text(1e-5) == "0.00001"
    assert ryu_text(1e-6) == "1e-6"
    assert ryu_text(1e16) == "1e16"
    assert ryu_text(-1.5e-7) == "-1.5e-7"


def test_random_floats_match_ryu(runtime: lua54.LuaRuntime, json_mod: Any) -> None:
    values = sample_floats()
    out: str = json_mod.encode(runtime.table_from(values))
    got = out[1:-1].split(",")
    assert len(got) == len(values)
    mismatches = [(v, g, ryu_text(v)) for v, g in zip(values, got, strict=True) if g != ryu_text(v)]
    assert mismatches == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.1, "0.1"),
        (0.3, "0.3"),
        (1 / 3, "0.3333333333333333"),
        (3.14, "3.14"),
        (1.5, "1.5"),
        (-2.5, "-2.5"),
        (7.0, "7.0"),
        (100.0, "100.0"),
        (1e15, "1000000000000000.0"),
        (1234567890123456.0, "1234567890123456.0"),
        (9007199254740992.0, "9007199254740992.0"),
        (1e16, "1e16"),
        (1e17, "1e17"),
        (123456789012345680.0, "1.2345678901234568e17"),
        (1.2345e20, "1.2345e20"),
        (1e21, "1e21"),
        (0.001, "0.001"),
        (1e-5, "0.00001"),
        (1.5e-5, "0.000015"),
        (1e-6, "1e-6"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (5e-324, "5e-324"),
        (2.2250738585072014e-308, "2.2250738585072014e-308"),
        (7.120236347223045e-307, "7.120236347223045e-307"),
        (1.7976931348623157e308, "1.7976931348623157e308"),
        (-1.7976931348623157e308, "-1.7976931348623157e308"),
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (math.inf, "null"),
        (-math.inf, "null"),
        (math.nan, "null"),
    ],
)
def test_float_cases(json_mod: Any, value: float, expected: str) -> None:
    assert json_mod.encode(value) == expected
    assert ryu_text(value) == expected


# --------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------


def test_sorted_keys_and_nesting(run: Run) -> None:
    expr = '{b = {1, 2, {z = 1, y = false}}, a = "x", A = true, [""] = 0, ab = {}}'
    assert encode(run, expr) == '{"":0,"A":true,"a":"x","ab":{},"b":[1,2,{"y":false,"z":1}]}'


def test_keys_sort_bytewise(run: Run) -> None:
    expr = '{["é"] = 1, z = 2, Z = 3, ["a b"] = 4, ["a\\0"] = 5, a = 6}'
    assert encode(run, expr) == '{"Z":3,"a":6,"a\\u0000":5,"a b":4,"z":2,"é":1}'


def test_integers_and_integral_floats(run: Run) -> None:
    expr = "{7, 7.0, -7.0, 2^53, 0, -0.0, math.maxinteger, math.mininteger}"
    expected = "[7,7.0,-7.0,9007199254740992.0,0,-0.0,9223372036854775807,-9223372036854775808]"
    assert encode(run, expr) == expected


def test_scalars(run: Run) -> None:
    assert encode(run, "true") == "true"
    assert encode(run, "false") == "false"
    assert encode(run, "nil") == "null"
    assert encode(run, "") == "null"
    assert encode(run, '"hi"') == '"hi"'
    assert encode(run, "-12") == "-12"


def test_empty_table_and_array_marker(run: Run) -> None:
    assert encode(run, "{}") == "{}"
    assert encode(run, "setmetatable({}, json.array_mt)") == "[]"
    assert encode(run, "{a = setmetatable({}, json.array_mt), b = {}}") == '{"a":[],"b":{}}'
    code = "return json.is_array({}), json.is_array({1}), json.is_array(json.decode('[]'))"
    assert run(code) == (False, True, True)
    assert run("return json.is_array(json.decode('{}')), json.is_array('x')") == (False, False)


def test_null_sentinel(run: Run, json_mod: Any) -> None:
    assert json_mod.null is NULL
    assert json_mod.decode("null") is NULL
    assert encode(run, "json.null") == "null"
    assert encode(run, "{1, json.null}") == "[1,null]"
    assert encode(run, "{a = json.null}") == '{"a":null}'
    assert run("local t = json.decode('[1,null,3]') return #t, rawequal(t[2], json.null)") == (
        3,
        True,
    )
    assert run("local t = json.decode('[null]') return #t, rawequal(t[1], json.null)") == (1, True)
    code = "local t = json.decode('{\"a\":null}') return rawequal(t.a, json.null), (next(t))"
    assert run(code) == (True, "a")
    assert reencode(run, '[1,null,{"a":null}]') == '[1,null,{"a":null}]'


def test_mixed_table_drops_non_sequence_keys(run: Run) -> None:
    assert encode(run, '{1, 2, x = 3, [1.5] = 4, [true] = 5, [10] = 6, ["1"] = 7}') == "[1,2]"


def test_holes_become_null(run: Run) -> None:
    assert encode(run, "{1, nil, 3}") == "[1,null,3]"
    assert run("local t = setmetatable({}, json.array_mt) t[1] = 'a' return json.encode(t)") == (
        '["a"]'
    )


@pytest.mark.parametrize(
    "expr", ['{[5] = "x"}', "{[true] = 1}", "{[1.5] = 1}", '{a = {[2] = "x"}}', "{[{}] = 1}"]
)
def test_non_string_key_is_an_error(run: Run, expr: str) -> None:
    with pytest.raises(lua54.LuaError, match=r"^cannot encode non-string key"):
        encode(run, expr)


@pytest.mark.parametrize(
    ("expr", "kind"),
    [
        ("print", "function"),
        ("{a = {function() end}}", "function"),
        ("coroutine.create(function() end)", "thread"),
        ("{io.stdout}", "userdata"),
        ("{x = A}", "userdata"),
    ],
)
def test_unsupported_values_are_errors(run: Run, expr: str, kind: str) -> None:
    with pytest.raises(lua54.LuaError, match=rf"^cannot encode value of type {kind}"):
        run(f"return json.encode({expr})", object())


def test_error_points_at_the_caller(run: Run) -> None:
    code = "local function f() return (json.encode(print)) end\nreturn select(2, pcall(f))"
    message = run(code)
    assert message.endswith(":2: cannot encode value of type function")
    code = "local function f() return (json.decode('[1,')) end\nreturn select(2, pcall(f))"
    assert run(code).endswith(":2: invalid JSON at byte 4: unexpected end of input")


def test_cycles_are_errors(run: Run) -> None:
    with pytest.raises(lua54.LuaError, match=r"^cannot encode a table that contains itself"):
        run("local t = {} t[1] = t return json.encode(t)")
    with pytest.raises(lua54.LuaError, match=r"^cannot encode a table that contains itself"):
        run("local t = {} t.a = {b = {t}} return json.encode(t)")
    # A table reachable twice without a cycle is fine.
    assert run("local s = {1} return json.encode({s, {k = s}})") == '[[1],{"k":[1]}]'
    # The module stays usable after an error.
    assert encode(run, "{1}") == "[1]"


def test_encode_nesting_limit(run: Run) -> None:
    build = "local t = {} local root = t for _ = 2, A do local c = {} t[1] = c t = c end "
    assert run(build + "return json.encode(root)", 127) == "[" * 126 + "{}" + "]" * 126
    with pytest.raises(lua54.LuaError, match=r"^nesting too deep"):
        run(build + "return json.encode(root)", 128)


def test_string_escaping(run: Run) -> None:
    expr = '"\\0\\1\\8\\9\\10\\11\\12\\13\\27\\31 \\"\\\\/\\127é😀"'
    expected = '"\\u0000\\u0001\\b\\t\\n\\u000b\\f\\r\\u001b\\u001f \\"\\\\/\x7fé😀"'
    assert encode(run, expr) == expected
    assert encode(run, '{["k\\n\\""] = "v"}') == '{"k\\n\\"":"v"}'


def test_invalid_utf8_is_written_raw(run: Run) -> None:
    assert run("""return json.encode({"\\255\\254a"}) == '["\\255\\254a"]'""") is True


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------


def test_decode_strings(run: Run) -> None:
    text = '"a\\u00e9\\u00C9\\ud83d\\ude00\\n\\/\\"\\\\\\b\\f\\r\\t\\u0000 é😀"'
    assert run("return json.decode(A)", text) == 'aéÉ😀\n/"\\\b\f\r\t\x00 é😀'
    assert run("return json.decode(A)", '"plain"') == "plain"
    assert run("return json.decode(A)", '""') == ""


def test_decode_structures(run: Run) -> None:
    code = """
        local t = json.decode(A)
        return t.a[1], t.a[2][1], #t.a, t.b.c, t[""], getmetatable(t) == nil
    """
    text = ' {"a" : [ 1 , [ true ] ] ,\n"b":{"c":"d"},\t"":false}\r\n'
    assert run(code, text) == (1, True, 2, "d", False, True)
    # Duplicate keys: the last one wins (serde_json's map does the same).
    assert reencode(run, '{"a":1,"a":2}') == '{"a":2}'


def test_round_trip_rich_document(run: Run) -> None:
    doc = (
        '{"":{},"array":[1,-2,3.5,-0.0,1e-7,1.5e300,"s",true,false,null,[],{},[[[]]]],'
        '"empty":"","esc":"\\"\\\\\\b\\f\\n\\r\\t\\u0001\\u001f","float":7.0,'
        '"int":9223372036854775807,"min":-9223372036854775808,'
        '"nested":{"k":{"k":{"k":[{"z":0.00001,"a":0.1}]}}},"unicode":"héllo 世界 😀"}'
    )
    # Keys in a nested object come back sorted; fix the one unsorted object above.
    expected = doc.replace('{"z":0.00001,"a":0.1}', '{"a":0.1,"z":0.00001}')
    once = reencode(run, doc)
    assert once == expected
    assert reencode(run, once) == expected


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("7", "7", "integer"),
        ("-7", "-7", "integer"),
        ("0", "0", "integer"),
        ("-0", "0", "integer"),
        ("7.0", "7.0", "float"),
        ("1.0", "1.0", "float"),
        ("-0.0", "-0.0", "float"),
        ("1e2", "100.0", "float"),
        ("1E-7", "1e-7", "float"),
        ("2.5e+3", "2500.0", "float"),
        ("0.1", "0.1", "float"),
        ("1e-400", "0.0", "float"),
        ("9223372036854775807", "9223372036854775807", "integer"),
        ("-9223372036854775808", "-9223372036854775808", "integer"),
        ("9223372036854775808", "9.223372036854776e18", "float"),
        ("-9223372036854775809", "-9.223372036854776e18", "float"),
        ("18446744073709551616", "1.8446744073709552e19", "float"),
        ("123456789012345678901234567890", "1.2345678901234568e29", "float"),
    ],
)
def test_decode_numbers(run: Run, text: str, expected: str, kind: str) -> None:
    code = "local v = json.decode(A) return json.encode(v), math.type(v)"
    assert run(code, text) == (expected, kind)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "[1,]",
        '{"a":1,}',
        "[,1]",
        "[1 2]",
        '{"a" 1}',
        '{"a":}',
        "{a:1}",
        "{1:2}",
        "{'a':1}",
        "'a'",
        "[1] // comment",
        "/* c */ 1",
        "01",
        "-01",
        "00",
        "+1",
        ".5",
        "1.",
        "1.e5",
        "-",
        "--1",
        "1e",
        "1e+",
        "0x10",
        "NaN",
        "Infinity",
        "-Infinity",
        "1e400",
        "-1e400",
        "tru",
        "nul",
        "True",
        "1 2",
        "[1]]",
        "{} x",
        "\f1",
        "\v1",
        "1\x00",
        "[1",
        '{"a":1',
        '"abc',
        '"abc\\',
        '"a\tb"',
        '"a\nb"',
        '"a\x01b"',
        '"\\x41"',
        '"\\U0041"',
        '"\\u12"',
        '"\\u12g4"',
        '"\\ud800"',
        '"\\ud800x"',
        '"\\ud800\\u0041"',
        '"\\ud800\\ud800"',
        '"\\udc00"',
        '"\\udfff\\ud800"',
        b'"\xff"',
        b'"\xed\xa0\x80"',
        b'"\xc0\x80"',
    ],
)
def test_strict_rejections(json_mod: Any, text: str | bytes) -> None:
    with pytest.raises(lua54.LuaError, match=r"^invalid JSON at byte"):
        json_mod.decode(text)


def test_error_messages_say_where_and_what(json_mod: Any) -> None:
    cases = {
        "[1,2,x]": "invalid JSON at byte 6: expected value",
        "[1] x": "invalid JSON at byte 5: trailing characters",
        '{"a" 1}': "invalid JSON at byte 6: expected ':'",
        "[01]": "invalid JSON at byte 2: invalid number (leading zero)",
        '"ab\ncd"': "invalid JSON at byte 4: control character in string",
        '["\\ud800"]': "invalid JSON at byte 3: lone leading surrogate in \\u escape",
    }
    for text, message in cases.items():
        with pytest.raises(lua54.LuaError) as info:
            json_mod.decode(text)
        assert str(info.value).splitlines()[0] == message


def test_decode_rejects_non_strings(run: Run) -> None:
    with pytest.raises(lua54.LuaError, match="expects a string, got number"):
        run("return json.decode(5)")


def test_decode_nesting_limit(run: Run) -> None:
    ok = "[" * 127 + "]" * 127
    assert reencode(run, ok) == ok
    assert reencode(run, '{"a":' * 127 + "1" + "}" * 127) == '{"a":' * 127 + "1" + "}" * 127
    with pytest.raises(lua54.LuaError, match="nesting too deep"):
        reencode(run, "[" * 128 + "]" * 128)
    with pytest.raises(lua54.LuaError, match="nesting too deep"):
        reencode(run, '{"a":' * 128 + "1" + "}" * 128)
    with pytest.raises(lua54.LuaError, match="nesting too deep"):
        reencode(run, "[" * 100_000)


def test_standalone_load_without_sentinel(runtime: lua54.LuaRuntime) -> None:
    mod = runtime.execute(JSON_LUA.read_text(encoding="utf-8"))
    assert mod.encode(mod.decode("[null,1]")) == "[null,1]"

"""Malformed IR text raises ParseError (with file:line:col) or VerifyError, never another
exception: hand-written bad inputs, and hypothesis mutations of valid printed text."""
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsec as sc
import sparsec.testing as sct

GOOD = '''"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 4 : i64], sc.name = "x"}, {sc.name = "y"}], function_type = (tensor<?x4xf32>, tensor<1x4xf32>) -> tensor<?x4xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x4xf32>, %y: tensor<1x4xf32>):
    %0 = "sc.less"(%x, %y) : (tensor<?x4xf32>, tensor<1x4xf32>) -> tensor<?x4xi1>
    %1 = "sc.exp"(%x) : (tensor<?x4xf32>) -> tensor<?x4xf32>
    %2 = "sc.where"(%0, %1, %y) : (tensor<?x4xi1>, tensor<?x4xf32>, tensor<1x4xf32>) -> tensor<?x4xf32>
    %3 = "sc.cast"(%2) {dtype = f16} : (tensor<?x4xf32>) -> tensor<?x4xf16>
    %4 = "sc.cast"(%3) {dtype = f32} : (tensor<?x4xf16>) -> tensor<?x4xf32>
    "func.return"(%4) : (tensor<?x4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
'''

LOC = re.compile(r"^bad\.mlir:\d+:\d+: error: ")


def _parse_fails(text):
    """Parse ``text``; it must fail with ParseError (located) or VerifyError. Returns the error."""
    try:
        sc.parse(text, filename="bad.mlir")
    except sc.ParseError as e:
        assert LOC.match(str(e)), f"ParseError without file:line:col: {e}"
        assert e.line >= 1 and e.col >= 1
        return e
    except sc.VerifyError as e:
        return e
    return None


def test_good_text_parses():
    assert str(sc.parse(GOOD)) == GOOD


@pytest.mark.parametrize("old,new,pattern", [
    ('"sc.exp"', '"sc.expp"', r"unknown op 'sc.expp'.*did you mean sc.exp"),
    ('"sc.exp"(%x) : (tensor<?x4xf32>)', '"sc.exp"(%x) : (tensor<?x4xf16>)', r"operand 0 has type"),
    ("-> tensor<?x4xi1>", "-> tensor<?x4xf32>", r"result types written as"),
    ('"sc.exp"(%x)', '"sc.exp"(%q)', r"undefined value %q"),
    ("%1 = ", "%0 = ", r"%0 defined twice"),
    ("{dtype = f16}", "{dtype = f17}", r"dtype"),
    ("{dtype = f16}", "{dtype = f16, axis = 1 : i64}", r"unknown attribute 'axis'"),
    ('"sc.exp"(%x) : (tensor<?x4xf32>)', '"sc.exp"(%x, %x) : (tensor<?x4xf32>, tensor<?x4xf32>)',
     r"got 2 operands, expected \(x\)"),
    ('"sc.exp"(%x) : (tensor<?x4xf32>)', '"sc.exp"(%x) : (tensor<?x4xf32>, tensor<?x4xf32>)',
     r"1 operands but 2 operand types"),
    ("tensor<1x4xf32>):", "tensor<1x4xf32>:", r"expected"),
    ('sym_name = "main"', 'sym_name = "main', r"unterminated string"),
    ('"sc.where"(%0, %1, %y)', '"sc.where"(%0#1, %1, %y)', r"single value"),
    ("-> tensor<?x4xf32>, sym_name", "-> tensor<?x4xf16>, sym_name", r"func.return types"),
    ('["tokens", 4 : i64]', '["tokens", 5 : i64]', r"does not match the type"),
])
def test_bad_text_gives_located_parse_error(old, new, pattern):
    assert old in GOOD
    e = _parse_fails(GOOD.replace(old, new, 1))
    assert isinstance(e, sc.ParseError), f"expected a ParseError, got {e!r}"
    assert re.search(pattern, str(e)), str(e)
    # the message shows the offending line and a caret under the column
    lines = str(e).split("\n")
    assert len(lines) >= 3 and lines[-1].strip() == "^"


def test_parse_error_points_at_the_right_place():
    e = _parse_fails(GOOD.replace('"sc.exp"(%x)', '"sc.exp"(%q)'))
    line_no = GOOD.split("\n").index(next(ln for ln in GOOD.split("\n") if '"sc.exp"' in ln)) + 1
    assert e.line == line_no
    assert GOOD.split("\n")[e.line - 1][e.col - 1:].startswith("%q") is False  # the text had %x
    bad = GOOD.replace('"sc.exp"(%x)', '"sc.exp"(%q)')
    assert bad.split("\n")[e.line - 1][e.col - 1:].startswith("%q")


@pytest.mark.parametrize("literal", ["01", "0x7FC00000", "-0x1F", "0x1FFFFFFFF", "0x10"])
def test_number_literals_parse_or_fail_cleanly(literal):
    """Found by fuzzing: "01" (leading zero) and hex bit patterns that do not fit used to escape
    as ValueError/OverflowError."""
    text = GOOD.replace("%3 = ", f'%9 = "sc.constant"() {{value = dense<{literal}> : tensor<f32>}} : () -> tensor<f32>\n'
                                 f'    %3 = ', 1)
    e = _parse_fails(text)
    if literal in ("01", "0x7FC00000", "0x10"):
        assert e is None
    else:
        assert isinstance(e, sc.ParseError) and "bit pattern" in str(e)


def test_empty_and_garbage_text():
    for text in ["", "   ", "// only a comment\n", "garbage", "{", '"builtin.module"', "\x00\x01"]:
        assert _parse_fails(text) is not None, repr(text)


def test_non_string_input_is_a_type_error():
    with pytest.raises(TypeError):
        sc.parse(b"bytes")


@given(st.integers(0, len(GOOD) - 2))
def test_truncated_text_fails_cleanly(cut):
    text = GOOD[:cut]
    # a few cuts keep a complete module (cut inside trailing whitespace) — those must parse
    if text.strip() == GOOD.strip():
        sc.parse(text)
        return
    assert _parse_fails(text) is not None


# -- fuzzing: mutations of valid printed text -----------------------------------------------------

TOKENS = ["%", "%0", "%x", "#1", ":", ",", "(", ")", "{", "}", "<", ">", "<{", "}>", "[", "]", "=", "->", '"',
          "x", "?", "tensor<", "f32", "i64", "i1", "dense<", "array<i64: ", "^bb0", '"sc.add"', '"func.return"',
          "0x7FC00000", "1.5e", "-", "//", "\n", "\\", "loc(", "!sc.q8_0<", "true", "0", "999999999999999999999"]


@st.composite
def mutated(draw, text_strategy):
    text = draw(text_strategy)
    for _ in range(draw(st.integers(1, 3))):
        n = len(text)
        kind = draw(st.sampled_from(["delete", "insert", "replace", "token", "swap"]))
        i = draw(st.integers(0, max(n - 1, 0)))
        if kind == "delete":
            j = draw(st.integers(i, min(n, i + 8)))
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = text[:i] + draw(st.text(max_size=3)) + text[i:]
        elif kind == "replace":
            text = text[:i] + draw(st.characters()) + text[i + 1:]
        elif kind == "token":
            text = text[:i] + draw(st.sampled_from(TOKENS)) + text[i:]
        else:  # replace one token of the text with another
            toks = re.findall(r"%[\w.#]+|\"[^\"]*\"|\w+|\S", text)
            if toks:
                a = draw(st.sampled_from(toks))
                text = text.replace(a, draw(st.sampled_from(TOKENS + toks)), 1)
    return text


def _fuzz(text):
    try:
        sc.parse(text, filename="bad.mlir")
    except sc.ParseError as e:
        assert LOC.match(str(e)), f"ParseError without file:line:col: {e}"
    except sc.VerifyError:
        pass


@given(mutated(st.just(GOOD)))
def test_fuzz_mutations_of_fixed_text(text):
    _fuzz(text)


@given(mutated(sct.graphs(max_ops=5).map(str)))
def test_fuzz_mutations_of_random_graphs(text):
    _fuzz(text)


@pytest.mark.slow
@settings(max_examples=2000)
@given(mutated(sct.graphs(max_ops=8, dtypes=("f32", "f16", "i32", "i64")).map(str)))
def test_fuzz_mutations_many(text):
    _fuzz(text)

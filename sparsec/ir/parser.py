"""Parser for MLIR generic operation syntax, as ``sparsec`` prints it (and hand-written variants).

Errors raise ``ParseError`` with ``file:line:col`` and the offending line. Result types written
in the text are checked against each op's shape rule; symbolic dims (``?``) get their names
from the function's ``sc.dims`` argument attributes and the shape rules.
"""
from __future__ import annotations

import difflib
import re

import numpy as np

from ..errors import ParseError, VerifyError
from .core import Block, Function, Graph, Operation, Region, Value
from .dtypes import BY_NAME, DType
from .opdef import REGISTRY, get_opdef
from .types import QUANT_FORMATS, QuantType, TensorType, Type

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_$.]*")
_SUFFIX = re.compile(r"[0-9]+|[A-Za-z_$.\-][A-Za-z0-9_$.\-]*")
_NUMBER = re.compile(r"[-+]?(0x[0-9A-Fa-f]+|[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?)")


class FunctionTypeSpec:
    """``(ins) -> outs`` as written in a ``function_type`` attribute."""

    def __init__(self, inputs, outputs):
        self.inputs, self.outputs = list(inputs), list(outputs)


class _Scope:
    def __init__(self, parent: "_Scope | None" = None):
        self.parent = parent
        self.values: dict[str, tuple[Value, int]] = {}

    def lookup(self, name: str):
        s = self
        while s is not None:
            if name in s.values:
                return s.values[name]
            s = s.parent
        return None


class Parser:
    def __init__(self, text: str, filename: str = "<string>"):
        self.text = text
        self.filename = filename
        self.pos = 0
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    # -- errors ----------------------------------------------------------------------------
    def where(self, pos: int) -> tuple[int, int]:
        import bisect
        i = bisect.bisect_right(self.line_starts, pos) - 1
        return i + 1, pos - self.line_starts[i] + 1

    def error(self, msg: str, pos: int | None = None) -> ParseError:
        pos = self.pos if pos is None else min(pos, len(self.text))
        line, col = self.where(pos)
        lines = self.text.split("\n")
        src = lines[line - 1] if line - 1 < len(lines) else ""
        return ParseError(msg, self.filename, line, col, src)

    # -- scanning --------------------------------------------------------------------------
    def skip(self) -> None:
        t = self.text
        while self.pos < len(t):
            c = t[self.pos]
            if c in " \t\r\n":
                self.pos += 1
            elif t.startswith("//", self.pos):
                nl = t.find("\n", self.pos)
                self.pos = len(t) if nl < 0 else nl + 1
            else:
                break

    def peek(self, s: str) -> bool:
        self.skip()
        return self.text.startswith(s, self.pos)

    def accept(self, s: str) -> bool:
        if self.peek(s):
            self.pos += len(s)
            return True
        return False

    def expect(self, s: str, what: str | None = None) -> None:
        if not self.accept(s):
            found = self.text[self.pos:self.pos + 12].split("\n")[0] or "end of input"
            raise self.error(f"expected {what or repr(s)}, found {found!r}")

    def accept_word(self, w: str) -> bool:
        self.skip()
        m = _IDENT.match(self.text, self.pos)
        if m and m.group(0) == w:
            self.pos = m.end()
            return True
        return False

    def ident(self, what: str = "an identifier") -> str:
        self.skip()
        m = _IDENT.match(self.text, self.pos)
        if not m:
            raise self.error(f"expected {what}")
        self.pos = m.end()
        return m.group(0)

    def string(self) -> str:
        self.skip()
        start = self.pos
        if not self.text.startswith('"', self.pos):
            raise self.error("expected a string literal")
        self.pos += 1
        out = []
        t = self.text
        while True:
            if self.pos >= len(t) or t[self.pos] == "\n":
                raise self.error("unterminated string literal", start)
            c = t[self.pos]
            if c == '"':
                self.pos += 1
                return "".join(out)
            if c == "\\":
                nxt = t[self.pos + 1:self.pos + 3]
                if nxt[:1] in ('"', "\\"):
                    out.append(nxt[0])
                    self.pos += 2
                elif nxt[:1] == "n":
                    out.append("\n")
                    self.pos += 2
                elif nxt[:1] == "t":
                    out.append("\t")
                    self.pos += 2
                elif re.fullmatch(r"[0-9A-Fa-f]{2}", nxt):
                    out.append(chr(int(nxt, 16)))
                    self.pos += 3
                else:
                    raise self.error("bad escape in string literal")
            else:
                out.append(c)
                self.pos += 1

    def number_token(self) -> str | None:
        self.skip()
        m = _NUMBER.match(self.text, self.pos)
        if not m:
            return None
        self.pos = m.end()
        return m.group(0)

    def integer(self, what: str = "an integer") -> int:
        tok = self.number_token()
        if tok is None or not re.fullmatch(r"[-+]?[0-9]+", tok):
            raise self.error(f"expected {what}")
        return int(tok)

    def value_name(self) -> str:
        self.expect("%", "a value name (%...)")
        m = _SUFFIX.match(self.text, self.pos)
        if not m:
            raise self.error("expected a value name after '%'")
        self.pos = m.end()
        return m.group(0)

    # -- types -----------------------------------------------------------------------------
    def type(self) -> Type | DType | FunctionTypeSpec:
        self.skip()
        start = self.pos
        if self.peek("("):
            ins = self.type_list_parens()
            self.expect("->", "'->' in a function type")
            outs = self.type_list_parens() if self.peek("(") else [self.type()]
            return FunctionTypeSpec(ins, outs)
        if self.accept("!"):
            dialect = self.ident("a dialect type name")
            if not dialect.startswith("sc."):
                raise self.error(f"unknown dialect type !{dialect}", start)
            fmt = dialect[3:]
            if fmt not in QUANT_FORMATS:
                raise self.error(f"unknown quantized type !{dialect}; known: "
                                 f"{', '.join('!sc.' + f for f in QUANT_FORMATS)}", start)
            self.expect("<")
            dims = [self.integer("a dimension")]
            while self.accept("x"):
                dims.append(self.integer("a dimension"))
            self.expect(">")
            return QuantType(fmt, tuple(dims))
        word = self.ident("a type")
        if word == "tensor":
            return self.tensor_type_body(start)
        if word in BY_NAME:
            return BY_NAME[word]
        raise self.error(f"unknown type {word!r}; expected tensor<...>, !sc.<quant><...> or one of "
                         f"{', '.join(BY_NAME)}", start)

    def tensor_type_body(self, start: int) -> TensorType:
        self.expect("<")
        dims: list = []
        t = self.text
        while True:
            self.skip()
            if t.startswith("?", self.pos):
                self.pos += 1
                dims.append("?")
            elif self.pos < len(t) and t[self.pos].isdigit():
                m = re.compile(r"[0-9]+").match(t, self.pos)
                self.pos = m.end()
                dims.append(int(m.group(0)))
            else:
                break
            if not t.startswith("x", self.pos):
                raise self.error("expected 'x' after a dimension in tensor type")
            self.pos += 1
        dname = self.ident("an element type")
        if dname not in BY_NAME:
            raise self.error(f"unknown element type {dname!r}; expected one of {', '.join(BY_NAME)}", start)
        self.expect(">", "'>' closing tensor type")
        return _ParsedTensorType(dims, BY_NAME[dname])

    def type_list_parens(self) -> list:
        self.expect("(")
        out = []
        if not self.accept(")"):
            out.append(self.type())
            while self.accept(","):
                out.append(self.type())
            self.expect(")", "',' or ')' in a type list")
        return out

    # -- attributes ------------------------------------------------------------------------
    def attr_dict(self, close: str = "}") -> dict:
        out: dict = {}
        if self.accept(close):
            return out
        while True:
            self.skip()
            kpos = self.pos
            key = self.string() if self.peek('"') else self.ident("an attribute name")
            if key in out:
                raise self.error(f"attribute {key!r} given twice", kpos)
            out[key] = self.attr() if self.accept("=") else True
            if self.accept(close):
                return out
            self.expect(",", f"',' or {close!r} in attribute dictionary")

    def attr(self):
        self.skip()
        start = self.pos
        if self.peek('"'):
            return self.string()
        if self.accept("["):
            items = []
            if not self.accept("]"):
                items.append(self.attr())
                while self.accept(","):
                    items.append(self.attr())
                self.expect("]", "',' or ']' in array attribute")
            return tuple(items)
        if self.accept("{"):
            return self.attr_dict()
        if self.accept_word("true"):
            return True
        if self.accept_word("false"):
            return False
        if self.accept_word("unit"):
            return True
        if self.accept_word("array"):
            self.expect("<")
            et = self.type()
            vals = []
            if self.accept(":"):
                vals.append(self.scalar(et))
                while self.accept(","):
                    vals.append(self.scalar(et))
            self.expect(">", "'>' closing array<...>")
            return tuple(vals)
        if self.accept_word("dense"):
            return self.dense(start)
        tok = self.number_token()
        if tok is not None:
            t = self.type() if self.accept(":") else None
            return self.number_value(tok, t, start)
        try:
            return self.type()
        except ParseError:
            raise self.error("expected an attribute value", start) from None

    def number_value(self, tok: str, t, pos: int):
        is_hex = tok.lower().lstrip("+-").startswith("0x")
        if t is None:
            t = BY_NAME["f64"] if ("." in tok or "e" in tok.lower()) and not is_hex else BY_NAME["i64"]
        if not isinstance(t, DType):
            raise self.error(f"number with non-scalar type {t}", pos)
        if t.is_float:
            if is_hex:
                bits = int(tok, 16)
                if not 0 <= bits < 1 << t.bits:  # a bit pattern: no sign, fits the type's width
                    raise self.error(f"hexadecimal float literal {tok} is not a {t.bits}-bit pattern for {t}", pos)
                ut = {64: np.uint64, 32: np.uint32, 16: np.uint16}[t.bits]
                return float(np.array(bits, dtype=ut).view(t.np))
            return float(tok)
        if "." in tok or ("e" in tok.lower() and not is_hex):
            raise self.error(f"integer type {t} with a float literal {tok}", pos)
        v = int(tok, 16) if is_hex else int(tok, 10)  # base 10 accepts leading zeros ("01"), as MLIR does
        return bool(v) if t.is_bool else v

    def scalar(self, et):
        self.skip()
        pos = self.pos
        if self.accept_word("true"):
            return True
        if self.accept_word("false"):
            return False
        tok = self.number_token()
        if tok is None:
            raise self.error("expected a number")
        return self.number_value(tok, et, pos)

    def dense(self, start: int) -> np.ndarray:
        self.expect("<")

        def elems():
            if self.accept("["):
                items = []
                if not self.accept("]"):
                    items.append(elems())
                    while self.accept(","):
                        items.append(elems())
                    self.expect("]", "',' or ']' in dense literal")
                return items
            self.skip()
            p = self.pos
            if self.accept_word("true"):
                return True
            if self.accept_word("false"):
                return False
            tok = self.number_token()
            if tok is None:
                raise self.error("expected a number in dense literal")
            return (tok, p)

        body = elems() if not self.peek(">") else []
        self.expect(">", "'>' closing dense<...>")
        self.expect(":", "':' and a tensor type after dense<...>")
        t = self.type()
        if not isinstance(t, _ParsedTensorType) or "?" in t.dims:
            raise self.error("dense literal needs a static tensor type", start)
        shape = tuple(t.dims)

        def conv(x):
            if isinstance(x, list):
                return [conv(y) for y in x]
            if isinstance(x, bool):
                return x
            return self.number_value(x[0], t.dtype, x[1])

        vals = conv(body)
        try:
            if not isinstance(vals, list):
                arr = np.full(shape, vals, dtype=t.dtype.np)
            else:
                arr = np.array(vals, dtype=t.dtype.np)
                if arr.shape != shape:
                    if arr.size == 0 and int(np.prod(shape)) == 0:
                        arr = arr.reshape(shape)
                    else:
                        raise self.error(f"dense literal has shape {arr.shape}, type says {shape}", start)
        except (ValueError, OverflowError) as e:
            raise self.error(f"bad dense literal: {e}", start) from None
        return arr

    # -- ops -------------------------------------------------------------------------------
    def parse_module(self) -> Graph:
        self.skip()
        g = Graph()
        if self.peek('"builtin.module"'):
            self.string()
            self.expect("(")
            self.expect(")")
            if self.accept("<{"):
                self.attr_dict("}>")
            self.expect("(", "'(' opening the module region")
            self.expect("{")
            if self.peek("^"):
                self.block_label(_Scope(), None)
            while not self.accept("}"):
                self.parse_function(g)
            self.expect(")")
            if self.peek("{"):
                self.accept("{")
                self.attr_dict()
            self.expect(":")
            ft = self.type()
            if not isinstance(ft, FunctionTypeSpec) or ft.inputs or ft.outputs:
                raise self.error("builtin.module must have type () -> ()")
        else:
            while not self.at_end():
                self.parse_function(g)
        self.skip()
        if not self.at_end():
            raise self.error("unexpected text after the module")
        if not g.functions:
            raise self.error("no func.func in the module")
        return g

    def at_end(self) -> bool:
        self.skip()
        return self.pos >= len(self.text)

    def parse_function(self, g: Graph) -> None:
        self.skip()
        start = self.pos
        if not self.peek('"func.func"'):
            raise self.error('expected "func.func"')
        self.string()
        self.expect("(")
        self.expect(")", "no operands for func.func")
        props = self.attr_dict("}>") if self.accept("<{") else {}
        self.expect("(", "'(' opening the function body")
        self.expect("{")
        name = props.get("sym_name")
        ftype = props.get("function_type")
        if not isinstance(name, str) or not isinstance(ftype, FunctionTypeSpec):
            raise self.error("func.func needs sym_name (string) and function_type properties", start)
        if name in g.functions:
            raise self.error(f"function @{name} defined twice", start)
        arg_attrs = props.get("arg_attrs", ())
        res_attrs = props.get("res_attrs", ())
        unknown = set(props) - {"sym_name", "function_type", "arg_attrs", "res_attrs", "sym_visibility"}
        if unknown:
            raise self.error(f"func.func: unknown properties {sorted(unknown)}", start)
        if not isinstance(arg_attrs, tuple) or (arg_attrs and len(arg_attrs) != len(ftype.inputs)):
            raise self.error(f"arg_attrs must list one dictionary per argument ({len(ftype.inputs)})", start)
        in_types, names = [], []
        for i, t in enumerate(ftype.inputs):
            a = arg_attrs[i] if arg_attrs else {}
            if not isinstance(a, dict):
                raise self.error(f"arg_attrs[{i}] must be a dictionary", start)
            in_types.append(self.resolve_arg_type(t, a.get("sc.dims"), i, start))
            names.append(a.get("sc.name") if isinstance(a.get("sc.name"), str) else None)
        f = Function(name, in_types, names)
        scope = _Scope()
        self.skip()
        if not self.peek("^"):
            raise self.error("expected the entry block label ^bb0(...) of the function")
        self.block_label(scope, f.body, expected=in_types)
        self.parse_ops(f.body, scope, "}")
        self.expect(")")
        self.expect(":")
        ft = self.type()
        if not isinstance(ft, FunctionTypeSpec) or ft.inputs or ft.outputs:
            raise self.error("func.func must have type () -> ()")
        ret = f.body.terminator
        if ret is None or ret.name != "func.return":
            raise self.error(f"function @{name} must end with func.return", start)
        outs = [v.type for v in ret.operands]
        if len(outs) != len(ftype.outputs) or not all(_compatible(p, t) for p, t in zip(ftype.outputs, outs)):
            raise self.error(f"function @{name}: func.return types ({', '.join(map(str, outs))}) differ from "
                             f"function_type results ({', '.join(map(str, ftype.outputs))})", start)
        if res_attrs:
            f.result_names = [r.get("sc.name") if isinstance(r, dict) else None for r in res_attrs]
        g.add_function(f)

    def resolve_arg_type(self, t, dims, i: int, pos: int):
        if isinstance(t, _ParsedTensorType):
            if dims is None:
                return TensorType([d if d != "?" else f"arg{i}_dim{j}" for j, d in enumerate(t.dims)], t.dtype)
            if not isinstance(dims, tuple) or len(dims) != len(t.dims):
                raise self.error(f"sc.dims of argument {i} must list {len(t.dims)} dims", pos)
            for j, (d, p) in enumerate(zip(dims, t.dims)):
                if (p == "?") != isinstance(d, str) or (p != "?" and d != p):
                    raise self.error(f"sc.dims of argument {i}, dim {j}: {d!r} does not match the type {t}", pos)
            try:
                return TensorType(dims, t.dtype)
            except (ValueError, TypeError) as e:
                raise self.error(f"sc.dims of argument {i}: {e}", pos) from None
        if isinstance(t, QuantType):
            return t
        raise self.error(f"argument {i}: expected a tensor type, got {t}", pos)

    def block_label(self, scope: _Scope, block: Block | None, expected=None) -> None:
        start = self.pos
        self.expect("^")
        self.ident("a block label")
        args = []
        if self.accept("("):
            if not self.accept(")"):
                while True:
                    self.skip()
                    p = self.pos
                    n = self.value_name()
                    self.expect(":")
                    args.append((n, self.type(), p))
                    if self.accept(")"):
                        break
                    self.expect(",", "',' or ')' in block arguments")
        self.expect(":", "':' after the block label")
        if block is None:
            if args:
                raise self.error("this block takes no arguments", start)
            return
        if expected is not None:
            if len(args) != len(expected):
                raise self.error(f"block has {len(args)} arguments, expected {len(expected)}", start)
            for k, ((n, t, p), et) in enumerate(zip(args, expected)):
                if not _compatible(t, et):
                    raise self.error(f"block argument %{n} has type {t}, function type says {et}", p)
                self.define(scope, n, block.args[k], p, hint=n)
        else:
            for n, t, p in args:
                if isinstance(t, _ParsedTensorType):
                    if "?" in t.dims:
                        raise self.error("region block arguments need static types or a declaring op", p)
                    t = TensorType(t.dims, t.dtype)
                a = block.add_arg(t, n)
                self.define(scope, n, a, p, hint=n)

    def define(self, scope: _Scope, name: str, v: Value, pos: int, hint: str | None = None) -> None:
        prev = scope.lookup(name)
        if prev is not None:
            line, col = self.where(prev[1])
            raise self.error(f"value %{name} defined twice (first at line {line}:{col})", pos)
        scope.values[name] = (v, pos)
        if hint is not None and not name.isdigit():
            v.name_hint = hint

    def parse_ops(self, block: Block, scope: _Scope, close: str) -> None:
        while not self.accept(close):
            if self.at_end():
                raise self.error(f"unexpected end of input: missing {close!r}")
            if self.peek("^"):
                raise self.error("multiple blocks in a region are not supported")
            self.parse_op(block, scope)

    def parse_op(self, block: Block, scope: _Scope) -> Operation:
        self.skip()
        start = self.pos
        results: list[tuple[str, int, int]] = []
        if self.peek("%"):
            while True:
                self.skip()
                p = self.pos
                n = self.value_name()
                count = 1
                if self.text.startswith(":", self.pos) and not self.text.startswith("::", self.pos):
                    self.pos += 1
                    count = self.integer("a result count")
                results.append((n, count, p))
                if not self.accept(","):
                    break
            self.expect("=", "'=' after result names")
        self.skip()
        name_pos = self.pos
        if not self.peek('"'):
            raise self.error("expected an operation name in quotes (generic syntax)")
        name = self.string()
        opdef = get_opdef(name)
        if opdef is None and name not in ("func.return", "sc.yield"):
            close = difflib.get_close_matches(name, list(REGISTRY), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise self.error(f"unknown op {name!r}{hint}", name_pos)
        self.expect("(", "'(' opening the operand list")
        operands: list[Value] = []
        if not self.accept(")"):
            while True:
                operands.append(self.value_use(scope))
                if self.accept(")"):
                    break
                self.expect(",", "',' or ')' in the operand list")
        if self.accept("<{"):
            raise self.error(f"{name} takes no properties; attributes go in {{...}}")
        regions = []
        if self.peek("("):
            self.expect("(")
            arg_types = [v.type for v in operands] if opdef is not None and opdef.region_args == "operands" else None
            while True:
                regions.append(self.parse_region(scope, arg_types))
                if self.accept(")"):
                    break
                self.expect(",", "',' or ')' in the region list")
        attrs = self.attr_dict() if self.accept("{") else {}
        self.expect(":", "':' and the op's function type")
        tpos = self.pos
        ft = self.type()
        if not isinstance(ft, FunctionTypeSpec):
            raise self.error("expected the op's function type (operands) -> results", tpos)
        loc = None
        if self.accept_word("loc"):
            self.expect("(")
            self.skip()
            if self.peek('"'):
                loc = self.string()
                if self.accept(":"):
                    loc += f":{self.integer()}"
                    if self.accept(":"):
                        loc += f":{self.integer()}"
            else:
                self.ident("a location")
            self.expect(")", "')' closing loc(...)")
        # -- check what was written against the declaration -----------------------------------
        if len(ft.inputs) != len(operands):
            raise self.error(f"{name}: {len(operands)} operands but {len(ft.inputs)} operand types", tpos)
        for i, (v, t) in enumerate(zip(operands, ft.inputs)):
            if not _compatible(t, v.type):
                raise self.error(f"{name}: operand {i} has type {v.type} but is written as {t}", tpos)
        n_results = sum(c for _, c, _ in results)
        if n_results != len(ft.outputs):
            raise self.error(f"{name}: {n_results} result names but {len(ft.outputs)} result types", start)
        if name in ("func.return", "sc.yield"):
            if attrs or regions:
                raise self.error(f"{name} takes no attributes or regions", start)
            op = Operation(name, operands, [], loc=loc)
        else:
            try:
                if not opdef.operand_count_ok(len(operands)):
                    raise VerifyError(f"{name}: got {len(operands)} operands, expected {opdef.expected_operands()}")
                if len(regions) != opdef.regions:
                    raise VerifyError(f"{name}: got {len(regions)} regions, expected {opdef.regions}")
                attrs = opdef.normalize_attrs(attrs)
                if opdef.declared_result:
                    types = []
                    for t in ft.outputs:
                        if isinstance(t, _ParsedTensorType):
                            if "?" in t.dims:
                                raise VerifyError(f"{name}: result type {t} must be static")
                            t = TensorType(t.dims, t.dtype)
                        types.append(t)
                else:
                    from .builder import infer_result_types
                    types = infer_result_types(name, operands, attrs, regions=regions)
                    if len(types) != len(ft.outputs) or not all(_compatible(p, t) for p, t in zip(ft.outputs, types)):
                        raise VerifyError(f"{name}: result types written as ({', '.join(map(str, ft.outputs))}) but "
                                          f"the shape rule gives ({', '.join(t.pretty() for t in types)})")
            except VerifyError as e:
                raise self.error(str(e), start) from None
            op = Operation(name, operands, list(types), attrs, regions, loc)
        i = 0
        for n, count, p in results:
            if count == 1:
                self.define(scope, n, op.results[i], p, hint=n)
            else:
                self.define(scope, n, _MultiResult(op.results[i:i + count]), p)
                if not n.isdigit():
                    op.results[i].name_hint = n
            i += count
        block.append(op)
        return op

    def value_use(self, scope: _Scope) -> Value:
        self.skip()
        p = self.pos
        n = self.value_name()
        idx = None
        if self.text.startswith("#", self.pos):
            self.pos += 1
            idx = self.integer("a result index")
        found = scope.lookup(n)
        if found is None:
            raise self.error(f"use of undefined value %{n}", p)
        v = found[0]
        if isinstance(v, _MultiResult):
            if idx is None or not 0 <= idx < len(v.values):
                raise self.error(f"%{n} has {len(v.values)} results: use %{n}#0 .. %{n}#{len(v.values) - 1}", p)
            return v.values[idx]
        if idx is not None and idx != 0:
            raise self.error(f"%{n} is a single value; #{idx} is out of range", p)
        return v

    def parse_region(self, scope: _Scope, arg_types: list | None = None) -> Region:
        self.expect("{", "'{' opening a region")
        inner = _Scope(scope)
        block = Block(arg_types or [])
        if self.peek("^"):
            self.block_label(inner, block, expected=arg_types)
        elif arg_types:
            raise self.error(f"this region takes {len(arg_types)} block arguments: expected ^bb0(...)")
        self.parse_ops(block, inner, "}")
        return Region([block])


class _MultiResult:
    def __init__(self, values):
        self.values = list(values)


class _ParsedTensorType:
    """A tensor type as written, ``?`` kept; compared to inferred types with ``_compatible``."""

    def __init__(self, dims, dtype: DType):
        self.dims, self.dtype = list(dims), dtype

    def __str__(self):
        return "tensor<" + "".join(f"{d}x" for d in self.dims) + self.dtype.name + ">"


def _compatible(written, actual) -> bool:
    if isinstance(written, _ParsedTensorType):
        if not isinstance(actual, TensorType) or written.dtype != actual.dtype or len(written.dims) != actual.rank:
            return False
        return all((w == "?") == isinstance(a, str) and (w == "?" or w == a) for w, a in zip(written.dims, actual.shape))
    return written == actual


def parse(text: str, filename: str = "<string>", verify: bool = True) -> Graph:
    """Parse MLIR generic-syntax text into a ``Graph``; errors are ``ParseError`` with position."""
    if not isinstance(text, str):
        raise TypeError(f"sc.parse expects IR text (str), got {type(text).__name__}")
    g = Parser(text, filename).parse_module()
    if verify:
        from .verifier import verify as _verify
        _verify(g)
    return g

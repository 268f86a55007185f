"""Parses the text form (see printer.py) back into a GraphModule.

Errors name the line, the column and what was expected there:

    ParseError: 3:18: expected ')' or ',' after an argument, found 'x'

A graph that parses is then checked: each op's declared result type must be what the op gives
for its operands' declared types (verify.py), else the error names the op:

    ParseError: 3:16: %y is declared f32[8], but aten.add.Tensor gives f32[4]
"""
from __future__ import annotations

import json
import math
import re

import torch
import torch.fx as fx

from .printer import ATTRIBUTES, set_scope
from .targets import resolve_target
from .types import DTYPES_BY_NAME, ScalarType, TensorType, TupleType, parse_size
from .verify import TypeMismatch, check_types


class ParseError(ValueError):
    def __init__(self, text: str, pos: int, message: str):
        self.line = text.count("\n", 0, pos) + 1
        self.column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        super().__init__(f"{self.line}:{self.column}: {message}")


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_NAME = re.compile(r"[A-Za-z0-9_]+")
_NUMBER = re.compile(r"-?(inf|nan|\d+(\.\d*)?([eE][-+]?\d+)?)")
_IDENT_CHAR = re.compile(r"[A-Za-z0-9_]")
_SCALAR_KINDS = ("int", "float", "bool")


def parse_graph(text: str, constants: dict[str, torch.Tensor] | None = None,
                verify: bool = True) -> fx.GraphModule:
    """Parses one `graph @name(...) { ... }`. `constants` resolves `const @name` references.

    With `verify` (the default) the declared types are checked against what the ops give
    (verify.check_types); a contradiction is a ParseError at the op."""
    return _Parser(text, constants or {}, verify).parse()


class _Parser:
    def __init__(self, text: str, constants: dict[str, torch.Tensor], verify: bool = True):
        self.text, self.pos, self.constants, self.verify = text, 0, constants, verify
        self.op_positions: dict[fx.Node, int] = {}  # where each op's name is, for type errors
        self.graph = fx.Graph()
        self.root = torch.nn.Module()
        self.values: dict[str, fx.Node] = {}
        self.symbols: dict = {}  # size symbol name -> sympy.Symbol

    # -- lexing -------------------------------------------------------------------------------
    def error(self, message: str, pos: int | None = None):
        return ParseError(self.text, self.pos if pos is None else pos, message)

    def skip(self):
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c in " \t\r\n":
                self.pos += 1
            elif c == "#" or self.text.startswith("//", self.pos):
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                break

    def peek(self, token: str) -> bool:
        self.skip()
        return self.text.startswith(token, self.pos)

    def accept(self, token: str) -> bool:
        if self.peek(token):
            self.pos += len(token)
            return True
        return False

    def expect(self, token: str, what: str = ""):
        if not self.accept(token):
            raise self.error(f"expected '{token}'{' ' + what if what else ''}, found {self.found()}")

    def found(self) -> str:
        self.skip()
        if self.pos >= len(self.text):
            return "end of input"
        return repr(self.text[self.pos:self.pos + 12].split("\n")[0])

    def match(self, pattern: re.Pattern, what: str) -> str:
        self.skip()
        m = pattern.match(self.text, self.pos)
        if not m:
            raise self.error(f"expected {what}, found {self.found()}")
        self.pos = m.end()
        return m.group(0)

    # -- grammar ------------------------------------------------------------------------------
    def parse(self) -> fx.GraphModule:
        self.expect("graph", "at the start of a graph")
        self.expect("@", "before the graph's name")
        name = self.match(_NAME, "a graph name")
        self.expect("(")
        if not self.accept(")"):
            while True:
                self.placeholder()
                if self.accept(")"):
                    break
                self.expect(",", "or ')' after a graph argument")
        self.expect("{")
        while not self.accept("return"):
            self.statement()
        start = self.pos
        result = self.value()
        self.graph.output(result)
        self.expect("}", "after the return value")
        self.skip()
        if self.pos < len(self.text):
            raise self.error(f"expected end of input after the graph, found {self.found()}")
        gm = fx.GraphModule(self.root, self.graph)
        gm.meta["name"] = name
        try:
            gm.graph.lint()
        except Exception as e:  # a well-formed text can still name values out of order
            raise self.error(f"invalid graph: {e}", start) from e
        if self.verify:
            try:
                check_types(gm, self.symbols)
            except TypeMismatch as e:
                raise self.error(str(e), self.op_positions[e.node]) from None
        return gm

    def define_name(self) -> tuple[str, int]:
        self.expect("%", "before a value name")
        pos = self.pos
        name = self.match(_NAME, "a value name")
        if name in self.values:
            raise self.error(f"value %{name} is defined twice", pos)
        return name, pos

    def placeholder(self):
        name, _ = self.define_name()
        self.expect(":", "after a graph argument's name")
        node = self.graph.placeholder(name)
        self.values[name] = node
        node.meta["type"] = self.type()

    def statement(self):
        name, _ = self.define_name()
        self.expect(":", f"and a type after %{name}")
        typ = self.type()
        self.expect("=", f"after the type of %{name}")
        if self.accept("const"):
            node = self.constant(name, typ)
        else:
            pos = self.pos
            target_text = self.match(_IDENT, "an op name or 'const'")
            try:
                target = resolve_target(target_text)
            except LookupError:
                raise self.error(f"unknown op '{target_text}'", pos) from None
            args, kwargs = self.call_args()
            node = self.graph.create_node("call_function", target, tuple(args), kwargs, name=name)
            self.op_positions[node] = pos
            self.attributes(node)
        self.values[name] = node
        node.meta["type"] = typ

    def constant(self, name: str, typ) -> fx.Node:
        if not isinstance(typ, TensorType) or not typ.is_static:
            raise self.error(f"constant %{name} needs a static tensor type, got {typ}")
        self.skip()
        pos = self.pos
        if self.accept("@"):
            ref = self.match(_NAME, "a constant's name")
            if ref not in self.constants:
                raise self.error(f"constant @{ref} is not among the {len(self.constants)} given "
                                 "constants (pass them to parse_graph, or a .safetensors beside the file)", pos)
            value = self.constants[ref]
            if tuple(value.shape) != typ.shape or value.dtype != typ.dtype:
                raise self.error(f"constant @{ref} is {tuple(value.shape)} {value.dtype}, "
                                 f"but its type says {typ}", pos)
            attr = ref
        elif self.accept("dense"):
            self.expect("<")
            items = self.value()
            self.expect(">", "after a dense literal")
            if not isinstance(items, list):
                raise self.error("expected a list inside dense<...>", pos)
            numel = math.prod(typ.shape)
            if len(items) not in (numel, 1):
                raise self.error(f"dense literal has {len(items)} elements, its type {typ} needs {numel}", pos)
            value = torch.tensor(items, dtype=typ.dtype).expand(numel).reshape(typ.shape).clone()
            attr = name
        else:
            raise self.error(f"expected '@name' or 'dense<[...]>' after 'const', found {self.found()}")
        self.root.register_buffer(attr, value, persistent=False)
        return self.graph.create_node("get_attr", attr, name=name)

    def attributes(self, node: fx.Node):
        """Optional `{kernel = 3, kind = "pointwise", scope = "layers.0.mlp" : "MLP"}` after an op
        (see printer.ATTRIBUTES and printer.node_scope)."""
        if not self.accept("{"):
            return
        seen = set()
        while True:
            pos = self.pos
            key = self.match(_NAME, "an attribute name")
            if key not in ATTRIBUTES and key != "scope":
                raise self.error(f"unknown attribute '{key}' (valid: {', '.join([*ATTRIBUTES, 'scope'])})", pos)
            if key in seen:
                raise self.error(f"attribute '{key}' is given twice", pos)
            seen.add(key)
            self.expect("=", f"after attribute {key}")
            if key == "scope":
                self.scope(node)
            else:
                node.meta[ATTRIBUTES[key]] = self.value()
            if self.accept("}"):
                return
            self.expect(",", "or '}' between attributes")

    def scope(self, node: fx.Node):
        """`"layers.0.attn"`, optionally followed by `: "Attention"` (the module's class)."""
        path = self.string('a module path after scope = (a string, e.g. "layers.0.attn")')
        cls = None
        if self.accept(":"):
            cls = self.string("a module class name after ':' in a scope (a string, e.g. \"Linear\")")
        set_scope(node, path, cls)

    def string(self, what: str) -> str:
        """A non-empty string literal, else an error expecting `what`."""
        self.skip()
        pos = self.pos
        value = self.value() if self.peek('"') else None
        if not isinstance(value, str) or not value:
            found = self.found() if value is None else repr(self.text[pos:self.pos])
            raise self.error(f"expected {what}, found {found}", pos)
        return value

    def call_args(self):
        self.expect("(", "after the op name")
        args, kwargs = [], {}
        if self.accept(")"):
            return args, kwargs
        while True:
            self.skip()
            m = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=(?!=)").match(self.text, self.pos)
            if m:
                self.pos = m.end()
                kwargs[m.group(1)] = self.value()
            elif kwargs:
                raise self.error("expected a keyword argument after keyword arguments")
            else:
                args.append(self.value())
            if self.accept(")"):
                return args, kwargs
            self.expect(",", "or ')' after an argument")

    def value(self):
        self.skip()
        pos = self.pos
        if self.accept("%"):
            name = self.match(_NAME, "a value name")
            if name not in self.values:
                raise self.error(f"use of undefined value %{name}", pos)
            return self.values[name]
        if self.accept("["):
            return self.sequence("]")
        if self.accept("("):
            items = self.sequence(")", tuple_=True)
            return tuple(items)
        if self.peek('"'):
            end = self.pos + 1
            while end < len(self.text) and self.text[end] != '"':
                end += 2 if self.text[end] == "\\" else 1
            literal = self.text[self.pos:end + 1]
            self.pos = end + 1
            try:
                return json.loads(literal)
            except json.JSONDecodeError:
                raise self.error("unterminated or malformed string", pos) from None
        m = _NUMBER.match(self.text, self.pos)
        if m and not _IDENT_CHAR.match(self.text, m.end()):
            self.pos = m.end()
            literal = m.group(0)
            if any(c in literal for c in ".eEn"):  # float syntax, inf and nan
                return float(literal)
            return int(literal)
        word = self.match(_IDENT, "a value (%name, number, list, string, true/false/none or torch.<name>)")
        if word in ("true", "false"):
            return word == "true"
        if word == "none":
            return None
        if word == "device":
            self.expect("(")
            name = self.value()
            self.expect(")")
            return torch.device(name)
        if word == "slice":
            self.expect("(")
            parts = self.sequence(")")
            return slice(*parts)
        if word.startswith("torch.") and word.count(".") == 1:
            obj = getattr(torch, word[6:], None)
            if isinstance(obj, (torch.dtype, torch.layout, torch.memory_format)):
                return obj
        raise self.error(f"unknown value '{word}'", pos)

    def sequence(self, close: str, tuple_: bool = False) -> list:
        items = []
        if self.accept(close):
            return items
        while True:
            items.append(self.value())
            if self.accept(close):
                return items
            self.expect(",", f"or '{close}' in a list")
            if tuple_ and self.accept(close):
                return items

    def type(self):
        self.skip()
        pos = self.pos
        if self.accept("?"):
            return None
        if self.accept("("):
            items = []
            if not self.accept(")"):
                while True:
                    items.append(None if self.accept("none") else self.type())
                    if self.accept(")"):
                        break
                    self.expect(",", "or ')' in a tuple type")
            return TupleType(tuple(items))
        word = self.match(_NAME, "a type (f32[...], int, float, bool, (...) or ?)")
        if word in _SCALAR_KINDS:
            return ScalarType(word)
        if word not in DTYPES_BY_NAME:
            raise self.error(f"unknown element type '{word}' (valid: {', '.join(DTYPES_BY_NAME)})", pos)
        self.expect("[", f"after element type {word}")
        dims = []
        self.skip()
        if not self.accept("]"):
            while True:
                dims.append(self.dim())
                if self.accept("]"):
                    break
                self.expect(",", "or ']' in a shape")
        device = "cpu"
        if self.accept("{"):
            end = self.text.find("}", self.pos)
            if end < 0:
                raise self.error("expected '}' after a device")
            device, self.pos = self.text[self.pos:end].strip(), end + 1
        return TensorType(DTYPES_BY_NAME[word], tuple(dims), device)

    def dim(self):
        self.skip()
        start, depth = self.pos, 0
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c in "([":
                depth += 1
            elif c in ")]":
                if depth == 0:
                    break
                depth -= 1
            elif c == "," and depth == 0:
                break
            elif c == "\n":
                break
            self.pos += 1
        source = self.text[start:self.pos].strip()
        if not source:
            raise self.error("expected a size (an integer or an expression over size symbols)", start)
        try:
            return parse_size(source, self.symbols)
        except ValueError as e:
            raise self.error(f"{e} (a size is an integer or an expression over size symbols)", start) from None

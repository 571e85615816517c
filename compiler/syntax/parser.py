"""Parse spec text into the AST: Lark (LALR, with positions) plus a Transformer."""

from __future__ import annotations

import contextvars
import math
import os
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import lark
from lark import Lark, Token, Transformer_NonRecursive, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from ..cache import cache_folder
from ..errors import Span, SpecError
from . import ast

# Limits that keep compilation fast and its recursion shallow, far beyond what a person
# writes. A left-to-right chain of operators (`a + b + c + ...`) is flat for these
# purposes, so a sum of 20,000 terms is fine; `-(-(-x))` or f(g(h(x))) nest. Compile
# time grows linearly, at roughly 20-40 microseconds a token.
MAX_TOKENS = 50_000  # about 5,000 lines of dense layers
MAX_BRACKETS = 200  # brackets open at once
MAX_DEPTH = 100  # nested calls, unary minus, `^` and right-hand operands
MAX_SIZE = 2**31 - 1  # the largest dimension or integer written in a spec

KEYWORDS = frozenset({"model", "input", "param", "loss", "output", "wrt", "optimizer", "float", "int",
                      "true", "false"})

_OPEN = {"LPAR": "RPAR", "LSQB": "RSQB"}
_CLOSE = {"RPAR": "LPAR", "RSQB": "LSQB"}
_CHAR = {"LPAR": "(", "RPAR": ")", "LSQB": "[", "RSQB": "]"}
_OPERATORS = frozenset({"PLUS", "MINUS", "STAR", "SLASH", "AT", "POW"})
_EXPR_START = frozenset({"NAME", "NUMBER", "LPAR", "MINUS"})

_TOKEN_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "INT": "an integer", "_NL": "end of line",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "COMMA": "','",
    "EQUAL": "'='", "COLON": "':'", "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'",
    "SLASH": "'/'", "AT": "'@'", "POW": "'^'", "DOT": "'.'", "TYPE_KIND": "a type ('float' or 'int')",
    "$END": "end of file",
}


@dataclass
class _ParseState:
    """What the post-lexer saw, so a syntax error can be reported where the user must edit."""

    open: list[Token] = field(default_factory=list)  # brackets open right now
    last: Token | None = None  # the last token before end of line / end of file
    after_break: dict[tuple[int, int], Token] = field(default_factory=dict)  # first token of a
    # continuation line -> the innermost bracket that was open when the line began
    pending: Token | None = None  # that bracket, while the line's first token is being lexed
    # (the contextual lexer raises for a token the parser cannot take before we see it)
    count: int = 0  # tokens so far


_STATE: contextvars.ContextVar[_ParseState] = contextvars.ContextVar("nnc_parse_state")


class _ContinueLines:
    """Post-lexer: drops newlines while a bracket is open; checks bracket pairs and nesting."""

    always_accept = ("_NL",)

    def process(self, stream):
        state = _STATE.get()
        stack = state.open
        for tok in stream:
            if tok.type == "_NL":
                if stack:
                    state.pending = stack[-1]
                    continue
                yield tok
                continue
            if state.pending is not None:
                state.after_break[(tok.line, tok.column)] = state.pending
                state.pending = None
            state.count += 1
            if state.count > MAX_TOKENS:
                raise SpecError(f"the spec is too long (more than {MAX_TOKENS} tokens)", _tok_span(tok),
                                help="nnc compiles specs of up to about 5,000 lines; split the model")
            if tok.type in _OPEN:
                stack.append(tok)
                if len(stack) > MAX_BRACKETS:
                    raise SpecError(f"brackets nested too deeply (more than {MAX_BRACKETS} levels)",
                                    _tok_span(tok), help="split the expression into several definitions")
            elif tok.type in _CLOSE:
                if not stack:
                    raise SpecError(f"'{tok.value}' has no matching '{_CHAR[_CLOSE[tok.type]]}'",
                                    _tok_span(tok), help=f"remove this '{tok.value}'")
                opener = stack.pop()
                if _CLOSE[tok.type] != opener.type:
                    err = SpecError(f"'{tok.value}' does not match '{opener.value}'", _tok_span(tok),
                                    help=f"close it with '{_CHAR[_OPEN[opener.type]]}'")
                    err.notes = ((f"'{opener.value}' opened here", _tok_span(opener)),)
                    raise err
            state.last = tok
            yield tok
        if stack:
            raise _never_closed(stack[-1])


def _never_closed(opener: Token) -> SpecError:
    closer = _CHAR[_OPEN[opener.type]]
    return SpecError(f"'{opener.value}' is never closed", _tok_span(opener),
                     help=f"add the matching '{closer}'")


def _tok_span(tok: Token) -> Span:
    line = max(1, tok.line or 1)
    col = max(1, tok.column or 1)
    end_line = tok.end_line if tok.end_line and tok.end_line >= line else line
    end_col = tok.end_column if tok.end_column and (end_line > line or tok.end_column > col) else col + 1
    return Span(line, col, end_line, end_col)


def _span(meta) -> Span:
    return Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _binop(op: str):
    def build(self, meta, c):
        node = ast.BinOp(op, c[0], c[1], _span(meta))
        # the left operand of a left-associative chain is lowered by a loop, not a recursion
        return self._track(node, max(self._depth(c[0]), self._depth(c[1]) + 1))

    return build


@v_args(meta=True)
class _ToAst(Transformer_NonRecursive):
    """Builds AST nodes, bottom-up without recursion; checks only numbers and nesting depth."""

    def __init__(self):
        super().__init__()
        self.depths: dict[int, int] = {}  # id(node) -> nesting depth, for expression nodes

    def _depth(self, node) -> int:
        return self.depths.get(id(node), 0)

    def _track(self, node, depth: int):
        if depth > MAX_DEPTH:
            raise SpecError(f"expression nested too deeply (more than {MAX_DEPTH} levels)", node.span,
                            help="split the expression into several definitions")
        self.depths[id(node)] = depth
        return node

    def _nested(self, node, children):
        return self._track(node, 1 + max((self._depth(c) for c in children), default=0))

    def start(self, meta, children):
        return tuple(children)

    def model_stmt(self, meta, c):
        return ast.ModelStmt(str(c[0]), _span(meta))

    def input_stmt(self, meta, c):
        return ast.InputStmt(str(c[0]), c[1], _span(meta), _tok_span(c[0]))

    def param_stmt(self, meta, c):
        init = c[2] if len(c) > 2 else None
        return ast.ParamStmt(str(c[0]), c[1], init, _span(meta), _tok_span(c[0]))

    def loss_stmt(self, meta, c):
        return ast.LossStmt(c[0], _span(meta))

    def output_stmt(self, meta, c):
        return ast.NameListStmt("output", tuple(c), _span(meta))

    def output_name(self, meta, c):
        return ast.Name(".".join(map(str, c)), _span(meta))

    def wrt_stmt(self, meta, c):
        return ast.NameListStmt("wrt", tuple(ast.Name(str(t), _tok_span(t)) for t in c), _span(meta))

    def optimizer_stmt(self, meta, c):
        kwargs = tuple(k for k in c[1:] if k is not None)
        return ast.OptimizerStmt(str(c[0]), kwargs, _span(meta), _tok_span(c[0]))

    def define_stmt(self, meta, c):
        return ast.DefineStmt(str(c[0]), c[1], _span(meta), _tok_span(c[0]))

    def type(self, meta, c):
        return ast.Type(str(c[0]), tuple(c[1:]), _span(meta))

    def dim(self, meta, c):
        tok = c[0]
        if tok.type != "INT":
            return ast.Dim(str(tok), _tok_span(tok))
        return ast.Dim(_size(tok), _tok_span(tok))

    add = _binop("+")
    sub = _binop("-")
    mul = _binop("*")
    div = _binop("/")
    matmul = _binop("@")

    def pow(self, meta, c):
        return self._nested(ast.BinOp("^", c[0], c[2], _span(meta)), (c[0], c[2]))

    def neg(self, meta, c):
        return self._nested(ast.Neg(c[0], _span(meta)), c)

    def number(self, meta, c):
        tok = c[0]
        value = float(tok)
        if not math.isfinite(value):
            raise SpecError(f"number too large: {_short(str(tok))}", _tok_span(tok),
                            help="numbers must fit in a 64-bit float (at most about 1.8e308)")
        return ast.Num(value, str(tok), _tok_span(tok))

    def name(self, meta, c):
        return ast.Name(str(c[0]), _tok_span(c[0]))

    def dotted(self, meta, c):
        return ast.Name(f"{c[0]}.{c[1]}", _span(meta))

    def call(self, meta, c):
        items = [x for x in c[1:] if x is not None]
        args = tuple(x for x in items if not isinstance(x, ast.Kwarg))
        kwargs = tuple(x for x in items if isinstance(x, ast.Kwarg))
        node = ast.Call(str(c[0]), args, kwargs, _span(meta), _tok_span(c[0]))
        return self._nested(node, [*args, *(k.value for k in kwargs)])

    def kwarg(self, meta, c):
        node = ast.Kwarg(str(c[0]), c[1], _span(meta))
        self.depths[id(node)] = self._depth(c[1])
        return node

    def list(self, meta, c):
        items = tuple(x for x in c if x is not None)
        return self._nested(ast.ListLit(items, _span(meta)), items)


def _size(tok: Token) -> int:
    """An integer literal used as a size, bounded so later arithmetic stays cheap."""
    digits = str(tok).lstrip("0") or "0"
    if len(digits) > len(str(MAX_SIZE)) or int(digits) > MAX_SIZE:
        raise SpecError(f"size too large: {_short(str(tok))}", _tok_span(tok), help=f"sizes must be at most {MAX_SIZE}")
    return int(digits)


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _grammar_cache() -> str | bool:
    """Where Lark keeps the analysed grammar between runs (it saves ~40 ms, a sixth of a
    whole `nnc compile`); Lark checks the grammar's hash in it and rebuilds on mismatch."""
    folder = cache_folder()
    if folder is None:
        return False
    py = "".join(map(str, sys.version_info[:2]))
    return os.path.join(folder, f"grammar-lark{lark.__version__}-py{py}.pickle")


@lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = resources.files("nnc.grammar").joinpath("nn.lark").read_text(encoding="utf-8")
    return Lark(
        grammar,
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
        postlex=_ContinueLines(),
        cache=_grammar_cache(),
    )


# ---- syntax error messages ----------------------------------------------------------------

def _describe(tok_type: str, value: str | None = None) -> str:
    if value is not None and value in KEYWORDS and tok_type in ("NAME", "TYPE_KIND", value.upper()):
        return f"'{value}'"
    if tok_type.lower() in KEYWORDS and tok_type not in _TOKEN_WORDS:  # MODEL, LOSS, ... (not INT)
        return f"'{tok_type.lower()}'"
    if tok_type.startswith("__ANON") or tok_type not in _TOKEN_WORDS:
        return f"'{value}'" if value else tok_type.lower()
    if tok_type in ("NAME", "NUMBER", "INT") and value:
        return f"{_TOKEN_WORDS[tok_type].split(' ', 1)[1]} '{_short(value)}'"  # "name 'x'"
    return _TOKEN_WORDS[tok_type]


def _expected(expected: set[str], open_brackets: list[Token]) -> str:
    """`expected X, Y or Z`, from the LALR state's acceptable tokens, pruned and grouped."""
    exp = {t for t in expected if not t.startswith("__ANON")}
    closer = _OPEN[open_brackets[-1].type] if open_brackets else None
    exp -= {c for c in _CLOSE if c != closer}  # LALR states merge: only the open bracket's closer fits
    if open_brackets:
        exp.discard("_NL")  # newlines are dropped inside brackets
    words = []
    if _OPERATORS <= exp:
        exp -= _OPERATORS | {"DOT", "LPAR"}  # a name may be followed by '.', '(': not worth listing
        if not open_brackets:
            exp.discard("COMMA")
        words.append("an operator")
    if _EXPR_START <= exp:
        exp -= _EXPR_START | {"LSQB"}
        words.append("an expression")
    words += sorted(_describe(t) for t in exp)
    if not words:
        return ""
    order = sorted(set(words), key=lambda w: (w == "end of line", w))
    return "expected " + (", ".join(order[:-1]) + " or " + order[-1] if len(order) > 1 else order[0])


def _after(tok: Token) -> Span:
    """The position just after `tok` (where a missing token would go)."""
    span = _tok_span(tok)
    return Span.point(span.end_line, span.end_col)


def _syntax_error(exc: UnexpectedInput, source: str, state: _ParseState) -> SpecError:
    if isinstance(exc, UnexpectedCharacters):
        return _bad_character(exc, source)
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        exp = _expected(set(getattr(exc, "expected", ()) or ()), state.open)
        if state.open:
            return _never_closed(state.open[-1])
        last = state.last
        where = _tok_span(last) if last is not None else Span.point(1, 1)
        where = Span.point(where.end_line, max(1, where.end_col - 1))  # the file's last character
        return SpecError("unexpected end of file" + (f"; {exp}" if exp else ""), where,
                         help="the file ends in the middle of a statement")
    assert isinstance(exc, UnexpectedToken)
    tok = exc.token
    exp = _expected(set(exc.expected), state.open)
    if tok.type == "_NL":
        where = _after(state.last) if state.last is not None else _tok_span(tok)
        return SpecError("unexpected end of line" + (f"; {exp}" if exp else ""), where)
    opener = state.after_break.get((tok.line, tok.column)) or state.pending
    if opener is not None:
        # A new line began while a bracket was open and the parser choked on its first
        # token: almost always a bracket left unclosed on an earlier line.
        err = _never_closed(opener)
        err.notes = ((f"so line {tok.line} was read as a continuation of line {opener.line}", _tok_span(tok)),)
        return err
    return SpecError(f"unexpected {_describe(tok.type, str(tok))}" + (f"; {exp}" if exp else ""),
                     _tok_span(tok), help=_syntax_help(tok, exc.expected, source))


# a reduction over several axes is written as one reduction per axis (also lower.py's help)
ONE_AXIS = "axis takes one axis: reduce one at a time, as mean(mean(x, axis=2), axis=1)"


def _syntax_help(tok: Token, expected, source: str) -> str | None:
    if tok.type == "NAME" and str(tok) in KEYWORDS and "NAME" in expected:
        return f"'{tok}' is a keyword and cannot be used here"
    if tok.type == "NUMBER" and "NAME" in expected and "EQUAL" not in expected and "RPAR" in expected:
        return "settings are written name=value, for example sgd(lr=0.1)"
    if tok.type == "LSQB" and "PLUS" in expected:
        return ("there is no indexing or slicing: x @ S with S a float input of 0s and 1s selects "
                "columns, and sum(x, axis=...) or mean(...) reduces")
    if tok.type == "DOT" and source.splitlines()[tok.line - 1].split()[:1] == ["wrt"]:
        return "wrt names float inputs; value_and_grad returns every parameter's gradient (h1.W) anyway"
    if tok.type == "COMMA" and re.search(r"\baxis\s*=\s*\([^()]*$", source.splitlines()[tok.line - 1][: tok.column - 1]):
        return ONE_AXIS
    if tok.type == "EQUAL" and "EQUAL" not in expected:
        return "'=' defines a name on its own line ('h = ...') or passes a keyword argument ('f(x, key=1)')"
    return None


def _bad_character(exc: UnexpectedCharacters, source: str) -> SpecError:
    ch = source[exc.pos_in_stream] if exc.pos_in_stream < len(source) else ""
    where = Span.point(max(1, exc.line), max(1, exc.column))
    code = f" (U+{ord(ch):04X})" if ch and (not ch.isprintable() or not ch.isascii()) else ""
    shown = f"'{ch}'" if ch.isprintable() and ch not in "'\\" else repr(ch)
    help = None
    if ch.isalpha():
        help = "names use only ASCII letters, digits and '_'"
    elif ch == ";":
        help = "write one statement per line"
    elif ch in "\"'":
        help = "the language has no strings"
    elif ch == "\\":
        help = "a backslash continues a statement only as the last character of a line"
    elif ch in "<>!":
        help = ("the language has no comparisons: step(x) is 1 where x >= 0, else 0; maximum and "
                "minimum select elementwise")
    elif ch in "{}":
        help = "use '(' and ')' for grouping, '[' and ']' for shapes and lists"
    return SpecError(f"unexpected character {shown}{code}", where, help=help)


# Control characters (even in comments) would corrupt the generated module, which quotes
# the spec; a lone carriage return would make editors and nnc disagree on line numbers.
# Bidirectional controls and the zero-width space make text read otherwise than it parses
# ("Trojan Source"), and linters refuse them in the module (ruff's PLE2502, PLE2515).
_INVISIBLE = "\u061c\u200b\u200e\u200f\u202a-\u202e\u2066-\u2069"
_FORBIDDEN = re.compile(f"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\u2028\u2029{_INVISIBLE}]|\r(?!\n)")


def _check_characters(source: str) -> None:
    bad = _FORBIDDEN.search(source)
    if bad is None:
        return
    pos = bad.start()
    line = source.count("\n", 0, pos) + 1
    col = pos - (source.rfind("\n", 0, pos) + 1) + 1
    ch = source[pos]
    if ch == "\r":
        raise SpecError("carriage return without a line feed", Span.point(line, col),
                        help="end lines with \\n or \\r\\n")
    if re.match(f"[{_INVISIBLE}]", ch):
        raise SpecError(f"invisible character U+{ord(ch):04X} ({unicodedata.name(ch)})", Span.point(line, col),
                        help="it makes the text display otherwise than it reads (a 'Trojan Source' risk); "
                             "delete it")
    raise SpecError(f"unexpected control character U+{ord(ch):04X}", Span.point(line, col),
                    help="a spec is plain text; is this a binary file?")


def parse_spec(source: str, path: str = "<spec>") -> ast.Spec:
    """Parse spec text into an AST; raises SpecError at the first syntax error."""
    source = source.removeprefix("\ufeff")  # a byte-order mark is not part of the text
    _check_characters(source)
    state = _ParseState()
    token = _STATE.set(state)
    try:
        tree = _parser().parse(source)
        statements = _ToAst().transform(tree)
    except SpecError:
        raise
    except VisitError as exc:  # an error raised inside the transformer: unwrap and locate it
        if isinstance(exc.orig_exc, SpecError):
            raise exc.orig_exc from None
        raise
    except UnexpectedInput as exc:
        if isinstance(getattr(exc, "orig_exc", None), SpecError):
            raise exc.orig_exc from None
        raise _syntax_error(exc, source, state) from None
    finally:
        _STATE.reset(token)
    return ast.Spec(tuple(statements), source, path)

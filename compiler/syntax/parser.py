"""Parse spec text into the AST: Lark (LALR, with positions) plus a Transformer."""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from importlib import resources

import lark
from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from ..errors import Span, SpecError
from . import ast

MAX_NESTING = 200  # deeper nesting is an error, so the tree walk can never overflow the stack

_OPEN = {"LPAR": "RPAR", "LSQB": "RSQB"}
_CLOSE = {"RPAR", "RSQB"}

_TOKEN_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "INT": "an integer", "_NL": "end of line",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "COMMA": "','",
    "EQUAL": "'='", "COLON": "':'", "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'",
    "SLASH": "'/'", "AT": "'@'", "POW": "'^'", "DOT": "'.'", "TYPE_KIND": "a type ('float' or 'int')",
    "$END": "end of file",
}


class _ContinueLines:
    """Post-lexer: drops newlines while a bracket is open; tracks nesting depth."""

    always_accept = ("_NL",)

    def process(self, stream):
        stack: list[Token] = []
        for tok in stream:
            if tok.type in _OPEN:
                stack.append(tok)
                if len(stack) > MAX_NESTING:
                    raise SpecError(
                        f"expression nested too deeply (more than {MAX_NESTING} levels)",
                        _tok_span(tok),
                        help="split the expression into several definitions",
                    )
            elif tok.type in _CLOSE:
                if stack:
                    stack.pop()
            elif tok.type == "_NL" and stack:
                continue
            yield tok
        if stack:
            opener = stack[-1]
            raise SpecError(
                f"'{opener.value}' is never closed",
                _tok_span(opener),
                help=f"add the matching '{')' if opener.value == '(' else ']'}'",
            )


def _tok_span(tok: Token) -> Span:
    return Span(tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + 1)


def _span(meta) -> Span:
    return Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _binop(op: str):
    def build(self, meta, c):
        return ast.BinOp(op, c[0], c[1], _span(meta))

    return build


@v_args(meta=True)
class _ToAst(Transformer):
    """Builds AST nodes only; every check lives in later passes."""

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
        return ast.NameListStmt("output", tuple(ast.Name(str(t), _tok_span(t)) for t in c), _span(meta))

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
        value = int(tok) if tok.type == "INT" else str(tok)
        return ast.Dim(value, _tok_span(tok))

    add = _binop("+")
    sub = _binop("-")
    mul = _binop("*")
    div = _binop("/")
    matmul = _binop("@")

    def pow(self, meta, c):
        return ast.BinOp("^", c[0], c[2], _span(meta))

    def neg(self, meta, c):
        return ast.Neg(c[0], _span(meta))

    def number(self, meta, c):
        return ast.Num(float(c[0]), str(c[0]), _tok_span(c[0]))

    def name(self, meta, c):
        return ast.Name(str(c[0]), _tok_span(c[0]))

    def dotted(self, meta, c):
        return ast.Name(f"{c[0]}.{c[1]}", _span(meta))

    def call(self, meta, c):
        items = [x for x in c[1:] if x is not None]
        args = tuple(x for x in items if not isinstance(x, ast.Kwarg))
        kwargs = tuple(x for x in items if isinstance(x, ast.Kwarg))
        return ast.Call(str(c[0]), args, kwargs, _span(meta), _tok_span(c[0]))

    def kwarg(self, meta, c):
        return ast.Kwarg(str(c[0]), c[1], _span(meta))

    def list(self, meta, c):
        return ast.ListLit(tuple(x for x in c if x is not None), _span(meta))


def _grammar_cache() -> str | bool:
    """Where Lark keeps the analysed grammar between runs (it saves ~40 ms, a sixth of a
    whole `nnc compile`): the user's own cache folder, never a shared temporary one, as
    the file is a pickle. Lark checks the grammar's hash in it and rebuilds on mismatch."""
    home = os.path.expanduser("~")
    base = os.environ.get("XDG_CACHE_HOME") or (os.path.join(home, ".cache") if home != "~" else "")
    if not os.path.isabs(base):
        return False
    folder = os.path.join(base, "nnc")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError:
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


def _describe(tok_type: str, value: str | None = None) -> str:
    if tok_type.startswith("__ANON") or tok_type not in _TOKEN_WORDS:
        return f"'{value}'" if value else tok_type.lower()
    if tok_type in ("NAME", "NUMBER", "INT") and value:
        return f"{_TOKEN_WORDS[tok_type]} '{value}'"
    return _TOKEN_WORDS[tok_type]


def _expected(expected: set[str]) -> str:
    words = sorted({_describe(t) for t in expected if not t.startswith("__ANON")})
    if not words:
        return ""
    return "expected " + (", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0])


def _syntax_error(exc: UnexpectedInput, source: str) -> SpecError:
    lines = source.splitlines() or [""]
    if isinstance(exc, UnexpectedCharacters):
        ch = source[exc.pos_in_stream] if exc.pos_in_stream < len(source) else ""
        return SpecError(f"unexpected character {ch!r}", Span.point(exc.line, exc.column))
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        last = len(lines)
        col = len(lines[-1].rstrip()) + 1 if lines else 1
        exp = _expected(set(getattr(exc, "expected", ()) or ()))
        return SpecError("unexpected end of file" + (f"; {exp}" if exp else ""), Span.point(last, max(col, 1)))
    assert isinstance(exc, UnexpectedToken)
    tok = exc.token
    if tok.type == "_NL":
        line = tok.line
        col = len(lines[line - 1].rstrip()) + 1 if line <= len(lines) else 1
        exp = _expected(exc.expected)
        return SpecError("unexpected end of line" + (f"; {exp}" if exp else ""), Span.point(line, col))
    exp = _expected(exc.expected)
    msg = f"unexpected {_describe(tok.type, str(tok))}" + (f"; {exp}" if exp else "")
    return SpecError(msg, _tok_span(tok))


def parse_spec(source: str, path: str = "<spec>") -> ast.Spec:
    """Parse spec text into an AST; raises SpecError at the first syntax error."""
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
        raise _syntax_error(exc, source) from None
    return ast.Spec(tuple(statements), source, path)

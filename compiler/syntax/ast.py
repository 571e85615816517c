"""Frozen AST nodes of a spec, each carrying its source span."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import Span


@dataclass(frozen=True)
class Num:
    value: float
    text: str
    span: Span


@dataclass(frozen=True)
class Name:
    id: str  # dotted names ("h1.W") keep their dot
    span: Span


@dataclass(frozen=True)
class BinOp:
    op: str  # "+", "-", "*", "/", "@", "^"
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True)
class Neg:
    operand: Expr
    span: Span


@dataclass(frozen=True)
class Kwarg:
    name: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Expr, ...]
    kwargs: tuple[Kwarg, ...]
    span: Span
    func_span: Span


@dataclass(frozen=True)
class ListLit:
    items: tuple[Expr, ...]
    span: Span


Expr = Num | Name | BinOp | Neg | Call | ListLit


@dataclass(frozen=True)
class Dim:
    value: int | str
    span: Span


@dataclass(frozen=True)
class Type:
    kind: str  # "float" | "int"
    dims: tuple[Dim, ...]
    span: Span


@dataclass(frozen=True)
class ModelStmt:
    name: str
    span: Span


@dataclass(frozen=True)
class InputStmt:
    name: str
    type: Type
    span: Span
    name_span: Span


@dataclass(frozen=True)
class ParamStmt:
    name: str
    type: Type
    init: Expr | None
    span: Span
    name_span: Span


@dataclass(frozen=True)
class DefineStmt:
    name: str
    expr: Expr
    span: Span
    name_span: Span


@dataclass(frozen=True)
class LossStmt:
    expr: Expr
    span: Span


@dataclass(frozen=True)
class NameListStmt:
    keyword: str  # "output" | "wrt"
    names: tuple[Name, ...]
    span: Span


@dataclass(frozen=True)
class OptimizerStmt:
    name: str
    kwargs: tuple[Kwarg, ...]
    span: Span
    name_span: Span


Statement = ModelStmt | InputStmt | ParamStmt | DefineStmt | LossStmt | NameListStmt | OptimizerStmt


@dataclass(frozen=True)
class Spec:
    statements: tuple[Statement, ...]
    source: str
    path: str

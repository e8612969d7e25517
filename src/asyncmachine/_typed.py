"""
Typed schemas: declare states as class attributes, and per-state argument models.

A subclass of :class:`Schema` lists its states with :func:`state`. On the class, each
attribute reads as the state's *name* (a ``str``), so ``mach.add(Kettle.Boiling)`` is
completed by IDEs and checked by mypy, and a typo is an ``AttributeError`` instead of a
runtime ``StateUnknownError``. Relations may name states by attribute (``require=[Water]``
inside the class body) or by string. Subclasses inherit and extend their parents' states.

``state(args=Model)`` attaches an argument model (a pydantic ``BaseModel``, or any class
with ``model_validate`` and ``model_fields``): every ``add``/``set`` that *calls* the
state validates its args against the model before anything is queued, raising
:class:`ArgsError`, and handlers see the validated values (defaults filled in).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Protocol, TypeAlias, TypeVar, overload

from ._core._schema import State
from ._errors import AsyncMachineError

__all__ = (
    "ArgsError",
    "ArgsModel",
    "DumpableArgs",
    "Schema",
    "StateDecl",
    "state",
    "validate_args",
)

M = TypeVar("M")


class ArgsError(AsyncMachineError, ValueError):
    """Raised when mutation args do not validate against a state's args model."""


#: An argument model class: pydantic ``BaseModel`` subclasses (anything with
#: ``model_validate`` and ``model_fields``).
ArgsModel: TypeAlias = type[object]


class DumpableArgs(Protocol):
    """A model instance accepted by ``when_args`` (pydantic models fit)."""

    def model_dump(self, *, exclude_unset: bool = ...) -> dict[str, Any]:
        """The model's fields as a dict."""
        ...


class StateDecl:
    """
    A state declared on a :class:`Schema` subclass (made by :func:`state`).

    Accessed on the class it reads as the state name (``str``).
    """

    __slots__ = ("_relations", "args", "auto", "multi", "name", "tags")

    def __init__(
        self,
        *,
        auto: bool,
        multi: bool,
        relations: dict[str, tuple[str | StateDecl, ...]],
        tags: tuple[str, ...],
        args: ArgsModel | None,
    ) -> None:
        self.auto = auto
        self.multi = multi
        self._relations = relations
        self.tags = tags
        self.args = args
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type) -> str: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> str: ...

    def __get__(self, obj: object, owner: type | None = None) -> str:
        return self.name

    def to_state(self) -> State:
        """The :class:`State` this declaration stands for."""

        def names(rel: str) -> list[str]:
            return [
                x.name if isinstance(x, StateDecl) else x for x in self._relations[rel]
            ]

        return State(
            auto=self.auto,
            multi=self.multi,
            require=names("require"),
            add=names("add"),
            remove=names("remove"),
            after=names("after"),
            tags=self.tags,
        )

    def __repr__(self) -> str:
        return f"<StateDecl {self.name or '?'}>"


def _rel(
    value: Iterable[str | StateDecl] | str | StateDecl,
) -> tuple[str | StateDecl, ...]:
    if isinstance(value, str | StateDecl):
        return (value,)
    return tuple(value)


def state(
    *,
    auto: bool = False,
    multi: bool = False,
    require: Iterable[str | StateDecl] | str | StateDecl = (),
    add: Iterable[str | StateDecl] | str | StateDecl = (),
    remove: Iterable[str | StateDecl] | str | StateDecl = (),
    after: Iterable[str | StateDecl] | str | StateDecl = (),
    tags: Iterable[str] = (),
    args: ArgsModel | None = None,
) -> StateDecl:
    """
    Declare a state on a :class:`Schema` subclass; same fields as :class:`State`.

    Args:
        args: an argument model; mutations calling this state validate against it.
    """
    if args is not None and not (
        hasattr(args, "model_validate") and hasattr(args, "model_fields")
    ):
        raise TypeError(
            f"args= needs a pydantic model class (model_validate/model_fields), "
            f"got {args!r}"
        )
    return StateDecl(
        auto=auto,
        multi=multi,
        relations={
            "require": _rel(require),
            "add": _rel(add),
            "remove": _rel(remove),
            "after": _rel(after),
        },
        tags=tuple(tags),
        args=args,
    )


class Schema:
    """
    Base class of typed schemas; pass the subclass itself to :class:`Machine`.

    Example::

        class Kettle(am.Schema):
            Water = am.state()
            Heating = am.state(require=[Water])
            Boiling = am.state(require=[Heating], args=BoilArgs)

        mach = am.Machine(Kettle)
        mach.add(Kettle.Water)
    """

    __states__: ClassVar[dict[str, StateDecl]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        states: dict[str, StateDecl] = {}
        for base in reversed(cls.__mro__[1:]):
            states.update(getattr(base, "__states__", {}))
        states.update({n: v for n, v in vars(cls).items() if isinstance(v, StateDecl)})
        cls.__states__ = states

    def __init__(self) -> None:
        raise TypeError(f"{type(self).__name__} is a schema: pass the class itself")

    @classmethod
    def state_names(cls) -> list[str]:
        """The declared state names, in declaration order (parents first)."""
        return list(cls.__states__)

    @classmethod
    def schema(cls) -> dict[str, State]:
        """The schema as a dict of :class:`State`."""
        return {name: decl.to_state() for name, decl in cls.__states__.items()}

    @classmethod
    def args_models(cls) -> dict[str, ArgsModel]:
        """The argument models by state name."""
        return {n: d.args for n, d in cls.__states__.items() if d.args is not None}


def validate_args(
    state_name: str, model: ArgsModel, args: Mapping[str, object]
) -> dict[str, object]:
    """
    Validate *args* for *state_name*; returns the args with the model's validated
    field values (defaults included) merged in.

    Raises:
        ArgsError: validation failed.
    """
    validate = getattr(model, "model_validate")  # noqa: B009 - checked by state()
    try:
        inst = validate(dict(args))
    except Exception as exc:
        raise ArgsError(f"invalid args for state {state_name!r}: {exc}") from exc
    out = dict(args)
    for field in getattr(model, "model_fields"):  # noqa: B009
        out[field] = getattr(inst, field)
    return out


def args_as(model: type[M], args: Mapping[str, object]) -> M:
    """Build *model* from *args* (used by :meth:`Event.args_as`)."""
    validate = getattr(model, "model_validate", None)
    if validate is None:
        raise TypeError(f"{model!r} is not a pydantic model class")
    result: M = validate(dict(args))
    return result

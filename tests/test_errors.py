"""The exception tree of CONTRACT §5: hierarchy, messages, attributes, pickling, rendering."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest

import algocline_nb
from algocline_nb import (
    AlgoclineError,
    AlreadyCancelledError,
    ExecutionStateTag,
    InvalidPayloadError,
    InvalidSpecError,
    LuaError,
    NotPausedError,
    ResumeError,
    RunnerError,
    SessionNotFoundError,
    SpawnError,
    UnknownQueryError,
    _errors,
)

TREE = [
    (SpawnError, AlgoclineError),
    (InvalidSpecError, SpawnError),
    (SessionNotFoundError, AlgoclineError),
    (SessionNotFoundError, LookupError),
    (ResumeError, AlgoclineError),
    (NotPausedError, ResumeError),
    (AlreadyCancelledError, ResumeError),
    (UnknownQueryError, ResumeError),
    (InvalidPayloadError, ResumeError),
    (LuaError, AlgoclineError),
    (RunnerError, AlgoclineError),
    (RunnerError, RuntimeError),
    (AlgoclineError, Exception),
]


@pytest.mark.parametrize(
    ("child", "parent"), TREE, ids=[f"{c.__name__}<{p.__name__}" for c, p in TREE]
)
def test_tree(child: type[BaseException], parent: type[BaseException]):
    assert issubclass(child, parent)


def test_branches_do_not_overlap():
    resume = {NotPausedError, AlreadyCancelledError, UnknownQueryError, InvalidPayloadError}
    for cls in resume:
        assert not issubclass(cls, SpawnError | SessionNotFoundError | LuaError | RunnerError)
    for cls in (SpawnError, InvalidSpecError, SessionNotFoundError, LuaError, RunnerError):
        assert not issubclass(cls, ResumeError)
    assert not issubclass(SessionNotFoundError, KeyError)  # only LookupError
    assert not issubclass(AlgoclineError, RuntimeError)


def test_every_error_is_public_named_error_and_documented():
    for name in _errors.__all__:
        cls = getattr(_errors, name)
        assert getattr(algocline_nb, name) is cls
        assert name.endswith("Error")
        assert issubclass(cls, AlgoclineError)
        assert cls.__doc__, name


def test_session_not_found():
    err = SessionNotFoundError("ses-1700000000000-3")
    assert str(err) == "session not found: ses-1700000000000-3"
    assert err.session_id == "ses-1700000000000-3"
    with pytest.raises(LookupError, match="session not found: ses-1"):
        raise err


@pytest.mark.parametrize(
    "tag", [ExecutionStateTag.RUNNING, ExecutionStateTag.DONE, ExecutionStateTag.FAILED]
)
def test_not_paused(tag: ExecutionStateTag):
    err = NotPausedError(tag)
    assert str(err) == f"session is not paused; actual state: {tag.value}"
    assert err.actual_tag is tag


def test_not_paused_running_message():
    assert str(NotPausedError(ExecutionStateTag.RUNNING)) == (
        "session is not paused; actual state: running"
    )


def test_already_cancelled():
    assert str(AlreadyCancelledError()) == "session is already cancelled"
    assert str(AlreadyCancelledError("cancel pending")) == "cancel pending"


def test_unknown_query():
    err = UnknownQueryError(["q-7", "q-9"], ("q-0", "q-1"))
    assert err.query_ids == ("q-7", "q-9")
    assert err.pending == ("q-0", "q-1")
    # not quoted the way KeyError quotes its message
    assert str(err) == "query ids not pending: q-7, q-9 (pending: q-0, q-1)"
    assert str(UnknownQueryError(iter(["q-3"]))) == "query ids not pending: q-3 (pending: none)"
    assert UnknownQueryError(["q-3"]).pending == ()


def test_value_errors_are_value_errors():
    with pytest.raises(ValueError, match="code must not be empty"):
        raise InvalidSpecError("code must not be empty")
    with pytest.raises(ValueError, match="2 answers for 1 pending query"):
        raise InvalidPayloadError("2 answers for 1 pending query")


def test_runner_error_is_a_runtime_error():
    with pytest.raises(RuntimeError, match="closed"):
        raise RunnerError("the registry is closed")


def test_lua_error_render_traceback():
    tb = "stack traceback:\n\t[C]: in function 'error'\n\t[string \"strategy\"]:3: in main chunk"
    err = LuaError('[string "strategy"]:3: boom', tb)
    assert err.lua_traceback == tb
    assert str(err) == '[string "strategy"]:3: boom'
    assert err._render_traceback_() == [
        'LuaError: [string "strategy"]:3: boom',
        "stack traceback:",
        "\t[C]: in function 'error'",
        '\t[string "strategy"]:3: in main chunk',
    ]
    bare = LuaError("boom")
    assert bare.lua_traceback is None
    assert bare._render_traceback_() == ["LuaError: boom"]


ERRORS = [
    AlgoclineError("something"),
    SpawnError("engine error: no VM"),
    InvalidSpecError("code must not be empty"),
    SessionNotFoundError("ses-1-0"),
    ResumeError("refused"),
    NotPausedError(ExecutionStateTag.RUNNING),
    NotPausedError(ExecutionStateTag.DONE),
    AlreadyCancelledError(),
    AlreadyCancelledError("cancel pending"),
    UnknownQueryError(["q-9"], ["q-0", "q-1"]),
    UnknownQueryError(["q-9"]),
    InvalidPayloadError("expected 2 answers, got 1"),
    LuaError("boom", "stack traceback:\n\t[C]: in ?"),
    LuaError("boom"),
    RunnerError("the registry is closed"),
]


def _same(a: BaseException, b: BaseException) -> None:
    assert type(a) is type(b)
    assert a.args == b.args
    assert str(a) == str(b)
    assert vars(a) == vars(b)


@pytest.mark.parametrize("err", ERRORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL])
def test_errors_pickle(err: BaseException, protocol: int):
    back = pickle.loads(pickle.dumps(err, protocol=protocol))
    _same(back, err)


@pytest.mark.parametrize("err", ERRORS, ids=lambda e: type(e).__name__)
def test_errors_copy(err: BaseException):
    _same(copy.copy(err), err)
    _same(copy.deepcopy(err), err)


def test_pickled_attributes_keep_their_types():
    not_paused: Any = pickle.loads(pickle.dumps(NotPausedError(ExecutionStateTag.FAILED)))
    assert not_paused.actual_tag is ExecutionStateTag.FAILED
    unknown: Any = pickle.loads(pickle.dumps(UnknownQueryError(["q-2"], ["q-0"])))
    assert (unknown.query_ids, unknown.pending) == (("q-2",), ("q-0",))
    lua: Any = pickle.loads(pickle.dumps(LuaError("boom", "tb")))
    assert lua._render_traceback_() == ["LuaError: boom", "tb"]

"""The conversation a backend sees: the whole ``previous_interaction_id`` chain, then this turn's input.

Every earlier turn contributes its input steps and then its output steps, replayed from the exact JSON stored.
"""

from __future__ import annotations

from pydantic import TypeAdapter

from ..errors import failed_precondition, invalid_argument, not_found
from ..schema.steps import FunctionCallStep, FunctionResultStep, Step, ThoughtStep
from ..store.base import BrokenChain, ChainTooBig, ChainTooLong, Store
from .signatures import InvalidSignature, ThoughtSigner

_steps = TypeAdapter(list[Step])


async def chained_history(
    store: Store, owner: str, previous_id: str, now: float, limit: int, max_bytes: int | None = None
) -> list[Step]:
    try:
        chain = await store.chain(previous_id, owner, now, limit, max_bytes)
    except BrokenChain as exc:
        raise not_found(
            f"previous_interaction_id {previous_id!r}: an earlier interaction of its chain "
            f"({exc.missing_id!r}) was deleted or has expired"
        ) from exc
    except ChainTooLong as exc:
        raise invalid_argument(f"previous_interaction_id {previous_id!r}: {exc}") from exc
    except ChainTooBig as exc:
        raise invalid_argument(
            f"previous_interaction_id {previous_id!r}: the conversation stores more than {exc.limit} bytes "
            "(limits.max_chain_bytes), more than this server loads for one request; start a new conversation "
            "with what matters of this one as input"
        ) from exc
    if not chain:
        raise not_found(f"previous_interaction_id {previous_id!r} was not found")
    last = chain[-1]
    if last.status in ("in_progress", "queued"):
        raise failed_precondition(f"interaction {previous_id!r} is still {last.status}; continue it once it ends")
    history: list[Step] = []
    for record in chain:
        history.extend(_steps.validate_json(record.input_steps))
        history.extend(_steps.validate_json(record.steps))
    return history


def verify_input(inputs: list[Step], history: list[Step], signer: ThoughtSigner) -> None:
    """Client-sent thoughts must carry a signature made here; function results must answer a known call."""
    calls = {step.id: step.name for step in history if isinstance(step, FunctionCallStep)}
    for i, step in enumerate(inputs):
        if isinstance(step, ThoughtStep) and step.signature:
            try:
                signer.open(step.signature)
            except InvalidSignature as exc:
                raise invalid_argument(
                    f"input[{i}].signature: the thought signature is invalid ({exc}); send it back unchanged"
                ) from exc
        elif isinstance(step, FunctionCallStep):
            calls[step.id] = step.name
        elif isinstance(step, FunctionResultStep):
            _check_result(i, step, calls)


def _check_result(i: int, step: FunctionResultStep, calls: dict[str, str]) -> None:
    name = calls.get(step.call_id)
    if name is None:
        raise invalid_argument(
            f"input[{i}].call_id {step.call_id!r} does not match any function_call in the conversation"
        )
    if step.name is not None and step.name != name:
        raise invalid_argument(
            f"input[{i}].name {step.name!r} differs from the name of call {step.call_id!r} ({name!r})"
        )

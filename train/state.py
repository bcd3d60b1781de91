"""The checkpointed state of a scheduler or search: its attributes, saved and restored strictly."""
from __future__ import annotations


class StrictState:
    """`state_dict` is the object's attributes; `load_state_dict` restores them and refuses a state with a key
    the object does not have or without one it has (a checkpoint of another kind or version of the object)."""

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        unknown, missing = sorted(set(state) - set(vars(self))), sorted(set(vars(self)) - set(state))
        if unknown or missing:
            raise KeyError(f"{type(self).__name__} state: unexpected {unknown}, missing {missing}")
        for k, v in state.items():
            setattr(self, k, v)

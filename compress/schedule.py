"""The search's decisions, FMP's feedback rule applied to channels and bits together (numbers only).

Each step the driver (compress/search.py) asks for the candidate moves of the last good
model, measures for each its saving (FINN-estimated hardware at the target rate) and its
accuracy cost (feedback accuracy lost right after the move, before any fine-tuning), and
`pick` takes the largest saving per unit of accuracy. The move is fine-tuned; as soon as
an epoch's feedback accuracy meets the floor it is kept (`kept`); if its epochs run out
below the floor it is rolled back (`failed`): a channel move halves that group's rate
(Algorithm 2's p <- p / divisor, per group), and the group takes no more channel moves
once its rate is below p_min; a bit move or a front-end move (its step cannot shrink) is frozen. The search
stops when no move saves anything, or after max_steps moves.
"""
from __future__ import annotations

from .moves import KINDS, Move, channel_step
from train.state import StrictState


class FeedbackSearch(StrictState):
    def __init__(self, groups: int, p0: float = 0.2, divisor: float = 2.0, p_min: float = 0.05,
                 min_weight_bits: int = 2, min_act_bits: int = 2, max_steps: int = 40, accuracy_eps: float = 0.005):
        self.p0, self.divisor, self.p_min = p0, divisor, p_min
        self.min_weight_bits, self.min_act_bits = min_weight_bits, min_act_bits
        self.max_steps, self.accuracy_eps = max_steps, accuracy_eps
        self.rates = [p0] * groups  # channel-removal rate of each group
        self.frozen: list = []  # [kind, index] that take no more moves
        self.steps = 0  # moves tried, rolled-back ones included
        self.kept_moves = 0
        self.done = False
        self.stop_reason = ""

    def moves(self, shape, max_polyphase: int = 1) -> list[Move]:
        """Every move the last good model (of `shape`) may take now; its front end may take more samples a clock,
        up to `max_polyphase`."""
        out = [Move("front", 0, p) for p in (2, 4)
               if shape.polyphase < p <= max_polyphase and ["front", p] not in self.frozen]
        for g, w in enumerate(shape.widths):
            if ["channels", g] not in self.frozen and self.rates[g] >= self.p_min and w > 4:
                out.append(Move("channels", g, channel_step(w, self.rates[g])))
        for kind, bits, low in (("weight", shape.weight_bits, self.min_weight_bits),
                                ("act", shape.act_bits, self.min_act_bits)):
            for i, b in enumerate(bits):
                if [kind, i] not in self.frozen and b - 1 >= low:
                    out.append(Move(kind, i, b - 1))
        return out

    def score(self, saving: float, drop: float) -> float:
        return saving / (max(drop, 0.0) + self.accuracy_eps)

    def pick(self, measured: list[tuple[Move, float, float]]) -> Move | None:
        """The move with the largest saving per accuracy cost among (move, saving, accuracy drop);
        None (and the search stops) when none saves anything or the step budget is spent."""
        if self.steps >= self.max_steps:
            return self._stop(f"reached max_steps={self.max_steps}")
        useful = [(self.score(s, d), m) for m, s, d in measured if s > 0]
        if not useful:
            return self._stop("no move saves hardware at the target rate")
        self.steps += 1
        return max(useful, key=lambda sm: (sm[0], -KINDS.index(sm[1].kind), -sm[1].index))[1]

    def _stop(self, reason: str):
        self.done, self.stop_reason = True, reason
        return None

    def kept(self, move: Move) -> None:
        self.kept_moves += 1

    def failed(self, move: Move, shape) -> None:
        """Rollback bookkeeping: shrink the group's step (channels) or freeze the move (bits)."""
        if move.kind == "front":
            self.frozen.append([move.kind, move.value])
            return
        if move.kind != "channels":
            self.frozen.append([move.kind, move.index])
            return
        g, w = move.index, shape.widths[move.index]
        while self.rates[g] >= self.p_min and channel_step(w, self.rates[g]) <= move.value:
            self.rates[g] /= self.divisor  # a smaller rate that removes no fewer channels is no new move


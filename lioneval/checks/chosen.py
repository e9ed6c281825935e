"""Stop-on-cheat for training against a judge: the answer-level detectors on the answers the judge prefers.

Online DPO ranks the policy's samples with a judge and trains toward the preferred ones, where nobody reads them: a
policy that finds a way to game the judge (an injection, a judge-addressing sentence, a master-key opener, padding)
is rewarded for it round after round. ``ChosenMonitor`` runs the same detectors as ``lioneval run`` on each round's
chosen answers; when the share of flagged ones reaches ``stop_share`` and is higher than in the round before (a
rising share, not one stray answer), the stage stops before training on them. A passage the detectors only doubt
(each answer holding it merely warns) counts as flagged in every chosen answer of the round that says it, once it
recurs in ``config.injection_repeat_answers`` of them: a phrase the policy learned to say to the judge is a habit,
as the run-level check of ``run_checks`` reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from lioneval.checks import repeated_hit
from lioneval.checks.answers import check_answers
from lioneval.checks.config import CheckConfig
from lioneval.types import Answer, Question

__all__ = ["ChosenMonitor", "ChosenRound"]


@dataclass(frozen=True)
class ChosenRound:
    """The detectors' verdict on one round's chosen answers."""

    round: int
    chosen: int
    flagged: int
    share: float
    stop: bool
    rules: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    habit: str = ""  # the passage said in several chosen answers, when one is

    @property
    def metrics(self) -> dict[str, float]:
        """What goes on the training curves (``trainer.log``)."""
        return {"cheat/flagged_chosen_share": self.share, "cheat/flagged_chosen": float(self.flagged)}

    @property
    def detail(self) -> str:
        rules = f" ({', '.join(self.rules)})" if self.rules else ""
        habit = f"; a habit: {self.habit[:80]!r}" if self.habit else ""
        return (f"round {self.round + 1}: {self.flagged} of {self.chosen} chosen answers flagged{rules}, "
                f"{self.share:.0%}{habit}")


@dataclass
class ChosenMonitor:
    """Round-by-round share of flagged chosen answers, and whether it calls for a stop."""

    stop_share: float = 0.2
    config: CheckConfig = field(default_factory=CheckConfig)
    history: list[ChosenRound] = field(default_factory=list)

    def observe(self, round: int, chosen: Sequence[str], prompts: Sequence[str] = ()) -> ChosenRound:
        """The verdict on one round's chosen answers; ``prompts[i]`` (when given) is the prompt ``chosen[i]``
        answers, which the detectors read with it."""
        answers = [Answer(question_id=f"r{round}-{i}", benchmark="online-dpo", model="chosen", turns=[text])
                   for i, text in enumerate(chosen) if text]
        asked = [Question(id=f"r{round}-{i}", benchmark="online-dpo", turns=[p])
                 for i, p in enumerate(prompts) if i < len(chosen) and chosen[i] and p]
        results = check_answers(answers, self.config, questions=asked) if answers else []
        flags = [c for c in results if c.status == "flag"]
        passage, habit = repeated_hit(results, self.config.injection_repeat_jaccard, self.config.injection_repeat_rules)
        if len(habit) >= self.config.injection_repeat_answers:  # a learned phrase: every answer saying it counts
            flags += [c for c in results if c.status == "warn" and c.question_id in habit]
        share = len(flags) / len(answers) if answers else 0.0
        before = self.history[-1].share if self.history else 0.0
        stop = bool(answers) and share >= self.stop_share and share > before
        result = ChosenRound(
            round=round, chosen=len(answers), flagged=len(flags), share=share, stop=stop,
            rules=tuple(sorted({r for c in flags for r in c.meta.get("rules", [])})),
            examples=tuple(c.detail[:200] for c in flags[:3]),
            habit=" ".join(passage.split())[:200] if len(habit) >= self.config.injection_repeat_answers else "",
        )
        self.history.append(result)
        return result

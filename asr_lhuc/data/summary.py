"""Counts what data preparation kept, resampled and skipped (with reasons), logs and saves it."""

import json
import logging
from collections import Counter
from pathlib import Path

logger = logging.getLogger(__name__)

# Per-item warnings beyond this many per reason go to DEBUG; the counts are always complete.
_WARN_PER_REASON = 10


class PrepSummary:
    """Record of one preparation run: kept utterances per split and every skipped item.

    Every item the corpus offers ends up either kept or skipped with a reason, so that
    ``kept + skipped`` accounts for the whole input.
    """

    def __init__(self, corpus: str):
        self.corpus = corpus
        self.kept: Counter = Counter()
        self.kept_seconds: Counter = Counter()
        self.resampled = 0
        self.skipped: list[dict] = []
        self.notes: list[str] = []
        self._reason_counts: Counter = Counter()

    def keep(self, split: str, duration: float) -> None:
        self.kept[split] += 1
        self.kept_seconds[split] += duration

    def skip(self, item: str, reason: str, detail: str) -> None:
        """Count ``item`` (an utterance id or file name) as dropped because of ``reason``."""
        self.skipped.append({"item": item, "reason": reason, "detail": detail})
        self._reason_counts[reason] += 1
        quiet = self._reason_counts[reason] > _WARN_PER_REASON
        level = logging.DEBUG if quiet else logging.WARNING
        logger.log(level, "%s: skipping %s (%s): %s", self.corpus, item, reason, detail)

    def note(self, message: str) -> None:
        self.notes.append(message)
        logger.info("%s: %s", self.corpus, message)

    def skip_counts(self) -> dict[str, int]:
        return dict(self._reason_counts)

    def to_dict(self) -> dict:
        return {
            "corpus": self.corpus,
            "kept": dict(self.kept),
            "kept_hours": {k: round(v / 3600, 4) for k, v in self.kept_seconds.items()},
            "resampled": self.resampled,
            "skipped_total": len(self.skipped),
            "skipped_by_reason": self.skip_counts(),
            "skipped": self.skipped,
            "notes": self.notes,
        }

    def log(self) -> None:
        kept = ", ".join(f"{k}={v}" for k, v in sorted(self.kept.items()))
        skipped = ", ".join(f"{k}={v}" for k, v in sorted(self.skip_counts().items())) or "none"
        logger.info(
            "%s prepared: kept %s (%.2f h); resampled %d; skipped %d (%s)",
            self.corpus, kept, sum(self.kept_seconds.values()) / 3600, self.resampled,
            len(self.skipped), skipped,
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

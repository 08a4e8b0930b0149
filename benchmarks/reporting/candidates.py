"""The configurations a report compares: one ``Candidate`` per (dataset, backend, model, strategy), its seeds.

A candidate holds its ``ok`` records and, where the cells stored them, their test predictions; the paired
statistics need every candidate of a comparison scored on the same test images (same labels in the same order).
Backends are only ranked against each other when they train the same network: same parameter count, same head
and same pretrained weights for every (model, strategy) they share (``network_mismatches``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..running.artifacts import Predictions
from .sources import SuiteSources

#: what a configuration is made of, in label order
KEY_PARTS = ("backend", "model", "strategy")


@dataclass
class Candidate:
    """One configuration on one dataset: its ok records (one per seed) and their stored predictions.

    Attributes:
        dataset: the dataset spec.
        key: ``(backend, model, strategy)``.
        records: the ok records, by seed.
        predictions: seed -> stored predictions, for the seeds that stored them.
    """

    dataset: str
    key: tuple[str, str, str]
    records: list[dict[str, Any]]
    predictions: dict[int, Predictions] = field(default_factory=dict)

    @property
    def backend(self) -> str:
        return self.key[0]

    @property
    def model(self) -> str:
        return self.key[1]

    @property
    def strategy(self) -> str:
        return self.key[2]

    @property
    def seeds(self) -> list[int]:
        """The seeds of the ok records."""
        return [int(r["seed"]) for r in self.records]

    @property
    def paired(self) -> bool:
        """Whether every ok seed stored its test predictions (needed for the paired tests)."""
        return bool(self.records) and len(self.predictions) == len(self.records)

    @property
    def labels(self) -> np.ndarray | None:
        """The test labels (of the first seed with predictions)."""
        return next(iter(self.predictions.values())).labels if self.predictions else None

    def recorded(self, column: str) -> list[float]:
        """The finite values of a record column over the seeds."""
        values = [pd.to_numeric(r.get(column), errors="coerce") for r in self.records]
        return [float(v) for v in values if v is not None and math.isfinite(float(v))]

    def median(self, column: str) -> float:
        """Median of a record column over the seeds (``nan`` when no seed has it)."""
        values = self.recorded(column)
        return float(np.median(values)) if values else math.nan

    def mean(self, column: str) -> float:
        """Mean of a record column over the seeds (``nan`` when no seed has it)."""
        values = self.recorded(column)
        return float(np.mean(values)) if values else math.nan

    def signature(self) -> tuple:
        """What network the backend trains (``network_signature`` of the first seed's record)."""
        return network_signature(self.records[0])


def network_signature(record: dict[str, Any]) -> tuple:
    """What network a record's cell trained: total parameters, head kind, pretrained weights."""
    facts = record.get("backend_facts") if isinstance(record.get("backend_facts"), dict) else {}
    total = pd.to_numeric(record.get("total_params"), errors="coerce")
    return (
        None if total is None or not math.isfinite(float(total)) else int(total),
        facts.get("head") or record.get("head"),
        record.get("pretrained"),
    )


def build_candidates(frame: pd.DataFrame, sources: SuiteSources | None) -> dict[str, list[Candidate]]:
    """dataset -> its candidates (configurations with at least one ok seed), in order of appearance."""
    ok = frame[frame["status"] == "ok"]
    result: dict[str, list[Candidate]] = {}
    for (dataset, *key), group in ok.groupby(["dataset", *KEY_PARTS], sort=False):
        records = sorted(group.to_dict("records"), key=lambda r: int(r["seed"]))
        candidate = Candidate(str(dataset), tuple(str(k) for k in key), records)
        if sources is not None:
            for record in records:
                preds = sources.predictions(record)
                if preds is not None and preds.probs.ndim == 2 and len(preds.labels) == len(preds.probs):
                    candidate.predictions[int(record["seed"])] = preds
        result.setdefault(str(dataset), []).append(candidate)
    return result


def same_test_set(candidates: Iterable[Candidate]) -> bool:
    """Whether every candidate stored predictions for all its seeds, on one test set (same labels, same order)."""
    reference = None
    for candidate in candidates:
        if not candidate.paired:
            return False
        for preds in candidate.predictions.values():
            if reference is None:
                reference = preds.labels
            elif preds.labels.shape != reference.shape or not np.array_equal(preds.labels, reference):
                return False
    return reference is not None


def _describe(signature: tuple) -> str:
    total, head, pretrained = signature
    params = "? parameters" if total is None else f"{total:,} parameters"
    return f"{params}, head {head or '?'}, weights {pretrained or '?'}"


def network_mismatches(candidates: list[Candidate]) -> list[str]:
    """Sentences for each (model, strategy) whose backends train different networks; empty when they agree."""
    by_config: dict[tuple[str, str], dict[str, tuple]] = {}
    for candidate in candidates:
        by_config.setdefault((candidate.model, candidate.strategy), {})[candidate.backend] = candidate.signature()
    lines = []
    for (model, strategy), signatures in by_config.items():
        if len(set(signatures.values())) > 1:
            described = "; ".join(f"{backend}: {_describe(sig)}" for backend, sig in signatures.items())
            lines.append(f"{model}/{strategy}: {described}")
    return lines


def labeler(candidates: Iterable[Candidate]) -> dict[tuple[str, str, str], str]:
    """A short label per configuration key: only the parts (backend, model, strategy) that vary are shown."""
    keys = list(dict.fromkeys(c.key for c in candidates))
    varying = [i for i in range(len(KEY_PARTS)) if len({k[i] for k in keys}) > 1] or [len(KEY_PARTS) - 1]
    return {key: "/".join(key[i] for i in varying) for key in keys}

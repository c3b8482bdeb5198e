"""Which deployments can serve a model name, in the order to try them.

A public model name maps to one or more deployments (several entries with the same name in
the config spread load across them by weight). The candidates come back weighted-shuffled:
the first is the weighted pick, the rest are the failover order.
"""
from __future__ import annotations

import random

from adapters.base import Deployment

__all__ = ["Router"]


class Router:
    def __init__(self, deployments: list[Deployment], rng: random.Random | None = None):
        self.routes: dict[str, list[Deployment]] = {}
        for dep in deployments:
            self.routes.setdefault(dep.name, []).append(dep)
        self._rng = rng or random.Random()

    def __contains__(self, name: str) -> bool:
        return name in self.routes

    def names(self) -> list[str]:
        return list(self.routes)

    def candidates(self, name: str) -> list[Deployment]:
        deps = self.routes.get(name)
        if not deps:
            return []
        if len(deps) == 1:
            return deps
        # Efraimidis–Spirakis weighted order: key u^(1/w), highest first; zero weight last.
        rng = self._rng
        keyed = [((rng.random() ** (1.0 / d.weight)) if d.weight > 0 else -1.0, i, d)
                 for i, d in enumerate(deps)]
        keyed.sort(reverse=True)
        return [d for k, _, d in keyed if k >= 0]

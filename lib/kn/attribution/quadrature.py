"""kn.attribution.quadrature: the integration rules of integrated gradients, with no model in them: the fixed rules
(right, left, Gauss-Legendre; nodes and weights) and the adaptive reference (``adaptive_integral``, composite
Simpson panels refined per group until a tolerance is met).

API
    RULES = ("right", "left", "gauss_legendre"); NEURON_DEFINITIONS = ("ffn_out_input", "pre_activation")
    quadrature(rule, steps) -> (alphas [m] float64, weights [m] float64)      # weights sum to 1
    alphas(steps, rule="right") -> [m] float64, the nodes of quadrature(rule, steps)
    reference_mesh(base_panels=25, zero_levels=4) -> list[Fraction]      # panel break points, 0 .. 1
    adaptive_integral(evaluate, *, groups=None, tolerance=1e-3, scale=None, mesh=None, known=None,
                      max_evaluations=2000) -> AdaptiveIntegral
        evaluate(alphas [n] float64 ndarray) -> [n, *shape]                       (groups None: one group)
        evaluate(alphas [n], groups: list[int]) -> [n, len(groups), *shape]     (groups = G)
        known: (alphas [k], values [k, G, *shape] (or [k, *shape])) already evaluated, used before calling evaluate
    AdaptiveIntegral(integral [G, *shape] float64, error [G, *shape] float64, converged [G] bool,
                     evaluations [G] int64, new_evaluations [G] int64, panels, scale, tolerance)
                     (no G axis when evaluate took alphas only)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

RULES = ("right", "left", "gauss_legendre")


def quadrature(rule: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights of a quadrature rule on [0, 1]: (alphas [m], weights [m]), float64, m = steps, nodes
    increasing, weights summing to 1.

    "right": alpha_k = k/m, k = 1..m (the paper's Riemann sum); "left": k = 0..m-1 (Dai et al.'s code); both weigh
    1/m. "gauss_legendre": numpy's m-node Gauss-Legendre rule mapped from [-1, 1] to [0, 1] (weights halved)."""
    if rule not in RULES:
        raise ValueError(f"rule {rule!r}: use one of {RULES}")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    m = int(steps)
    if rule == "gauss_legendre":

        nodes, weights = np.polynomial.legendre.leggauss(m)
        return torch.from_numpy((nodes + 1.0) / 2.0), torch.from_numpy(weights / 2.0)
    k = torch.arange(1, m + 1) if rule == "right" else torch.arange(0, m)
    return k.double() / m, torch.full((m,), 1.0 / m, dtype=torch.float64)


def alphas(steps: int, rule: str = "right") -> torch.Tensor:
    """The scaling factors alpha_k of ``quadrature(rule, steps)``: k/m for k = 1..m ("right"), k = 0..m-1 ("left"),
    or the Gauss-Legendre nodes. Returns [steps] float64."""
    return quadrature(rule, steps)[0]


# --------------------------------------------------------------------------------------------------------------
# the adaptive core
# --------------------------------------------------------------------------------------------------------------


def _key(x) -> int:
    """Alphas closer than 2^-41 share an evaluation (k/m as a float is the same float for every equal fraction)."""
    return round(float(x) * 2.0**40)


def reference_mesh(base_panels: int = 25, zero_levels: int = 4) -> list[Fraction]:
    """Break points of the reference's starting panels on [0, 1], exact fractions, increasing.

    ``base_panels`` equal panels of width w = 1/base_panels (each sampled at 5 points: the grid 1/(4 base_panels));
    the first one, [0, w], split geometrically into [0, w/2^z], [w/2^z, w/2^(z-1)], ..., [w/2, w] (z = zero_levels).
    Default: w = 0.04, grid 0.01 (101 points) plus 16 points in [0, 0.04] down to a spacing of 0.000625."""
    if int(base_panels) < 1 or int(zero_levels) < 0:
        raise ValueError("base_panels must be >= 1 and zero_levels >= 0")
    w = Fraction(1, int(base_panels))
    return ([Fraction(0)] + [w / 2**k for k in range(int(zero_levels), 0, -1)]
            + [w * j for j in range(1, int(base_panels) + 1)])


def _panel_points(a: Fraction, b: Fraction) -> list[Fraction]:
    return [a + (b - a) * j / 4 for j in range(5)]


@dataclass
class AdaptiveIntegral:
    """The adaptive reference of ``adaptive_integral``.

    integral: float64 [G, *shape] (no G axis when evaluate took alphas only): the sum of the panels' Boole values
    error: float64, same shape: each element's summed panel error estimates |S2 - S1| (see the module docstring)
    converged: bool [G]: error.max() <= tolerance * scale for the group
    evaluations: int64 [G]: distinct alphas the group's panels used (known ones included)
    new_evaluations: int64 [G]: alphas ``evaluate`` was called at for the group
    panels: per group the final panels [(a, b)] as floats; scale: the scale of the bound (given, or the largest
    |integral| over all groups and elements); tolerance."""

    integral: torch.Tensor
    error: torch.Tensor
    converged: torch.Tensor
    evaluations: torch.Tensor
    new_evaluations: torch.Tensor
    panels: list
    scale: float
    tolerance: float


def adaptive_integral(evaluate: Callable, *, groups: int | None = None, tolerance: float = 1e-3,
                      scale: float | None = None, mesh: Sequence | None = None, known=None,
                      max_evaluations: int = 2000, min_width: float = 2.0**-30) -> AdaptiveIntegral:
    """Integral over [mesh[0], mesh[-1]] of a vector function of alpha, adaptive per group (see the module docstring).

    evaluate: groups None: evaluate(alphas [n] float64 ndarray) -> [n, *shape] (ndarray or tensor); groups = G:
        evaluate(alphas [n], groups: list of group indices) -> [n, len(groups), *shape]. It is called once per round
        for each distinct set of new alphas (groups needing the same alphas share the call).
    tolerance, scale: a group has converged when every element's error estimate is <= tolerance * scale; scale None:
        the largest |integral| over all groups and elements, re-estimated every round.
    mesh: increasing break points of the starting panels (default ``reference_mesh()``); Fractions keep the points
        exact, so points shared with ``known`` match.
    known: (alphas [k], values [k, G, *shape], or [k, *shape] when groups is None): evaluations to use first.
    max_evaluations: at most this many distinct alphas per group; a group stops refining there (unconverged).
    min_width: panels this narrow are not bisected."""
    single = groups is None
    G = 1 if single else int(groups)
    if G < 1:
        raise ValueError("groups must be >= 1")
    breaks = [Fraction(x) if not isinstance(x, Fraction) else x for x in (reference_mesh() if mesh is None else mesh)]
    if len(breaks) < 2 or any(b <= a for a, b in zip(breaks, breaks[1:])):
        raise ValueError("mesh: need at least two strictly increasing break points")
    if not tolerance > 0:
        raise ValueError("tolerance must be > 0")

    store: list[dict] = [dict() for _ in range(G)]
    alpha_of: dict[int, float] = {}
    if known is not None:
        k_alphas = np.asarray(torch.as_tensor(known[0], dtype=torch.float64).cpu()).reshape(-1)
        k_values = torch.as_tensor(known[1])
        if single:
            k_values = k_values[:, None]
        if k_values.shape[0] != k_alphas.size or k_values.shape[1] != G:
            raise ValueError(f"known values {tuple(k_values.shape)} do not match {k_alphas.size} alphas x {G} groups")
        for j, a in enumerate(k_alphas):
            key = _key(a)
            alpha_of.setdefault(key, float(a))
            for g in range(G):
                store[g][key] = k_values[j, g]

    panels = [[(breaks[i], breaks[i + 1]) for i in range(len(breaks) - 1)] for _ in range(G)]
    cache: list[dict] = [dict() for _ in range(G)]
    used: list[set] = [set() for _ in range(G)]
    new = [0] * G
    capped = [False] * G

    def fill():
        need: dict[tuple, list[int]] = {}
        for g in range(G):
            missing = set()
            for a, b in panels[g]:
                for x in _panel_points(a, b):
                    key = _key(x)
                    alpha_of.setdefault(key, float(x))
                    used[g].add(key)
                    if key not in store[g]:
                        missing.add(key)
            if missing:
                need.setdefault(tuple(sorted(missing)), []).append(g)
        for keys, gs in need.items():
            alphas = np.array([alpha_of[k] for k in keys], dtype=np.float64)
            out = torch.as_tensor(evaluate(alphas) if single else evaluate(alphas, list(gs)))
            if single:
                out = out[:, None]
            if out.shape[0] != len(keys) or out.shape[1] != len(gs):
                raise ValueError(f"evaluate returned {tuple(out.shape)} for {len(keys)} alphas x {len(gs)} groups")
            for j, key in enumerate(keys):
                for i, g in enumerate(gs):
                    store[g][key] = out[j, i]
            for g in gs:
                new[g] += len(keys)

    def panel(g, a, b):
        if (a, b) not in cache[g]:
            f = torch.stack([store[g][_key(x)] for x in _panel_points(a, b)]).double()
            h = float(b - a)
            s1 = h / 6 * (f[0] + 4 * f[2] + f[4])
            s2 = h / 12 * (f[0] + 4 * f[1] + 2 * f[2] + 4 * f[3] + f[4])
            diff = s2 - s1
            cache[g][(a, b)] = (s2 + diff / 15, diff.abs())
        return cache[g][(a, b)]

    while True:
        fill()
        integral, error, worst = [], [], []
        for g in range(G):
            parts = [panel(g, a, b) for a, b in panels[g]]
            integral.append(torch.stack([v for v, _ in parts]).sum(0))
            error.append(torch.stack([e for _, e in parts]).sum(0))
            worst.append([float(e.max()) if e.numel() else 0.0 for _, e in parts])
        scale_now = float(scale) if scale is not None else max(float(t.abs().max()) if t.numel() else 0.0
                                                                for t in integral)
        bound = tolerance * scale_now
        refined = False
        for g in range(G):
            if capped[g] or float(error[g].max() if error[g].numel() else 0.0) <= bound:
                continue
            order = sorted(range(len(panels[g])), key=lambda p: -worst[g][p])
            rest, split = sum(worst[g]), []
            for p in order:
                if rest <= bound / 2:
                    break
                a, b = panels[g][p]
                if float(b - a) > min_width:
                    split.append(p)
                rest -= worst[g][p]
            room = max(0, (int(max_evaluations) - len(used[g])) // 4)
            if len(split) > room:
                split, capped[g] = split[:room], True
            if not split:
                capped[g] = True
                continue
            chosen = set(split)
            out = []
            for p, (a, b) in enumerate(panels[g]):
                if p in chosen:
                    mid = (a + b) / 2
                    out += [(a, mid), (mid, b)]
                else:
                    out.append((a, b))
            panels[g] = out
            refined = True
        if not refined:
            break

    integral_t, error_t = torch.stack(integral), torch.stack(error)
    converged = torch.tensor([float(e.max() if e.numel() else 0.0) <= bound for e in error])
    evaluations = torch.tensor([len(u) for u in used], dtype=torch.int64)
    new_t = torch.tensor(new, dtype=torch.int64)
    float_panels = [[(float(a), float(b)) for a, b in p] for p in panels]
    if single:
        return AdaptiveIntegral(integral_t[0], error_t[0], converged[0], evaluations[0], new_t[0], float_panels[0],
                                scale_now, float(tolerance))
    return AdaptiveIntegral(integral_t, error_t, converged, evaluations, new_t, float_panels, scale_now,
                            float(tolerance))

"""kn.data.clusters: the clusters of relations that every test and interval over facts resamples.

API
    relation_clusters(facts, templates=None) -> {relation: cluster label}   relations holding an identical prompt
        (a (subject, object) pair and a template they share) are one cluster, "P176+P178"; others their own
    with_clusters(facts, templates=None) -> facts with a ``cluster`` column
"""

from __future__ import annotations

import pandas as pd


def relation_clusters(facts: pd.DataFrame, templates: pd.DataFrame | None = None) -> dict:
    """{relation: cluster label}: relations that ask the same question of the same fact (a (subject, object) pair
    they share, under a template they share, so that both hold the identical prompt and answer), directly or through
    others, form one cluster, named by its relations joined with "+" ("P176+P178"); any other relation is its own
    cluster. Their facts are then one unit of resampling and testing. ``templates`` (relation, template): without
    them a shared pair alone merges, which on PARAREL chains 25 of the 34 relations into one cluster (born in / died
    in / works in ... share cities), leaving too few clusters for any test; with them only identical prompts merge
    (P176+P178, P364+P407, P495+P740, P39+P413). Decided on every fact of the data, not on a run's sample."""
    parent = {r: r for r in sorted(set(facts["relation"]))}
    wordings = ({r: set(g["template"]) for r, g in templates.groupby("relation")} if templates is not None else None)

    def root(r):
        while parent[r] != r:
            parent[r] = parent[parent[r]]
            r = parent[r]
        return r

    shared = facts.groupby(["subject", "object"], sort=False)["relation"].agg(lambda x: sorted(set(x)))
    for holders in shared[shared.map(len) > 1]:
        for i, a in enumerate(holders):
            for b in holders[i + 1:]:
                if wordings is not None and not wordings.get(a, set()) & wordings.get(b, set()):
                    continue
                ra, rb = root(a), root(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    members: dict = {}
    for r in parent:
        members.setdefault(root(r), []).append(r)
    return {r: "+".join(sorted(members[root(r)], key=_relation_order)) for r in parent}


def _relation_order(relation: str):
    digits = relation[1:]
    return (0, int(digits), relation) if relation[:1] == "P" and digits.isdigit() else (1, 0, relation)


def with_clusters(facts: pd.DataFrame, templates: pd.DataFrame | None = None) -> pd.DataFrame:
    """``facts`` with a ``cluster`` column (relation_clusters over these facts and templates)."""
    return facts.assign(cluster=facts["relation"].map(relation_clusters(facts, templates)))

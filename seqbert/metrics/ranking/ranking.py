"""Ranking metric module (NDCG@K, HR@K, MRR@K, MRR) for next-item recommendation."""

from collections.abc import Sequence

import datasets
import evaluate

from .ranking_math import ranking_metrics


_CITATION = """\
@article{jarvelin2002cumulated,
  title={Cumulated gain-based evaluation of {IR} techniques},
  author={J{\\"a}rvelin, Kalervo and Kek{\\"a}l{\\"a}inen, Jaana},
  journal={ACM Transactions on Information Systems},
  volume={20},
  number={4},
  pages={422--446},
  year={2002}
}
@inproceedings{krichene2020sampled,
  title={On Sampled Metrics for Item Recommendation},
  author={Krichene, Walid and Rendle, Steffen},
  booktitle={Proceedings of the 26th ACM SIGKDD International Conference on Knowledge Discovery \\& Data Mining},
  pages={1748--1757},
  year={2020}
}
"""

_DESCRIPTION = """\
Top-K ranking metrics for next-item recommendation with one relevant (target) item per query:
NDCG@K (1 / log2(rank + 1) when rank <= K), HR@K (hit rate, rank <= K), MRR@K (1 / rank when
rank <= K) and full MRR (1 / rank), each averaged over queries. The input is the 1-based rank of the
target among the whole catalog, computed pessimistically (ties count against the target) by
`seqbert.metrics.ranks_from_scores`, so a model that scores every item the same gets ~0.
"""

_KWARGS_DESCRIPTION = """
Args:
    ranks (`list` of `int`): 1-based rank of each query's target item among the catalog. A target
        unknown to the catalog, or excluded from the candidates, has rank `num_items + 1` (a miss).
    ks (`list` of `int`, defaults to `(5, 10, 20)`): the cut-offs K.
    num_items (`int`, *optional*): the catalog size V. When given, ranks above V are misses for
        every metric and ranks above V + 1 raise a `ValueError`.
Returns:
    `ndcg@K`, `hr@K`, `mrr@K` (`float`) for each K in `ks`, in [0, 1], higher is better;
    `mrr` (`float`): mean reciprocal rank over the full catalog;
    `count` (`int`): the number of queries.
Examples:

    >>> import seqbert.metrics
    >>> ranking = seqbert.metrics.load("ranking")
    >>> results = ranking.compute(ranks=[1, 3, 11, 6], ks=[5, 10], num_items=20)
    >>> print({name: round(value, 4) for name, value in results.items()})  # doctest: +NORMALIZE_WHITESPACE
    {'ndcg@5': 0.375, 'ndcg@10': 0.4641, 'hr@5': 0.5, 'hr@10': 0.75, 'mrr@5': 0.3333, 'mrr@10': 0.375,
     'mrr': 0.3977, 'count': 4}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Ranking(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"ranks": datasets.Value("int64")}),
            reference_urls=["https://en.wikipedia.org/wiki/Discounted_cumulative_gain"],
        )

    def _compute(
        self, ranks: list[int], ks: int | Sequence[int] = (5, 10, 20), num_items: int | None = None
    ) -> dict[str, float]:
        return ranking_metrics(ranks, ks=ks, num_items=num_items)

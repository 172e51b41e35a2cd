"""The three artifacts of nw2 as types, and the one place that names their files.

- :class:`WindowStore` (:mod:`.store`): ``nw2 ingest`` writes it, ``nw2 metrics`` adds columns to it.
- :class:`Corpus` (:mod:`.corpus`): ``nw2 balance`` writes it; other trainers read it as plain Parquet.
- :class:`Run` (:mod:`.run`): ``nw2 pretrain`` writes it, ``nw2 evaluate`` reads its model.

Their metadata files (``store.json``, ``manifest.json``, ``metrics.json``, ``corpus.json``, ``run.json``)
are frozen dataclasses (:class:`StoreInfo`, :class:`Manifest`, :class:`MetricsInfo`, :class:`CorpusInfo`,
:class:`RunInfo`). Every stage and workflow opens artifacts through these types; none names another
stage's files. They delete only what they can prove nw2 wrote, and refuse the rest.
"""

from .corpus import Corpus, CorpusInfo
from .run import Run, RunInfo
from .source import may_hold, open_windows
from .store import Manifest, MetricsInfo, StoreInfo, WindowStore

__all__ = ["WindowStore", "StoreInfo", "Manifest", "MetricsInfo", "Corpus", "CorpusInfo", "Run", "RunInfo",
           "open_windows", "may_hold"]

"""The shared core every layer uses, each piece once: errors (:mod:`.errors`), hashing (:mod:`.hashing`),
atomic file and directory writes on local paths and fsspec URLs (:mod:`.files`), report figures
(:mod:`.plots`). It imports nothing else of nw2."""

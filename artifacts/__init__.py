"""The three artifacts of nw2 as types: the window store, the corpus and the run."""

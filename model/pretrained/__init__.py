"""Checkpoints shipped inside nw2, one folder each (``model.safetensors``, ``config.json`` and the model card
``README.md``), loaded by name with ``Model.from_pretrained("nw2-small")``; ``build.py`` remakes them."""

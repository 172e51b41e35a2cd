"""Workflows: commands that chain the stages (``nw2 demo``, ``nw2 experiment``). They call only the public
stage functions of :mod:`nw2.pipeline` and :mod:`nw2.model` and the artifact types of :mod:`nw2.artifacts`."""

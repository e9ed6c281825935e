"""Judges: a backend, a versioned prompt template and a verdict parser, chosen by a spec string or a YAML file.

Installed as ``lioneval.judges``.
"""

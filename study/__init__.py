"""The user study: ``python -m study prepare | audit | serve | report``.

Kept import-light: the server never loads torch (it never runs a model).
"""

"""Entry points of the reference-style scripts (``run.py``, ``scripts/*.py``, ``ego_view_rendering/*.py``).

The files at those paths are two-line wrappers around ``main()`` here, so they stay thin and run from a
fresh clone (the repository root is on ``sys.path`` when a script in it runs) as well as installed.
"""

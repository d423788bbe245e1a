"""The reference systems' commands on this engine: ViPE's preset names, run.py's ``key=value`` overrides,
artifacts at the source resolution, and the run that every front end (``vipe``, ``run.py``, ``vipe-dagster
infer``) shares. No dagster imports (engine layer)."""

"""HTML reports from run directories (result files only: no model code is imported).

``specs`` (eval/*.toml paper tables), ``runs`` (reading RUN_DIR), ``tables``, ``grids``,
``figures``, ``efficiency`` (profile JSON) and ``render`` (``build_report``, the jinja2 page).
"""

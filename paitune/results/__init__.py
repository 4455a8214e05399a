"""The results: the tables' schema (``schema``), where they live (``storage``: a local folder or a
pyarrow URI), which files hold each table's rows (``layout``) and how a trial's reports become
rows (``rows``). No Ray, no Optuna."""

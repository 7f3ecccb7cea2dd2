"""Doctest collection imports every module of the package; the integrations need their optional extras."""

import importlib.util

collect_ignore = [
    f"src/lr_finder/integrations/{name}.py"
    for name in ("transformers", "lightning")
    if importlib.util.find_spec(name) is None
]

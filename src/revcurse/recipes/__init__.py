"""The recipes: one module per `revcurse` command, each reading top to bottom.

    revcurse demo | berglund | pairs | compare | analyze | facts | kb

A recipe declares its config dataclass (its options, revcurse.config) and a `run_*`
function that opens its run directory through revcurse.recipes.run, does its work with the
library below it, and writes results.json, table.txt and its own files there.
"""

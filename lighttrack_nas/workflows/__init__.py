"""Workflows at the top of the package: they chain the library's stages (data, training, search,
compression, evaluation) into the jobs users run. The main job (:mod:`.main_job`) and its stages
(:mod:`.stages`), stand-alone retraining (:mod:`.retrain`), the comparison (:mod:`.compare`) and the
ranking study (:mod:`.ranking`). Nothing below imports this package."""

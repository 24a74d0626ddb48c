"""Sampling building blocks used by `udifftext.pipeline.UDiffTextPipeline`: regions, schedulers, guidance,
noise selection, attention-guided refinement, heatmaps and the batch (manifest) runner."""

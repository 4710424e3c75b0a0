"""Export verified samples to Hugging Face datasets, verl, TRL, VLMEvalKit and lmms-eval formats.

Entry point: `run_export(ExportConfig(...))` (the `mifg export` command). Splits are grouped by
source photo and stratified by task type (`splits`); a perceptual-hash contamination check
against a benchmark folder is optional (`contamination`); one module per format.
"""

from pipeline.export.exporter import FORMATS, ExportConfig, ExportResult, run_export

__all__ = ["FORMATS", "ExportConfig", "ExportResult", "run_export"]

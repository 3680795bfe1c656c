"""Export and restore of the model library across models, presets and downloads."""

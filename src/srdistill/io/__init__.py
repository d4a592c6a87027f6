"""Files: portable model weights (``model_files``) vs local, resumable training checkpoints."""

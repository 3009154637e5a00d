"""The artefacts' contracts, each spelt in one module: run folders (run_folder), checkpoints,
learngene files and timm/Hub model folders."""

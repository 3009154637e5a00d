"""The artefacts' contracts, each spelt in one module: run folders (run_folder), checkpoints,
learngene files, timm/Hub model folders and their cards; export is the one writer of them all."""

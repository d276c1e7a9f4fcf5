"""The shared core: files, params, stage scripts, errors, seeding, distribution, tracking."""

"""One module per stage of the recipe; each exposes `Config`, `PRESETS` and `run(cfg) -> Path`."""

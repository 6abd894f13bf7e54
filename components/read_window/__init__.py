"""read_window: the captured traffic of one model over a window of whole hours."""

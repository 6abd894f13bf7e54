"""The serving image: a KServe model server and the traffic capture it writes (capture.py)."""

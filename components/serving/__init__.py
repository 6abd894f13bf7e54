"""The Loopline model server: a kserve.Model run by kserve.ModelServer (``python -m components.serving``)."""

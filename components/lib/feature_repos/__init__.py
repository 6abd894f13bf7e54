"""Feast feature repositories, one folder per task, versioned like the validation schemas.

A repository folder holds its constants and calendar logic (no Feast import: the serving and
pipeline images may read them), its Feast objects (``definitions.py``, imported only where
Feast is installed: the features image, ``.venv-features``) and the one template its
``feature_store.yaml`` is rendered from (``components/lib/featurestore.py``).
"""

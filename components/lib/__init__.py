"""The shared layer beneath the components: small named modules, no component imports.

Each module imports only what it needs at the top (heavy or image-specific packages are
imported inside the functions that use them), so that every image can import the modules
it uses: ``tables`` and ``artifacts`` import in the TFDV image (no kfp, no scikit-learn),
``storage``, ``specs`` and ``logs`` in the tuner image (no pandas). See README.md here.
"""

"""Settings modules: ``base`` holds everything, ``dev``/``test``/``prod`` only adjust it."""
